// Where the key pairs live: IndexedDB (the default: kept across visits, readable only by this origin) or memory.
import { SeiError } from './errors.js';

/** @typedef {{ secret: Uint8Array, public: Uint8Array }} KeyPair */
/**
 * @typedef {{ get(scheme: string): Promise<KeyPair | undefined>, put(scheme: string, pair: KeyPair): Promise<void>,
 *   add(scheme: string, pair: KeyPair): Promise<KeyPair>, delete(scheme: string): Promise<void> }} KeyStore
 * `add` stores `pair` unless the scheme has one already, and returns the stored pair: two pages of one origin that
 * make keys at once end up using the same pair.
 */

/** Keys for this page's lifetime only: gone on reload. @returns {KeyStore} */
export function memoryKeyStore() {
  /** @type {Map<string, KeyPair>} */
  const keys = new Map();
  return {
    async get(scheme) { return keys.get(scheme); },
    async put(scheme, pair) { keys.set(scheme, pair); },
    async add(scheme, pair) {
      if (!keys.has(scheme)) keys.set(scheme, pair);
      return /** @type {KeyPair} */ (keys.get(scheme));
    },
    async delete(scheme) { keys.delete(scheme); },
  };
}

/**
 * Keys in this origin's IndexedDB (database `name`, store "keys", one record per key scheme), stored as bytes: any
 * script running on this origin can read them (clients/js/README.md).
 * @returns {KeyStore}
 */
export function indexedDbKeyStore(name = 'sei-keys') {
  /** @type {Promise<IDBDatabase> | null} */
  let opening = null;
  const db = () => {
    opening ??= new Promise((resolve, reject) => {
      const refused = () => {
        opening = null;
        reject(new SeiError("this page cannot use IndexedDB (a private window, or storage blocked): keep the keys in memory, new Client(uri, { keyStore: 'memory' })", 'unusable_keys'));
      };
      if (typeof globalThis.indexedDB === 'undefined') return refused();
      const request = globalThis.indexedDB.open(name, 1);
      request.onupgradeneeded = () => request.result.createObjectStore('keys');
      request.onsuccess = () => resolve(request.result);
      request.onerror = refused;
    });
    return opening;
  };
  const run = async (/** @type {IDBTransactionMode} */ mode, /** @type {(s: IDBObjectStore) => IDBRequest} */ op) => {
    const store = (await db()).transaction('keys', mode).objectStore('keys');
    return new Promise((resolve, reject) => {
      const request = op(store);
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  };
  return {
    async get(scheme) {
      const found = await run('readonly', (s) => s.get(scheme));
      return found ? { secret: new Uint8Array(found.secret), public: new Uint8Array(found.public) } : undefined;
    },
    async put(scheme, pair) { await run('readwrite', (s) => s.put({ secret: pair.secret, public: pair.public }, scheme)); },
    async add(scheme, pair) {
      try {
        await run('readwrite', (s) => s.add({ secret: pair.secret, public: pair.public }, scheme));
      } catch (error) {
        if (/** @type {DOMException} */ (error)?.name !== 'ConstraintError') throw error; // another page stored one first
      }
      return /** @type {KeyPair} */ (await this.get(scheme));
    },
    async delete(scheme) { await run('readwrite', (s) => s.delete(scheme)); },
  };
}
