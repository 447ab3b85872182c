// The JSON API of docs/dashboard.md. The session cookie authenticates; every
// request that changes anything carries X-Kordon-CSRF from the session body,
// which is kept in memory only (and read again from GET /api/v1/session).

let csrf = null;
let unauthorized = () => {};

export class ApiError extends Error {
  constructor(status, body, message) {
    super(message || (body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
  get missing() {
    return this.status === 404 || this.status === 405 || this.status === 501;
  }
}

export function setCsrf(value) {
  csrf = value || null;
}

/** Called on any 401: the session is gone, show the sign-in. */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

export async function api(method, path, body, options = {}) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-Kordon-CSRF'] = csrf;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  if (options.signal) init.signal = options.signal;
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, null, e.message);
  }
  const type = response.headers.get('content-type') || '';
  let data = null;
  if (response.status !== 204) {
    const text = await response.text();
    if (type.includes('json') && text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = text;
      }
    } else {
      data = text;
    }
  }
  if (response.status === 401 && !options.allow401) {
    unauthorized();
  }
  if (!response.ok) {
    throw new ApiError(response.status, data && typeof data === 'object' ? data : { error: typeof data === 'string' && data ? data.slice(0, 300) : undefined });
  }
  return data;
}

export const get = (path, options) => api('GET', path, undefined, options);
export const post = (path, body, options) => api('POST', path, body === undefined ? {} : body, options);
export const put = (path, body, options) => api('PUT', path, body, options);
export const del = (path, options) => api('DELETE', path, undefined, options);

export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  const s = p.toString();
  return s ? '?' + s : '';
}

export const enc = encodeURIComponent;
