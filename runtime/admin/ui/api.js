// The console's one door to the admin API. Every call carries the token from this tab's
// sessionStorage, is bounded in time, and turns an error answer into an ApiError holding the
// server's code and message (`{"error": "<code>", "message": "..."}`).

const TOKEN_KEY = 'gridkeeper.token';
const DENIED_KEY = 'gridkeeper.submit-denied';

/** Longest a call may take before the console gives up on it (long polls are not used). */
export const CALL_TIMEOUT_MS = 10000;

/** An answer that was not a success, or no answer at all (status 0). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
  sessionStorage.removeItem(DENIED_KEY);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(DENIED_KEY);
}

let authLost = () => {};

/** Calls `handler(error)` when the node answers 401, or 403 to a call the page cannot do without. */
export function whenAuthLost(handler) {
  authLost = handler;
}

/**
 * `method path` with a JSON body. Options: `token` (instead of the stored one), `forbidden`
 * ('login': a 403 signs the user out, the default; 'throw': the caller handles it), `anyStatus`
 * (answer `{status, body}` whatever the status).
 */
export async function call(method, path, body, options = {}) {
  const headers = { Accept: 'application/json' };
  const bearer = options.token ?? token();
  if (bearer) headers.Authorization = 'Bearer ' + bearer;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), CALL_TIMEOUT_MS);
  let response;
  let text;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: abort.signal,
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    });
    text = await response.text();
  } catch (error) {
    const why = abort.signal.aborted
      ? `no answer from this node within ${CALL_TIMEOUT_MS / 1000} s`
      : `this node cannot be reached (${error.message})`;
    throw new ApiError(0, 'unreachable', why);
  } finally {
    clearTimeout(timer);
  }
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (options.anyStatus) return { status: response.status, body: json };
  if (response.ok) return json;
  const code = json && typeof json.error === 'string' ? json.error : `http ${response.status}`;
  const message = json && typeof json.message === 'string'
    ? json.message
    : (text || response.statusText || `HTTP ${response.status}`).slice(0, 300);
  const error = new ApiError(response.status, code, message);
  if (response.status === 401 || (response.status === 403 && options.forbidden !== 'throw')) {
    authLost(error);
  }
  throw error;
}

export const get = (path, options) => call('GET', path, undefined, options);
export const post = (path, body, options) => call('POST', path, body, options);

/** `path?name=value&...` with every value encoded; empty values are left out. */
export function withQuery(path, params) {
  const parts = [];
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') continue;
    parts.push(encodeURIComponent(name) + '=' + encodeURIComponent(String(value)));
  }
  return parts.length ? path + '?' + parts.join('&') : path;
}

/**
 * Who the stored token says its bearer is, for display only (the node decides): `{name, role}`
 * from a signed token's payload, or `null` for the legacy admin token or anything unreadable.
 */
export function claims() {
  const value = token();
  if (!value || !value.startsWith('gk1.')) return null;
  const payload = value.split('.')[1];
  if (!payload || payload.length > 512) return null;
  try {
    const padded = payload.replace(/-/g, '+').replace(/_/g, '/');
    const parsed = JSON.parse(atob(padded + '='.repeat((4 - (padded.length % 4)) % 4)));
    if (typeof parsed.name !== 'string' || typeof parsed.role !== 'string') return null;
    return { name: parsed.name, role: parsed.role };
  } catch {
    return null;
  }
}

/**
 * Why submitting, cancelling and job changes are refused to this token, if a call answered 403 or
 * the token's role cannot; `null` if they may be allowed (the node decides on every call).
 */
export function submitDenied() {
  const stored = sessionStorage.getItem(DENIED_KEY);
  if (stored) return stored;
  const role = claims()?.role;
  if (role === 'reader' || role === 'metrics') return `a ${role} token may not submit, cancel or change jobs`;
  return null;
}

/** Records the server's message after an action answered 403. */
export function noteSubmitDenied(message) {
  sessionStorage.setItem(DENIED_KEY, message);
}
