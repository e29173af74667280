// Reading scores as the model's predict / predict_proba (linear/model.py) and the client's checks (bounds.py).
import { SeiError } from './errors.js';
import { rint } from './ring.js';

const FORMAT = 'sei.linear-model/1';
const MAX_DESCRIBED_SIZE = 1 << 20;

/** How a described model's scores become predictions: the description's `readout` (no weights). */
export class Readout {
  /** @param {Record<string, any>} description one model of a describe answer */
  constructor(description) {
    const bad = (/** @type {string} */ why) => new SeiError(`the service's description of the model cannot be read: ${why}`, 'invalid_response');
    const { n_outputs: nOutputs, n_features: nFeatures, readout } = description ?? {};
    for (const n of [nOutputs, nFeatures]) {
      if (!Number.isInteger(n) || n < 1 || n > MAX_DESCRIBED_SIZE) throw bad(`n_outputs and n_features must be whole numbers from 1 to ${MAX_DESCRIBED_SIZE}`);
    }
    if (typeof readout !== 'object' || readout === null) throw bad('no readout');
    if ((readout.format ?? FORMAT) !== FORMAT) throw bad(`unsupported linear model format ${JSON.stringify(readout.format)}`);
    const { kind, decision, proba = null, classes = null } = readout;
    /** @type {Record<string, string[]>} */
    const decisions = { classifier: ['sign', 'argmax'], regressor: ['identity', 'multioutput'] };
    /** @type {Record<string, string[]>} */
    const probas = { sign: ['sigmoid', 'modified-huber'], argmax: ['softmax', 'ovr-normalized', 'modified-huber'] };
    if (!(decisions[kind] ?? []).includes(decision)) throw bad(`decision ${JSON.stringify(decision)} is not valid for kind ${JSON.stringify(kind)}`);
    if ((kind === 'classifier') !== Array.isArray(classes)) throw bad('classifiers need classes and regressors must not have them');
    if (proba !== null && !(probas[decision] ?? []).includes(proba)) throw bad(`proba ${JSON.stringify(proba)} is not valid with decision ${JSON.stringify(decision)}`);
    const nClasses = classes?.length ?? 0;
    /** @type {Record<string, boolean>} */
    const fits = { sign: nOutputs === 1 && nClasses === 2, argmax: nOutputs === nClasses && nClasses >= 2, identity: nOutputs === 1, multioutput: true };
    if (!fits[decision]) throw bad(`${decision} with ${nClasses} classes cannot have ${nOutputs} outputs`);
    Object.assign(this, { kind, decision, proba, classes, nOutputs, nFeatures });
    /** @type {string} */ this.decision = decision;
    /** @type {string | null} */ this.proba = proba;
    /** @type {any[] | null} */ this.classes = classes;
    /** @type {number} */ this.nOutputs = nOutputs;
    /** @type {number} */ this.nFeatures = nFeatures;
  }

  /** What the estimator's predict returns, one entry per row. @param {number[][]} scores */
  predict(scores) {
    const labels = /** @type {any[]} */ (this.classes);
    switch (this.decision) {
      case 'identity': return scores.map((s) => s[0]);
      case 'multioutput': return scores.map((s) => [...s]);
      case 'sign': return scores.map((s) => labels[s[0] > 0 ? 1 : 0]);
      default: return scores.map((s) => labels[s.indexOf(Math.max(...s))]);
    }
  }

  /** What predict_proba returns, or null where SEI does not reproduce it. @param {number[][]} scores */
  predictProba(scores) {
    if (this.proba === null) return null;
    if (this.proba === 'softmax') {
      return scores.map((s) => {
        const top = Math.max(...s);
        const e = s.map((v) => Math.exp(v - top));
        const total = e.reduce((a, b) => a + b, 0);
        return e.map((v) => v / total);
      });
    }
    const ovr = (/** @type {number} */ v) => (this.proba === 'modified-huber' ? (Math.min(1, Math.max(-1, v)) + 1) / 2 : 1 / (1 + Math.exp(-v)));
    if (this.decision === 'sign') return scores.map((s) => [1 - ovr(s[0]), ovr(s[0])]);
    return scores.map((s) => {
      const p = s.map(ovr);
      const total = p.reduce((a, b) => a + b, 0);
      return total > 0 ? p.map((v) => v / total) : p.map(() => 1 / p.length);
    });
  }
}

/** @param {Record<string, any>} description @param {boolean} allowUnproven @returns {any} The description's `accuracy`; null only when the caller opted in to a model without one (bounds.py proven_accuracy). */
export function provenAccuracy(description, allowUnproven) {
  const accuracy = description.accuracy;
  if ((accuracy === undefined || accuracy === null) && !allowUnproven) {
    throw new SeiError(
      "the model's description states no proven accuracy (built by an older SEI, or written by hand): its rows cannot be " +
      'checked against feature bounds nor its scores against a proven range, so a wrapped score would read as a ' +
      'prediction; rebuild the model, or opt in with new Client(..., { allowUnproven: true })', 'unproven_model');
  }
  if (accuracy !== undefined && accuracy !== null && !allowUnproven) checkRounding(accuracy);
  return accuracy ?? null;
}

/** Refuse a description whose error bound plus the output rounding's half-step exceeds its tolerance (a build
 * before the proofs left room for rounding; rounding.py delivered_error). @param {any} accuracy */
function checkRounding(accuracy) {
  const bound = accuracy?.error_bound;
  const tolerance = accuracy?.tolerance;
  if (typeof bound !== 'number' || typeof tolerance !== 'number' || !(Number.isFinite(bound) && bound > 0 && Number.isFinite(tolerance))) {
    throw unreadable('error_bound and tolerance must be finite numbers, error_bound > 0');
  }
  const grid = gridStep(bound);
  if (bound + grid / 2 > tolerance) {
    throw new SeiError(
      `the model's proven error bound ${g(bound)} plus half the output rounding's grid (${g(grid / 2)}) exceeds its ` +
      `tolerance ${g(tolerance)} (a build by an older SEI, whose proof left no room for the rounding): rounded scores ` +
      'could miss the tolerance; rebuild the model, or opt in with new Client(..., { allowUnproven: true })', 'unproven_model');
  }
}

/** The smallest power of two >= `bound` (> 0, finite), exactly (rounding.py grid_step). @param {number} bound */
function gridStep(bound) {
  let step = 2 ** Math.ceil(Math.log2(bound));
  while (step < bound) step *= 2; // log2 rounded down just above a power of two
  while (step / 2 >= bound) step /= 2; // or rounded up just below one
  return step;
}

const unreadable = (/** @type {string} */ m) => new SeiError(`the service's accuracy description: ${m}`, 'invalid_response');

/** Per-feature [lo, hi] arrays of a compact bounds form ([lo, hi] or one pair per feature). @param {any} form @param {number} nFeatures @returns {number[][]} */
function expandBounds(form, nFeatures) {
  let pairs = form;
  if (Array.isArray(form) && form.length === 2 && form.every((v) => typeof v === 'number')) pairs = Array(nFeatures).fill(form);
  if (!Array.isArray(pairs) || pairs.length !== nFeatures || !pairs.every((p) => Array.isArray(p) && p.length === 2)) {
    throw unreadable(`feature_bounds must be [lo, hi] or ${nFeatures} [lo, hi] pairs (one per feature)`);
  }
  if (!pairs.every(([lo, hi]) => Number.isFinite(lo) && Number.isFinite(hi) && lo <= hi)) throw unreadable('feature_bounds must be finite with lo <= hi');
  return [pairs.map((p) => p[0]), pairs.map((p) => p[1])];
}

/** Python's {:g} (6 significant digits) of a number, near enough for messages. */
const g = (/** @type {number} */ v) => String(Number(v.toPrecision(6)));

/**
 * What a model's description proves, read and checked once when the model is opened (the description does not
 * change under an open model: a new description opens the model anew): the accuracy (`provenAccuracy`, so an
 * unproven or old description is refused here), the feature bounds, the score limit and the output grid.
 */
export class Proof {
  /** @param {Record<string, any>} description @param {boolean} allowUnproven @param {number} nFeatures
   * @param {number} fallbackLimit the |score| limit without a proof (the parameters' own) */
  constructor(description, allowUnproven, nFeatures, fallbackLimit) {
    /** @type {any} */
    this.accuracy = provenAccuracy(description, allowUnproven);
    if (this.accuracy !== null && typeof this.accuracy !== 'object') throw unreadable('not an object');
    this.nFeatures = nFeatures;
    /** @type {number[][] | null} per-feature [lo, hi] as two arrays; null without a proof */
    this.bounds = this.accuracy === null ? null : expandBounds(this.accuracy.feature_bounds, nFeatures);
    this.limit = scoreLimit(this.accuracy, fallbackLimit);
    this.grid = outputGrid(this.accuracy);
  }

  /** Refuse rows of another width or outside the proven bounds, before encryption. @param {number[][]} rows */
  checkRows(rows) {
    checkDescribedRows(this.accuracy, rows, this.nFeatures, this.bounds ?? undefined);
  }

  /** Scores past the proven range are an error; the rest rounded to the proven grid. @param {number[][]} scores */
  scores(scores) {
    checkScores(scores, this.limit);
    return roundScores(scores, this.grid); // nothing finer than the proof leaves the client
  }
}

/** Refuse, before encryption, rows outside the described feature bounds (bounds.py check_described_rows).
 * @param {any} accuracy @param {number[][]} rows @param {number} nFeatures
 * @param {number[][]} [expanded] the bounds already read from `accuracy` (Proof) */
export function checkDescribedRows(accuracy, rows, nFeatures, expanded) {
  if (rows.some((r) => r.length !== nFeatures)) {
    const bad = rows.find((r) => r.length !== nFeatures);
    throw new SeiError(`the model takes rows of ${nFeatures} features, not ${bad?.length}`, 'wrong_features');
  }
  if (accuracy === null) return;
  if (typeof accuracy !== 'object') throw unreadable('not an object');
  const [lo, hi] = expanded ?? expandBounds(accuracy.feature_bounds, nFeatures);
  const isBad = (/** @type {number} */ v, /** @type {number} */ f) => !Number.isFinite(v) || v < lo[f] || v > hi[f];
  const badRows = rows.filter((r) => r.some(isBad));
  if (badRows.length) {
    const row = rows.indexOf(badRows[0]);
    const feature = badRows[0].findIndex(isBad);
    throw new SeiError(
      `row ${row}, feature ${feature}: outside the bounds [${g(lo[feature])}, ${g(hi[feature])}] the model was built for ` +
      `(${accuracy.bounds_from ?? 'declared'}); ${badRows.length} of ${rows.length} rows are. Scores outside them are not ` +
      'guaranteed, so they are refused: rebuild the model with feature_bounds or calibration_data covering these inputs',
      'input_out_of_bounds');
  }
}

/** |decoded score| the client accepts: the proven bound plus the tolerance, or `fallback` (bounds.py score_limit).
 * @param {any} accuracy @param {number} fallback */
export function scoreLimit(accuracy, fallback) {
  if (accuracy === null) return fallback;
  const limit = Number(accuracy.max_abs_score) + Number(accuracy.tolerance);
  if (typeof accuracy.max_abs_score !== 'number' || typeof accuracy.tolerance !== 'number' || !(Number.isFinite(limit) && limit > 0)) {
    throw new SeiError("the service's accuracy description cannot be read", 'invalid_response');
  }
  return limit;
}

/** A decoded value beyond the proven bound is an error, never a score (bounds.py check_scores). @param {number[][]} scores @param {number} limit */
export function checkScores(scores, limit) {
  for (let row = 0; row < scores.length; row += 1) {
    const output = scores[row].findIndex((s) => !Number.isFinite(s) || Math.abs(s) > limit);
    if (output >= 0) {
      throw new SeiError(
        `row ${row}, output ${output}: the decrypted score is outside +-${g(limit)}, the bound the service proved for ` +
        'inputs within its feature bounds; the response is damaged or does not fit the model (no scores returned)',
        'score_out_of_range');
    }
  }
}

/** The step decoded scores are rounded to: the smallest power of two >= the proven error bound (bounds.py output_grid). @param {any} accuracy */
export function outputGrid(accuracy) {
  if (accuracy === null) return 2 ** -10;
  const bound = accuracy.error_bound;
  if (typeof bound !== 'number' || !(Number.isFinite(bound) && bound > 0)) {
    throw new SeiError("the service's accuracy description cannot be read", 'invalid_response');
  }
  return gridStep(bound);
}

/** Scores rounded to multiples of `grid` (half to even, as numpy's round). @param {number[][]} scores @param {number} grid */
export function roundScores(scores, grid) {
  return scores.map((row) => row.map((s) => rint(s / grid) * grid));
}
