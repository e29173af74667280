// Message headers of the packed kernel (packed_kernel/wire.py): magic, version, kind, fingerprint, rows, ciphertexts.
import { KernelInputError } from './errors.js';

export const KIND = { REQ_ROW: 1, REQ_BATCH: 2, RESP_ROW: 3, RESP_BATCH: 4, PUB: 5, SECRET: 6 };
const VERSIONS = { [KIND.RESP_ROW]: 2 }; // 2: a row response carries c0 only at the model's outputs
export const HDR = 24; // <4sBBH8sII
export const SEED_BYTES = 32;
const MAGIC = [0x53, 0x45, 0x49, 0x50]; // "SEIP"

/** @param {number} kind @param {import('./params.js').Params} params @param {number} nRows @param {number} nCt */
export function packHeader(kind, params, nRows, nCt) {
  const out = new Uint8Array(HDR);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  out[4] = VERSIONS[kind] ?? 1;
  out[5] = kind;
  out.set(params.fingerprint, 8);
  view.setUint32(16, nRows, true);
  view.setUint32(20, nCt, true);
  return out;
}

/** The header's (nRows, nCt), after checking magic, kind, version and parameter fingerprint. */
export function parseHeader(/** @type {Uint8Array} */ buf, /** @type {number} */ kind, /** @type {import('./params.js').Params} */ params) {
  if (!(buf instanceof Uint8Array)) throw new KernelInputError('expected bytes');
  if (buf.length < HDR) throw new KernelInputError(`input too short (${buf.length} bytes)`);
  if (!MAGIC.every((b, i) => buf[i] === b)) throw new KernelInputError('bad magic: not a SEI packed-kernel message');
  if (buf[5] !== kind) throw new KernelInputError(`wrong message kind ${buf[5]}, expected ${kind}`);
  const version = VERSIONS[kind] ?? 1;
  if (buf[4] !== version) throw new KernelInputError(`unsupported message version ${buf[4]} (this side speaks ${version})`);
  if (!params.fingerprint.every((b, i) => buf[8 + i] === b)) {
    throw new KernelInputError('parameter fingerprint mismatch (message made for other parameters)');
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  return [view.getUint32(16, true), view.getUint32(20, true)];
}
