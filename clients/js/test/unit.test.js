// Unit tests of the JS client, run in Chromium by tests/test_js_client.py.
import initialize from 'node-seal';
import { assert } from './runner.js';

export const tests = {
  async 'node-seal loads and makes a CKKS context'() {
    const seal = await initialize();
    const parms = new seal.EncryptionParameters(seal.SchemeType.ckks);
    parms.setPolyModulusDegree(4096);
    parms.setCoeffModulus(seal.CoeffModulus.Create(4096, Int32Array.from([31, 31, 16])));
    const context = new seal.SEALContext(parms, true, seal.SecLevelType.tc128);
    assert(context.parametersSet(), 'parameters set');
  },
};
