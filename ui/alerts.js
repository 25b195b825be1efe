// Fall alerts, on both pages: one socket to /ws/alerts per page, reconnecting with backoff, and a
// dismissable banner line per fall.

import { ackMarks } from './ack.js';
import { storedToken } from './api.js';
import { $, el } from './dom.js';
import { reasonLabel } from './event-labels.js';
import { fmt } from './format.js';

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;
const STABLE_MS = 5000; // a socket that stayed open this long resets the backoff
const DISMISSED_KEY = 'haven.dismissed-alerts';

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

export function eventKey(ev) {
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
      ' ',
      ...ackMarks(ev, (acked) => this.onEvent(acked)),
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
