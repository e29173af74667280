// POST with retries and the endpoint policy (sei_framework/client/http.py, endpoint.py): no redirects followed,
// credentials over plain http to loopback only, header values HTTP can carry.
import { SeiError } from './errors.js';

const RETRY_STATUSES = new Set([502, 503, 504]);
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]|^\s|\s$/;

/** Whether `host` (a URL's hostname) is a loopback address. @param {string} host */
export function isLoopbackHost(host) {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** The URI without user info or query (what messages show). @param {string} uri */
export function redactUri(uri) {
  try {
    const url = new URL(uri);
    return `${url.protocol}//${url.host}${url.pathname}`;
  } catch {
    return '<unparsable URI>';
  }
}

/** Refuse an endpoint that would expose its credentials, before anything is sent (endpoint.py EndpointPolicy). */
export function checkEndpoint(/** @type {string} */ uri, /** @type {Record<string, string>} */ headers, allowInsecureHttp = false) {
  for (const [name, value] of Object.entries(headers)) {
    if (!HEADER_NAME.test(name)) throw new SeiError(`the endpoint's header name ${JSON.stringify(name)} is not a valid HTTP field name`, 'invalid_header');
    const what = name.toLowerCase() === 'authorization' ? 'bearer token' : 'value';
    if (typeof value !== 'string') throw new SeiError(`the endpoint's ${name} header ${what} must be a string`, 'invalid_header');
    if (/[^\x00-\xff]/.test(value)) {
      throw new SeiError(`the endpoint's ${name} header ${what} has characters outside latin-1, which HTTP headers cannot carry; use the ASCII form of the token`, 'invalid_header');
    }
    if (BAD_VALUE.test(value)) throw new SeiError(`the endpoint's ${name} header ${what} has control characters or white space at an end`, 'invalid_header');
  }
  let url;
  try {
    url = new URL(uri, globalThis.location?.href);
  } catch {
    throw new SeiError('the scoring URI cannot be parsed', 'invalid_request');
  }
  const userinfo = url.username !== '' || url.password !== '';
  if ((Object.keys(headers).length === 0 && !userinfo) || url.protocol === 'https:' || isLoopbackHost(url.hostname) || allowInsecureHttp) return;
  const names = Object.keys(headers).sort();
  const what = names.some((n) => n.toLowerCase() === 'authorization') ? 'Authorization header (a bearer token or service key)'
    : names.length ? `header${names.length > 1 ? 's' : ''} ${names.join(', ')}` : 'user name and password in the URI';
  throw new SeiError(`refusing to send the endpoint's ${what} to ${url.hostname} over plain http, where anyone on the way can ` +
    "read and reuse it; use the service's https URI, or, on a network you trust, new Client(..., { allowInsecureHttp: true })", 'insecure_http');
}

/** A request body as the bytes of its JSON, serialised once: what is sent, and what is counted as sent. */
export function jsonBody(/** @type {unknown} */ body) {
  return new TextEncoder().encode(JSON.stringify(body));
}

/**
 * POST `body` (JSON bytes, `jsonBody`); the JSON answer and its text, or a SeiError with the service's code
 * (http.py HttpCaller.post). Network errors and 502/503/504 are retried `retries` times after a full-jitter wait.
 */
export async function post(/** @type {string} */ uri, /** @type {Record<string, string>} */ headers, /** @type {Uint8Array<ArrayBuffer>} */ body,
  { retries = 4, backoff = 0.2, maxBackoff = 10, timeout = 600, fetchImpl = globalThis.fetch } = {}) {
  const shown = redactUri(uri);
  for (let attempt = 0; ; attempt += 1) {
    const last = attempt >= retries;
    let response;
    try {
      response = await fetchImpl(uri, {
        method: 'POST', body, headers: { 'Content-Type': 'application/json', ...headers },
        redirect: 'manual', credentials: 'omit', cache: 'no-store', signal: AbortSignal.timeout(timeout * 1000),
      });
    } catch (error) {
      if (!last) {
        await wait(attempt, backoff, maxBackoff);
        continue;
      }
      const name = /** @type {Error} */ (error)?.name ?? 'Error';
      throw new SeiError(`cannot reach ${shown} (${attempt + 1} attempt${attempt ? 's' : ''}): ${name}`, 'unreachable', 0);
    }
    if (RETRY_STATUSES.has(response.status) && !last) {
      const after = Number(response.headers.get('Retry-After'));
      await wait(attempt, backoff, maxBackoff, Number.isInteger(after) && after >= 0 ? after : undefined);
      continue;
    }
    return answer(response, attempt + 1);
  }
}

/** @param {number} attempt @param {number} backoff @param {number} maxBackoff @param {number} [retryAfter] */
async function wait(attempt, backoff, maxBackoff, retryAfter) {
  let delay = Math.random() * Math.min(maxBackoff, backoff * 2 ** attempt);
  if (retryAfter !== undefined) delay = Math.max(delay, Math.min(maxBackoff, retryAfter));
  await new Promise((resolve) => setTimeout(resolve, delay * 1000));
}

async function answer(/** @type {Response} */ response, /** @type {number} */ attempts) {
  if (response.type === 'opaqueredirect' || (response.status >= 300 && response.status < 400)) {
    throw new SeiError(`service answered a redirect${response.status ? ` (${response.status})` : ''}; the client follows no redirects ` +
      '(they could carry its headers to another host): use the scoring URI it points to, if you trust it', 'redirect', response.status);
  }
  const raw = await response.text();
  /** @type {any} */
  let parsed = null;
  try {
    parsed = JSON.parse(raw);
  } catch {
    parsed = null;
  }
  const isObject = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed);
  if (response.status !== 200 || !isObject || 'error' in parsed) {
    const error = isObject ? parsed.error : undefined;
    const after = attempts > 1 ? ` (after ${attempts} attempts)` : '';
    if (typeof error === 'object' && error !== null) {
      const code = typeof error.code === 'string' ? error.code : 'error';
      throw new SeiError(`service answered ${response.status} ${code}: ${String(error.message ?? '').slice(0, 500)}${after}`, code, response.status);
    }
    throw new SeiError(`service answered ${response.status} http_error: ${raw.slice(0, 200)}${after}`, 'http_error', response.status);
  }
  return { json: parsed, text: raw };
}
