// Decrypting the service's answers (packed_kernel/client.py decrypt_scores): c0 + c1 * s with the ternary secret s.
import { KernelInputError } from './errors.js';
import { mod, u32At } from './ring.js';
import { HDR, KIND, parseHeader } from './wire.js';

/** @typedef {import('./keys.js').ClientKeys} ClientKeys */

/** Decrypted values, centered: mod 2^32 (switched responses) or mod Q through the CRT of both residues. */
function centered(/** @type {ClientKeys} */ keys, /** @type {number[]} */ c0, /** @type {number[]} */ prods) {
  if (keys.params.switchesModulus) {
    const m = (c0[0] + prods[0]) % 2 ** 32;
    return m >= 2 ** 31 ? m - 2 ** 32 : m;
  }
  const { q, Q } = keys.c;
  const m = keys.c.crt((c0[0] + prods[0]) % q[0], (c0[1] + prods[1]) % q[1]);
  return Number(m > Q / 2n ? m - Q : m);
}

/** (c1 * s)[k] mod `modulus` (negacyclic; s ternary: exact below 2^53). @param {Int8Array} s @param {Uint32Array} c1 @param {number} k @param {number} modulus */
function sDot(s, c1, k, modulus) {
  const N = s.length;
  let acc = 0;
  for (let i = 0; i <= k; i += 1) acc += s[k - i] * c1[i];
  for (let i = k + 1; i < N; i += 1) acc -= s[k - i + N] * c1[i];
  return mod(acc, modulus);
}

/**
 * A response (row or batch) -> scores, one array of nOutputs per row (client.py decrypt_scores).
 * @param {ClientKeys} keys @param {Uint8Array} blob @param {number} [nOutputs] @param {number} [nRows]
 */
export function decryptScores(keys, blob, nOutputs, nRows) {
  const p = keys.params;
  const { N, q } = keys.c;
  const L = p.switchesModulus ? 1 : q.length;
  const mods = p.switchesModulus ? [2 ** 32] : q;
  const checkWords = (/** @type {Uint32Array} */ words, /** @type {number} */ j) => {
    if (!p.switchesModulus && words.some((v) => v >= q[j])) throw new KernelInputError('response: residue out of range for the coefficient modulus');
  };
  /** @type {number[][]} */
  let res;
  if (blob.length >= HDR && blob[5] === KIND.RESP_BATCH) {
    const [rows, nct] = parseHeader(blob, KIND.RESP_BATCH, p);
    const K = p.nOutputs;
    if (nct !== K || !(rows >= 1 && rows <= N)) throw new KernelInputError('bad batch response header');
    const expected = HDR + K * 4 * L * (rows + N);
    if (blob.length !== expected) throw new KernelInputError(`batch response has ${blob.length} bytes, expected ${expected}`);
    const words = u32At(blob, HDR, (blob.length - HDR) / 4);
    res = Array.from({ length: rows }, () => new Array(K));
    for (let k = 0; k < K; k += 1) {
      const base = k * L * (rows + N);
      const c0 = Array.from({ length: L }, (_, j) => words.subarray(base + j * rows, base + (j + 1) * rows));
      const c1 = Array.from({ length: L }, (_, j) => words.subarray(base + L * rows + j * N, base + L * rows + (j + 1) * N));
      c0.forEach(checkWords);
      c1.forEach(checkWords);
      for (let r = 0; r < rows; r += 1) {
        const prods = mods.map((m, j) => sDot(keys.s, c1[j], r, m));
        res[r][k] = centered(keys, c0.map((x) => x[r]), prods) / keys.c.responseScale;
      }
    }
  } else {
    const [rows, nct] = parseHeader(blob, KIND.RESP_ROW, p);
    const nb = p.nBlocks;
    const d = p.nFeatures;
    if (rows !== 1 || nct !== nb) throw new KernelInputError('bad row response header');
    const counts = Array.from({ length: nb }, (_, j) => p.outputsInBlock(j));
    const expected = HDR + 4 * L * (counts.reduce((a, b) => a + b, 0) + nb * N);
    if (blob.length !== expected) throw new KernelInputError(`row response has ${blob.length} bytes, expected ${expected}`);
    const words = u32At(blob, HDR, (blob.length - HDR) / 4);
    const scores = [];
    let off = 0;
    for (const count of counts) {
      const c0 = Array.from({ length: L }, (_, j) => words.subarray(off + j * count, off + (j + 1) * count));
      const c1 = Array.from({ length: L }, (_, j) => words.subarray(off + L * count + j * N, off + L * count + (j + 1) * N));
      off += L * (count + N);
      c0.forEach(checkWords);
      c1.forEach(checkWords);
      for (let t = 0; t < count; t += 1) {
        const prods = mods.map((m, j) => sDot(keys.s, c1[j], t * d + d - 1, m));
        scores.push(centered(keys, c0.map((x) => x[t]), prods) / keys.c.responseScale);
      }
    }
    res = [scores];
  }
  if (nOutputs !== undefined && nOutputs !== res[0].length) throw new KernelInputError(`response has ${res[0].length} outputs, expected ${nOutputs}`);
  if (nRows !== undefined && nRows !== res.length) throw new KernelInputError(`response has ${res.length} rows, expected ${nRows}`);
  return res;
}
