// The client: describe, keys (kept in this origin), the inline key transport, encrypt, call, decrypt, read scores.
import { KernelInputError, SeiError } from './errors.js';
import { checkEndpoint, jsonBody, post, redactUri } from './http.js';
import { FINGERPRINT_FIELD, descriptionFingerprint } from './fingerprint.js';
import { ClientKeys } from './keys.js';
import { indexedDbKeyStore, memoryKeyStore } from './keystore.js';
import { PackedModel } from './model.js';
import { Params } from './params.js';
import { toBase64 } from './ring.js';

/** @typedef {import('./keystore.js').KeyStore} KeyStore */
/** @typedef {import('./model.js').Prediction} Prediction */
/**
 * One call's own figures, added to the object the caller passes (`predict(..., { stats })`): milliseconds spent
 * opening the model (`keys`: describe, load or make the key pair), encrypting, in requests (`request`: the
 * service's work and the network, retries included) and decrypting, and `bytesSent`, the bytes of the bodies of
 * its prediction requests (a describe it needed is counted in the client's `bytesSent` only). Concurrent calls
 * with their own objects never mix.
 * @typedef {{ keys?: number, encrypt?: number, request?: number, decrypt?: number, bytesSent?: number }} Stats
 */

/** `fn()`, its time added to `stats[step]` in milliseconds (also when it throws). @template T
 * @param {Stats | undefined} stats @param {'keys' | 'encrypt' | 'request' | 'decrypt'} step @param {() => T} fn @returns {T} */
function timed(stats, step, fn) {
  if (!stats) return fn();
  const start = performance.now();
  const add = () => { stats[step] = (stats[step] ?? 0) + performance.now() - start; };
  let out;
  try {
    out = fn();
  } catch (error) {
    add();
    throw error;
  }
  if (out instanceof Promise) return /** @type {T} */ (out.finally(add));
  add();
  return out;
}

export class Client {
  /**
   * A client of one SEI service; the secret keys stay in this origin (IndexedDB by default).
   * @param {string} scoringUri the service's scoring URI
   * @param {{ headers?: Record<string, string>, keyStore?: KeyStore | 'indexeddb' | 'memory', allowUnproven?: boolean,
   *   allowInsecureHttp?: boolean, retries?: number, timeout?: number, description?: Record<string, any>,
   *   descriptionText?: string }} [options]
   */
  constructor(scoringUri, options = {}) {
    /** The scoring URI, absolute (a relative one is resolved against the page). */
    this.scoringUri = scoringUri && globalThis.location ? new URL(scoringUri, globalThis.location.href).href : scoringUri;
    this.headers = { ...(options.headers ?? {}) };
    this.allowInsecureHttp = options.allowInsecureHttp ?? false;
    this.allowUnproven = options.allowUnproven ?? false;
    const store = options.keyStore ?? 'indexeddb';
    /** @type {KeyStore} */
    this.keyStore = store === 'memory' ? memoryKeyStore() : store === 'indexeddb' ? indexedDbKeyStore() : store;
    this.http = { retries: options.retries ?? 4, timeout: options.timeout ?? 600 };
    /** @type {Record<string, any> | null} */
    this.description = options.description ?? (options.descriptionText ? JSON.parse(options.descriptionText) : null);
    /** @type {string | undefined} the describe answer as the service wrote it (for the fingerprint) */
    this.descriptionText = options.descriptionText;
    /** @type {Promise<{ json: any, text: string }> | null} the describe request in flight */
    this.describing = null;
    /** How many times the description was forgotten: an answer asked for before the last time is stale. */
    this.generation = 0;
    /** @type {Map<string, Promise<PackedModel>>} */
    this.models = new Map();
    /** @type {Map<string, Record<string, string>>} key id -> fields to send once */
    this.pending = new Map();
    /** Bytes of the request bodies sent so far, by every call of this client (one call's own: `stats`). */
    this.bytesSent = 0;
    if (this.scoringUri) checkEndpoint(this.scoringUri, this.headers, this.allowInsecureHttp);
  }

  /** POST one request; an error answer throws SeiError with its code. */
  async call(/** @type {Record<string, any>} */ body) {
    return (await this.send(body)).json;
  }

  /** POST `body`, serialised once; its bytes are counted in `bytesSent` (and the call's `stats`). */
  async send(/** @type {Record<string, any>} */ body, /** @type {Stats | undefined} */ stats = undefined) {
    if (!this.scoringUri) throw new SeiError('this client has no service endpoint: it encrypts and decrypts only', 'sei_error');
    checkEndpoint(this.scoringUri, this.headers, this.allowInsecureHttp);
    const bytes = jsonBody(body);
    this.bytesSent += bytes.length;
    if (stats) stats.bytesSent = (stats.bytesSent ?? 0) + bytes.length;
    return post(this.scoringUri, this.headers, bytes, this.http);
  }

  /** Forget the cached description (the service's changed): the next describe asks again, and an answer to one
   * sent before now is not taken. */
  forgetDescription() {
    this.description = null;
    this.descriptionText = undefined;
    this.describing = null;
    this.generation += 1;
  }

  /** The service's models, parameters and key transport (cached; calls at once share one request). */
  async describe() {
    while (this.description === null) {
      const generation = this.generation;
      const asking = this.describing ?? this.send({ op: 'describe' });
      this.describing = asking;
      let answer;
      try {
        answer = await asking;
      } finally {
        if (this.describing === asking) this.describing = null;
      }
      // an answer to a describe sent before the description was forgotten may be stale: ask (or join) anew
      if (this.description === null && this.generation === generation) {
        this.description = answer.json;
        this.descriptionText = answer.text;
      }
    }
    const d = /** @type {Record<string, any>} */ (this.description);
    if (typeof d.models !== 'object' || d.models === null) throw new SeiError("the service's description has no models", 'invalid_response');
    return d;
  }

  /**
   * The fingerprint of model `name`'s description (sei_framework/fingerprint.py), sent with every request so the
   * service refuses one made for another version of the model. It is computed from the describe answer's own text
   * (the `descriptionText` option where a description was handed over); without that text, none is sent.
   */
  fingerprint(/** @type {string} */ name) {
    const text = this.descriptionText;
    if (typeof text !== 'string') return null;
    try {
      return descriptionFingerprint(text, name);
    } catch {
      throw new SeiError("the service's description is not JSON", 'invalid_response');
    }
  }

  /** The inline transport, the only one a page can use: the service must describe it. */
  async checkTransport() {
    const spec = (await this.describe()).key_transport;
    const name = typeof spec === 'object' && spec !== null ? spec.name : undefined;
    if (typeof name !== 'string') throw new SeiError(`the service at ${redactUri(this.scoringUri)} does not say how it takes public keys (no key_transport)`, 'key_transport_error');
    if (name !== 'inline') {
      throw new SeiError(`the service at ${redactUri(this.scoringUri)} takes public keys through ${JSON.stringify(name)}; this ` +
        "client's key transport is 'inline' (the only one a page can use)", 'key_transport_mismatch');
    }
  }

  /** Model `name` with its key pair: from the key store, made on first use, and checked to belong together. */
  model(/** @type {string} */ name) {
    if (!this.models.has(name)) {
      const opening = this.openModel(name);
      opening.catch(() => this.models.delete(name));
      this.models.set(name, opening);
    }
    return /** @type {Promise<PackedModel>} */ (this.models.get(name));
  }

  async openModel(/** @type {string} */ name) {
    const models = (await this.describe()).models;
    if (!Object.hasOwn(models, name)) throw new SeiError(`unknown model ${JSON.stringify(name)}; the service has: ${Object.keys(models).sort().join(', ')}`, 'unknown_model');
    const description = models[name];
    if (description?.adapter !== 'sklearn-packed') {
      throw new SeiError(`model ${JSON.stringify(name)} is served by ${JSON.stringify(description?.adapter)}; the JS client speaks sklearn-packed only`, 'unknown_plugin');
    }
    const fingerprint = this.fingerprint(name); // once per description: a new one opens the model anew
    const params = Params.fromJson(description?.encryption?.params);
    const scheme = params.keyScheme;
    let pair = await this.keyStore.get(scheme);
    if (pair === undefined) {
      const fresh = await ClientKeys.generate(params);
      const made = { secret: fresh.secretBytes(), public: fresh.publicBytes() };
      fresh.delete();
      pair = await this.keyStore.add(scheme, made); // the pair another page of this origin stored meanwhile, if any
    }
    let keys;
    try {
      keys = await ClientKeys.fromSecretBytes(pair.secret);
      if (keys.params.json !== params.json) throw new KernelInputError("the secret key was made for other encryption parameters than this model's");
      keys.verifyPublic(pair.public); // the key-pair check: the service computes with the public key
    } catch (error) {
      if (!(error instanceof KernelInputError)) throw error;
      throw new SeiError(`the stored ${scheme} keys cannot be used (${error.message}); delete them ` +
        `(keyStore.delete('${scheme}')) to make new keys`, 'unusable_keys');
    }
    try {
      return new PackedModel(name, description, keys, this.allowUnproven, fingerprint);
    } catch (error) {
      keys.delete(); // a description refused (unproven, unreadable): its keys' SEAL objects are freed now
      throw error;
    }
  }

  /** Encrypt `rows` for `model`, score them on the service, return the decrypted, checked scores. */
  async predictEncrypted(/** @type {PackedModel} */ model, /** @type {number[][]} */ rows, /** @type {Stats | undefined} */ stats = undefined) {
    const name = model.name;
    const fingerprint = model.fingerprint;
    const data = timed(stats, 'encrypt', () => model.encrypt(rows));
    const body = { model: name, key_id: model.keyId, data, ...(fingerprint ? { [FINGERPRINT_FIELD]: fingerprint } : {}) };
    let publishedNow = false;
    if (!this.pending.has(model.keyId)) {
      await this.checkTransport();
      this.pending.set(model.keyId, { public_keys: toBase64(model.publicKeys) });
      publishedNow = true;
    }
    const ask = () => timed(stats, 'request', async () => (await this.send({ ...body, ...this.pending.get(model.keyId) }, stats)).json);
    let answer;
    try {
      answer = await ask();
    } catch (error) {
      const code = /** @type {SeiError} */ (error)?.code;
      if (!(error instanceof SeiError) || !['unknown_key_id', 'key_mismatch'].includes(code ?? '') || publishedNow) throw error;
      // the service forgot our keys (restart, eviction): publish them again
      this.pending.set(model.keyId, { public_keys: toBase64(model.publicKeys) });
      answer = await ask();
    }
    this.pending.set(model.keyId, {});
    return timed(stats, 'decrypt', () => model.decrypt(answer.result, rows.length));
  }

  /**
   * Encrypted predictions for every row, in batches of at most the service's row limit. `stats`, an object of the
   * caller's, gets this call's own times and bytes added (see Stats).
   * @param {string} name @param {ArrayLike<number>[] | ArrayLike<number>} X rows (or one row) of numbers
   * @param {{ batchSize?: number, progress?: (n: number) => void, stats?: Stats }} [options]
   * @returns {Promise<Prediction>}
   */
  async predict(name, X, { batchSize, progress, stats } = {}) {
    let reported = 0;
    let scored = 0;
    const report = (/** @type {number} */ n) => { // a second pass reports only the rows the first did not
      scored += n;
      if (scored > reported) {
        progress?.(scored - reported);
        reported = scored;
      }
    };
    const attempt = () => {
      scored = 0;
      return this.predictOnce(name, X, batchSize, report, stats);
    };
    try {
      return await attempt();
    } catch (error) {
      if (!(error instanceof SeiError) || error.code !== 'description_changed' || !this.scoringUri) throw error;
    }
    // the model was rebuilt or redeployed since it was described: describe again (same checks) and score again, once
    this.forgetDescription();
    this.models.clear();
    this.pending.clear();
    try {
      return await attempt();
    } catch (error) {
      if (error instanceof SeiError && error.code === 'description_changed') {
        throw new SeiError(`model ${JSON.stringify(name)} changed on the service again after the client described it anew: no ` +
          'answer was read; retry once the service serves one version', 'description_changed', error.status);
      }
      throw error;
    }
  }

  /** @returns {Promise<Prediction>} */
  async predictOnce(/** @type {string} */ name, /** @type {ArrayLike<number>[] | ArrayLike<number>} */ X,
    /** @type {number | undefined} */ batchSize, /** @type {(n: number) => void} */ progress, /** @type {Stats | undefined} */ stats) {
    const model = await timed(stats, 'keys', () => this.model(name));
    const described = (await this.describe()).models[name];
    const rows = toRows(X);
    const n = described.n_features;
    const bad = rows.find((r) => r.length !== n);
    if (bad) throw new SeiError(`model ${JSON.stringify(name)} takes ${n} features; the input has ${bad.length}`, 'wrong_features');
    const limits = described.limits ?? this.description?.limits ?? {};
    const limit = Number(limits.max_rows_per_request ?? model.maxRowsPerRequest);
    const size = Math.max(1, Math.min(batchSize ?? model.maxRowsPerRequest, limit));
    const scores = [];
    for (let start = 0; start < rows.length; start += size) {
      const batch = rows.slice(start, start + size);
      scores.push(...(await this.predictEncrypted(model, batch, stats)));
      progress(batch.length);
    }
    return model.interpret(scores);
  }
}

/** Rows as arrays of numbers (a single row becomes one row). @param {ArrayLike<number>[] | ArrayLike<number>} X */
function toRows(X) {
  const list = Array.from(/** @type {ArrayLike<any>} */ (X));
  const rows = list.length && typeof list[0] === 'number' ? [list] : list.map((r) => Array.from(r));
  if (!rows.every((r) => r.every((v) => typeof v === 'number'))) throw new SeiError('rows must hold numbers only', 'invalid_request');
  return /** @type {number[][]} */ (rows);
}
