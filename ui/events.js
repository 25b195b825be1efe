// HAVEN events page: the stored events with their snapshots, filters, a clip player that steps
// frame by frame with the fall marked on its timeline, live updates from /ws/alerts.
//
// This module also exports the live alert banner (`startAlerts`), which the live page (app.js)
// imports too: one socket to /ws/alerts per page, reconnecting with backoff, a dismissable banner
// per fall. The events page itself only starts when the document says so (<body data-page="events">).
//
// Plain ES module, no build step, nothing fetched from anywhere but this server.

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;
const STABLE_MS = 5000; // a socket that stayed open this long resets the backoff
const DISMISSED_KEY = 'haven.dismissed-alerts';
const LIST_LIMIT = 200;
const CLIP_POLL_MS = 2500; // while a listed event waits for its clip
const CLIP_WAIT_MS = 120000; // how long after the last alert the page keeps waiting for clips
const CAMERAS_POLL_MS = 15000;
const RETRY_MS = 3000;

const $ = (sel, root = document) => root.querySelector(sel);

// ---------------------------------------------------------------------------------------------
// The access token (api.token), kept for the tab: sent as a bearer header where a request can carry
// one, and as ?token= on sockets, images and videos, which cannot. Asked for on the first 401.

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

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k in node && typeof v !== 'string') node[k] = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

export const KIND_LABEL = { fall: 'Fall', person_detected: 'Person', object_detected: 'Object' };

export const REASON_LABEL = { pose: 'pose', model: 'fall model', 'pose+model': 'pose + fall model' };

/** What raised a fall, in a few words ("fall model"); '' for other events. */
export function reasonLabel(ev) {
  const by = ev.reason?.by;
  return by ? `by ${REASON_LABEL[by] ?? by}` : '';
}

/** What the event is: its kind, and for an object its class ("Object: car"). */
export function eventLabel(ev) {
  const kind = KIND_LABEL[ev.kind] ?? ev.kind;
  return ev.kind === 'object_detected' && ev.class ? `${kind}: ${ev.class}` : kind;
}

const fmt = {
  time: (t) => (Number.isFinite(t) ? new Date(t * 1000).toLocaleTimeString() : '–'),
  dateTime: (t) => (Number.isFinite(t)
    ? new Date(t * 1000).toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' })
    : '–'),
  secs: (s) => {
    if (!Number.isFinite(s)) return '–';
    if (s < 60) return `${s.toFixed(1)} s`;
    const m = Math.floor(s / 60);
    return m < 60 ? `${m} min ${Math.round(s - m * 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
  },
  clock: (s) => (Number.isFinite(s) ? `${s.toFixed(3)} s` : '–'),
};

// ---------------------------------------------------------------------------------------------
// The alerts socket: /ws/alerts, one JSON event per message, reconnected with jittered
// exponential backoff. The server sends the events still active first, on every (re)connect.

export class AlertSocket {
  constructor({ camera = '', onEvent = () => {}, onOpen = () => {}, onState = () => {} } = {}) {
    this.camera = camera;
    this.onEvent = onEvent;
    this.onOpen = onOpen;
    this.onState = onState;
    this.ws = null;
    this.wanted = false;
    this.timer = null;
    this.backoff = BACKOFF_MIN_MS;
    this.openedAt = 0;
    this.state = 'connecting';
  }

  setState(state) {
    this.state = state;
    document.documentElement.dataset.alerts = state;
    this.onState(state);
  }

  start() {
    if (this.wanted) return;
    this.wanted = true;
    this.backoff = BACKOFF_MIN_MS;
    this.connect();
  }

  stop() {
    this.wanted = false;
    clearTimeout(this.timer);
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000, 'page closed'); } catch { /* already closed */ }
    }
    this.setState('closed');
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (!this.wanted || this.ws) return;
    const url = new URL('/ws/alerts', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    if (this.camera) url.searchParams.set('camera', this.camera);
    if (storedToken()) url.searchParams.set('token', storedToken());
    const ws = new WebSocket(url);
    this.ws = ws;
    this.setState(this.state === 'reconnecting' ? 'reconnecting' : 'connecting');
    ws.onopen = () => {
      this.openedAt = performance.now();
      this.setState('live');
      this.onOpen();
    };
    ws.onmessage = (ev) => {
      let event;
      try { event = JSON.parse(ev.data); } catch { return; }
      if (!event || typeof event !== 'object' || !event.kind) return;
      this.onEvent(event);
    };
    ws.onerror = () => { /* a close event follows */ };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.openedAt && performance.now() - this.openedAt > STABLE_MS) this.backoff = BACKOFF_MIN_MS;
      this.openedAt = 0;
      this.retry();
    };
  }

  retry() {
    if (!this.wanted) return;
    const delay = Math.round(this.backoff * (0.75 + Math.random() * 0.5));
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this.setState('reconnecting');
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Try again now (the server answered again, or the browser is back online). */
  reconnectNow() {
    if (this.wanted && !this.ws) {
      this.backoff = BACKOFF_MIN_MS;
      this.connect();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The alert banner: one line per fall, until dismissed. A dismissed fall stays dismissed in this
// tab (sessionStorage), also when the socket reconnects and the server repeats the active events.

function eventKey(ev) {
  return ev.id !== null && ev.id !== undefined ? String(ev.id) : `${ev.camera_id}/${ev.track_id}/${ev.started_at}`;
}

class AlertBanner {
  constructor(container, { onView } = {}) {
    this.el = container;
    this.onView = onView;
    this.items = new Map(); // key → { event, row }
    try {
      this.dismissed = new Set(JSON.parse(sessionStorage.getItem(DISMISSED_KEY) || '[]'));
    } catch {
      this.dismissed = new Set();
    }
    this.el.setAttribute('role', 'alert');
    this.el.setAttribute('aria-live', 'assertive');
    this.render();
  }

  onEvent(ev) {
    if (ev.kind !== 'fall') return;
    const key = eventKey(ev);
    if (this.dismissed.has(key)) return;
    let item = this.items.get(key);
    if (!item) {
      item = { event: ev, row: this.makeRow(key) };
      this.items.set(key, item);
      this.el.prepend(item.row);
    } else {
      item.event = { ...item.event, ...ev };
    }
    this.fill(item);
    this.render();
  }

  makeRow(key) {
    const dismiss = el('button', { type: 'button', class: 'alert-dismiss icon', title: 'Dismiss', 'aria-label': 'Dismiss this alert', text: '✕' });
    dismiss.addEventListener('click', () => this.dismiss(key));
    const view = el('a', { class: 'alert-view', text: 'View clip' });
    view.addEventListener('click', (e) => {
      const item = this.items.get(key);
      if (this.onView && item?.event.id != null) {
        e.preventDefault();
        this.onView(item.event);
      }
    });
    return el('div', { class: 'alert-item', dataset: { key } },
      el('span', { class: 'alert-icon', 'aria-hidden': 'true', text: '⚠' }),
      el('span', { class: 'alert-text' }),
      view,
      dismiss);
  }

  fill({ event: ev, row }) {
    row.dataset.eventId = ev.id ?? '';
    row.dataset.kind = ev.kind;
    row.dataset.cameraId = ev.camera_id;
    row.dataset.phase = ev.phase;
    const text = $('.alert-text', row);
    const ended = ev.phase === 'end';
    text.replaceChildren(
      el('strong', { text: ended ? 'Fall' : 'Fall detected' }),
      ' on ',
      el('b', { class: 'alert-camera', text: ev.camera_id }),
      ` at ${fmt.time(ev.started_at)}`,
      ended && Number.isFinite(ev.ended_at) ? ` · over after ${fmt.secs(ev.ended_at - ev.started_at)}` : ' · ongoing',
      ev.reason ? el('span', { class: 'alert-reason', title: ev.reason.summary ?? '', text: ` · ${reasonLabel(ev)}` }) : null,
    );
    const view = $('.alert-view', row);
    if (ev.id != null) {
      view.href = `/events#event=${encodeURIComponent(ev.id)}`;
      view.hidden = false;
    } else {
      view.hidden = true;
    }
  }

  dismiss(key) {
    const item = this.items.get(key);
    if (!item) return;
    item.row.remove();
    this.items.delete(key);
    this.dismissed.add(key);
    const keep = [...this.dismissed].slice(-200);
    try { sessionStorage.setItem(DISMISSED_KEY, JSON.stringify(keep)); } catch { /* storage full or off */ }
    this.render();
  }

  render() {
    const n = this.items.size;
    this.el.hidden = n === 0;
    this.el.dataset.count = String(n);
    const prefix = '⚠ Fall — ';
    const base = document.title.startsWith(prefix) ? document.title.slice(prefix.length) : document.title;
    document.title = n ? prefix + base : base;
  }
}

/**
 * Starts the alerts socket and the banner in `banner` (an element). `onEvent` sees every event,
 * `onOpen` every (re)connect (what was missed while disconnected can be read again then).
 * Returns the socket. The socket stays open in hidden tabs: alerts are rare and are the point.
 */
export function startAlerts({ banner, camera = '', onEvent, onOpen, onState, onView } = {}) {
  const view = banner ? new AlertBanner(banner, { onView }) : null;
  const socket = new AlertSocket({
    camera,
    onEvent: (ev) => {
      view?.onEvent(ev);
      onEvent?.(ev);
    },
    onOpen,
    onState,
  });
  socket.start();
  window.addEventListener('online', () => socket.reconnectNow());
  window.addEventListener('pagehide', (ev) => { if (!ev.persisted) socket.stop(); });
  window.addEventListener('pageshow', (ev) => { if (ev.persisted) socket.start(); });
  return socket;
}

// ---------------------------------------------------------------------------------------------
// The events page.

async function getJson(path) {
  let res;
  try {
    res = await fetchWithToken(path, { cache: 'no-store', headers: { Accept: 'application/json' } }, 'This server needs a token to show its events.');
  } catch {
    const e = new Error('the server is not reachable');
    e.status = 0;
    throw e;
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    const e = new Error(data?.error ?? `${res.status} ${res.statusText}`);
    e.status = res.status;
    throw e;
  }
  return data;
}

const page = {
  filters: { camera: '', kind: '', cls: '', since: '' },
  classes: new Set(), // classes seen in events, for the class filter
  events: [], // what the list shows, newest first
  total: 0,
  rows: new Map(), // id → <li>
  cameras: new Set(),
  selected: null, // the event in the player
  clip: null, // { id, url, fps, frames, fallAt, startAt, endAt }
  fetchSeq: 0,
  fetchTimer: null,
  pollTimer: null,
  clipWaitUntil: 0,
  socket: null,
  reachable: true,
};

function matchesFilters(ev) {
  const f = page.filters;
  if (f.camera && ev.camera_id !== f.camera) return false;
  if (f.kind && ev.kind !== f.kind) return false;
  if (f.cls && ev.class !== f.cls) return false;
  if (f.since && ev.started_at < Date.now() / 1000 - Number(f.since)) return false;
  return true;
}

function query() {
  const q = new URLSearchParams();
  const f = page.filters;
  if (f.camera) q.set('camera', f.camera);
  if (f.kind) q.set('kind', f.kind);
  if (f.cls) q.set('class', f.cls);
  if (f.since) q.set('since', String(Math.floor(Date.now() / 1000 - Number(f.since))));
  q.set('limit', String(LIST_LIMIT));
  return q;
}

function setBanner(message) {
  const b = $('#banner');
  b.hidden = !message;
  b.textContent = message || '';
}

async function fetchList() {
  clearTimeout(page.fetchTimer);
  page.fetchTimer = null;
  const seq = ++page.fetchSeq;
  const list = $('#event-list');
  list.setAttribute('aria-busy', 'true');
  try {
    const data = await getJson(`/api/events?${query()}`);
    if (seq !== page.fetchSeq) return; // a newer request (other filters) is on its way
    page.events = Array.isArray(data?.events) ? data.events : [];
    page.total = Number(data?.total ?? page.events.length);
    if (!page.reachable) {
      page.reachable = true;
      page.socket?.reconnectNow();
    }
    setBanner(null);
    renderList();
    const sel = page.selected && page.events.find((e) => e.id === page.selected.id);
    if (sel) showEvent(sel);
  } catch (e) {
    if (seq !== page.fetchSeq) return;
    if (e.status === 0 || e.status >= 500) {
      page.reachable = false;
      setBanner(`Cannot reach the server (${e.message}); retrying…`);
      scheduleFetch(RETRY_MS);
    } else {
      setBanner(`Cannot list the events: ${e.message}`);
    }
  } finally {
    if (seq === page.fetchSeq) list.removeAttribute('aria-busy');
    schedulePoll();
  }
}

function scheduleFetch(ms = 300) {
  clearTimeout(page.fetchTimer);
  page.fetchTimer = setTimeout(fetchList, ms);
}

/** While some listed event still waits for its clip (recently), read the list again now and then. */
function schedulePoll() {
  clearTimeout(page.pollTimer);
  page.pollTimer = null;
  if (document.visibilityState === 'hidden' || Date.now() > page.clipWaitUntil) return;
  const waiting = page.events.some((e) => e.phase === 'start' || clipState(e) === 'recording' || !e.snapshot_path);
  if (waiting) page.pollTimer = setTimeout(fetchList, CLIP_POLL_MS);
}

async function fetchCameras() {
  try {
    const data = await getJson('/api/cameras');
    for (const c of data?.cameras ?? []) page.cameras.add(c.camera_id);
    renderCameraOptions();
  } catch { /* the list fetch reports the outage */ }
}

function renderCameraOptions() {
  for (const ev of page.events) page.cameras.add(ev.camera_id);
  if (page.filters.camera) page.cameras.add(page.filters.camera);
  const select = $('#f-camera');
  const ids = ['', ...[...page.cameras].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }))];
  const have = [...select.options].map((o) => o.value);
  if (ids.join('\n') !== have.join('\n')) {
    select.replaceChildren(...ids.map((id) => el('option', { value: id, text: id || 'All cameras' })));
  }
  select.value = page.filters.camera;
  renderClassOptions();
}

/** The class filter: every class seen in the events listed (and the one chosen). */
function renderClassOptions() {
  for (const ev of page.events) if (ev.class) page.classes.add(ev.class);
  if (page.filters.cls) page.classes.add(page.filters.cls);
  const select = $('#f-class');
  if (!select) return;
  const names = ['', ...[...page.classes].sort((a, b) => a.localeCompare(b))];
  const have = [...select.options].map((o) => o.value);
  if (names.join('\n') !== have.join('\n')) {
    select.replaceChildren(...names.map((c) => el('option', { value: c, text: c || 'All classes' })));
  }
  select.value = page.filters.cls;
}

/** What to expect of the event's clip, as the server says: none, recording, ready or failed. */
function clipState(ev) {
  return CLIP_STATES.includes(ev.clip_status) ? ev.clip_status : 'none';
}
const CLIP_STATES = ['none', 'recording', 'ready', 'failed'];

/** The list's word for the clip. */
function clipLabel(ev) {
  return {
    ready: 'clip',
    recording: ev.phase === 'start' ? 'recording…' : 'finishing clip…',
    failed: 'clip failed',
    none: 'no clip',
  }[clipState(ev)];
}

function rowSignature(ev) {
  return [ev.phase, ev.ended_at, ev.clip_status, ev.clip_path, ev.clip_error, ev.snapshot_path, ev.score].join('|');
}

function makeRow(ev) {
  const li = el('li', { class: 'event', tabindex: '0', role: 'option' });
  li.addEventListener('click', () => openEvent(ev.id));
  li.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      openEvent(Number(li.dataset.eventId));
    }
  });
  return li;
}

function fillRow(li, ev) {
  const sig = rowSignature(ev);
  li.dataset.eventId = String(ev.id);
  li.dataset.kind = ev.kind;
  li.dataset.cameraId = ev.camera_id;
  li.dataset.phase = ev.phase;
  li.dataset.clip = clipState(ev);
  if (li.dataset.sig === sig) return;
  li.dataset.sig = sig;
  const thumb = ev.snapshot_path
    ? el('img', { class: 'thumb', src: withToken(`/api/events/${ev.id}/snapshot.jpg`), alt: `Snapshot of event ${ev.id}`, loading: 'lazy', decoding: 'async' })
    : el('div', { class: 'thumb thumb-empty', text: ev.phase === 'start' ? '●' : '–', 'aria-hidden': 'true' });
  const duration = Number.isFinite(ev.ended_at) ? fmt.secs(ev.ended_at - ev.started_at) : 'ongoing';
  li.setAttribute('aria-label', `${eventLabel(ev)} on ${ev.camera_id} at ${fmt.dateTime(ev.started_at)}`);
  if (ev.class) li.dataset.class = ev.class;
  li.replaceChildren(
    thumb,
    el('div', { class: 'ev-main' },
      el('div', { class: 'ev-line' },
        el('span', { class: 'kind', dataset: { kind: ev.kind }, text: eventLabel(ev) }),
        el('span', { class: 'ev-camera', text: ev.camera_id }),
        el('span', { class: 'ev-id', text: `#${ev.id}` })),
      el('div', { class: 'ev-time', text: fmt.dateTime(ev.started_at) }),
      el('div', { class: 'ev-sub' },
        el('span', { class: 'ev-duration', text: duration }),
        el('span', { class: 'ev-score', text: Number.isFinite(ev.score) ? `score ${ev.score.toFixed(2)}` : '' }),
        ev.reason ? el('span', { class: 'ev-reason', title: ev.reason.summary ?? '', text: reasonLabel(ev) }) : null,
        el('span', { class: 'ev-clip', dataset: { clip: clipState(ev) }, text: clipLabel(ev), title: ev.clip_error ?? '' }))),
  );
}

function renderList() {
  const list = $('#event-list');
  const seen = new Set();
  const ordered = [];
  for (const ev of page.events) {
    if (ev.id === null || ev.id === undefined || seen.has(ev.id)) continue;
    seen.add(ev.id);
    let li = page.rows.get(ev.id);
    if (!li) {
      li = makeRow(ev);
      page.rows.set(ev.id, li);
    }
    fillRow(li, ev);
    li.setAttribute('aria-selected', String(page.selected?.id === ev.id));
    ordered.push(li);
  }
  for (const [id, li] of page.rows) {
    if (!seen.has(id)) {
      li.remove();
      page.rows.delete(id);
    }
  }
  const current = [...list.children];
  if (ordered.length !== current.length || ordered.some((li, i) => li !== current[i])) {
    const active = document.activeElement;
    list.append(...ordered);
    if (active && active !== document.activeElement && active.isConnected) active.focus({ preventScroll: true });
  }
  $('#no-events').hidden = ordered.length > 0;
  const shown = ordered.length;
  const f = page.filters;
  const n = Math.max(shown, page.total);
  const noun = { fall: ['fall', 'falls'], person_detected: ['person event', 'person events'], object_detected: ['object event', 'object events'] }[f.kind] ?? ['event', 'events'];
  const what = `${noun[n === 1 ? 0 : 1]}${f.cls ? ` (${f.cls})` : ''}${f.camera ? ` on ${f.camera}` : ''}`;
  $('#summary').textContent = page.total > shown ? `${shown} of ${page.total} ${what}` : `${shown} ${what}`;
  // The store answers at most LIST_LIMIT events, newest first.
  $('#list-limit').hidden = page.events.length < LIST_LIMIT;
  renderCameraOptions();
}

/** An event pushed by /ws/alerts: shown at once, then the list is read again from the store. */
function onAlert(ev) {
  page.clipWaitUntil = Date.now() + CLIP_WAIT_MS;
  page.cameras.add(ev.camera_id);
  if (ev.id !== null && ev.id !== undefined && matchesFilters(ev)) {
    const i = page.events.findIndex((e) => e.id === ev.id);
    // The alert knows the clip as it was when the event ended; the store may know it finished since.
    const known = page.events[i];
    if (i >= 0) page.events[i] = known.clip_status === 'ready' || known.clip_status === 'failed'
      ? { ...known, ...ev, clip_status: known.clip_status, clip_path: known.clip_path, clip_error: known.clip_error }
      : { ...known, ...ev };
    else {
      page.events.unshift(ev);
      page.total++;
    }
    page.events.sort((a, b) => b.started_at - a.started_at || b.id - a.id);
    renderList();
    if (page.selected?.id === ev.id) showEvent(page.events.find((e) => e.id === ev.id));
  }
  scheduleFetch(400);
}

// ---------------------------------------------------------------------------------------------
// The player.

const video = () => $('#video');

function clipDuration() {
  const v = video();
  if (Number.isFinite(v.duration) && v.duration > 0) return v.duration;
  const c = page.clip;
  return c && c.fps > 0 && c.frames > 0 ? c.frames / c.fps : 0;
}

function frameCount() {
  const c = page.clip;
  if (!c) return 0;
  if (c.frames > 0) return c.frames;
  return Math.max(1, Math.round(clipDuration() * c.fps));
}

/** The frame shown at time t: frame k covers [k / fps, (k + 1) / fps). */
function frameAt(t) {
  const c = page.clip;
  if (!c?.fps) return 0;
  return Math.max(0, Math.min(frameCount() - 1, Math.floor(t * c.fps + 1e-6)));
}

/** Shows frame k (paused): seeks to the middle of the frame, never onto a boundary. */
function seekFrame(k) {
  const c = page.clip;
  const v = video();
  if (!c?.fps || !v.src) return;
  v.pause();
  const target = Math.max(0, Math.min(frameCount() - 1, k));
  v.currentTime = (target + 0.5) / c.fps;
  renderTime();
}

function stepFrames(n) {
  if (!page.clip?.fps) return;
  seekFrame(frameAt(video().currentTime) + n);
}

function goToEvent() {
  const c = page.clip;
  if (!c || !Number.isFinite(c.startAt)) return;
  seekFrame(frameAt(Math.max(0, c.startAt)));
}

function togglePlay() {
  const v = video();
  if (!v.src) return;
  if (v.paused || v.ended) {
    if (v.ended) v.currentTime = 0;
    v.play().catch(() => {});
  } else {
    v.pause();
  }
}

let rafId = 0;
function renderTime() {
  const v = video();
  const c = page.clip;
  const dur = clipDuration();
  const t = v.currentTime || 0;
  const frac = dur > 0 ? Math.min(1, t / dur) : 0;
  $('#tl-progress').style.width = `${(frac * 100).toFixed(3)}%`;
  $('#tl-head').style.left = `${(frac * 100).toFixed(3)}%`;
  const tl = $('#timeline');
  tl.setAttribute('aria-valuemax', dur.toFixed(3));
  tl.setAttribute('aria-valuenow', t.toFixed(3));
  const frames = frameCount();
  const k = frameAt(t);
  tl.setAttribute('aria-valuetext', `${t.toFixed(2)} s, frame ${k + 1} of ${frames}`);
  $('#p-time').textContent = `${fmt.clock(t)} / ${fmt.clock(dur)}`;
  $('#p-frame').textContent = c?.fps ? `frame ${k + 1} / ${frames}` : '';
  $('#viewer').dataset.frame = String(k);
  const play = $('#p-play');
  const playing = !v.paused && !v.ended;
  play.textContent = playing ? '❚❚' : '▶';
  play.setAttribute('aria-label', playing ? 'Pause (Space)' : 'Play (Space)');
  play.title = playing ? 'Pause (Space)' : 'Play (Space)';
}

function animate() {
  cancelAnimationFrame(rafId);
  const loop = () => {
    renderTime();
    if (!video().paused) rafId = requestAnimationFrame(loop);
  };
  rafId = requestAnimationFrame(loop);
}

function placeMarkers() {
  const c = page.clip;
  const dur = clipDuration();
  const marker = $('#fall-marker');
  const span = $('#tl-span');
  if (!c || !(dur > 0)) {
    marker.hidden = true;
    span.hidden = true;
    return;
  }
  const pct = (s) => `${((Math.max(0, Math.min(dur, s)) / dur) * 100).toFixed(3)}%`;
  if (Number.isFinite(c.startAt)) {
    const end = Number.isFinite(c.endAt) ? c.endAt : dur;
    span.hidden = false;
    span.style.left = pct(c.startAt);
    span.style.width = `${((Math.max(0, Math.min(dur, end) - Math.max(0, c.startAt)) / dur) * 100).toFixed(3)}%`;
    span.title = `The event: ${fmt.clock(c.startAt)} to ${Number.isFinite(c.endAt) ? fmt.clock(c.endAt) : 'the end of the clip'}`;
  } else {
    span.hidden = true;
  }
  const isFall = c.kind === 'fall' && Number.isFinite(c.startAt);
  marker.hidden = !isFall;
  if (isFall) {
    marker.style.left = pct(c.startAt);
    marker.dataset.time = c.startAt.toFixed(6);
    marker.title = `Fall at ${fmt.clock(c.startAt)} (frame ${frameAt(c.startAt) + 1})`;
    marker.setAttribute('aria-label', marker.title);
  }
  $('#p-event').textContent = isFall ? 'Go to fall' : 'Go to start';
  $('#p-event').title = `${isFall ? 'Go to the fall' : 'Go to the start of the event'} (g)`;
}

function showEvent(ev) {
  page.selected = ev;
  for (const [id, li] of page.rows) li.setAttribute('aria-selected', String(id === ev.id));
  const viewer = $('#viewer');
  viewer.hidden = false;
  $('#viewer-empty').hidden = true;
  viewer.dataset.eventId = String(ev.id);
  viewer.dataset.kind = ev.kind;
  $('#v-title').replaceChildren(
    el('span', { class: 'kind', dataset: { kind: ev.kind }, text: eventLabel(ev) }),
    ` ${ev.camera_id} · ${fmt.dateTime(ev.started_at)}`,
  );
  const details = [
    ['Camera', ev.camera_id],
    ['Kind', ev.kind],
    ['Class', ev.class ?? '–'],
    ['Model', ev.model ?? '–'],
    ['Track', ev.track_id ?? '–'],
    ['Started', fmt.dateTime(ev.started_at)],
    ['Ended', Number.isFinite(ev.ended_at) ? fmt.dateTime(ev.ended_at) : 'ongoing'],
    ['Duration', Number.isFinite(ev.ended_at) ? fmt.secs(ev.ended_at - ev.started_at) : '–'],
    ['Score', Number.isFinite(ev.score) ? ev.score.toFixed(2) : '–'],
    ...(Number.isFinite(ev.raised_at) ? [['Raised', `${fmt.dateTime(ev.raised_at)} (${fmt.secs(Math.max(0, ev.raised_at - ev.started_at))} after it began)`]] : []),
    ...(ev.reason ? [['Why', ev.reason.summary ?? reasonLabel(ev)]] : []),
    ['Clip', {
      ready: `${ev.clip_frames ?? '?'} frames at ${Number.isFinite(ev.clip_fps) ? ev.clip_fps.toFixed(2) : '?'} fps`,
      recording: ev.phase === 'start' ? 'recording…' : 'being finished…',
      failed: `failed: ${ev.clip_error ?? 'no reason given'}`,
      none: 'none recorded for this event',
    }[clipState(ev)]],
  ];
  if (ev.kind === 'fall' && Number.isFinite(ev.clip_started_at)) details.push(['Fall at', `${fmt.clock(ev.started_at - ev.clip_started_at)} into the clip`]);
  $('#v-details').replaceChildren(...details.map(([k, v]) => el('div', {}, el('dt', { text: k }), el('dd', { text: String(v) }))));

  const v = video();
  const url = ev.clip_path ? withToken(`/api/events/${ev.id}/clip.mp4`) : null;
  const noClip = $('#v-noclip');
  const controls = [...document.querySelectorAll('#player-controls button, #player-controls select')];
  if (!url) {
    if (v.getAttribute('src')) {
      v.removeAttribute('src');
      v.load();
    }
    page.clip = null;
    noClip.hidden = false;
    $('#v-noclip .ph-title').textContent = { recording: 'No clip yet', failed: 'Clip failed' }[clipState(ev)] ?? 'No clip';
    $('#v-noclip-text').textContent = {
      recording: ev.phase === 'start'
        ? 'The event is still going on: its clip is recorded until it ends.'
        : 'The clip is being finished (its post-roll, then the file)…',
      failed: `The clip could not be recorded: ${ev.clip_error ?? 'no reason given'}`,
      none: ev.kind === 'person_detected' || ev.kind === 'object_detected'
        ? `No clip is recorded for this event (${ev.kind} clips are off, or too many clips were being written at once).`
        : 'No clip is recorded for this event.',
    }[clipState(ev)] ?? 'No clip.';
    viewer.dataset.clip = 'none';
    for (const c of controls) c.disabled = true;
    $('#p-download').hidden = true;
    placeMarkers();
    renderTime();
    return;
  }
  noClip.hidden = true;
  for (const c of controls) c.disabled = false;
  const download = $('#p-download');
  download.hidden = false;
  download.href = url;
  download.setAttribute('download', `haven-${ev.camera_id}-${ev.id}-${ev.kind}.mp4`);
  const fps = Number(ev.clip_fps) || 0;
  const base = Number(ev.clip_started_at);
  page.clip = {
    id: ev.id,
    url,
    kind: ev.kind,
    fps,
    frames: Number(ev.clip_frames) || 0,
    startAt: Number.isFinite(base) ? ev.started_at - base : NaN,
    endAt: Number.isFinite(base) && Number.isFinite(ev.ended_at) ? ev.ended_at - base : NaN,
  };
  viewer.dataset.fps = String(fps);
  $('#p-fps').textContent = fps ? `${fps.toFixed(2)} fps` : '';
  if (v.getAttribute('src') !== url) {
    viewer.dataset.clip = 'loading';
    v.src = url;
    v.playbackRate = Number($('#p-rate').value) || 1;
    v.play().catch(() => { /* autoplay refused: the play button is there */ });
  }
  placeMarkers();
  renderTime();
}

async function openEvent(id, { updateHash = true } = {}) {
  if (!Number.isFinite(id)) return;
  if (updateHash) {
    const url = new URL(location.href);
    url.hash = `event=${id}`;
    history.replaceState(null, '', url);
  }
  let ev = page.events.find((e) => e.id === id);
  if (!ev) {
    try {
      ev = await getJson(`/api/events/${id}`);
    } catch (e) {
      toast(`Event ${id}: ${e.message}`, 'error');
      return;
    }
  }
  showEvent(ev);
  if (clipState(ev) === 'recording') {
    page.clipWaitUntil = Math.max(page.clipWaitUntil, Date.now() + CLIP_WAIT_MS);
    schedulePoll();
  }
}

function closeViewer() {
  page.selected = null;
  page.clip = null;
  const v = video();
  v.pause();
  v.removeAttribute('src');
  v.load();
  $('#viewer').hidden = true;
  $('#viewer-empty').hidden = false;
  for (const li of page.rows.values()) li.setAttribute('aria-selected', 'false');
  const url = new URL(location.href);
  url.hash = '';
  history.replaceState(null, '', url.pathname + url.search);
}

function toast(message, kind = 'info') {
  const t = el('div', { class: `toast ${kind}`, text: message });
  $('#toasts').append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 4000);
}

function seekFromPointer(ev) {
  const tl = $('#timeline');
  const r = tl.getBoundingClientRect();
  const dur = clipDuration();
  if (!(dur > 0) || !page.clip) return;
  const frac = Math.max(0, Math.min(1, (ev.clientX - r.left) / r.width));
  seekFrame(frameAt(frac * dur));
}

function onKey(ev) {
  if (ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey) return;
  const t = ev.target;
  if (t instanceof HTMLElement && t.closest('input, select, textarea, [contenteditable]')) return;
  const onButton = t instanceof HTMLElement && t.closest('button, a');
  const playerOpen = !!page.clip;
  const big = ev.shiftKey ? 10 : 1;
  switch (ev.key) {
    case ',':
    case '<':
    case 'ArrowLeft':
      if (!playerOpen) return;
      stepFrames(-big);
      break;
    case '.':
    case '>':
    case 'ArrowRight':
      if (!playerOpen) return;
      stepFrames(big);
      break;
    case ' ':
    case 'k':
      if (!playerOpen || (ev.key === ' ' && onButton) || (ev.key === ' ' && t.closest?.('.event'))) return;
      togglePlay();
      break;
    case 'g':
      if (!playerOpen) return;
      goToEvent();
      break;
    case 'Home':
      if (!playerOpen) return;
      seekFrame(0);
      break;
    case 'End':
      if (!playerOpen) return;
      seekFrame(frameCount() - 1);
      break;
    case 'ArrowDown':
    case 'ArrowUp': {
      const rows = [...$('#event-list').children];
      if (!rows.length) return;
      const cur = rows.findIndex((li) => li === document.activeElement || li.getAttribute('aria-selected') === 'true');
      const next = rows[Math.max(0, Math.min(rows.length - 1, cur + (ev.key === 'ArrowUp' ? -1 : 1)))];
      next.focus();
      break;
    }
    case 'Escape':
      if ($('#viewer').hidden) return;
      closeViewer();
      break;
    default:
      return;
  }
  ev.preventDefault();
}

function readUrl() {
  const q = new URLSearchParams(location.search);
  page.filters.camera = q.get('camera') ?? '';
  page.filters.kind = q.get('kind') ?? '';
  page.filters.cls = q.get('class') ?? '';
  page.filters.since = q.get('since') ?? '';
  $('#f-kind').value = page.filters.kind;
  $('#f-since').value = page.filters.since;
  if ($('#f-since').value !== page.filters.since) page.filters.since = '';
  renderCameraOptions();
}

function writeUrl() {
  const url = new URL(location.href);
  for (const [k, key] of [['camera', 'camera'], ['kind', 'kind'], ['class', 'cls'], ['since', 'since']]) {
    if (page.filters[key]) url.searchParams.set(k, page.filters[key]);
    else url.searchParams.delete(k);
  }
  history.replaceState(null, '', url);
}

function eventFromHash() {
  const m = /^#event=(\d+)$/.exec(location.hash);
  return m ? Number(m[1]) : null;
}

function initEventsPage() {
  readUrl();
  const onFilter = () => {
    page.filters.camera = $('#f-camera').value;
    page.filters.kind = $('#f-kind').value;
    page.filters.cls = $('#f-class').value;
    page.filters.since = $('#f-since').value;
    writeUrl();
    fetchList();
  };
  for (const id of ['#f-camera', '#f-kind', '#f-class', '#f-since']) $(id).addEventListener('change', onFilter);
  $('#filters').addEventListener('submit', (e) => e.preventDefault());
  $('#f-refresh').addEventListener('click', () => { fetchCameras(); fetchList(); });

  const v = video();
  v.muted = true;
  v.addEventListener('loadedmetadata', () => {
    $('#viewer').dataset.clip = 'ready';
    placeMarkers();
    renderTime();
  });
  v.addEventListener('error', () => {
    if (!v.getAttribute('src')) return;
    $('#viewer').dataset.clip = 'error';
    toast(`The clip cannot be played (${v.error?.message || `error ${v.error?.code ?? '?'}`})`, 'error');
  });
  for (const name of ['play', 'playing']) v.addEventListener(name, animate);
  for (const name of ['pause', 'seeked', 'seeking', 'timeupdate', 'ended', 'durationchange']) v.addEventListener(name, renderTime);
  v.addEventListener('click', togglePlay);
  $('#p-play').addEventListener('click', togglePlay);
  $('#p-prev').addEventListener('click', () => stepFrames(-1));
  $('#p-next').addEventListener('click', () => stepFrames(1));
  $('#p-event').addEventListener('click', goToEvent);
  $('#p-rate').addEventListener('change', () => { v.playbackRate = Number($('#p-rate').value) || 1; });
  $('#v-close').addEventListener('click', closeViewer);
  $('#fall-marker').addEventListener('click', (e) => {
    e.stopPropagation();
    goToEvent();
  });
  const tl = $('#timeline');
  tl.addEventListener('pointerdown', (e) => {
    if (e.button !== 0) return;
    tl.setPointerCapture(e.pointerId);
    seekFromPointer(e);
  });
  tl.addEventListener('pointermove', (e) => {
    if (tl.hasPointerCapture(e.pointerId)) seekFromPointer(e);
  });

  document.addEventListener('keydown', onKey);
  window.addEventListener('hashchange', () => {
    const id = eventFromHash();
    if (id !== null) openEvent(id, { updateHash: false });
  });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') fetchList();
    else {
      clearTimeout(page.pollTimer);
      page.pollTimer = null;
    }
  });
  setInterval(() => { if (document.visibilityState !== 'hidden') fetchCameras(); }, CAMERAS_POLL_MS);

  page.socket = startAlerts({
    banner: $('#alert-banner'),
    onEvent: onAlert,
    // Connected again: whatever happened meanwhile is in the store.
    onOpen: () => scheduleFetch(100),
    onState: (state) => {
      const badge = $('#alerts-state');
      badge.dataset.value = state;
      badge.textContent = state === 'live' ? 'live' : state;
      badge.title = state === 'live' ? 'New events appear as they happen' : 'Live updates are reconnecting';
    },
    onView: (ev) => openEvent(ev.id),
  });

  fetchCameras();
  fetchList().then(() => {
    const id = eventFromHash();
    if (id !== null) openEvent(id, { updateHash: false });
  });
}

if (document.body?.dataset.page === 'events') initEventsPage();
