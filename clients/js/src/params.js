// The packed kernel's parameters (packed_kernel/params.py): read from a description, fingerprinted as Python does.
import { sha256 } from '@noble/hashes/sha2.js';
import { SeiError } from './errors.js';

const FIELDS = ['coeff_modulus_bits', 'log_scale_w', 'log_scale_x', 'mode', 'n_features', 'n_outputs',
  'poly_modulus_degree', 'response_bits', 'scheme'];
const HES_MAX_BITS = /** @type {Record<number, number>} */ ({ 1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881 });

/** @param {unknown} v */
const whole = (v) => typeof v === 'number' && Number.isInteger(v);

/** Python's json.dumps(asdict(params), sort_keys=True) of these fields (ints and ASCII strings only). */
function pythonJson(/** @type {Record<string, any>} */ d) {
  /** @type {(v: any) => string} */
  const value = (v) => (Array.isArray(v) ? `[${v.map(value).join(', ')}]` : JSON.stringify(v));
  return `{${FIELDS.map((k) => `${JSON.stringify(k)}: ${value(d[k])}`).join(', ')}}`;
}

export class Params {
  /** @param {Record<string, any>} d */
  constructor(d) {
    const bad = (/** @type {string} */ why) => new SeiError(`the service's encryption parameters cannot be read: ${why}`, 'invalid_response');
    if (typeof d !== 'object' || d === null) throw bad('not an object');
    const extra = Object.keys(d).filter((k) => !FIELDS.includes(k));
    if (extra.length) throw bad(`unknown fields ${extra.join(', ')}`);
    for (const k of FIELDS) if (!(k in d)) throw bad(`no ${k}`);
    const ints = ['log_scale_w', 'log_scale_x', 'n_features', 'n_outputs', 'poly_modulus_degree', 'response_bits'];
    if (!ints.every((k) => whole(d[k]) && d[k] >= 0)) throw bad('a size is not a whole number');
    const bits = d.coeff_modulus_bits;
    if (!Array.isArray(bits) || bits.length !== 3 || !bits.every(whole) || bits.slice(0, 2).some((b) => b > 31 || b < 2)) {
      throw bad('coeff_modulus_bits must be two data primes of <= 31 bits and a special prime');
    }
    if (d.scheme !== 'rlwe-coeff/ckks-ctx') throw bad(`unknown scheme ${JSON.stringify(d.scheme)}`);
    if (d.mode !== 'single' && d.mode !== 'bulk') throw bad(`unknown mode ${JSON.stringify(d.mode)}`);
    if (d.response_bits !== 32 && d.response_bits !== 62) throw bad('response_bits must be 32 or 62');
    const N = d.poly_modulus_degree;
    if (!(N in HES_MAX_BITS) || bits.reduce((a, b) => a + b, 0) > HES_MAX_BITS[N]) throw bad('below 128-bit security');
    if (d.log_scale_x + d.log_scale_w > 62) throw bad('log_scale_x + log_scale_w > 62');
    if (d.n_features < 1 || d.n_outputs < 1 || (d.mode === 'single' && d.n_features > N)) throw bad('sizes do not fit');
    /** @type {number[]} */ this.coeffModulusBits = [...bits];
    this.logScaleW = d.log_scale_w;
    this.logScaleX = d.log_scale_x;
    /** @type {'single' | 'bulk'} */ this.mode = d.mode;
    this.nFeatures = d.n_features;
    this.nOutputs = d.n_outputs;
    this.N = N;
    this.responseBits = d.response_bits;
    this.scheme = d.scheme;
    this.json = pythonJson(d);
    this.fingerprint = sha256(new TextEncoder().encode(this.json)).slice(0, 8);
  }

  /** @param {string} text the description's encryption.params */
  static fromJson(text) {
    let d;
    try {
      d = JSON.parse(text);
    } catch {
      throw new SeiError("the service's encryption parameters are not JSON", 'invalid_response');
    }
    return new Params(d);
  }

  get outputsPerBlock() { return Math.max(1, Math.floor(this.N / this.nFeatures)); }
  get nBlocks() { return Math.ceil(this.nOutputs / this.outputsPerBlock); }
  /** @param {number} j */
  outputsInBlock(j) { return Math.min(this.outputsPerBlock, this.nOutputs - j * this.outputsPerBlock); }
  get switchesModulus() { return this.responseBits === 32; }
  get fingerprintHex() { return [...this.fingerprint].map((b) => b.toString(16).padStart(2, '0')).join(''); }
  /** The keyring scheme, as Python's PackedClient.scheme_for. */
  get keyScheme() { return `packed-${this.fingerprintHex}`; }
}
