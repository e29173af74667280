// The page's Web Worker: keys, encryption, the call and decryption all run here, so drawing stays responsive.
// Messages in: {id, op: 'describe' | 'predict', uri, token, store, model?, rows?}; out: {id, ok, ...} or {id, error}.
import { Client, SeiError } from '../js/src/index.js';

/** @type {Map<string, Client>} one client per service, token and key store */
const clients = new Map();

function clientFor(/** @type {string} */ uri, /** @type {string} */ token, /** @type {string} */ store) {
  const key = JSON.stringify([uri, token, store]);
  if (!clients.has(key)) {
    /** @type {Record<string, string>} */
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    clients.set(key, new Client(uri, { headers, keyStore: store === 'memory' ? 'memory' : 'indexeddb', retries: 1 }));
  }
  return /** @type {Client} */ (clients.get(key));
}

/**
 * The library's own predict, timed by the figures it gives for this call alone (`stats`), so requests in flight
 * at once each get their own times and bytes.
 */
async function predict(/** @type {any} */ message) {
  const client = clientFor(message.uri, message.token, message.store);
  /** @type {import('../js/src/client.js').Stats} */
  const stats = {};
  const start = performance.now();
  const result = await client.predict(message.model, message.rows, { stats });
  const total = performance.now() - start;
  const keys = stats.keys ?? 0, encrypt = stats.encrypt ?? 0, decrypt = stats.decrypt ?? 0;
  // request + service: the rest of the call (the requests, with the service's work, and the reading of the answer)
  const steps = { keys, encrypt, service: total - keys - encrypt - decrypt, decrypt, total };
  return { result, steps, bytesSent: stats.bytesSent ?? 0 };
}

self.onmessage = async (/** @type {MessageEvent} */ event) => {
  const message = event.data;
  try {
    let answer;
    if (message.op === 'describe') {
      const client = clientFor(message.uri, message.token, message.store);
      const start = performance.now();
      answer = { description: await client.describe(), steps: { describe: performance.now() - start } };
    } else if (message.op === 'predict') {
      answer = await predict(message);
    } else {
      throw new SeiError(`unknown operation ${JSON.stringify(message.op)}`, 'invalid_request');
    }
    self.postMessage({ id: message.id, ok: true, ...answer });
  } catch (error) {
    const e = /** @type {any} */ (error);
    const code = e instanceof SeiError ? e.code : 'page_error';
    self.postMessage({ id: message.id, ok: false, error: { code, message: String(e?.message ?? e) } });
  }
};
