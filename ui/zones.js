// A camera's zones (docs/zones.md): named polygons of the frame in 0..1 of its width and height,
// drawn over the tile's picture (semi-transparent, a colour per kind) while they are edited, and
// always with Display → Show zones. The editor: click on the picture to add corners, click the first
// corner (or Close shape) to close the polygon, name it, pick its kind, Save (PATCH the camera's
// `zones`, live, written to the settings file). The pure parts (letterbox arithmetic, polygon
// building, the rules) touch no DOM and are unit-tested (tests/ui/zones.test.mjs).

import { api } from './api.js';
import { $, toast } from './dom.js';
import { prefs } from './prefs.js';

export const KINDS = ['no_falls', 'motion_mask', 'watch'];
export const KIND_LABELS = {
  no_falls: 'No falls (a bed, a sofa)',
  motion_mask: 'Motion mask (a clock, a tree, a TV)',
  watch: 'Watch (events only here)',
};
export const KIND_COLORS = { no_falls: '#4aa3ff', motion_mask: '#a0a0a0', watch: '#ffb020' };
export const MAX_POINTS = 64;
export const MAX_ZONES = 32;
// A click this close (in 0..1 of the frame) to the first corner closes the polygon.
export const CLOSE_RADIUS = 0.03;
const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const SVG_NS = 'http://www.w3.org/2000/svg';

/**
 * Where a picture of `frameW` x `frameH` lies in a box of `boxW` x `boxH` that shows it whole
 * (object-fit: contain): { x, y, w, h } in the box's pixels.
 */
export function pictureRect(boxW, boxH, frameW, frameH) {
  if (!(boxW > 0 && boxH > 0 && frameW > 0 && frameH > 0)) return { x: 0, y: 0, w: Math.max(boxW, 0), h: Math.max(boxH, 0) };
  const scale = Math.min(boxW / frameW, boxH / frameH);
  const w = frameW * scale;
  const h = frameH * scale;
  return { x: (boxW - w) / 2, y: (boxH - h) / 2, w, h };
}

const round4 = (v) => Math.round(v * 1e4) / 1e4;
const clamp01 = (v) => Math.min(1, Math.max(0, v));

/** A point of the box (pixels) as a point of the frame, [x, y] in 0..1 (clamped to the picture). */
export function toFrame(bx, by, rect) {
  if (!(rect.w > 0 && rect.h > 0)) return [0, 0];
  return [round4(clamp01((bx - rect.x) / rect.w)), round4(clamp01((by - rect.y) / rect.h))];
}

/** A point of the frame ([x, y] in 0..1) as a point of the box (pixels). */
export function toBox([x, y], rect) {
  return [rect.x + x * rect.w, rect.y + y * rect.h];
}

/** A polygon being drawn: its corners so far, and whether it is closed. */
export function newDraft() {
  return { points: [], closed: false };
}

/**
 * The draft with a click at `point` (frame, 0..1): a click near the first corner of three or more
 * closes it; else a corner is added (at most MAX_POINTS). A closed draft takes no more.
 */
export function addPoint(draft, point) {
  if (draft.closed) return draft;
  const [first] = draft.points;
  if (draft.points.length >= 3 && Math.hypot(point[0] - first[0], point[1] - first[1]) <= CLOSE_RADIUS) {
    return { points: draft.points, closed: true };
  }
  if (draft.points.length >= MAX_POINTS) return draft;
  return { points: [...draft.points, point], closed: false };
}

/** The draft closed, if it has three corners or more. */
export function closeDraft(draft) {
  return draft.points.length >= 3 ? { points: draft.points, closed: true } : draft;
}

/** The draft without its last corner (open again). */
export function undoPoint(draft) {
  return { points: draft.points.slice(0, -1), closed: false };
}

/** What is wrong with `zone` among `others` (the camera's other zones), or null: the server's rules. */
export function zoneProblem(zone, others = []) {
  if (!NAME_RE.test(zone.name ?? '')) return 'a name of letters, digits, "_", "-" and "." (at most 64)';
  if (others.some((z) => z.name === zone.name)) return `another zone is named "${zone.name}"`;
  if (!KINDS.includes(zone.kind)) return `a kind: ${KINDS.join(', ')}`;
  const n = zone.points?.length ?? 0;
  if (n < 3) return 'at least 3 corners';
  if (n > MAX_POINTS) return `at most ${MAX_POINTS} corners`;
  if (!zone.points.every((p) => p.every((v) => Number.isFinite(v) && v >= 0 && v <= 1))) return 'corners inside the picture';
  if (others.length >= MAX_ZONES) return `at most ${MAX_ZONES} zones a camera`;
  return null;
}

/** An SVG `points` attribute: frame points (0..1) in a `w` x `h` viewBox. */
export function svgPoints(points, w, h) {
  return points.map(([x, y]) => `${round4(x * w)},${round4(y * h)}`).join(' ');
}

/** One tile's zones: drawn over its picture, and the editor under it. */
export class ZoneEditor {
  constructor(tile) {
    this.tile = tile;
    this.svg = $('.zones', tile.el);
    this.editing = false;
    this.zones = []; // the zones being edited (saved ones plus those added, minus those deleted)
    this.draft = newDraft();
    this.panel = this.buildPanel();
    tile.media.after(this.panel);
  }

  buildPanel() {
    const p = document.createElement('div');
    p.className = 'zone-editor';
    p.hidden = true;
    p.innerHTML = `
      <p class="z-help">Click on the picture to add corners; click the first corner (or Close shape) to close it. Then name it, pick its kind and Save.</p>
      <div class="z-draft">
        <label>Name <input class="z-name" maxlength="64" placeholder="bed" autocomplete="off"></label>
        <label>Kind <select class="z-kind">${KINDS.map((k) => `<option value="${k}">${KIND_LABELS[k]}</option>`).join('')}</select></label>
        <button type="button" class="z-close">Close shape</button>
        <button type="button" class="z-undo">Undo corner</button>
        <button type="button" class="z-add">Add zone</button>
      </div>
      <p class="z-error" role="alert" hidden></p>
      <ul class="z-list" aria-label="Zones"></ul>
      <div class="z-actions"><button type="button" class="z-save primary">Save</button> <button type="button" class="z-cancel">Cancel</button></div>`;
    const id = this.tile.id;
    $('.z-name', p).setAttribute('aria-label', `Zone name for ${id}`);
    $('.z-kind', p).setAttribute('aria-label', `Zone kind for ${id}`);
    $('.z-close', p).addEventListener('click', () => this.setDraft(closeDraft(this.draft)));
    $('.z-undo', p).addEventListener('click', () => this.setDraft(undoPoint(this.draft)));
    $('.z-add', p).addEventListener('click', () => this.addDraft());
    $('.z-save', p).addEventListener('click', () => this.save());
    $('.z-cancel', p).addEventListener('click', () => this.stop());
    return p;
  }

  /** Opens the editor on the camera's saved zones, or closes it. */
  toggle() {
    if (this.editing) this.stop();
    else this.start();
  }

  start() {
    this.editing = true;
    this.zones = structuredClone(this.tile.status?.zones ?? []);
    this.draft = newDraft();
    this.panel.hidden = false;
    this.tile.el.dataset.zonesEditing = 'true';
    this.showError('');
    this.renderList();
    this.render();
  }

  stop() {
    this.editing = false;
    this.draft = newDraft();
    this.panel.hidden = true;
    delete this.tile.el.dataset.zonesEditing;
    this.render();
  }

  /** A click on the picture: a corner while editing (true: the click is taken). */
  click(ev) {
    if (!this.editing) return false;
    const box = this.tile.media.getBoundingClientRect();
    const rect = pictureRect(box.width, box.height, ...this.frameSize());
    this.setDraft(addPoint(this.draft, toFrame(ev.clientX - box.left, ev.clientY - box.top, rect)));
    return true;
  }

  setDraft(draft) {
    this.draft = draft;
    this.render();
  }

  /** The picture's size (its proportions are what matter): the frame shown, else the status's. */
  frameSize() {
    const img = this.tile.img;
    if (img?.naturalWidth > 0 && img.naturalHeight > 0) return [img.naturalWidth, img.naturalHeight];
    const s = this.tile.status;
    return s?.width > 0 && s?.height > 0 ? [s.width, s.height] : [16, 9];
  }

  /** The closed draft, named and of its kind, into the list; false (and why, shown) if it cannot be. */
  addDraft() {
    if (!this.draft.points.length) return true; // nothing drawn: nothing to add
    if (!this.draft.closed) return this.showError('Close the shape first (click its first corner).');
    const zone = { name: $('.z-name', this.panel).value.trim(), kind: $('.z-kind', this.panel).value, points: this.draft.points };
    const problem = zoneProblem(zone, this.zones);
    if (problem) return this.showError(`The zone needs ${problem}.`);
    this.zones.push(zone);
    this.draft = newDraft();
    $('.z-name', this.panel).value = '';
    this.showError('');
    this.renderList();
    this.render();
    return true;
  }

  /** PATCHes the camera's zones (a closed draft added first); closes the editor once saved. */
  async save() {
    if (!this.addDraft()) return;
    const button = $('.z-save', this.panel);
    button.disabled = true;
    try {
      const status = await api('PATCH', `/api/cameras/${encodeURIComponent(this.tile.id)}`, { zones: this.zones });
      if (status?.camera_id) this.tile.update(status);
      toast(`${this.tile.id}: zones saved`);
      this.stop();
    } catch (e) {
      this.showError(e.message);
      toast(`${this.tile.id}: ${e.message}`, 'error');
    } finally {
      button.disabled = false;
    }
  }

  showError(message) {
    const p = $('.z-error', this.panel);
    p.textContent = message;
    p.hidden = !message;
    return false;
  }

  renderList() {
    const list = $('.z-list', this.panel);
    list.replaceChildren(...this.zones.map((z, i) => {
      const li = document.createElement('li');
      li.dataset.zone = z.name;
      const swatch = document.createElement('span');
      swatch.className = 'z-swatch';
      swatch.style.background = KIND_COLORS[z.kind];
      const del = document.createElement('button');
      del.type = 'button';
      del.className = 'z-delete icon danger';
      del.textContent = '✕';
      del.setAttribute('aria-label', `Delete zone ${z.name}`);
      del.addEventListener('click', () => {
        this.zones.splice(i, 1);
        this.renderList();
        this.render();
      });
      li.append(swatch, ` ${z.name} · ${KIND_LABELS[z.kind] ?? z.kind} `, del);
      return li;
    }));
  }

  /** The zones over the picture: those edited and the draft while editing; the saved ones with Display → Show zones. */
  render() {
    const zones = this.editing ? this.zones : (prefs.showZones ? this.tile.status?.zones ?? [] : []);
    const show = this.editing || zones.length > 0;
    this.svg.toggleAttribute('hidden', !show); // an SVG element has no .hidden property
    if (!show) return;
    const [w, h] = this.frameSize();
    this.svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
    const shapes = zones.map((z) => {
      const poly = document.createElementNS(SVG_NS, 'polygon');
      poly.setAttribute('points', svgPoints(z.points, w, h));
      poly.setAttribute('class', `zone kind-${z.kind}`);
      poly.style.setProperty('--zone', KIND_COLORS[z.kind] ?? '#fff');
      poly.dataset.zone = z.name;
      return poly;
    });
    if (this.editing && this.draft.points.length) {
      const d = document.createElementNS(SVG_NS, this.draft.closed ? 'polygon' : 'polyline');
      d.setAttribute('points', svgPoints(this.draft.points, w, h));
      d.setAttribute('class', 'zone-draft');
      shapes.push(d);
      const [x, y] = this.draft.points[0];
      const first = document.createElementNS(SVG_NS, 'circle');
      first.setAttribute('cx', x * w);
      first.setAttribute('cy', y * h);
      first.setAttribute('r', CLOSE_RADIUS * Math.min(w, h));
      first.setAttribute('class', 'zone-first');
      shapes.push(first);
    }
    this.svg.replaceChildren(...shapes);
    this.tile.el.dataset.zones = String(zones.length);
  }
}
