// The page's Web Worker: keys, encryption, the call and decryption all run here, so drawing stays responsive.
// Messages in: {id, op: 'describe' | 'predict', uri, token, store, model?, rows?}; out: {id, ok, ...} or {id, error}.
import { Client, SeiError } from '../js/src/index.js';

/** @type {Map<string, Client>} one client per service, token and key store */
const clients = new Map();

function clientFor(/** @type {string} */ uri, /** @type {string} */ token, /** @type {string} */ store) {
  const key = JSON.stringify([uri, token, store]);
  if (!clients.has(key)) {
    /** @type {Record<string, string>} */
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    clients.set(key, new Client(uri, { headers, keyStore: store === 'memory' ? 'memory' : 'indexeddb', retries: 1 }));
  }
  return /** @type {Client} */ (clients.get(key));
}

/** Time `fn` (sync or async) into `steps[name]`, in milliseconds. */
async function timed(/** @type {Record<string, number>} */ steps, /** @type {string} */ name, /** @type {() => any} */ fn) {
  const start = performance.now();
  try {
    return await fn();
  } finally {
    steps[name] = (steps[name] ?? 0) + performance.now() - start;
  }
}

async function predict(/** @type {any} */ message) {
  const client = clientFor(message.uri, message.token, message.store);
  /** @type {Record<string, number>} */
  const steps = {};
  const sentBefore = client.bytesSent;
  const start = performance.now();
  const model = await timed(steps, 'keys', () => client.model(message.model));
  // the library's own predict, with its encrypt and decrypt timed in place (no second encryption)
  const encrypt = model.encrypt.bind(model);
  const decrypt = model.decrypt.bind(model);
  model.encrypt = (/** @type {number[][]} */ rows) => { const t = performance.now(); try { return encrypt(rows); } finally { steps.encrypt = performance.now() - t; } };
  model.decrypt = (/** @type {unknown} */ r, /** @type {number} */ n) => { const t = performance.now(); try { return decrypt(r, n); } finally { steps.decrypt = performance.now() - t; } };
  let result;
  try {
    result = await client.predict(message.model, message.rows);
  } finally {
    model.encrypt = encrypt;
    model.decrypt = decrypt;
  }
  const total = performance.now() - start;
  steps.service = total - (steps.keys ?? 0) - (steps.encrypt ?? 0) - (steps.decrypt ?? 0);
  steps.total = total;
  return { result, steps, bytesSent: client.bytesSent - sentBefore };
}

self.onmessage = async (/** @type {MessageEvent} */ event) => {
  const message = event.data;
  try {
    let answer;
    if (message.op === 'describe') {
      const client = clientFor(message.uri, message.token, message.store);
      const start = performance.now();
      answer = { description: await client.describe(), steps: { describe: performance.now() - start }, bytesSent: client.bytesSent };
    } else if (message.op === 'predict') {
      answer = await predict(message);
    } else {
      throw new SeiError(`unknown operation ${JSON.stringify(message.op)}`, 'invalid_request');
    }
    self.postMessage({ id: message.id, ok: true, ...answer });
  } catch (error) {
    const e = /** @type {any} */ (error);
    const code = e instanceof SeiError ? e.code : 'page_error';
    self.postMessage({ id: message.id, ok: false, error: { code, message: String(e?.message ?? e) } });
  }
};
