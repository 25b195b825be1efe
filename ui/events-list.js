// The events page's list: the stored events (GET /api/events) as the filters choose them, read
// again while clips are being finished, and the events pushed by /ws/alerts shown at once.

import { ackMarks } from './ack.js';
import { getJson, withToken } from './api.js';
import { $, el } from './dom.js';
import { clipLabel, clipState, eventLabel, reasonLabel } from './event-labels.js';
import { openEvent, showEvent } from './event-viewer.js';
import { page } from './events-state.js';
import { fmt } from './format.js';

const LIST_LIMIT = 200;
const CLIP_POLL_MS = 2500; // while a listed event waits for its clip
export const CLIP_WAIT_MS = 120000; // how long after the last alert the page keeps waiting for clips
const RETRY_MS = 3000;

/** Whether the filters ({ camera, kind, cls, zone, since: seconds back }) keep the event, at `now` (s). */
export function matchesFilters(ev, f, now = Date.now() / 1000) {
  if (f.camera && ev.camera_id !== f.camera) return false;
  if (f.kind && ev.kind !== f.kind) return false;
  if (f.cls && ev.class !== f.cls) return false;
  if (f.zone && !(ev.zones ?? []).includes(f.zone)) return false;
  if (f.since && ev.started_at < now - Number(f.since)) return false;
  return true;
}

/** GET /api/events's query for the filters, at `now` (s). */
export function listQuery(f, now = Date.now() / 1000) {
  const q = new URLSearchParams();
  if (f.camera) q.set('camera', f.camera);
  if (f.kind) q.set('kind', f.kind);
  if (f.cls) q.set('class', f.cls);
  if (f.zone) q.set('zone', f.zone);
  if (f.since) q.set('since', String(Math.floor(now - Number(f.since))));
  q.set('limit', String(LIST_LIMIT));
  return q;
}

/** The page's summary: "3 falls on door in bed", "200 of 512 events (car)". */
export function summaryText(shown, total, f) {
  const n = Math.max(shown, total);
  const noun = { fall: ['fall', 'falls'], person_detected: ['person event', 'person events'], object_detected: ['object event', 'object events'] }[f.kind] ?? ['event', 'events'];
  const what = `${noun[n === 1 ? 0 : 1]}${f.cls ? ` (${f.cls})` : ''}${f.camera ? ` on ${f.camera}` : ''}${f.zone ? ` in ${f.zone}` : ''}`;
  return total > shown ? `${shown} of ${total} ${what}` : `${shown} ${what}`;
}

function setBanner(message) {
  const b = $('#banner');
  b.hidden = !message;
  b.textContent = message || '';
}

export async function fetchList() {
  clearTimeout(page.fetchTimer);
  page.fetchTimer = null;
  const seq = ++page.fetchSeq;
  const list = $('#event-list');
  list.setAttribute('aria-busy', 'true');
  try {
    const data = await getJson(`/api/events?${listQuery(page.filters)}`);
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

export function scheduleFetch(ms = 300) {
  clearTimeout(page.fetchTimer);
  page.fetchTimer = setTimeout(fetchList, ms);
}

/** While some listed event still waits for its clip (recently), read the list again now and then. */
export function schedulePoll() {
  clearTimeout(page.pollTimer);
  page.pollTimer = null;
  if (document.visibilityState === 'hidden' || Date.now() > page.clipWaitUntil) return;
  const waiting = page.events.some((e) => e.phase === 'start' || clipState(e) === 'recording' || !e.snapshot_path);
  if (waiting) page.pollTimer = setTimeout(fetchList, CLIP_POLL_MS);
}

export async function fetchCameras() {
  try {
    const data = await getJson('/api/cameras');
    for (const c of data?.cameras ?? []) {
      page.cameras.add(c.camera_id);
      for (const z of c.zones ?? []) page.zones.add(z.name);
    }
    renderCameraOptions();
  } catch { /* the list fetch reports the outage */ }
}

export function renderCameraOptions() {
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
  renderZoneOptions();
}

/** The zone filter: every zone of the cameras and of the events listed (and the one chosen). */
function renderZoneOptions() {
  for (const ev of page.events) for (const z of ev.zones ?? []) page.zones.add(z);
  if (page.filters.zone) page.zones.add(page.filters.zone);
  const select = $('#f-zone');
  if (!select) return;
  const names = ['', ...[...page.zones].sort((a, b) => a.localeCompare(b))];
  const have = [...select.options].map((o) => o.value);
  if (names.join('\n') !== have.join('\n')) {
    select.replaceChildren(...names.map((z) => el('option', { value: z, text: z || 'All zones' })));
  }
  select.value = page.filters.zone;
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

function rowSignature(ev) {
  return [ev.phase, ev.ended_at, ev.clip_status, ev.clip_path, ev.clip_error, ev.snapshot_path, ev.score, ev.acknowledged_at, ev.long_lie].join('|');
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
        ev.zones?.length ? el('span', { class: 'ev-zones', title: 'The zones it started in', text: `in ${ev.zones.join(', ')}` }) : null,
        el('span', { class: 'ev-clip', dataset: { clip: clipState(ev) }, text: clipLabel(ev), title: ev.clip_error ?? '' }),
        ...ackMarks(ev, onAlert))),
  );
}

export function renderList() {
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
  $('#summary').textContent = summaryText(ordered.length, page.total, page.filters);
  // The store answers at most LIST_LIMIT events, newest first.
  $('#list-limit').hidden = page.events.length < LIST_LIMIT;
  renderCameraOptions();
}

/** An event pushed by /ws/alerts: shown at once, then the list is read again from the store. */
export function onAlert(ev) {
  page.clipWaitUntil = Date.now() + CLIP_WAIT_MS;
  page.cameras.add(ev.camera_id);
  if (ev.id !== null && ev.id !== undefined && matchesFilters(ev, page.filters)) {
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
