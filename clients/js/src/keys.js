// The client's key pair and its encrypt / decrypt (packed_kernel/client.py), on node-seal: byte-compatible with Python.
import { decryptScores } from './decrypt.js';
import { KernelInputError } from './errors.js';
import { CT_DATA_OFF, Ctx, SK_DATA_OFF, loadSeal } from './seal.js';
import { HDR, KIND, SEED_BYTES, packHeader, parseHeader } from './wire.js';
import { Params } from './params.js';
import { concat, expandA, mulmod, randomBytes, rint, u32At, u32Bytes, u64LowAt } from './ring.js';

const KEY_NOISE_BOUND = 64; // a public key's error e: SEAL's noise, |e| <= 21
const ZERO_NOISE_BOUND = 2 ** 20; // a public-key encryption of zero decrypts to at most a few thousand
const PK = new TextEncoder().encode('pk');

/** @type {Map<string, Promise<Ctx>>} */
const contexts = new Map();

/** The SEAL context of `params` (one per parameter set). @param {Params} params */
export function ctxFor(params) {
  if (!contexts.has(params.json)) contexts.set(params.json, loadSeal().then((seal) => new Ctx(seal, params)));
  return /** @type {Promise<Ctx>} */ (contexts.get(params.json));
}

export class ClientKeys {
  /** @param {Ctx} c @param {Uint8Array} skBytes SEAL's SecretKey serialization @param {Uint8Array} pub the seeded public key */
  constructor(c, skBytes, pub) {
    const { seal, N, qk, q, L } = c;
    this.c = c;
    this.params = c.params;
    if (skBytes.length !== SK_DATA_OFF + 8 * qk.length * N) throw new KernelInputError('secret key has wrong size for these parameters');
    const words = u64LowAt(skBytes, SK_DATA_OFF, qk.length * N);
    /** @type {Uint32Array[]} */ this.sNttKey = qk.map((_, j) => words.slice(j * N, (j + 1) * N));
    this.sNttKey.forEach((row, j) => { if (row.some((v) => v >= qk[j])) throw new KernelInputError('secret key: residue out of range for the coefficient modulus'); });
    this.sNtt = this.sNttKey.slice(0, L);
    const coeff = c.transform([this.sNtt, this.sNtt], false)[0][0];
    /** @type {Int8Array} ternary coefficients */ this.s = new Int8Array(N);
    for (let i = 0; i < N; i += 1) {
      const v = coeff[i];
      if (v === 0) this.s[i] = 0;
      else if (v === 1) this.s[i] = 1;
      else if (v === q[0] - 1) this.s[i] = -1;
      else throw new KernelInputError('secret key is not ternary');
    }
    this.skBytes = skBytes;
    this.pub = pub;
    this.sk = new seal.SecretKey();
    const own = c.ownSecret(skBytes);
    if (own === null) throw new KernelInputError('secret key: not a SEAL secret key for these parameters');
    this.sk.loadFromArray(c.ctx, own);
    const keygen = new seal.KeyGenerator(c.ctx, this.sk);
    const pk = keygen.createPublicKey(); // the Encryptor wants one; only its symmetric mode is used
    this.encryptor = new seal.Encryptor(c.ctx, pk, this.sk);
    pk.delete();
    keygen.delete();
    const encoder = new seal.CKKSEncoder(c.ctx);
    this.zero = new seal.Plaintext();
    encoder.encode(new Float64Array(N / 2), 1.0, this.zero); // NTT-form zero at the data level, scale 1
    encoder.delete();
  }

  /** A fresh key pair, the public key re-seeded so that only (seed, pk0) travels. @param {Params} params */
  static async generate(params) {
    const c = await ctxFor(params);
    const { seal, N, qk } = c;
    const keygen = new seal.KeyGenerator(c.ctx);
    const sk = keygen.secretKey();
    const pk = keygen.createPublicKey();
    const skBytes = c.save(sk);
    const pkWords = u64LowAt(c.save(pk), CT_DATA_OFF, 2 * qk.length * N);
    for (const obj of [sk, pk, keygen]) obj.delete();
    const sKey = u64LowAt(skBytes, SK_DATA_OFF, qk.length * N);
    const seed = randomBytes(SEED_BYTES);
    const a2 = expandA(concat(PK, seed), qk, N);
    const pk0 = new Uint32Array(qk.length * N);
    qk.forEach((prime, j) => {
      for (let i = 0; i < N; i += 1) {
        const at = j * N + i;
        const diff = (pkWords[qk.length * N + at] + prime - a2[j][i]) % prime;
        pk0[at] = (pkWords[at] + mulmod(diff, sKey[at], prime)) % prime;
      }
    });
    const pub = concat(packHeader(KIND.PUB, params, 0, 1), seed, u32Bytes(pk0));
    return new ClientKeys(c, skBytes, pub);
  }

  /** Secret key + params, as Python's ClientKeys.secret_bytes (keep private). */
  secretBytes() {
    const pj = new TextEncoder().encode(this.params.json);
    const sizes = new Uint8Array(12);
    const view = new DataView(sizes.buffer);
    [pj.length, this.skBytes.length, this.pub.length].forEach((n, i) => view.setUint32(4 * i, n, true));
    return concat(packHeader(KIND.SECRET, this.params, 0, 0), sizes, pj, this.skBytes, this.pub);
  }

  /** The key pair stored by `secretBytes` (here or by the Python client). @param {Uint8Array} blob */
  static async fromSecretBytes(blob) {
    let params, skBytes, pub;
    try {
      const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
      const [n1, n2, n3] = [0, 4, 8].map((o) => view.getUint32(HDR + o, true));
      const off = HDR + 12;
      params = Params.fromJson(new TextDecoder('utf-8', { fatal: true }).decode(blob.subarray(off, off + n1)));
      parseHeader(blob, KIND.SECRET, params);
      skBytes = blob.slice(off + n1, off + n1 + n2);
      pub = blob.slice(off + n1 + n2, off + n1 + n2 + n3);
      if (skBytes.length !== n2 || pub.length !== n3) throw new KernelInputError('truncated secret blob');
    } catch (error) {
      if (error instanceof KernelInputError) throw error;
      throw new KernelInputError(`bad secret blob: ${/** @type {Error} */ (error).message}`);
    }
    return new ClientKeys(await ctxFor(params), skBytes, pub);
  }

  publicBytes() {
    return this.pub;
  }

  /**
   * Throw KernelInputError unless `pub` is the public key stored with this secret key and was made from it: pk0 + a*s
   * must be SEAL's small noise e in every prime (client.py verify_public).
   * @param {Uint8Array} pub
   */
  verifyPublic(pub) {
    const { c } = this;
    const { N, qk, q, L, seal } = c;
    try {
      parseHeader(pub, KIND.PUB, this.params);
    } catch (error) {
      throw new KernelInputError(`public key: ${/** @type {Error} */ (error).message}`);
    }
    if (pub.length !== this.pub.length || !pub.every((b, i) => b === this.pub[i])) {
      throw new KernelInputError('the public key is not the one stored with the secret key (another key id)');
    }
    if (pub.length !== HDR + SEED_BYTES + 4 * qk.length * N) throw new KernelInputError('the public key has the wrong size for these parameters');
    const seed = pub.slice(HDR, HDR + SEED_BYTES);
    const words = u32At(pub, HDR + SEED_BYTES, qk.length * N);
    const pk0 = qk.map((prime, j) => {
      const row = words.slice(j * N, (j + 1) * N);
      if (row.some((v) => v >= prime)) throw new KernelInputError('public key: residue out of range for the coefficient modulus');
      return row;
    });
    const a = expandA(concat(PK, seed), qk, N);
    const noise = qk.map((prime, j) => pk0[j].map((v, i) => (v + mulmod(a[j][i], this.sNttKey[j][i], prime)) % prime));
    const ones = q.map(() => new Uint32Array(N).fill(1));
    const e = c.transform([noise.slice(0, L), ones], false)[0];
    if (!sameSmall(e, q, KEY_NOISE_BOUND)) throw new KernelInputError('the public key was not made from this secret key');
    // the special prime: a public-key encryption of zero must decrypt to small noise
    const pk = new seal.PublicKey();
    pk.loadFromArray(c.ctx, c.bytesOf(c.pkTemplate, [pk0, a]));
    const encryptor = new seal.Encryptor(c.ctx, pk);
    const zero = new seal.Ciphertext();
    encryptor.encryptZero(zero);
    const [z0, z1] = c.arraysOf(zero);
    for (const obj of [zero, encryptor, pk]) obj.delete();
    const m = q.map((prime, j) => z0[j].map((v, i) => (v + mulmod(z1[j][i], this.sNtt[j][i], prime)) % prime));
    const decrypted = c.transform([m, ones], false)[0];
    if (!sameSmall(decrypted, q, ZERO_NOISE_BOUND)) throw new KernelInputError('the public key was not made from this secret key (special prime)');
  }

  /** Seeded symmetric encryptions of NTT-form plaintexts: seeds and c0 words (L rows each). @param {Uint32Array[][]} mNtt */
  encryptPolys(mNtt) {
    const { c } = this;
    const { q, N } = c;
    return mNtt.map((m) => {
      const ct = new c.seal.Ciphertext();
      this.encryptor.encryptSymmetric(this.zero, ct); // c0 = -a s + e, c1 = a
      const [c0, c1] = c.arraysOf(ct);
      ct.delete();
      const seed = randomBytes(SEED_BYTES);
      const a2 = expandA(seed, q, N);
      const out = new Uint32Array(q.length * N);
      q.forEach((prime, j) => {
        for (let i = 0; i < N; i += 1) {
          const diff = (c1[j][i] + prime - a2[j][i]) % prime;
          out[j * N + i] = (c0[j][i] + m[j][i] + mulmod(diff, this.sNtt[j][i], prime)) % prime;
        }
      });
      return { seed, c0: out };
    });
  }

  /** @param {ArrayLike<number>} values */
  quantize(values) {
    const scale = 2 ** this.params.logScaleX;
    return Array.from(values, (v) => {
      if (!Number.isFinite(v)) throw new KernelInputError('non-finite input');
      const x = rint(v * scale);
      if (!Number.isSafeInteger(x)) throw new KernelInputError('input too large to encode');
      return x;
    });
  }

  /** One row (single mode) -> request bytes. @param {ArrayLike<number>} row */
  encryptRow(row) {
    const p = this.params;
    if (row.length !== p.nFeatures) throw new KernelInputError(`expected ${p.nFeatures} features, got ${row.length}`);
    const poly = new Float64Array(p.N);
    poly.set(this.quantize(row));
    const [{ seed, c0 }] = this.encryptPolys(this.c.polysToNtt([poly]));
    return concat(packHeader(KIND.REQ_ROW, p, 1, 1), seed, u32Bytes(c0));
  }

  /** Rows (bulk mode), N rows per request message; one ciphertext per feature. @param {ArrayLike<number>[]} rows */
  encryptBatch(rows) {
    const p = this.params;
    if (rows.some((r) => r.length !== p.nFeatures)) throw new KernelInputError(`rows must have ${p.nFeatures} features`);
    const out = [];
    for (let s = 0; s < rows.length; s += p.N) {
      const chunk = rows.slice(s, s + p.N).map((r) => this.quantize(r));
      const polys = Array.from({ length: p.nFeatures }, (_, f) => {
        const poly = new Float64Array(p.N);
        chunk.forEach((r, i) => { poly[i] = r[f]; });
        return poly;
      });
      const cts = this.encryptPolys(this.c.polysToNtt(polys));
      out.push(concat(packHeader(KIND.REQ_BATCH, p, chunk.length, p.nFeatures), ...cts.map((x) => x.seed), ...cts.map((x) => u32Bytes(x.c0))));
    }
    return out;
  }

  /**
   * A response (row or batch) -> scores, one array of nOutputs per row (client.py decrypt_scores).
   * @param {Uint8Array} blob @param {number} [nOutputs] @param {number} [nRows]
   */
  decryptScores(blob, nOutputs, nRows) {
    return decryptScores(this, blob, nOutputs, nRows);
  }

  /** Free the SEAL objects. */
  delete() {
    for (const obj of [this.encryptor, this.zero, this.sk]) obj.delete();
  }
}

/** Whether rows (one per prime) of a polynomial's coefficients are one small signed integer in every prime. */
function sameSmall(/** @type {Uint32Array[]} */ rows, /** @type {number[]} */ q, /** @type {number} */ bound) {
  const N = rows[0].length;
  for (let i = 0; i < N; i += 1) {
    let first = 0;
    for (let j = 0; j < rows.length; j += 1) {
      const v = rows[j][i] > Math.floor(q[j] / 2) ? rows[j][i] - q[j] : rows[j][i];
      if (Math.abs(v) > bound) return false;
      if (j === 0) first = v;
      else if (v !== first) return false;
    }
  }
  return true;
}
