// The events page: the stored events with their snapshots, filters kept in the URL, a clip player
// that steps frame by frame with the fall marked on its timeline, live updates from /ws/alerts.

import { startAlerts } from './alerts.js';
import { animate, frameCount, goToEvent, placeMarkers, renderTime, seekFrame, seekFromPointer, stepFrames, togglePlay, video } from './clip-player.js';
import { $, toast } from './dom.js';
import { closeViewer, openEvent } from './event-viewer.js';
import { fetchCameras, fetchList, onAlert, renderCameraOptions, scheduleFetch } from './events-list.js';
import { page } from './events-state.js';

const CAMERAS_POLL_MS = 15000;

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
  page.filters.zone = q.get('zone') ?? '';
  page.filters.since = q.get('since') ?? '';
  $('#f-kind').value = page.filters.kind;
  $('#f-since').value = page.filters.since;
  if ($('#f-since').value !== page.filters.since) page.filters.since = '';
  renderCameraOptions();
}

function writeUrl() {
  const url = new URL(location.href);
  for (const [k, key] of [['camera', 'camera'], ['kind', 'kind'], ['class', 'cls'], ['zone', 'zone'], ['since', 'since']]) {
    if (page.filters[key]) url.searchParams.set(k, page.filters[key]);
    else url.searchParams.delete(k);
  }
  history.replaceState(null, '', url);
}

function eventFromHash() {
  const m = /^#event=(\d+)$/.exec(location.hash);
  return m ? Number(m[1]) : null;
}

export function initEventsPage() {
  readUrl();
  const onFilter = () => {
    page.filters.camera = $('#f-camera').value;
    page.filters.kind = $('#f-kind').value;
    page.filters.cls = $('#f-class').value;
    page.filters.zone = $('#f-zone').value;
    page.filters.since = $('#f-since').value;
    writeUrl();
    fetchList();
  };
  for (const id of ['#f-camera', '#f-kind', '#f-class', '#f-zone', '#f-since']) $(id).addEventListener('change', onFilter);
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
