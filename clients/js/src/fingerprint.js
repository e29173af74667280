// The description fingerprint (sei_framework/fingerprint.py): sha256 of a model's description as canonical JSON
// (sorted keys, no spaces, ASCII), without its `limits`. A JS number cannot tell 1.0 from 1, so the description is
// read from the service's own JSON text with each number's lexeme kept as Python wrote it.
import { sha256 } from '@noble/hashes/sha2.js';

export const FINGERPRINT_FIELD = 'description_sha256';

class Lexeme {
  /** @param {string} text a JSON number as written */
  constructor(text) { this.text = text; }
}

/** JSON text -> values, numbers kept as Lexeme. Throws SyntaxError on malformed text. @param {string} text */
export function parseKeepingNumbers(text) {
  let at = 0;
  const space = () => { while (/[ \t\n\r]/.test(text[at] ?? '')) at += 1; };
  const fail = () => { throw new SyntaxError(`bad JSON at ${at}`); };
  /** @returns {any} */
  const value = () => {
    space();
    const c = text[at];
    if (c === '{') {
      at += 1;
      /** @type {Map<string, any>} */
      const out = new Map();
      space();
      if (text[at] === '}') { at += 1; return out; }
      for (;;) {
        space();
        const key = string();
        space();
        if (text[at] !== ':') fail();
        at += 1;
        out.set(key, value());
        space();
        if (text[at] === ',') { at += 1; continue; }
        if (text[at] === '}') { at += 1; return out; }
        fail();
      }
    }
    if (c === '[') {
      at += 1;
      /** @type {any[]} */
      const out = [];
      space();
      if (text[at] === ']') { at += 1; return out; }
      for (;;) {
        out.push(value());
        space();
        if (text[at] === ',') { at += 1; continue; }
        if (text[at] === ']') { at += 1; return out; }
        fail();
      }
    }
    if (c === '"') return string();
    for (const [word, v] of /** @type {[string, any][]} */ ([['true', true], ['false', false], ['null', null]])) {
      if (text.startsWith(word, at)) { at += word.length; return v; }
    }
    const number = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(at, at + 400));
    if (!number) fail();
    at += /** @type {RegExpExecArray} */ (number)[0].length;
    return new Lexeme(/** @type {RegExpExecArray} */ (number)[0]);
  };
  const string = () => {
    const match = /^"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/.exec(text.slice(at));
    if (!match) fail();
    at += /** @type {RegExpExecArray} */ (match)[0].length;
    return /** @type {string} */ (JSON.parse(/** @type {RegExpExecArray} */ (match)[0]));
  };
  const out = value();
  space();
  if (at !== text.length) fail();
  return out;
}

/** A string as Python's json.dumps writes it (ensure_ascii). @param {string} s */
function pythonString(s) {
  const named = /** @type {Record<string, string>} */ ({ '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' });
  return `"${s.replace(/["\\\x00-\x1f\x7f-\uffff]/g, (ch) => named[ch] ?? `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`)}"`;
}

/** Python's json.dumps(value, sort_keys=True, separators=(",", ":")) of a parseKeepingNumbers value. @returns {string} */
function canonical(/** @type {any} */ v) {
  if (v instanceof Lexeme) return v.text;
  if (v === null) return 'null';
  if (v === true || v === false) return String(v);
  if (typeof v === 'string') return pythonString(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  const keys = [...v.keys()].sort();
  return `{${keys.map((k) => `${pythonString(k)}:${canonical(v.get(k))}`).join(',')}}`;
}

/** The fingerprint of model `name` in a describe answer's JSON text, or null if the text does not describe it. */
export function descriptionFingerprint(/** @type {string} */ describeText, /** @type {string} */ name) {
  const tree = parseKeepingNumbers(describeText);
  const model = tree instanceof Map && tree.get('models') instanceof Map ? tree.get('models').get(name) : undefined;
  if (!(model instanceof Map)) return null;
  const relevant = new Map([...model].filter(([k]) => k !== 'limits'));
  const digest = sha256(new TextEncoder().encode(canonical(relevant)));
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('');
}
