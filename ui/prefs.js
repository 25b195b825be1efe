// This browser's view settings, for every camera: who draws the poses, which layers the browser
// draws, and the data saver. Kept in localStorage.

const PREFS_KEY = 'haven.view';

export const prefs = {
  clientOverlay: false, // true: ?overlay=client, drawn here on a canvas
  skeletons: true,
  boxes: true,
  labels: true,
  saver: false, // grid tiles always 320 px at quality 40
  showZones: false, // each camera's zones drawn over its picture (else only while edited)
};

/** The stored settings over the defaults (the data saver on where the browser asks to save data). */
export function loadPrefs() {
  prefs.saver = !!navigator.connection?.saveData;
  try { Object.assign(prefs, JSON.parse(localStorage.getItem(PREFS_KEY) || '{}')); } catch { /* defaults */ }
}

export function savePrefs() {
  localStorage.setItem(PREFS_KEY, JSON.stringify(prefs));
}
