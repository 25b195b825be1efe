// The live page's grid: one tile per camera in the server's order, the focus view, the camera
// list read every POLL_MS (and the engine and overlay style once), sockets closed while the tab
// is hidden.

import { api } from './api.js';
import { $, toast } from './dom.js';
import { server, tiles, view, visible } from './live-state.js';
import { Tile } from './tile.js';

const POLL_MS = 2000; // how often /api/cameras is read for the stats
const OFFSCREEN_MARGIN_PX = 100; // a tile this far out of view counts as out of view

let lastListOk = true;
let pollTimer = null;
let refreshing = null;
let soonTimer = null;
let removeCamera = () => {}; // asks before removing a camera: set by initGrid
let observers = null;

/** Tiles out of view stream nothing (on a phone, most of a grid is); resized ones redraw and re-ask. */
function makeObservers() {
  const tileOf = (target) => tiles.get(target.closest('.tile')?.dataset.cameraId);
  const screen = new IntersectionObserver((entries) => {
    for (const e of entries) tileOf(e.target)?.setOnScreen(e.isIntersecting);
  }, { rootMargin: `${OFFSCREEN_MARGIN_PX}px` });
  // A tile whose picture changes size redraws its poses and, once the size has settled, asks for the
  // rendition that fits.
  const resize = new ResizeObserver((entries) => {
    for (const e of entries) {
      const t = tileOf(e.target);
      if (!t) continue;
      t.drawPoses();
      t.player.refresh({ soon: true });
    }
  });
  return { screen, resize };
}

const actions = {
  setFocus: (id) => setFocus(id),
  toggleFullscreen: (tile) => toggleFullscreen(tile),
  confirmRemove: (id) => removeCamera(id),
  refreshSoon: () => refreshSoon(),
  observe: (media) => {
    observers ??= makeObservers();
    observers.resize.observe(media);
    observers.screen.observe(media);
  },
  unobserve: (media) => {
    observers?.resize.unobserve(media);
    observers?.screen.unobserve(media);
  },
};

/** `confirmRemove(id)`: how the page asks before removing a camera. */
export function initGrid({ confirmRemove }) {
  removeCamera = confirmRemove;
}

function applyList(list) {
  const seen = new Set();
  const added = [];
  for (const status of list) {
    seen.add(status.camera_id);
    let tile = tiles.get(status.camera_id);
    if (tile) {
      tile.update(status);
    } else {
      tile = new Tile(status, actions);
      tiles.set(tile.id, tile);
      added.push(tile);
    }
  }
  for (const [id, tile] of tiles) {
    if (!seen.has(id)) {
      tile.destroy();
      tiles.delete(id);
    }
  }
  // Keep the server's order.
  const order = list.map((s) => s.camera_id);
  const ordered = new Map(order.map((id) => [id, tiles.get(id)]));
  tiles.clear();
  for (const [id, t] of ordered) tiles.set(id, t);
  if (view.focus && !tiles.has(view.focus)) view.focus = null;
  // Every tile takes the shape of the first camera that has reported its size.
  const sized = list.find((st) => st.width > 0 && st.height > 0);
  if (sized) $('#grid').style.setProperty('--aspect', `${sized.width} / ${sized.height}`);
  layout();
  // New tiles connect once they are in place: their size says which rendition they need.
  for (const tile of added) {
    if (tiles.has(tile.id)) tile.resume();
  }
  renderSummary();
}

/** A camera added or changed here, shown before the next poll. */
export function addOrUpdate(status) {
  const list = [...tiles.values()].map((t) => t.status);
  const i = list.findIndex((s) => s.camera_id === status.camera_id);
  if (i >= 0) list[i] = status;
  else list.push(status);
  applyList(list);
}

/** A camera removed here, gone before the next poll. */
export function removeLocal(id) {
  applyList([...tiles.values()].map((t) => t.status).filter((s) => s.camera_id !== id));
}

/** The focus button of a tile, as the tile is focused or not. */
function renderFocusButton(t, on) {
  t.el.dataset.focused = String(on);
  const b = $('.c-focus', t.el);
  b.textContent = on ? '▦' : '⤢';
  b.title = on ? 'Back to the grid (Esc)' : 'Focus (Enter)';
  b.setAttribute('aria-label', on ? 'Back to the grid' : `Focus ${t.id}`);
  b.setAttribute('aria-pressed', String(on));
}

/** The camera picker: the grid, then every camera by its number key. */
function renderViewSelect() {
  const select = $('#view-select');
  const options = ['', ...tiles.keys()];
  const have = [...select.options].map((o) => o.value);
  if (options.join('\n') !== have.join('\n')) {
    select.replaceChildren(...options.map((id, i) => {
      const o = document.createElement('option');
      o.value = id;
      o.textContent = id ? `${i}. ${id}` : 'All cameras (grid)';
      return o;
    }));
  }
  select.value = view.focus ?? '';
}

function layout() {
  const grid = $('#grid');
  const stage = $('#stage');
  const strip = $('#tiles');
  grid.dataset.mode = view.focus ? 'focus' : 'grid';
  const want = [...tiles.values()].filter((t) => t.id !== view.focus).map((t) => t.el);
  const current = [...strip.children];
  // Move nodes only when needed: moving a node takes the keyboard focus away from it.
  if (want.length !== current.length || want.some((el, i) => el !== current[i])) {
    const active = document.activeElement;
    for (const el of want) strip.appendChild(el);
    if (active && active !== document.activeElement && active.isConnected) active.focus({ preventScroll: true });
  }
  const focused = view.focus ? tiles.get(view.focus) : null;
  if (focused && stage.firstElementChild !== focused.el) {
    const hadFocus = focused.el.contains(document.activeElement);
    stage.replaceChildren(focused.el);
    if (hadFocus) focused.el.focus({ preventScroll: true });
  } else if (!focused && stage.firstElementChild) {
    stage.replaceChildren();
  }
  for (const t of tiles.values()) renderFocusButton(t, t.id === view.focus);
  grid.style.setProperty('--count', String(Math.max(1, tiles.size)));
  $('#empty').hidden = tiles.size > 0;
  // The focused camera full size, the others small: reopen the sockets whose rendition changed.
  for (const t of tiles.values()) t.player.refresh();
  renderViewSelect();
}

export function setFocus(id) {
  view.focus = id && tiles.has(id) ? id : null;
  const url = new URL(location.href);
  url.hash = view.focus ? `focus=${encodeURIComponent(view.focus)}` : '';
  history.replaceState(null, '', url.hash ? url : url.pathname + url.search);
  layout();
  const t = view.focus && tiles.get(view.focus);
  if (t && !t.el.contains(document.activeElement)) t.el.focus({ preventScroll: true });
}

export function focusFromHash() {
  const m = /^#focus=(.+)$/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : null;
}

/** The next (or previous) camera: focused if one is, else the keyboard focus moves to its tile. */
export function step(delta) {
  const ids = [...tiles.keys()];
  if (!ids.length) return;
  if (view.focus) {
    const i = ids.indexOf(view.focus);
    setFocus(ids[(i + delta + ids.length) % ids.length]);
  } else {
    const current = document.activeElement?.closest?.('.tile');
    const i = current ? ids.indexOf(current.dataset.cameraId) : -1;
    const next = tiles.get(ids[(i + delta + ids.length) % ids.length]);
    next?.el.focus();
  }
}

export function toggleFullscreen(tile) {
  if (document.fullscreenElement) {
    document.exitFullscreen().catch(() => {});
  } else if (tile?.media.requestFullscreen) {
    tile.media.requestFullscreen().catch((e) => toast(`Fullscreen refused: ${e.message}`, 'error'));
  }
}

function renderSummary() {
  const all = [...tiles.values()];
  const streaming = all.filter((t) => t.status?.state === 'streaming').length;
  const parts = [`${all.length} camera${all.length === 1 ? '' : 's'}`, `${streaming} streaming`];
  const { engine } = server;
  if (engine && Array.isArray(engine.models) && engine.models.length) {
    parts.push(engine.models.map((m) => `${m.name}: ${m.description}`).join(' · '));
  } else if (engine) {
    parts.push(engine.loaded ? `pose: ${engine.name}` : 'pose: not loaded');
  }
  $('#summary').textContent = parts.join(' · ');
}

function banner(message) {
  const el = $('#banner');
  el.hidden = !message;
  el.textContent = message || '';
}

/**
 * The skeleton and colours the browser draws with, the server's own (GET /api/overlay); read until
 * it has been once. Returns what stops the browser from drawing poses, or null.
 */
async function loadOverlay() {
  if (server.overlay) return null;
  try {
    server.overlay = await api('GET', '/api/overlay');
  } catch (e) {
    return `Cannot draw poses in this browser: the server did not say how (${e.message}); retrying…`;
  }
  for (const t of tiles.values()) t.drawPoses();
  return null;
}

/** Reads the camera list (and, the first time, the engine and the overlay style) and shows it. */
export async function refresh() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    try {
      const data = await api('GET', '/api/cameras');
      const overlayProblem = await loadOverlay();
      applyList(Array.isArray(data?.cameras) ? data.cameras : []);
      if (!lastListOk) {
        // The server is back: give every socket a fresh try instead of waiting out its backoff.
        for (const t of tiles.values()) t.player.reconnectNow();
      }
      lastListOk = true;
      banner(overlayProblem);
      if (!server.engine) {
        server.engine = await api('GET', '/api/engine').catch(() => null);
        for (const t of tiles.values()) t.renderModels();
      }
      renderSummary();
    } catch (e) {
      lastListOk = false;
      banner(`Cannot reach the server (${e.message}); retrying…`);
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

export function schedulePoll(ms = POLL_MS) {
  clearTimeout(pollTimer);
  pollTimer = visible() ? setTimeout(poll, ms) : null;
}

async function poll() {
  await refresh();
  schedulePoll();
}

export function refreshSoon() {
  clearTimeout(soonTimer);
  soonTimer = setTimeout(() => refresh(), 150);
}

/** A hidden tab costs the server nothing: no sockets, no polling; shown again, everything resumes. */
export function onVisibility() {
  if (visible()) {
    for (const t of tiles.values()) t.resume();
    server.engine = null;
    poll();
  } else {
    clearTimeout(pollTimer);
    pollTimer = null;
    for (const t of tiles.values()) t.player.stop('paused');
  }
}
