// The login page: POST /api/session {name, password}; the server answers with an HttpOnly session
// cookie the page never sees, and the browser sends it with every request, sockets and <img> too.

const form = globalThis.document?.getElementById('login-form');
const error = globalThis.document?.getElementById('login-error');

/** The message a refused sign-in shows (the server's own words for 401, 429 and 400). */
export function refusal(status, body) {
  if (status === 429) return body?.error ?? 'Too many failed sign-ins: wait a minute.';
  return body?.error ?? `Sign-in failed (${status}).`;
}

async function signIn(ev) {
  ev.preventDefault();
  error.hidden = true;
  const name = form.elements.name.value.trim();
  const password = form.elements.password.value;
  let res;
  try {
    res = await fetch('/api/session', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ name, password }),
    });
  } catch {
    error.textContent = 'The server is not reachable.';
    error.hidden = false;
    return;
  }
  if (res.ok) {
    location.assign('/');
    return;
  }
  const body = await res.json().catch(() => null);
  form.elements.password.value = '';
  error.textContent = refusal(res.status, body);
  error.hidden = false;
}

form?.addEventListener('submit', signIn);
