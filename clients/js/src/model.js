// One model's key pair and its encrypt / decrypt with the Python client's checks (packed.py PackedClient).
import { KernelInputError, SeiError } from './errors.js';
import { Proof, Readout } from './readout.js';
import { fromBase64, keyIdFor, toBase64 } from './ring.js';

/** @typedef {import('./keys.js').ClientKeys} ClientKeys */
/** @typedef {{ scores: number[][], predictions: any[], probabilities: number[][] | null }} Prediction */

export class PackedModel {
  /**
   * Everything the description says is read and checked here, once: a description without a proven accuracy (or
   * one from before the proofs left room for rounding) is refused now, not at each call.
   * @param {string} name @param {Record<string, any>} description @param {ClientKeys} keys @param {boolean} allowUnproven
   * @param {string | null} [fingerprint] the description's fingerprint, sent with each request (null: none)
   */
  constructor(name, description, keys, allowUnproven, fingerprint = null) {
    this.name = name;
    this.description = description;
    this.keys = keys;
    this.params = keys.params;
    this.readout = new Readout(description);
    this.allowUnproven = allowUnproven;
    this.proof = new Proof(description, allowUnproven, this.readout.nFeatures, keys.c.maxAbsScore);
    this.fingerprint = fingerprint;
    this.publicKeys = keys.publicBytes();
    this.keyId = keyIdFor(this.publicKeys);
    this.batchRows = this.params.N;
    this.maxRowsPerRequest = this.params.mode === 'bulk' ? this.batchRows : 16;
  }

  /** The request's `data` for `rows` (each an array of n_features numbers), refused outside the proven bounds. */
  encrypt(/** @type {number[][]} */ rows) {
    this.proof.checkRows(rows);
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
    return this.proof.scores(scores);
  }

  /** @param {number[][]} scores @returns {Prediction} */
  interpret(scores) {
    return { scores, predictions: this.readout.predict(scores), probabilities: this.readout.predictProba(scores) };
  }
}
