// HAVEN web UI, the live page: a grid of every camera, a focus view, per-camera controls.
// Plain ES modules, no build step, nothing fetched from anywhere but this server.
//
// Frames arrive over one WebSocket per camera (player.js); each tile (tile.js) asks for the
// rendition it needs (renditions.js): grid tiles a small one, the focused (or fullscreen) camera
// the full frame. With "draw in this browser" on, tiles ask for pictures without drawings and draw
// the poses from the metadata on a canvas (overlay.js), with the server's skeleton and colours
// (GET /api/overlay). Falls raise a banner from /ws/alerts (alerts.js, shared with the events page).

import { storedToken, TOKEN_KEY } from './api.js';
import { startAlerts } from './alerts.js';
import { confirmRemove, initCameraDialogs, openAdd } from './camera-dialogs.js';
import { initDisplayMenu } from './display-menu.js';
import { $, toast } from './dom.js';
import { focusFromHash, initGrid, onVisibility, refresh, schedulePoll, setFocus, step, toggleFullscreen } from './grid.js';
import { tiles, view } from './live-state.js';
import { loadPrefs } from './prefs.js';
import { loadSession } from './session.js';

function updateTokenButton() {
  $('#token-btn').hidden = !storedToken();
}

function onKey(ev) {
  if (ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey) return;
  if (document.querySelector('dialog[open]')) return;
  const t = ev.target;
  if (t instanceof HTMLElement && t.closest('input, select, textarea, [contenteditable]')) return;
  const ids = [...tiles.keys()];
  if (/^[1-9]$/.test(ev.key)) {
    const id = ids[Number(ev.key) - 1];
    if (id) setFocus(id);
  } else if (ev.key === 'Escape' || ev.key === 'g') {
    if (!document.fullscreenElement) setFocus(null);
  } else if (ev.key === 'ArrowRight' || ev.key === 'ArrowDown') {
    step(1);
  } else if (ev.key === 'ArrowLeft' || ev.key === 'ArrowUp') {
    step(-1);
  } else if (ev.key === 'f') {
    const id = view.focus ?? document.activeElement?.closest?.('.tile')?.dataset.cameraId;
    toggleFullscreen(id && tiles.get(id));
  } else if (ev.key === 'a') {
    openAdd();
  } else if (ev.key === '?') {
    $('#help-dialog').showModal();
  } else {
    return;
  }
  ev.preventDefault();
}

/** Falls, from every camera: marks the tile at once; its frames' metadata keeps the mark while the fall lasts. */
function onAlert(ev) {
  const t = ev.kind === 'fall' && tiles.get(ev.camera_id);
  if (!t) return;
  if (ev.phase === 'end' && ev.id != null) {
    t.endedFalls.add(ev.id);
    if (t.endedFalls.size > 100) t.endedFalls.delete(t.endedFalls.values().next().value);
  }
  t.el.dataset.alarm = String(ev.phase === 'start');
}

async function init() {
  await loadSession();
  loadPrefs();
  initGrid({ confirmRemove });
  for (const dialog of document.querySelectorAll('dialog')) {
    for (const b of dialog.querySelectorAll('[data-close]')) b.addEventListener('click', () => dialog.close());
  }
  initCameraDialogs();
  $('#help-btn').addEventListener('click', () => $('#help-dialog').showModal());
  $('#token-btn').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    updateTokenButton();
    toast('Token forgotten');
  });
  $('#view-select').addEventListener('change', (ev) => setFocus(ev.target.value || null));
  initDisplayMenu();
  // A camera put fullscreen gets the full frame; back in its tile, the small one again.
  document.addEventListener('fullscreenchange', () => { for (const t of tiles.values()) t.player.refresh(); });
  document.addEventListener('keydown', onKey);
  document.addEventListener('visibilitychange', onVisibility);
  window.addEventListener('online', () => { for (const t of tiles.values()) t.player.reconnectNow(); });
  window.addEventListener('pagehide', () => { for (const t of tiles.values()) t.player.stop('closed'); });
  window.addEventListener('pageshow', (ev) => { if (ev.persisted) onVisibility(); });
  window.addEventListener('hashchange', () => setFocus(focusFromHash()));
  setInterval(() => {
    const now = performance.now();
    for (const t of tiles.values()) t.tick(now);
  }, 500);
  updateTokenButton();
  window.addEventListener('haven-token', updateTokenButton);
  // A banner until dismissed (kept open in hidden tabs too; it is tiny).
  startAlerts({ banner: $('#alert-banner'), onEvent: onAlert });

  view.focus = focusFromHash(); // the focused camera's first socket already asks for the full frame
  refresh().then(() => {
    const want = focusFromHash();
    if (want) setFocus(want);
    schedulePoll();
  });
}

if (globalThis.document) init();
