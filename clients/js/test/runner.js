// A tiny test runner for the browser: test files export `tests`, an object of async functions.
// Each failure is reported with its name and message; the result goes to window.__sei_result.

/** @param {Record<string, () => Promise<void> | void>} tests */
export async function run(tests) {
  /** @type {{ passed: string[], failed: { name: string, error: string }[] }} */
  const result = { passed: [], failed: [] };
  for (const [name, test] of Object.entries(tests)) {
    try {
      await test();
      result.passed.push(name);
    } catch (error) {
      const err = /** @type {any} */ (error);
      result.failed.push({ name, error: `${err?.name ?? 'Error'}${err?.code ? ` [${err.code}]` : ''}: ${err?.message ?? err}` });
    }
  }
  return result;
}

/** Report to the harness (tests/browser.py): window.__sei_result, then window.__sei_done. */
export async function main(load) {
  try {
    const modules = await load();
    const tests = Object.assign({}, ...modules.map((m) => m.tests));
    const only = new URLSearchParams(location.search).get('only');
    const chosen = only ? Object.fromEntries(Object.entries(tests).filter(([n]) => n.includes(only))) : tests;
    /** @type {any} */ (window).__sei_result = await run(chosen);
    /** @type {any} */ (window).__sei_done = true;
  } catch (error) {
    /** @type {any} */ (window).__sei_error = String(/** @type {any} */ (error)?.stack ?? error);
  }
}

/** @param {unknown} condition @param {string} message */
export function assert(condition, message) {
  if (!condition) throw new Error(`assertion failed: ${message}`);
}

/** Expect `fn` to throw a SeiError with `code`. */
export async function throwsCode(fn, code) {
  try {
    await fn();
  } catch (error) {
    const err = /** @type {any} */ (error);
    if (err?.name === 'SeiError' && err.code === code) return err;
    throw new Error(`expected SeiError ${code}, got ${err?.name} ${err?.code}: ${err?.message}`);
  }
  throw new Error(`expected SeiError ${code}, nothing was thrown`);
}
