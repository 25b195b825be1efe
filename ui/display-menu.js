// The Display menu: who draws the poses, which layers the browser draws, the data saver, the zones.

import { $ } from './dom.js';
import { tiles } from './live-state.js';
import { prefs, savePrefs } from './prefs.js';

const LAYERS = ['skeletons', 'boxes', 'labels'];

export function initDisplayMenu() {
  const menu = $('#display-menu');
  const c = {
    client: $('#opt-client'),
    skeletons: $('#opt-skeletons'),
    boxes: $('#opt-boxes'),
    labels: $('#opt-labels'),
    saver: $('#opt-saver'),
    zones: $('#opt-zones'),
  };
  const show = () => {
    c.client.checked = prefs.clientOverlay;
    for (const k of LAYERS) c[k].checked = prefs[k];
    c.saver.checked = prefs.saver;
    c.zones.checked = prefs.showZones;
    $('#opt-layers').disabled = !prefs.clientOverlay;
    document.body.dataset.overlay = prefs.clientOverlay ? 'client' : 'server';
  };
  show();
  c.client.addEventListener('change', () => {
    prefs.clientOverlay = c.client.checked;
    savePrefs();
    show();
    // Pictures without drawings from now on (or with them again): every socket is reopened.
    for (const t of tiles.values()) {
      t.player.refresh();
      t.drawPoses();
    }
  });
  for (const k of LAYERS) {
    c[k].addEventListener('change', () => {
      prefs[k] = c[k].checked;
      savePrefs();
      for (const t of tiles.values()) t.drawPoses(); // no round trip: the next frames keep it
    });
  }
  c.saver.addEventListener('change', () => {
    prefs.saver = c.saver.checked;
    savePrefs();
    for (const t of tiles.values()) t.player.refresh();
  });
  c.zones.addEventListener('change', () => {
    prefs.showZones = c.zones.checked;
    savePrefs();
    for (const t of tiles.values()) t.zoneEditor.render();
  });
  // Closes on a click elsewhere and on Escape.
  document.addEventListener('click', (ev) => {
    if (menu.open && !menu.contains(ev.target)) menu.open = false;
  });
  menu.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Escape' || !menu.open) return;
    ev.preventDefault();
    menu.open = false;
    $('summary', menu).focus();
  });
}
