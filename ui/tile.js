// One camera's tile: its picture (the newest frame from its socket, shown through an object URL
// revoked once the next one has replaced it, or a data: URL for a text frame; while a frame is
// still decoding only the newest one is kept), the poses drawn over it by the browser, its stats
// and its controls.

import { api, withToken } from './api.js';
import { $, toast } from './dom.js';
import { server, view, visible } from './live-state.js';
import { drawMotion } from './motion.js';
import { drawPoses } from './overlay.js';
import { Player } from './player.js';
import { prefs } from './prefs.js';
import { chooseRendition } from './renditions.js';
import { modelsOf, renderModels, withModel } from './tile-models.js';
import { showLink, showReceived, showStatus, staleAfterMs } from './tile-status.js';
import { ZoneEditor } from './zones.js';

const MOTION_KEY = 'haven.motion.';
// A tile scrolled out of view closes its socket after this long, and reopens it when it comes back.
const OFFSCREEN_PAUSE_MS = 2000;

export class Tile {
  /**
   * `actions`: what a tile asks of the page: { setFocus(id), toggleFullscreen(tile),
   * confirmRemove(id), refreshSoon(), observe(media), unobserve(media) }.
   */
  constructor(status, actions) {
    this.id = status.camera_id;
    this.actions = actions;
    this.status = null;
    this.hasFrame = false;
    this.lastFrameAt = 0;
    this.decoding = false;
    this.pending = null; // newest frame that arrived while the previous one was decoding
    this.endedFalls = new Set(); // ids of falls the alerts socket said are over
    this.frames = 0;
    this.rxFrames = 0;
    this.rxBytes = 0;
    this.rxSince = performance.now();
    this.rxFps = 0;
    this.shownUrl = null; // object URL of the picture shown (binary frames)
    this.loadingUrl = null; // … and of the one decoding
    this.loadingMeta = null;
    this.shownMeta = null; // metadata of the picture shown: the canvas draws its poses
    this.link = 'connecting';
    this.linkReason = '';
    this.onScreen = true; // until the IntersectionObserver says otherwise
    this.offTimer = null;
    this.busy = new Set(); // controls with a request in flight
    this.build();
    this.player = new Player(this, { onRemoved: () => actions.refreshSoon() });
    this.c.fps.insertAdjacentHTML('afterbegin', '<option value="">auto</option>');
    this.c.fps.value = this.player.fps;
    if (this.c.fps.value !== this.player.fps) {
      this.c.fps.value = '';
      this.player.fps = '';
    }
    this.listen();
    this.update(status);
  }

  /** The tile's element, from #tile-template, labelled for this camera. */
  build() {
    const el = $('#tile-template').content.firstElementChild.cloneNode(true);
    this.el = el;
    el.dataset.cameraId = this.id;
    el.setAttribute('aria-label', `Camera ${this.id}`);
    $('.cam-id', el).textContent = this.id;
    this.img = $('.frame', el);
    this.img.alt = `Live view of ${this.id}`;
    this.media = $('.media', el);
    this.canvas = $('.poses', el);
    this.ph = $('.placeholder', el);
    this.c = { ai: $('.c-ai', el), quality: $('.c-quality', el), fps: $('.c-fps', el), motion: $('.c-motion', el) };
    this.motionSvg = $('.motion-boxes', el);
    this.modelsEl = $('.c-models', el);
    this.modelBoxes = new Map(); // model name → its checkbox
    this.c.motion.checked = localStorage.getItem(MOTION_KEY + this.id) === '1';
    this.c.motion.setAttribute('aria-label', `Show what moves in ${this.id}`);
    $('.c-snapshot', el).href = withToken(`/api/cameras/${encodeURIComponent(this.id)}/snapshot.jpg`);
    this.c.ai.setAttribute('aria-label', `AI for ${this.id}`);
    this.c.quality.setAttribute('aria-label', `JPEG quality for ${this.id}`);
    this.c.fps.setAttribute('aria-label', `Frames per second for ${this.id} in this view`);
    $('.c-remove', el).setAttribute('aria-label', `Remove ${this.id}`);
    $('.c-snapshot', el).setAttribute('aria-label', `Snapshot of ${this.id}`);
    $('.fullscreen', el).setAttribute('aria-label', `Fullscreen ${this.id}`);
    $('.c-zones', el).setAttribute('aria-label', `Edit the zones of ${this.id}`);
    this.zoneEditor = new ZoneEditor(this);
  }

  /** The controls' and the picture's listeners. */
  listen() {
    const { el, actions } = this;
    const toggleFocus = () => actions.setFocus(view.focus === this.id ? null : this.id);
    this.c.motion.addEventListener('change', () => {
      localStorage.setItem(MOTION_KEY + this.id, this.c.motion.checked ? '1' : '0');
      if (!this.c.motion.checked) drawMotion(this.motionSvg, null);
    });
    actions.observe(this.media);
    this.img.addEventListener('load', () => this.decoded(true));
    this.img.addEventListener('error', () => this.decoded(false));
    this.c.ai.addEventListener('change', () => this.patch('ai', { ai_enabled: this.c.ai.checked }));
    this.c.quality.addEventListener('change', () => {
      const raw = this.c.quality.value;
      if (raw === '') {
        if (this.status) this.update(this.status);
        return;
      }
      this.patch('quality', { jpeg_quality: Number(raw) });
    });
    this.c.fps.addEventListener('change', () => this.player.setFps(this.c.fps.value));
    $('.c-focus', el).addEventListener('click', toggleFocus);
    $('.c-remove', el).addEventListener('click', () => actions.confirmRemove(this.id));
    $('.fullscreen', el).addEventListener('click', () => actions.toggleFullscreen(this));
    $('.c-zones', el).addEventListener('click', () => this.zoneEditor.toggle());
    this.media.addEventListener('click', (ev) => {
      if (ev.target.closest('button, a')) return;
      if (this.zoneEditor.click(ev)) return; // a zone's corner, while editing
      toggleFocus();
    });
    this.media.addEventListener('dblclick', () => {
      if (!this.zoneEditor.editing) actions.toggleFullscreen(this);
    });
    el.addEventListener('keydown', (ev) => {
      if (ev.target !== el) return;
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        toggleFocus();
      }
    });
  }

  /**
   * In view or not (with a margin): a tile out of view for OFFSCREEN_PAUSE_MS closes its socket, and
   * opens it again as soon as it is back in view (its last picture stays meanwhile).
   */
  setOnScreen(on) {
    this.onScreen = on;
    clearTimeout(this.offTimer);
    this.offTimer = null;
    if (on) {
      if (this.link === 'offscreen' && visible()) this.player.start();
      return;
    }
    this.offTimer = setTimeout(() => {
      this.offTimer = null;
      if (!this.onScreen && this.player.wanted) this.player.stop('offscreen');
    }, OFFSCREEN_PAUSE_MS);
  }

  /** Streams if the tab is visible and the tile is in view; otherwise stays closed. */
  resume() {
    if (!visible()) this.player.stop('paused');
    else if (this.onScreen) this.player.start();
    else this.player.stop('offscreen');
  }

  /** What this tile asks the server for now (width/quality null: the full frame, the camera's quality). */
  rendition() {
    return chooseRendition({
      large: view.focus === this.id || document.fullscreenElement === this.media,
      saver: prefs.saver,
      clientOverlay: prefs.clientOverlay,
      cssWidth: this.media.clientWidth,
      dpr: window.devicePixelRatio,
    });
  }

  onFrame(frame) {
    this.lastFrameAt = performance.now();
    this.frames++;
    this.rxFrames++;
    this.rxBytes += frame.bytes;
    const m = frame.metadata;
    this.el.dataset.frames = String(this.frames);
    if (m.seq !== undefined) this.el.dataset.seq = String(m.seq);
    // The camera's active events ride along with its frames: mark a fall in progress. A frame made
    // before the fall's end may arrive after its end alert (and be the camera's last, if its video
    // ended): a fall known to be over does not mark the tile again.
    const alarm = String(Array.isArray(m.events) && m.events.some((e) => e?.kind === 'fall' && !this.endedFalls.has(e.id)));
    if (this.el.dataset.alarm !== alarm) this.el.dataset.alarm = alarm;
    const moving = String(!!m.motion?.moving);
    if (this.el.dataset.moving !== moving) this.el.dataset.moving = moving;
    if (this.c.motion.checked) drawMotion(this.motionSvg, m);
    if (this.decoding) {
      this.pending = frame; // drop the older undisplayed frame
      return;
    }
    this.show(frame);
  }

  show(frame) {
    this.decoding = true;
    this.loadingMeta = frame.metadata;
    if (typeof frame.jpeg === 'string') {
      this.loadingUrl = null;
      this.img.src = `data:image/jpeg;base64,${frame.jpeg}`;
    } else {
      this.loadingUrl = URL.createObjectURL(frame.jpeg);
      this.img.src = this.loadingUrl;
    }
  }

  decoded(ok) {
    this.decoding = false;
    // The picture that was shown is gone: its object URL can go too.
    if (this.shownUrl && this.shownUrl !== this.loadingUrl) URL.revokeObjectURL(this.shownUrl);
    this.shownUrl = this.loadingUrl;
    this.loadingUrl = null;
    if (ok) {
      this.shownMeta = this.loadingMeta;
      const r = this.shownMeta?.rendition;
      const d = this.el.dataset;
      const rendition = `${this.img.naturalWidth}x${this.img.naturalHeight}`;
      if (d.rendition !== rendition) {
        d.rendition = rendition;
        this.zoneEditor.render(); // the zones follow the picture's proportions
      }
      const overlay = r?.overlay ?? 'server';
      if (d.overlay !== overlay) d.overlay = overlay;
      this.drawPoses();
    }
    this.loadingMeta = null;
    if (ok && !this.hasFrame) {
      this.hasFrame = true;
      this.img.hidden = false;
      this.render();
    }
    if (this.pending) {
      const frame = this.pending;
      this.pending = null;
      this.show(frame);
    }
  }

  /**
   * The shown picture's poses on the canvas over it, when the server sent it without drawings
   * (rendition.overlay "client"); cleared otherwise.
   */
  drawPoses() {
    const m = this.shownMeta;
    const on = prefs.clientOverlay && m?.rendition?.overlay === 'client';
    const canvas = this.canvas;
    if (!on) {
      if (!canvas.hidden) {
        canvas.hidden = true;
        canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
        delete this.el.dataset.drawn;
      }
      return;
    }
    canvas.hidden = false;
    const drawn = String(drawPoses(canvas, m, prefs, server.overlay));
    if (this.el.dataset.drawn !== drawn) this.el.dataset.drawn = drawn;
  }

  setLink(link, reason = '') {
    this.link = link;
    this.linkReason = reason || '';
    this.render();
  }

  staleAfterMs() {
    return staleAfterMs(Number(this.player.fps) || this.status?.fps || 0);
  }

  // Called every half second.
  tick(now) {
    const elapsed = now - this.rxSince;
    if (elapsed >= 1000) {
      this.rxFps = (this.rxFrames * 1000) / elapsed;
      const kBps = this.rxBytes / elapsed; // bytes per ms = kB/s
      this.rxFrames = 0;
      this.rxBytes = 0;
      this.rxSince = now;
      showReceived(this, kBps);
    }
    this.render(now);
  }

  update(status) {
    this.status = status;
    showStatus(this, status, server.engine);
    // Leave a control alone while the user edits it or while a change is in flight.
    if (!this.busy.has('ai')) this.c.ai.checked = !!status.ai_enabled;
    this.renderModels();
    if (JSON.stringify(status.zones ?? []) !== this.zonesShown) {
      this.zonesShown = JSON.stringify(status.zones ?? []);
      this.zoneEditor.render();
    }
    if (!this.busy.has('quality') && document.activeElement !== this.c.quality) {
      this.c.quality.value = status.jpeg_quality ?? '';
    }
    this.render();
  }

  renderModels() {
    renderModels(this, server.engine);
  }

  toggleModel(name, on) {
    this.c[`model:${name}`] = this.modelBoxes.get(name);
    this.patch(`model:${name}`, { models: withModel(modelsOf(this.status), name, on) });
  }

  async patch(what, body) {
    const control = this.c[what];
    this.busy.add(what);
    control.disabled = true;
    try {
      const status = await api('PATCH', `/api/cameras/${encodeURIComponent(this.id)}`, body);
      this.busy.delete(what);
      if (status?.camera_id) this.update(status);
      else this.actions.refreshSoon();
      if (body.ai_enabled === true && status && !(status.ai_active ?? status.ai_enabled)) {
        toast(`${this.id}: AI is on, but no pose model is loaded on the server`, 'error');
      }
    } catch (e) {
      this.busy.delete(what);
      toast(`${this.id}: ${e.message}`, 'error');
      if (this.status) this.update(this.status); // put the control back
    } finally {
      control.disabled = false;
    }
  }

  render(now = performance.now()) {
    showLink(this, now);
  }

  destroy() {
    this.player.stop('closed');
    this.pending = null;
    this.img.removeAttribute('src');
    for (const url of [this.shownUrl, this.loadingUrl]) if (url) URL.revokeObjectURL(url);
    this.shownUrl = this.loadingUrl = null;
    this.actions.unobserve(this.media);
    clearTimeout(this.offTimer);
    this.el.remove();
  }
}
