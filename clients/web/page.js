// The page: a 28x28 canvas (MNIST-sized models) or a form of the model's features, a Worker that does the
// cryptography and the call, and the answer: prediction, probabilities, time of each step, bytes sent.
// On any failure the answer is hidden and the error shown: never a number from a failed request.

const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));
const SIDE = 28;
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
/** @type {Map<number, {resolve: (v: any) => void}>} */
const waiting = new Map();
let nextId = 1;
/** @type {Record<string, any> | null} */
let description = null;

worker.onmessage = (/** @type {MessageEvent} */ event) => {
  const entry = waiting.get(event.data.id);
  if (entry) {
    waiting.delete(event.data.id);
    entry.resolve(event.data);
  }
};
worker.onerror = (/** @type {ErrorEvent} */ event) => {
  event.preventDefault();
  for (const [, entry] of waiting) entry.resolve({ ok: false, error: { code: 'page_error', message: `the worker failed: ${event.message || 'it could not start'}` } });
  waiting.clear();
};

function ask(/** @type {Record<string, any>} */ message) {
  const id = nextId++;
  const service = { uri: new URL($('uri').value.trim(), location.href).href, token: $('token').value, store: $('store').value };
  return new Promise((resolve) => {
    waiting.set(id, { resolve });
    worker.postMessage({ id, ...service, ...message });
  });
}

function showError(/** @type {{code: string, message: string}} */ error) {
  $('answer').hidden = true;
  for (const id of ['prediction', 'bytes']) $(id).textContent = '';
  for (const id of ['probabilities', 'steps']) $(id).tBodies[0].replaceChildren();
  $('error').textContent = `Error (${error.code}): ${error.message}`;
  $('error').hidden = false;
  $('status').textContent = 'Failed.';
}

function row(/** @type {(string | Node)[]} */ cells) {
  const tr = document.createElement('tr');
  for (const cell of cells) {
    const td = document.createElement('td');
    td.append(cell);
    tr.append(td);
  }
  return tr;
}

function showAnswer(/** @type {any} */ answer, /** @type {any} */ model) {
  const { result, steps, bytesSent } = answer;
  $('error').hidden = true;
  const prediction = result.predictions[0];
  $('prediction').textContent = Array.isArray(prediction) ? prediction.map(String).join(', ') : String(prediction);
  const probs = $('probabilities').tBodies[0];
  probs.replaceChildren();
  const p = result.probabilities?.[0];
  $('probabilities').hidden = !p;
  if (p) {
    p.forEach((/** @type {number} */ value, /** @type {number} */ i) => {
      const bar = document.createElement('span');
      bar.style.width = `${Math.round(value * 200)}px`;
      const cell = row([String(model.readout.classes[i]), value.toFixed(4), bar]);
      /** @type {Element} */ (cell.lastElementChild).className = 'bar';
      probs.append(cell);
    });
  }
  const times = $('steps').tBodies[0];
  times.replaceChildren();
  const names = { keys: 'keys (load or make)', encrypt: 'encrypt', service: 'request + service', decrypt: 'decrypt', total: 'total' };
  for (const [key, label] of Object.entries(names)) times.append(row([label, `${steps[key].toFixed(1)} ms`]));
  $('bytes').textContent = `${bytesSent.toLocaleString('en')} bytes (request bodies)`;
  $('answer').hidden = false;
  $('status').textContent = 'Done.';
}

/** The canvas's pixels as MNIST features: ink (red channel, white on black) / 255, row by row. */
function canvasFeatures() {
  const data = $('canvas').getContext('2d', { willReadFrequently: true }).getImageData(0, 0, SIDE, SIDE).data;
  return Array.from({ length: SIDE * SIDE }, (_, i) => data[4 * i] / 255);
}

/** Draw exactly these 784 pixel values (0..1, row by row) on the canvas. */
function setPixels(/** @type {ArrayLike<number>} */ pixels) {
  if (pixels.length !== SIDE * SIDE) throw new Error(`a drawing has ${SIDE * SIDE} pixels, not ${pixels.length}`);
  const ctx = $('canvas').getContext('2d', { willReadFrequently: true });
  const image = ctx.createImageData(SIDE, SIDE);
  for (let i = 0; i < pixels.length; i += 1) {
    const v = Math.round(Math.min(1, Math.max(0, pixels[i])) * 255);
    image.data.set([v, v, v, 255], 4 * i);
  }
  ctx.putImageData(image, 0, 0);
}

function clearCanvas() {
  setPixels(new Array(SIDE * SIDE).fill(0));
}

function drawing() {
  const canvas = $('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  let down = false;
  const ink = (/** @type {PointerEvent} */ e) => {
    const box = canvas.getBoundingClientRect();
    const x = ((e.clientX - box.left) / box.width) * SIDE;
    const y = ((e.clientY - box.top) / box.height) * SIDE;
    ctx.fillStyle = '#fff';
    ctx.beginPath();
    ctx.arc(x, y, 1.2, 0, 2 * Math.PI);
    ctx.fill();
  };
  canvas.addEventListener('pointerdown', (/** @type {PointerEvent} */ e) => { down = true; canvas.setPointerCapture(e.pointerId); ink(e); });
  canvas.addEventListener('pointermove', (/** @type {PointerEvent} */ e) => { if (down) ink(e); });
  canvas.addEventListener('pointerup', () => { down = false; });
  $('clear').addEventListener('click', clearCanvas);
  clearCanvas();
}

/** Input names: the MLflow signature's columns when the service describes them, else f0, f1, ... */
function featureNames(/** @type {any} */ model) {
  const inputs = model.signature?.inputs;
  const names = Array.isArray(inputs) ? inputs.map((c) => c?.name).filter((n) => typeof n === 'string') : [];
  return names.length === model.n_features ? names : Array.from({ length: model.n_features }, (_, i) => `f${i}`);
}

function buildForm(/** @type {any} */ model) {
  const form = $('features');
  form.replaceChildren();
  for (const name of featureNames(model)) {
    const label = document.createElement('label');
    const input = document.createElement('input');
    Object.assign(input, { type: 'number', step: 'any', value: '0', required: true });
    label.append(name, input);
    form.append(label);
  }
}

function formFeatures() {
  return Array.from($('features').querySelectorAll('input'), (/** @type {HTMLInputElement} */ input) => {
    const value = Number(input.value);
    if (input.value.trim() === '' || !Number.isFinite(value)) throw Object.assign(new Error(`feature ${input.parentElement?.firstChild?.textContent} is not a number`), { code: 'invalid_request' });
    return value;
  });
}

function selectModel() {
  const model = description?.models?.[$('model').value];
  const square = model?.n_features === SIDE * SIDE;
  $('draw').hidden = !square;
  $('features').hidden = square || !model;
  if (model && !square) buildForm(model);
  $('predict').disabled = !model;
}

async function connect() {
  $('status').textContent = 'Asking the service what it serves...';
  $('error').hidden = true;
  const answer = await ask({ op: 'describe' });
  if (!answer.ok) {
    description = null;
    $('model').replaceChildren();
    $('model').disabled = true;
    $('predict').disabled = true;
    showError(answer.error);
    return false;
  }
  const models = answer.description.models;
  description = answer.description;
  const names = Object.keys(models).filter((n) => models[n]?.adapter === 'sklearn-packed').sort();
  $('model').replaceChildren(...names.map((n) => new Option(n, n)));
  const drawn = names.find((n) => models[n].n_features === SIDE * SIDE);
  if (drawn) $('model').value = drawn; // a model the canvas can feed comes first
  $('model').disabled = names.length === 0;
  if (names.length === 0) showError({ code: 'unknown_model', message: 'the service serves no sklearn-packed model, the only kind this page speaks' });
  else $('status').textContent = `Connected: ${names.length} model${names.length > 1 ? 's' : ''}.`;
  selectModel();
  return names.length > 0;
}

/** Encrypt the current input, call the service, show the answer; resolves to what was shown (for tests). */
async function predict() {
  if (!description && !(await connect())) return { error: $('error').textContent };
  const name = $('model').value;
  const model = description?.models[name];
  let features;
  try {
    features = model.n_features === SIDE * SIDE ? canvasFeatures() : formFeatures();
  } catch (error) {
    showError({ code: /** @type {any} */ (error).code ?? 'invalid_request', message: String(/** @type {any} */ (error).message) });
    return { error: $('error').textContent };
  }
  $('predict').disabled = true;
  $('status').textContent = 'Encrypting and asking the service...';
  try {
    const answer = await ask({ op: 'predict', model: name, rows: [features] });
    if (!answer.ok) {
      showError(answer.error);
      return { error: $('error').textContent, features };
    }
    showAnswer(answer, model);
    return { prediction: answer.result.predictions[0], probabilities: answer.result.probabilities?.[0] ?? null,
      steps: answer.steps, bytesSent: answer.bytesSent, features, shown: $('prediction').textContent };
  } finally {
    $('predict').disabled = false;
  }
}

$('uri').value = new URL('../score', location.href).href;
$('connect').addEventListener('click', () => connect());
$('model').addEventListener('change', selectModel);
$('predict').addEventListener('click', () => predict());
drawing();
// for scripted use (the tests, a kiosk): draw exact pixels, read them back, predict
Object.assign(window, { seiPage: { setPixels, canvasFeatures, predict, connect } });
document.documentElement.dataset.ready = 'true';
