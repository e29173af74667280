// Residue arithmetic (primes < 2^31, exact in doubles), the seeded expansion of `a` (wire.py) and byte helpers.
import { shake256 } from '@noble/hashes/sha3.js';
import { sha256 } from '@noble/hashes/sha2.js';

/** (a * b) mod q for a, b < 2^31: b split in 16-bit halves keeps every product below 2^48 (exact).
 * @param {number} a @param {number} b @param {number} q */
export function mulmod(a, b, q) {
  const hi = Math.floor(b / 65536);
  return (((a * hi) % q) * 65536 + a * (b % 65536)) % q;
}

/** x mod q in [0, q) for a whole x with |x| < 2^53. @param {number} x @param {number} q */
export function mod(x, q) {
  const r = x % q;
  return r < 0 ? r + q : r;
}

/** Round half to even, as numpy's rint. @param {number} x */
export function rint(x) {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Uniform residues (L, N) from a 32-byte seed: SHAKE-256 of "SEI-a" | j | counter | seed, 4-byte words masked to
 * the prime's bit length, rejection sampled (wire.py _expand_a).
 * @param {Uint8Array} seed @param {number[]} q @param {number} N @returns {Uint32Array[]}
 */
export function expandA(seed, q, N) {
  return q.map((prime, j) => {
    let extra = 256;
    for (let ctr = 0; ; ctr += 1) {
      const mask = 2 ** (32 - Math.clz32(prime)) - 1; // Python's (1 << q.bit_length()) - 1
      const input = concat(new TextEncoder().encode('SEI-a'), Uint8Array.of(j, ctr), seed);
      const digest = shake256(input, { dkLen: 4 * (N + extra) });
      const words = new Uint32Array(digest.buffer, digest.byteOffset, digest.length / 4);
      const out = new Uint32Array(N);
      let n = 0;
      for (let i = 0; i < words.length && n < N; i += 1) {
        const w = (words[i] & mask) >>> 0;
        if (w < prime) out[n++] = w;
      }
      if (n >= N) return out;
      extra *= 4;
    }
  });
}

/** @param {...Uint8Array} parts */
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Little-endian u32 words of `bytes` from `offset` (copied: any alignment).
 * @param {Uint8Array} bytes @param {number} offset @param {number} count */
export function u32At(bytes, offset, count) {
  const copy = bytes.slice(offset, offset + 4 * count);
  if (copy.length !== 4 * count) throw new RangeError('truncated');
  return new Uint32Array(copy.buffer);
}

/** Low words of little-endian u64 values (which must be < 2^32) of `bytes` from `offset`.
 * @param {Uint8Array} bytes @param {number} offset @param {number} count */
export function u64LowAt(bytes, offset, count) {
  const words = u32At(bytes, offset, 2 * count);
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i += 1) {
    if (words[2 * i + 1] !== 0) throw new RangeError('a residue does not fit 32 bits');
    out[i] = words[2 * i];
  }
  return out;
}

/** Values < 2^32 as little-endian u64 bytes. @param {ArrayLike<number>} values */
export function u64Bytes(values) {
  const words = new Uint32Array(2 * values.length);
  for (let i = 0; i < values.length; i += 1) words[2 * i] = values[i];
  return new Uint8Array(words.buffer);
}

/** Values < 2^32 as little-endian u32 bytes. @param {ArrayLike<number>} values */
export function u32Bytes(values) {
  return new Uint8Array(Uint32Array.from(values).buffer);
}

/** @param {Uint8Array} bytes */
export function toBase64(bytes) {
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

/** Strict base64 (as Python's decode_base64: validate=True), else null. @param {unknown} text */
export function fromBase64(text) {
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return null;
  try {
    const raw = atob(text);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i += 1) out[i] = raw.charCodeAt(i);
    return out;
  } catch {
    return null;
  }
}

const BASE32 = 'abcdefghijklmnopqrstuvwxyz234567';

/** The key id of public key bytes: 32 lowercase base32 characters of their SHA-256 (keys.py key_id_for). @param {Uint8Array} publicKeys */
export function keyIdFor(publicKeys) {
  const digest = sha256(publicKeys);
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of digest) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < 32) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  return out;
}

/** Cryptographically random bytes. @param {number} n */
export function randomBytes(n) {
  return crypto.getRandomValues(new Uint8Array(n));
}
