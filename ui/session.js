// Who is signed in (GET /api/session): on a server with accounts, the page shows what the role may
// do (body[data-role], see style.css), a Sign out button, and an admin's link to the People page;
// without a session it goes to the login page. A server without accounts is left as it was.

/** What the page does with GET /api/session's answer: 'login', or the role to show ('' for none). */
export function sessionView(status, body) {
  if (status === 401 && body?.accounts) return { go: 'login' };
  if (status !== 200 || !body?.accounts) return { role: '' };
  return { role: body.role, name: body.name, signedIn: body.via === 'session' };
}

/** Reads the session and applies it to the page; resolves to the view (or never, going to /login). */
export async function loadSession() {
  let res;
  try {
    res = await fetch('/api/session', { headers: { Accept: 'application/json' }, cache: 'no-store' });
  } catch {
    return { role: '' };
  }
  const body = await res.json().catch(() => null);
  const view = sessionView(res.status, body);
  if (view.go === 'login') {
    location.assign('/login');
    return new Promise(() => {});
  }
  if (!view.role) return view;
  document.body.dataset.role = view.role;
  document.body.dataset.accounts = 'true';
  const admin = document.getElementById('admin-link');
  if (admin) admin.hidden = view.role !== 'admin';
  const out = document.getElementById('signout-btn');
  if (out && view.signedIn) {
    out.hidden = false;
    out.title = `Signed in as ${view.name}: end this browser's session`;
    out.addEventListener('click', signOut);
  }
  return view;
}

export async function signOut() {
  await fetch('/api/session', { method: 'DELETE' }).catch(() => null);
  location.assign('/login');
}
