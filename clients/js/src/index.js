// SEI's browser client for sklearn-packed models (clients/js/README.md).
export { Client } from './client.js';
export { PackedModel } from './model.js';
export { FINGERPRINT_FIELD, descriptionFingerprint } from './fingerprint.js';
export { ClientKeys, ctxFor } from './keys.js';
export { SeiError } from './errors.js';
export { Params } from './params.js';
export { indexedDbKeyStore, memoryKeyStore } from './keystore.js';
export { loadSeal } from './seal.js';
export { fromBase64, keyIdFor, toBase64 } from './ring.js';
