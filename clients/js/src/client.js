// The client: describe, keys (kept in this origin), the inline key transport, encrypt, call, decrypt, read scores.
import { KernelInputError, SeiError } from './errors.js';
import { checkEndpoint, post, redactUri } from './http.js';
import { FINGERPRINT_FIELD, descriptionFingerprint } from './fingerprint.js';
import { ClientKeys } from './keys.js';
import { indexedDbKeyStore, memoryKeyStore } from './keystore.js';
import { Params } from './params.js';
import { Readout, checkDescribedRows, checkScores, outputGrid, provenAccuracy, roundScores, scoreLimit } from './readout.js';
import { fromBase64, keyIdFor, toBase64 } from './ring.js';

/** @typedef {import('./keystore.js').KeyStore} KeyStore */
/** @typedef {{ scores: number[][], predictions: any[], probabilities: number[][] | null }} Prediction */

/** One model's key pair and its encrypt / decrypt with the Python client's checks (packed.py PackedClient). */
export class PackedModel {
  /** @param {string} name @param {Record<string, any>} description @param {ClientKeys} keys @param {boolean} allowUnproven */
  constructor(name, description, keys, allowUnproven) {
    this.name = name;
    this.description = description;
    this.keys = keys;
    this.params = keys.params;
    this.readout = new Readout(description);
    this.allowUnproven = allowUnproven;
    this.publicKeys = keys.publicBytes();
    this.keyId = keyIdFor(this.publicKeys);
    this.batchRows = this.params.N;
    this.maxRowsPerRequest = this.params.mode === 'bulk' ? this.batchRows : 16;
  }

  /** The request's `data` for `rows` (each an array of n_features numbers), refused outside the proven bounds. */
  encrypt(/** @type {number[][]} */ rows) {
    checkDescribedRows(provenAccuracy(this.description, this.allowUnproven), rows, this.readout.nFeatures);
    let blobs;
    try {
      blobs = this.params.mode === 'bulk' ? this.keys.encryptBatch(rows) : rows.map((row) => this.keys.encryptRow(row));
    } catch (error) {
      if (error instanceof KernelInputError) throw new SeiError(error.message, 'invalid_request');
      throw error;
    }
    return { n_features: this.readout.nFeatures, n_rows: rows.length, ciphertexts: blobs.map(toBase64) };
  }

  /** The scores of a predict answer's `result` for `nRows` rows: decrypted, range-checked, rounded to the proven grid. */
  decrypt(/** @type {unknown} */ result, /** @type {number} */ nRows) {
    const accuracy = provenAccuracy(this.description, this.allowUnproven);
    if (!Array.isArray(result)) throw new SeiError("the service's result is not a list of ciphertexts", 'invalid_response');
    /** @type {number[]} */
    const sizes = [];
    if (this.params.mode === 'bulk') for (let s = 0; s < nRows; s += this.batchRows) sizes.push(Math.min(this.batchRows, nRows - s));
    else for (let i = 0; i < nRows; i += 1) sizes.push(1);
    if (result.length !== sizes.length) throw new SeiError(`expected ${sizes.length} result ciphertexts, got ${result.length}`, 'invalid_response');
    /** @type {number[][]} */
    const scores = [];
    try {
      result.forEach((text, i) => {
        const blob = fromBase64(text);
        if (blob === null) throw new KernelInputError('result is not valid base64');
        scores.push(...this.keys.decryptScores(blob, this.readout.nOutputs, sizes[i]));
      });
    } catch (error) {
      if (error instanceof KernelInputError) throw new SeiError(`the service's result cannot be decrypted: ${error.message}`, 'invalid_response');
      throw error;
    }
    checkScores(scores, scoreLimit(accuracy, this.keys.c.maxAbsScore));
    return roundScores(scores, outputGrid(accuracy)); // nothing finer than the proof leaves the client
  }

  /** @param {number[][]} scores @returns {Prediction} */
  interpret(scores) {
    return { scores, predictions: this.readout.predict(scores), probabilities: this.readout.predictProba(scores) };
  }
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
    /** @type {Map<string, Promise<PackedModel>>} */
    this.models = new Map();
    /** @type {Map<string, Record<string, string>>} key id -> fields to send once */
    this.pending = new Map();
    /** Bytes of the last request bodies sent (what left the page). */
    this.bytesSent = 0;
    if (this.scoringUri) checkEndpoint(this.scoringUri, this.headers, this.allowInsecureHttp);
  }

  /** POST one request; an error answer throws SeiError with its code. */
  async call(/** @type {Record<string, any>} */ body) {
    return (await this.send(body)).json;
  }

  async send(/** @type {Record<string, any>} */ body) {
    if (!this.scoringUri) throw new SeiError('this client has no service endpoint: it encrypts and decrypts only', 'sei_error');
    checkEndpoint(this.scoringUri, this.headers, this.allowInsecureHttp);
    this.bytesSent += new TextEncoder().encode(JSON.stringify(body)).length;
    return post(this.scoringUri, this.headers, body, this.http);
  }

  /** The service's models, parameters and key transport (cached). */
  async describe() {
    if (this.description === null) {
      const { json, text } = await this.send({ op: 'describe' });
      this.description = json;
      this.descriptionText = text;
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
    return new PackedModel(name, description, keys, this.allowUnproven);
  }

  /** Encrypt `rows`, score them on the service, return the decrypted, checked scores. */
  async predictEncrypted(/** @type {string} */ name, /** @type {number[][]} */ rows) {
    const model = await this.model(name);
    const fingerprint = this.fingerprint(name);
    const body = { model: name, key_id: model.keyId, data: model.encrypt(rows), ...(fingerprint ? { [FINGERPRINT_FIELD]: fingerprint } : {}) };
    let publishedNow = false;
    if (!this.pending.has(model.keyId)) {
      await this.checkTransport();
      this.pending.set(model.keyId, { public_keys: toBase64(model.publicKeys) });
      publishedNow = true;
    }
    let answer;
    try {
      answer = await this.call({ ...body, ...this.pending.get(model.keyId) });
    } catch (error) {
      const code = /** @type {SeiError} */ (error)?.code;
      if (!(error instanceof SeiError) || !['unknown_key_id', 'key_mismatch'].includes(code ?? '') || publishedNow) throw error;
      // the service forgot our keys (restart, eviction): publish them again
      this.pending.set(model.keyId, { public_keys: toBase64(model.publicKeys) });
      answer = await this.call({ ...body, ...this.pending.get(model.keyId) });
    }
    this.pending.set(model.keyId, {});
    return model.decrypt(answer.result, rows.length);
  }

  /**
   * Encrypted predictions for every row, in batches of at most the service's row limit.
   * @param {string} name @param {ArrayLike<number>[] | ArrayLike<number>} X rows (or one row) of numbers
   * @returns {Promise<Prediction>}
   */
  async predict(name, X, { batchSize = /** @type {number | undefined} */ (undefined), progress = /** @type {((n: number) => void) | undefined} */ (undefined) } = {}) {
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
      return this.predictOnce(name, X, batchSize, report);
    };
    try {
      return await attempt();
    } catch (error) {
      if (!(error instanceof SeiError) || error.code !== 'description_changed' || !this.scoringUri) throw error;
    }
    // the model was rebuilt or redeployed since it was described: describe again (same checks) and score again, once
    this.description = null;
    this.descriptionText = undefined;
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
    /** @type {number | undefined} */ batchSize, /** @type {(n: number) => void} */ progress) {
    const model = await this.model(name);
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
      scores.push(...(await this.predictEncrypted(name, batch)));
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
