// The server's REST API with the access token (api.token), kept for the tab: sent as a bearer
// header where a request can carry one, and as ?token= on sockets, images and videos, which cannot.
// Asked for on the first 401.

import { $ } from './dom.js';

export const TOKEN_KEY = 'haven.token';
export const storedToken = () => sessionStorage.getItem(TOKEN_KEY);

/** `path` with `?token=` added when a token is stored. */
export function withToken(path) {
  const token = storedToken();
  if (!token) return path;
  const url = new URL(path, location.href);
  url.searchParams.set('token', token);
  return url.protocol.startsWith('ws') ? url.href : url.pathname + url.search;
}

let tokenAsk = null; // the pending prompt, shared by every request that needs it
let readsDeclined = false; // the user cancelled the prompt for reads: do not ask on every poll

/** Asks for the token in `#token-dialog`; resolves to it (stored), or to null if cancelled. */
export function askToken(reason) {
  if (tokenAsk) return tokenAsk;
  const dialog = $('#token-dialog');
  const form = $('#token-form');
  $('#token-reason').textContent = reason;
  form.reset();
  const cancel = dialog.querySelector('[data-close]');
  tokenAsk = new Promise((resolve) => {
    const done = (value) => {
      form.removeEventListener('submit', onSubmit);
      dialog.removeEventListener('close', onClose);
      cancel?.removeEventListener('click', onCancel);
      tokenAsk = null;
      window.dispatchEvent(new Event('haven-token'));
      resolve(value);
    };
    const onSubmit = (ev) => {
      ev.preventDefault();
      const value = form.elements.token.value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      done(value);
      dialog.close();
    };
    const onClose = () => done(null);
    const onCancel = () => dialog.close();
    form.addEventListener('submit', onSubmit);
    dialog.addEventListener('close', onClose);
    cancel?.addEventListener('click', onCancel);
    dialog.showModal();
  });
  return tokenAsk;
}

/**
 * `fetch` with the stored token; on a 401 the token is forgotten, asked for once (`reason` says
 * why) and the request made again. A read whose prompt was cancelled is not asked for again.
 */
export async function fetchWithToken(path, init = {}, reason = 'This server needs a token.') {
  const mutating = (init.method ?? 'GET') !== 'GET';
  for (let attempt = 0; ; attempt++) {
    const token = storedToken();
    const headers = { ...(init.headers ?? {}) };
    if (token) headers.Authorization = `Bearer ${token}`;
    const res = await fetch(path, { ...init, headers });
    if (res.status !== 401) return res;
    // With accounts, a session that ended signs in again rather than asking for a token.
    if (globalThis.document?.body?.dataset.accounts === 'true') {
      location.assign('/login');
      return res;
    }
    if (token) {
      sessionStorage.removeItem(TOKEN_KEY);
      window.dispatchEvent(new Event('haven-token'));
    }
    if (attempt > 0 || (!mutating && readsDeclined)) return res;
    const got = await askToken(token ? 'The stored token was refused. Enter the right one.' : reason);
    if (!got) {
      if (!mutating) readsDeclined = true;
      return res;
    }
    readsDeclined = false;
  }
}

/** A failed request: `status` 0 when the server could not be reached. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The response's JSON body, or null when it has none. */
async function body(res) {
  const text = await res.text();
  try { return text ? JSON.parse(text) : null; } catch { return null; }
}

/** The live page's requests: JSON in and out; the server's error message on failure. */
export async function api(method, path, payload) {
  const mutating = method !== 'GET';
  const headers = { Accept: 'application/json' };
  if (payload !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetchWithToken(path, {
      method,
      headers,
      cache: 'no-store',
      body: payload === undefined ? undefined : JSON.stringify(payload),
    }, mutating ? 'This server needs a token to make changes.' : 'This server needs a token to show its cameras.');
  } catch {
    throw new ApiError(0, 'the server is not reachable');
  }
  const data = await body(res);
  if (res.status === 401) throw new ApiError(401, data?.error ?? 'a valid token is needed');
  if (!res.ok) throw new ApiError(res.status, data?.error ?? `${res.status} ${res.statusText}`);
  return data;
}

/** The events page's reads. */
export async function getJson(path) {
  let res;
  try {
    res = await fetchWithToken(path, { cache: 'no-store', headers: { Accept: 'application/json' } }, 'This server needs a token to show its events.');
  } catch {
    throw new ApiError(0, 'the server is not reachable');
  }
  const data = await body(res);
  if (!res.ok) throw new ApiError(res.status, data?.error ?? `${res.status} ${res.statusText}`);
  return data;
}
