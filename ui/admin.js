// The People page (admins): accounts (GET/POST/DELETE /api/users) and API tokens
// (GET/POST/DELETE /api/tokens). A new token is shown once, as the server gives it.

import { loadSession } from './session.js';

const $ = (sel) => document.querySelector(sel);

/** `"a, b*"` → `["a", "b*"]`; empty parts left out. */
export function cameraList(text) {
  return text.split(',').map((s) => s.trim()).filter(Boolean);
}

async function call(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: { Accept: 'application/json', ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await res.json().catch(() => null);
  if (!res.ok) throw new Error(data?.error ?? `${res.status}`);
  return data;
}

function showError(e) {
  const p = $('#admin-error');
  p.textContent = e ? e.message : '';
  p.hidden = !e;
}

function button(label, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.addEventListener('click', () => onClick().then(refresh, showError));
  return b;
}

function row(cells, onRemove, label, extra) {
  const tr = document.createElement('tr');
  for (const text of cells) {
    const td = document.createElement('td');
    td.textContent = text;
    tr.append(td);
  }
  const td = document.createElement('td');
  if (extra) td.append(extra, ' ');
  const b = button(label, onRemove);
  b.className = 'danger';
  td.append(b);
  tr.append(td);
  return tr;
}

const cams = (list) => (list.length ? list.join(', ') : 'all');

async function refresh() {
  const [{ users }, { tokens }] = await Promise.all([call('GET', '/api/users'), call('GET', '/api/tokens')]);
  $('#users tbody').replaceChildren(...users.map((u) => row([u.name, u.role, cams(u.cameras)],
    () => call('DELETE', `/api/users/${encodeURIComponent(u.name)}`), 'Remove',
    button('Sign out everywhere', () => call('DELETE', `/api/users/${encodeURIComponent(u.name)}/sessions`)))));
  $('#tokens tbody').replaceChildren(...tokens.map((t) => row(
    [t.name, t.role, cams(t.cameras), t.expires_at ? new Date(t.expires_at * 1000).toLocaleDateString() : 'never'],
    () => call('DELETE', `/api/tokens/${encodeURIComponent(t.name)}`), 'Revoke')));
}

function onSubmit(form, send) {
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await send(form.elements);
      form.reset();
      showError(null);
      await refresh();
    } catch (e) {
      showError(e);
    }
  });
}

async function init() {
  await loadSession();
  onSubmit($('#user-form'), (f) => call('POST', '/api/users', {
    name: f.name.value.trim(), password: f.password.value, role: f.role.value, cameras: cameraList(f.cameras.value),
  }));
  onSubmit($('#token-form'), async (f) => {
    const days = f.days.value ? Number(f.days.value) : undefined;
    const made = await call('POST', '/api/tokens', { name: f.name.value.trim(), role: f.role.value, cameras: cameraList(f.cameras.value), expires_in_days: days });
    $('#new-token code').textContent = made.token;
    $('#new-token').hidden = false;
  });
  refresh().catch(showError);
}

if (globalThis.document?.body?.dataset.page === 'admin') init();
