// The admin API as the dashboard calls it: the bearer token from this
// tab's sessionStorage on every request (never a cookie, never a URL),
// the API's JSON errors turned into exceptions carrying its message.

export const PREFIX = '/api/v1/admin/user-activities';
const TOKEN_KEY = 'activity-admin-token';

/** A 401 or 403: the sign-in comes back with the API's message. */
export class AuthError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'AuthError';
    this.status = status;
    this.code = code;
  }
}

/** Any other failed call. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** `/user/{id}` with the id as one path segment, whatever it holds. */
export function userPath(userId, tail = '') {
  return `/user/${encodeURIComponent(userId)}${tail}`;
}

/**
 * Calls `PREFIX + path` with `params` (absent or empty values left out)
 * and returns the decoded JSON.
 */
export async function call(path, params = {}, method = 'GET') {
  const secret = token();
  if (!secret) {
    throw new AuthError(401, 'unauthorized', 'Sign in with an admin token.');
  }
  const url = new URL(PREFIX + path, window.location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') {
      url.searchParams.set(name, String(value));
    }
  }
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${secret}`, accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
      referrerPolicy: 'no-referrer',
    });
  } catch (error) {
    throw new ApiError(0, 'unreachable', `The processor could not be reached (${error.message}).`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const code = body && typeof body.error === 'string' ? body.error : 'error';
  const message = body && typeof body.message === 'string'
    ? body.message
    : `${response.status} ${response.statusText}`.trim();
  if (response.status === 401 || response.status === 403) {
    throw new AuthError(response.status, code, message);
  }
  if (!response.ok) {
    throw new ApiError(response.status, code, message);
  }
  return body;
}
