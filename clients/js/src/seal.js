// SEAL plumbing (packed_kernel/seal_context.py): node-seal's context per Params, SEAL's NTT through byte templates.
import initialize from 'node-seal';
import { SeiError } from './errors.js';
import { mulmod, u64Bytes, u64LowAt } from './ring.js';

export const CT_DATA_OFF = 113; // SEAL 4.x Ciphertext serialization, compr_mode none
export const SK_DATA_OFF = 88; // SEAL 4.x SecretKey (Plaintext) serialization

/** @type {Promise<any> | null} */
let loading = null;

/** node-seal's module, loaded once. `locateFile` may say where seal_throws.wasm is served. */
export function loadSeal(options = {}) {
  if (loading === null) {
    loading = initialize(options).catch((/** @type {any} */ error) => {
      loading = null;
      throw new SeiError(`node-seal cannot start (${error?.message ?? error}); it needs WebAssembly exception handling ` +
        'with exnref: Chrome/Edge 137+, Firefox 131+, Safari 18.4+', 'unsupported_browser');
    });
  }
  return loading;
}

/** One SEAL context for a Params, with ciphertext byte templates (any key will do: only the metadata is reused). */
export class Ctx {
  /** @param {any} seal node-seal's module @param {import('./params.js').Params} params */
  constructor(seal, params) {
    this.seal = seal;
    this.params = params;
    const N = params.N;
    const parms = new seal.EncryptionParameters(seal.SchemeType.ckks);
    parms.setPolyModulusDegree(N);
    parms.setCoeffModulus(seal.CoeffModulus.Create(N, Int32Array.from(params.coeffModulusBits)));
    this.ctx = new seal.SEALContext(parms, true, seal.SecLevelType.tc128);
    if (!this.ctx.parametersSet()) throw new SeiError('SEAL refused the encryption parameters', 'invalid_response');
    const moduli = this.ctx.keyContextData().parms().coeffModulus();
    /** @type {number[]} */ this.qk = Array.from({ length: moduli.size() }, (_, i) => Number(moduli.get(i).value()));
    /** @type {number[]} */ this.q = this.qk.slice(0, -1);
    this.N = N;
    this.L = this.q.length;
    this.evaluator = new seal.Evaluator(this.ctx);
    this.none = seal.ComprModeType.none;
    const keygen = new seal.KeyGenerator(this.ctx);
    const sk = keygen.secretKey();
    /** @type {Uint8Array} */ this.skTemplate = this.save(sk).slice(0, SK_DATA_OFF);
    sk.delete();
    const pk = keygen.createPublicKey();
    const encryptor = new seal.Encryptor(this.ctx, pk);
    const ct = new seal.Ciphertext();
    encryptor.encryptZero(ct);
    /** @type {Uint8Array} */ this.ctTemplate = this.save(ct).slice(0, CT_DATA_OFF);
    /** @type {Uint8Array} */ this.pkTemplate = this.save(pk).slice(0, CT_DATA_OFF);
    this.ctTemplateCoeff = this.ctTemplate.slice();
    this.ctTemplateCoeff[48] = 0;
    const view = new DataView(this.ctTemplate.buffer);
    const [size, n, lq] = [49, 57, 65].map((o) => Number(view.getBigUint64(o, true)));
    if (size !== 2 || n !== N || lq !== this.L || Number(view.getBigUint64(105, true)) !== 2 * this.L * N) {
      throw new SeiError('unexpected SEAL ciphertext layout (node-seal version?)', 'unsupported_browser');
    }
    for (const obj of [ct, encryptor, pk, keygen]) obj.delete();
    this.Q = BigInt(this.q[0]) * BigInt(this.q[1]);
    this.crtInv = Number(modInverse(BigInt(this.q[0]), BigInt(this.q[1])));
    const T = params.logScaleX + params.logScaleW;
    this.responseScale = params.switchesModulus ? 2 ** (T + 32) / Number(this.Q) : 2 ** T;
    this.maxAbsScore = Number(this.Q) / 4 / 2 ** T;
  }

  /** @param {any} obj a SEAL object @returns {Uint8Array} its uncompressed serialization */
  save(obj) {
    return new Uint8Array(obj.saveToArray(this.none));
  }

  /**
   * A secret key serialization as this node-seal writes it: SEAL 4.0 (seal-python 4.4.0) and 4.1 (node-seal 7) lay a
   * SecretKey out alike, but node-seal refuses to load another minor version; everything but those bytes must match ours.
   * @param {Uint8Array} skBytes
   */
  ownSecret(skBytes) {
    const t = this.skTemplate;
    const minor = [4, 68]; // the minor version bytes of the key's SEAL header and of its data array's
    if (skBytes.length < t.length || !t.every((b, i) => b === skBytes[i] || minor.includes(i))) return null;
    const out = skBytes.slice();
    for (const i of minor) out[i] = t[i];
    return out;
  }

  /** A SEAL ciphertext from residue arrays: parts x (L or L+1) rows of N words. */
  ctFrom(/** @type {Uint32Array[][]} */ parts, ntt = true) {
    const ct = new this.seal.Ciphertext();
    ct.loadFromArray(this.ctx, this.bytesOf(ntt ? this.ctTemplate : this.ctTemplateCoeff, parts));
    return ct;
  }

  /** template bytes + parts' rows as u64 words */
  bytesOf(/** @type {Uint8Array} */ template, /** @type {Uint32Array[][]} */ parts) {
    const rows = parts.flat();
    const out = new Uint8Array(template.length + 8 * rows.length * this.N);
    out.set(template);
    rows.forEach((row, i) => out.set(u64Bytes(row), template.length + 8 * i * this.N));
    return out;
  }

  /** A ciphertext's residues: size x L rows of N words. */
  arraysOf(/** @type {any} */ ct) {
    const L = ct.coeffModulusSize();
    const words = u64LowAt(this.save(ct), CT_DATA_OFF, ct.size() * L * this.N);
    return Array.from({ length: ct.size() }, (_, p) => Array.from({ length: L }, (_, j) => words.subarray((p * L + j) * this.N, (p * L + j + 1) * this.N)));
  }

  /** Two data-level polynomials' residues to or from NTT form (SEAL's NTT). */
  transform(/** @type {Uint32Array[][]} */ parts, /** @type {boolean} */ toNtt) {
    const ct = this.ctFrom(parts, !toNtt);
    if (toNtt) this.evaluator.cipherTransformToNttInplace(ct);
    else this.evaluator.cipherTransformFromNttInplace(ct);
    const out = this.arraysOf(ct);
    ct.delete();
    return out;
  }

  /**
   * Signed integer polynomials (each N values, |v| < 2^53) -> NTT residues (L rows each). Two per SEAL call, as c0
   * and c1; SEAL refuses a transparent ciphertext (c1 = 0), so c1's constant term gets 1, and NTT(1) = (1, ..., 1) is
   * subtracted after (seal_context.py poly_to_ntt).
   * @param {ArrayLike<number>[]} polys
   */
  polysToNtt(polys) {
    const { q, N } = this;
    const residues = (/** @type {ArrayLike<number> | undefined} */ poly, /** @type {boolean} */ plusOne) => q.map((prime) => {
      const row = new Uint32Array(N);
      if (poly) for (let i = 0; i < N; i += 1) row[i] = ((poly[i] % prime) + prime) % prime;
      if (plusOne) row[0] = (row[0] + 1) % prime;
      return row;
    });
    /** @type {Uint32Array[][]} */
    const out = [];
    for (let j = 0; j < polys.length; j += 2) {
      const [c0, c1] = this.transform([residues(polys[j], false), residues(polys[j + 1], true)], true);
      out.push(c0);
      if (j + 1 < polys.length) out.push(c1.map((row, k) => row.map((v) => (v + q[k] - 1) % q[k])));
    }
    return out;
  }

  /** residues (L=2 rows) -> values in [0, Q) as BigInt (CRT). */
  crt(/** @type {number} */ r0, /** @type {number} */ r1) {
    const [q0, q1] = this.q;
    const t = mulmod(((r1 - (r0 % q1)) % q1 + q1) % q1, this.crtInv, q1);
    return BigInt(r0) + BigInt(q0) * BigInt(t);
  }

  delete() {
    for (const obj of [this.evaluator, this.ctx]) obj.delete();
  }
}

/** @param {bigint} a @param {bigint} m */
function modInverse(a, m) {
  let [r0, r1, s0, s1] = [a % m, m, 1n, 0n];
  while (r1 !== 0n) {
    const k = r0 / r1;
    [r0, r1] = [r1, r0 - k * r1];
    [s0, s1] = [s1, s0 - k * s1];
  }
  return ((s0 % m) + m) % m;
}
