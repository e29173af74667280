// Unit tests of the JS client, run in Chromium by tests/test_js_client.py, which serves /vectors/vectors.json
// (what the Python side computes), a real service at /score and hostile ones at /hostile/<kind>.
import initialize from 'node-seal';
import { Client, ClientKeys, Params, SeiError, descriptionFingerprint, fromBase64, indexedDbKeyStore, keyIdFor, memoryKeyStore, toBase64 } from '../src/index.js';
import { expandA } from '../src/ring.js';
import { Readout } from '../src/readout.js';
import { assert, throwsCode } from './runner.js';

const V = await (await fetch('/vectors/vectors.json')).json();
const D = V.description;
const DIGITS = D.models.digits;
const close = (/** @type {number} */ a, /** @type {number} */ b, tol = 1e-12) => Math.abs(a - b) <= tol;

/** A client of the real service whose key store holds the Python-made pair. */
async function pythonKeyed(uri = '/score', publicKey = V.public) {
  const store = memoryKeyStore();
  await store.put(V.key_scheme, { secret: fromBase64(V.secret), public: fromBase64(publicKey) });
  return new Client(uri, { keyStore: store });
}

export const tests = {
  async 'node-seal loads and makes a CKKS context'() {
    const seal = await initialize();
    const parms = new seal.EncryptionParameters(seal.SchemeType.ckks);
    parms.setPolyModulusDegree(4096);
    parms.setCoeffModulus(seal.CoeffModulus.Create(4096, Int32Array.from([31, 31, 16])));
    assert(new seal.SEALContext(parms, true, seal.SecLevelType.tc128).parametersSet(), 'parameters set');
  },

  'params: the fingerprint and key scheme are Python\'s'() {
    const params = Params.fromJson(DIGITS.encryption.params);
    assert(params.fingerprintHex === V.fingerprint, `${params.fingerprintHex} != ${V.fingerprint}`);
    assert(params.keyScheme === V.key_scheme, params.keyScheme);
  },

  async 'params: unknown fields and bad values are refused'() {
    const good = JSON.parse(DIGITS.encryption.params);
    for (const bad of [{ ...good, extra: 1 }, { ...good, mode: 'fast' }, { ...good, coeff_modulus_bits: [40, 40, 16] },
      { ...good, poly_modulus_degree: 1024 }, { ...good, response_bits: 48 }]) {
      await throwsCode(() => new Params(bad), 'invalid_response');
    }
    await throwsCode(() => Params.fromJson('{'), 'invalid_response');
  },

  'expandA: the same residues as Python\'s _expand_a'() {
    const rows = expandA(fromBase64(V.seed), V.primes, JSON.parse(DIGITS.encryption.params).poly_modulus_degree);
    V.expanded_head.forEach((head, j) => head.forEach((v, i) => assert(rows[j][i] === v, `prime ${j} word ${i}`)));
    V.expanded_tail.forEach((tail, j) => tail.forEach((v, i) => assert(rows[j][rows[j].length - 4 + i] === v, `prime ${j} tail ${i}`)));
  },

  'key ids and base64 as Python\'s'() {
    assert(keyIdFor(fromBase64(V.public)) === V.key_id, 'key id');
    const bytes = Uint8Array.from({ length: 300 }, (_, i) => (i * 37) % 256);
    assert(fromBase64(toBase64(bytes)).every((b, i) => b === bytes[i]), 'round trip');
    for (const bad of ['abc', 'ab!=', 'a b=', 12, null]) assert(fromBase64(bad) === null, `refused ${bad}`);
  },

  async 'keys: Python\'s pair passes the key-pair check, another public key does not'() {
    const keys = await ClientKeys.fromSecretBytes(fromBase64(V.secret));
    keys.verifyPublic(fromBase64(V.public));
    let refused = false;
    try {
      keys.verifyPublic(fromBase64(V.other_public));
    } catch (error) {
      refused = /** @type {Error} */ (error).name === 'KernelInputError';
    }
    assert(refused, 'a public key of another pair is refused');
    await throwsCode(async () => (await pythonKeyed('/score', V.other_public)).model('digits'), 'unusable_keys');
  },

  async 'keys: a JS pair survives secretBytes and is checked'() {
    const params = Params.fromJson(DIGITS.encryption.params);
    const keys = await ClientKeys.generate(params);
    const again = await ClientKeys.fromSecretBytes(keys.secretBytes());
    again.verifyPublic(keys.publicBytes());
    const damaged = keys.secretBytes().slice(0, 200);
    let refused = false;
    try {
      await ClientKeys.fromSecretBytes(damaged);
    } catch (error) {
      refused = /** @type {Error} */ (error).name === 'KernelInputError';
    }
    assert(refused, 'a truncated secret blob is refused');
  },

  'readout: predictions and probabilities as Python\'s'() {
    const readout = new Readout(DIGITS);
    const predictions = readout.predict(V.scores);
    const probabilities = /** @type {number[][]} */ (readout.predictProba(V.scores));
    assert(JSON.stringify(predictions) === JSON.stringify(V.predictions), 'predictions');
    V.probabilities.forEach((row, r) => row.forEach((p, k) => assert(close(p, probabilities[r][k]), `probability ${r} ${k}`)));
  },

  async 'predict through the service, scores on the proven grid'() {
    const client = await pythonKeyed();
    const result = await client.predict('digits', V.rows);
    const grid = 2 ** Math.ceil(Math.log2(DIGITS.accuracy.error_bound));
    assert(result.scores.flat().every((s) => Number.isInteger(s / grid)), 'scores are multiples of the output grid');
    assert(result.predictions.length === 2 && result.probabilities?.length === 2, 'labels and probabilities');
    assert(client.bytesSent > 0, 'bytes sent are counted');
  },

  async 'rows outside the feature bounds are refused before anything is sent'() {
    const client = await pythonKeyed('/hostile/error');
    const row = [...V.rows[0]];
    row[5] = 2.0;
    await throwsCode(() => client.predict('digits', [row]), 'input_out_of_bounds');
    row[5] = NaN;
    await throwsCode(() => client.predict('digits', [row]), 'input_out_of_bounds');
    await throwsCode(() => client.predict('digits', [V.rows[0].slice(1)]), 'wrong_features');
    await throwsCode(() => client.predict('nope', V.rows), 'unknown_model');
  },

  async 'a model without proven accuracy is refused'() {
    const { accuracy, ...unproven } = DIGITS;
    const description = { ...D, models: { digits: unproven } };
    const client = new Client('', { keyStore: memoryKeyStore(), description });
    await throwsCode(async () => (await client.model('digits')).encrypt(V.rows), 'unproven_model');
    void accuracy;
  },

  async 'a model whose bound plus the rounding half-step exceeds its tolerance is refused'() {
    const bound = DIGITS.accuracy.error_bound;
    const grid = 2 ** Math.ceil(Math.log2(bound));
    const tight = { ...DIGITS, accuracy: { ...DIGITS.accuracy, tolerance: bound + grid / 4 } };
    const refused = new Client('', { keyStore: memoryKeyStore(), description: { ...D, models: { digits: tight } } });
    await throwsCode(async () => (await refused.model('digits')).encrypt(V.rows), 'unproven_model');
    const optedIn = new Client('', { keyStore: memoryKeyStore(), description: { ...D, models: { digits: tight } }, allowUnproven: true });
    await (await optedIn.model('digits')).encrypt(V.rows);
  },

  async 'hostile: garbage is http_error, never a number'() {
    await throwsCode(async () => (await pythonKeyed('/hostile/garbage')).predict('digits', V.rows), 'http_error');
  },

  async 'hostile: a redirect is refused, not followed'() {
    await throwsCode(async () => (await pythonKeyed('/hostile/redirect')).predict('digits', V.rows), 'redirect');
  },

  async 'hostile: an error body keeps its code'() {
    await throwsCode(async () => (await pythonKeyed('/hostile/error')).predict('digits', V.rows), 'invalid_data');
  },

  async 'hostile: wrong sizes and counts are invalid_response'() {
    await throwsCode(async () => (await pythonKeyed('/hostile/wrong_size')).predict('digits', V.rows), 'invalid_response');
    await throwsCode(async () => (await pythonKeyed('/hostile/wrong_count')).predict('digits', V.rows), 'invalid_response');
  },

  async 'hostile: a tampered ciphertext is score_out_of_range'() {
    await throwsCode(async () => (await pythonKeyed('/hostile/tampered')).predict('digits', [V.rows[0]]), 'score_out_of_range');
  },

  async 'credentials go over plain http to loopback only, headers HTTP can carry'() {
    await throwsCode(() => new Client('http://198.51.100.7/score', { headers: { Authorization: 'Bearer t' } }), 'insecure_http');
    await throwsCode(() => new Client('/score', { headers: { Authorization: 'Bearer \u20ac' } }), 'invalid_header');
    await throwsCode(() => new Client('/score', { headers: { 'Bad Name': 'x' } }), 'invalid_header');
    new Client('https://example.org/score', { headers: { Authorization: 'Bearer t' } });
    new Client('http://198.51.100.7/score', { headers: { Authorization: 'Bearer t' }, allowInsecureHttp: true });
  },

  async 'IndexedDB keeps the key pair across clients of this origin'() {
    const name = `sei-keys-test-${Math.random()}`;
    const first = new Client('/score', { keyStore: indexedDbKeyStore(name) });
    const a = await first.model('digits');
    const second = new Client('/score', { keyStore: indexedDbKeyStore(name) });
    const b = await second.model('digits');
    assert(a.keyId === b.keyId, 'the stored pair is used again');
    const other = await ClientKeys.generate(a.params);
    const kept = await indexedDbKeyStore(name).add(a.params.keyScheme, { secret: other.secretBytes(), public: other.publicBytes() });
    assert(keyIdFor(kept.public) === a.keyId, 'add keeps the pair stored first');
    const memory = await new Client('/score', { keyStore: 'memory' }).model('digits');
    assert(memory.keyId !== a.keyId, 'a memory store makes its own pair');
    indexedDB.deleteDatabase(name);
  },

  async 'the description fingerprint is Python\'s, from the service\'s own JSON text'() {
    const text = await (await fetch('/score', { method: 'POST', body: '{"op": "describe"}' })).text();
    assert(descriptionFingerprint(text, 'digits') === V.description_sha256, 'fingerprint');
    assert(descriptionFingerprint(text, 'nope') === null, 'unknown model');
    // 1.0 and 1 are different JSON to Python: a number's lexeme counts
    const one = descriptionFingerprint('{"models": {"m": {"a": 1.0, "limits": {"x": 1}}}}', 'm');
    assert(one !== descriptionFingerprint('{"models": {"m": {"a": 1}}}', 'm'), '1.0 is not 1');
    assert(one === descriptionFingerprint('{"models":{"m":{"limits":{"x":2},"a":1.0}}}', 'm'), 'limits and order do not count');
  },

  async 'a model that changes again after describing anew is description_changed'() {
    await throwsCode(async () => (await pythonKeyed('/hostile/changed')).predict('digits', V.rows), 'description_changed');
  },

  async 'without IndexedDB the key store says so and how to do without'() {
    const own = Object.getOwnPropertyDescriptor(globalThis, 'indexedDB'); // the global's own accessor (WebIDL)
    Object.defineProperty(globalThis, 'indexedDB', { value: undefined, configurable: true });
    try {
      const error = await throwsCode(async () => new Client('/score').model('digits'), 'unusable_keys');
      assert(error.message.includes("keyStore: 'memory'"), error.message);
    } finally {
      if (own) Object.defineProperty(globalThis, 'indexedDB', own);
      else delete (/** @type {any} */ (globalThis)).indexedDB;
    }
    assert(typeof indexedDB !== 'undefined', 'restored');
  },

  async 'a request body is serialised to JSON once, and its bytes counted'() {
    let serialised = 0;
    const probe = { toJSON() { serialised += 1; return null; } };
    const client = new Client('/score', { keyStore: 'memory' });
    try {
      await client.call({ op: 'describe', probe });
    } catch (error) {
      if (!(error instanceof SeiError)) throw error; // the service may refuse the extra field: the count is the point
    }
    assert(serialised === 1, `serialised ${serialised} times`);
    assert(client.bytesSent === new TextEncoder().encode('{"op":"describe","probe":null}').length, `${client.bytesSent} bytes`);
  },

  async 'the proven accuracy is read once per description, not at each call'() {
    let reads = 0;
    const counted = { ...DIGITS };
    Object.defineProperty(counted, 'accuracy', { enumerable: true, get() { reads += 1; return DIGITS.accuracy; } });
    const store = memoryKeyStore();
    await store.put(V.key_scheme, { secret: fromBase64(V.secret), public: fromBase64(V.public) });
    const client = new Client('/score', { keyStore: store, description: { ...D, models: { digits: counted } } });
    const first = await client.predict('digits', V.rows);
    const opened = reads;
    assert(opened > 0, 'the accuracy was read');
    for (let i = 0; i < 3; i += 1) {
      const again = await client.predict('digits', V.rows);
      assert(JSON.stringify(again.predictions) === JSON.stringify(first.predictions), 'the same predictions');
    }
    assert(reads === opened, `read ${reads - opened} more times after the model was opened`);
    // a description without a proof is refused at each call, not once
    const { accuracy, ...unproven } = DIGITS;
    const refusing = new Client('', { keyStore: memoryKeyStore(), description: { ...D, models: { digits: unproven } } });
    for (let i = 0; i < 2; i += 1) await throwsCode(async () => (await refusing.model('digits')).encrypt(V.rows), 'unproven_model');
    void accuracy;
  },

  async 'describe calls at once share one request'() {
    const client = new Client('/score', { keyStore: 'memory' });
    const [a, b] = await Promise.all([client.describe(), client.describe()]);
    assert(a === b && a.models.digits !== undefined, 'one description');
    assert(client.bytesSent === '{"op":"describe"}'.length, `${client.bytesSent} bytes sent`);
  },

  async 'an answer to a describe sent before the description was forgotten is not taken'() {
    const client = new Client('/score', { keyStore: 'memory' });
    /** @type {Array<(answer: { json: any, text: string }) => void>} */
    const answer = [];
    client.send = () => new Promise((resolve) => { answer.push(resolve); });
    const before = client.describe(); // sent before the service changed
    client.forgetDescription(); // as a prediction does on description_changed
    const after = client.describe();
    const stale = { models: { digits: { version: 'old' } } };
    const fresh = { models: { digits: { version: 'new' } } };
    answer[0]({ json: stale, text: JSON.stringify(stale) }); // the stale answer lands first
    answer[1]({ json: fresh, text: JSON.stringify(fresh) });
    const [a, b] = await Promise.all([before, after]);
    assert(a.models.digits.version === 'new' && b.models.digits.version === 'new', 'both calls see the new description');
    assert(client.description?.models.digits.version === 'new', 'the client keeps the new description');
    assert(answer.length === 2, `${answer.length} describe requests`);
  },

  async 'concurrent predictions each get their own times and bytes'() {
    const client = await pythonKeyed();
    await client.describe(); // its bytes are the client's, not a prediction's
    /** @type {import('../src/client.js').Stats} */
    const one = {};
    /** @type {import('../src/client.js').Stats} */
    const two = {};
    const before = client.bytesSent;
    const [a, b] = await Promise.all([client.predict('digits', [V.rows[0]], { stats: one }),
      client.predict('digits', V.rows, { stats: two })]);
    const sent = client.bytesSent - before;
    const alone = await client.predict('digits', V.rows);
    assert(JSON.stringify(a.predictions) === JSON.stringify(alone.predictions.slice(0, 1)), 'the first answer is its own');
    assert(JSON.stringify(b.predictions) === JSON.stringify(alone.predictions), 'the second answer is its own');
    for (const stats of [one, two]) {
      for (const step of /** @type {const} */ (['keys', 'encrypt', 'request', 'decrypt'])) {
        assert(typeof stats[step] === 'number' && /** @type {number} */ (stats[step]) >= 0, `${step}: ${stats[step]}`);
      }
    }
    assert(one.encrypt !== two.encrypt && one.decrypt !== two.decrypt, 'each call timed its own encryption and decryption');
    assert((one.bytesSent ?? 0) > 0 && (two.bytesSent ?? 0) > (one.bytesSent ?? 0), `bytes ${one.bytesSent} ${two.bytesSent}`);
    assert((one.bytesSent ?? 0) + (two.bytesSent ?? 0) === sent, `${one.bytesSent} + ${two.bytesSent} bytes != ${sent} sent`);
  },

  'SeiError carries its code'() {
    const error = new SeiError('m', 'redirect', 302);
    assert(error instanceof Error && error.code === 'redirect' && error.status === 302 && error.name === 'SeiError', 'fields');
  },
};
