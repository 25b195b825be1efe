// HAVEN web UI: a live grid of every camera, a focus view, per-camera controls.
// Plain ES module, no build step, nothing fetched from anywhere but this server.
//
// Frames arrive over one WebSocket per camera. Each tile asks for the rendition it needs: grid tiles
// a small one (?width=320 or 640, whichever ladder step covers the tile's width in device pixels, at
// quality 60), the focused (or fullscreen) camera the full frame; both as binary messages
// (?format=binary: u32 big-endian N, N bytes of JSON {"type":"frame","metadata":{…}}, the JPEG).
// The JPEG is shown through an object URL, revoked once the next one has replaced it; a text frame
// ({"type":"frame","data":"<base64 JPEG>","metadata":{…}}, what a server without renditions sends)
// is shown through a data: URL. While a frame is still decoding, only the newest one is kept.
// With "draw in this browser" on, tiles ask for ?overlay=client (pictures without drawings) and draw
// the poses from the metadata on a canvas over the picture, as the server would (src/inference/draw.rs),
// with skeletons, boxes and labels switched on and off here, without asking the server anything.
// Falls raise a banner from /ws/alerts (startAlerts, shared with the events page).

import { startAlerts, fetchWithToken, storedToken, withToken, TOKEN_KEY } from './events.js';

const POLL_MS = 2000; // how often /api/cameras is read for the stats
const STALE_MIN_MS = 3000; // a stream with no frame for this long (or 3 frame periods) is stale
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;
const FPS_KEY = 'haven.fps.';
const MOTION_KEY = 'haven.motion.';
const PREFS_KEY = 'haven.view';
// The server's rendition ladder below the full frame: a grid tile asks for the smallest step at least
// as wide as the tile's picture in device pixels (a tile wider than 640 still gets 640: full size is
// for the focused camera), at GRID_QUALITY; with the data saver on, always 320 at SAVER_QUALITY.
const LADDER = [320, 640];
const GRID_QUALITY = 60;
const SAVER_QUALITY = 40;
const REOPEN_DELAY_MS = 400; // a tile resized to another rendition waits this long for the size to settle
// A tile scrolled out of view (more than OFFSCREEN_MARGIN_PX away) closes its socket after this long,
// and reopens it when it comes back.
const OFFSCREEN_PAUSE_MS = 2000;
const OFFSCREEN_MARGIN_PX = 100;
const SVG_NS = 'http://www.w3.org/2000/svg';
const DOWN_STATES = new Set(['retrying', 'ended', 'stopped']);

const $ = (sel, root = document) => root.querySelector(sel);

// This browser's view settings, for every camera: who draws the poses, which layers the browser
// draws, and the data saver.
const prefs = {
  clientOverlay: false, // true: ?overlay=client, drawn here on a canvas
  skeletons: true,
  boxes: true,
  labels: true,
  saver: !!navigator.connection?.saveData, // grid tiles always 320 px at quality 40 (on by default where the browser asks to save data)
};
try { Object.assign(prefs, JSON.parse(localStorage.getItem(PREFS_KEY) || '{}')); } catch { /* defaults */ }

function savePrefs() {
  localStorage.setItem(PREFS_KEY, JSON.stringify(prefs));
}

// ---------------------------------------------------------------------------------------------
// REST, with the bearer token (asked for once, on the first 401).

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const mutating = method !== 'GET';
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetchWithToken(path, {
      method,
      headers,
      cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    }, mutating ? 'This server needs a token to make changes.' : 'This server needs a token to show its cameras.');
  } catch {
    throw new ApiError(0, 'the server is not reachable');
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (res.status === 401) throw new ApiError(401, data?.error ?? 'a valid token is needed');
  if (!res.ok) throw new ApiError(res.status, data?.error ?? `${res.status} ${res.statusText}`);
  return data;
}

function updateTokenButton() {
  $('#token-btn').hidden = !storedToken();
}

// ---------------------------------------------------------------------------------------------
// One camera's socket: reconnects with jittered exponential backoff, can be paused, and is reopened
// when the tile needs another rendition (focus, size, overlay, data saver).

const textDecoder = new TextDecoder();

/** A frame from a text message: the JPEG as base64. */
function parseText(data) {
  let msg;
  try { msg = JSON.parse(data); } catch { return null; }
  if (msg?.type !== 'frame' || typeof msg.data !== 'string') return null;
  return { metadata: msg.metadata || {}, jpeg: msg.data, bytes: data.length };
}

/** A frame from a binary message: u32 big-endian N, N bytes of JSON, the JPEG. */
function parseBinary(buf) {
  if (!(buf instanceof ArrayBuffer) || buf.byteLength < 4) return null;
  const n = new DataView(buf).getUint32(0, false);
  if (4 + n > buf.byteLength) return null;
  let msg;
  try { msg = JSON.parse(textDecoder.decode(new Uint8Array(buf, 4, n))); } catch { return null; }
  if (msg?.type !== 'frame') return null;
  const jpeg = new Blob([new Uint8Array(buf, 4 + n)], { type: 'image/jpeg' });
  return { metadata: msg.metadata || {}, jpeg, bytes: buf.byteLength };
}

class Player {
  constructor(tile) {
    this.tile = tile;
    this.ws = null;
    this.wanted = false;
    this.timer = null;
    this.reopenTimer = null;
    this.backoff = BACKOFF_MIN_MS;
    this.params = ''; // the query the open socket was opened with
    this.fps = localStorage.getItem(FPS_KEY + tile.id) || ''; // '' = the server's default
  }

  start() {
    this.wanted = true;
    this.backoff = BACKOFF_MIN_MS;
    this.connect();
  }

  stop(link = 'paused') {
    this.wanted = false;
    clearTimeout(this.timer);
    clearTimeout(this.reopenTimer);
    this.timer = null;
    this.reopenTimer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000, link); } catch { /* already closed */ }
    }
    this.tile.setLink(link);
  }

  reopen() {
    if (!this.wanted) return;
    this.stop('connecting');
    this.start();
  }

  setFps(fps) {
    this.fps = fps;
    if (fps) localStorage.setItem(FPS_KEY + this.tile.id, fps);
    else localStorage.removeItem(FPS_KEY + this.tile.id);
    this.reopen();
  }

  /** The stream's query for the tile as it is now (without the token). */
  query() {
    const q = new URLSearchParams();
    if (this.fps) q.set('fps', this.fps);
    q.set('format', 'binary');
    const r = this.tile.rendition();
    if (r.width) q.set('width', String(r.width));
    if (r.quality) q.set('quality', String(r.quality));
    if (r.overlay === 'client') q.set('overlay', 'client');
    return q.toString();
  }

  /**
   * Reopens the socket if the tile now needs another rendition: at once (focus, overlay, data saver)
   * or, for a change of size, once the size has settled.
   */
  refresh({ soon = false } = {}) {
    clearTimeout(this.reopenTimer);
    this.reopenTimer = null;
    if (!this.wanted || !this.ws || this.query() === this.params) return;
    if (soon) {
      this.reopenTimer = setTimeout(() => this.refresh(), REOPEN_DELAY_MS);
      return;
    }
    this.reopen();
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (!this.wanted || this.ws) return;
    const url = new URL(`/ws/stream/${encodeURIComponent(this.tile.id)}`, location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    this.params = this.query();
    url.search = this.params;
    if (storedToken()) url.searchParams.set('token', storedToken());
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.tile.setLink('connecting');
    ws.onopen = () => this.tile.setLink('live');
    ws.onmessage = (ev) => {
      const frame = typeof ev.data === 'string' ? parseText(ev.data) : parseBinary(ev.data);
      if (!frame) return;
      this.backoff = BACKOFF_MIN_MS; // only a frame proves the stream works
      this.tile.onFrame(frame);
    };
    ws.onerror = () => { /* a close event follows */ };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (ev.reason === 'camera removed') {
        this.wanted = false;
        this.tile.setLink('closed', ev.reason);
        refreshSoon();
        return;
      }
      this.retry(ev.reason);
    };
  }

  retry(reason) {
    if (!this.wanted) return;
    const delay = Math.round(this.backoff * (0.75 + Math.random() * 0.5));
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this.tile.setLink('reconnecting', reason);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.wanted && !this.ws) {
      this.backoff = BACKOFF_MIN_MS;
      this.connect();
    }
  }
}

// ---------------------------------------------------------------------------------------------
// One camera's tile.

const fmt = {
  num: (v, digits = 1) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : '–'),
  int: (v) => (typeof v === 'number' && Number.isFinite(v) ? String(Math.round(v)) : '–'),
  ms: (v) => (typeof v === 'number' && Number.isFinite(v) ? `${v.toFixed(v >= 100 ? 0 : 1)} ms` : '–'),
};

// Poses drawn by the browser, the way the server draws them on a rendition (src/inference/draw.rs,
// after scaling the detections to the rendition's size): a green box with "person 0.87" above it,
// limbs coloured by body part, red dots on the confident keypoints, lines one pixel thick per 400 of
// the picture's longer side (rounded up), all scaled with the picture as it is shown and never
// thinner than one device pixel.

const KEYPOINT_MIN_CONF = 0.5; // draw.rs: keypoints below it are neither drawn nor joined
// haven_pose::SKELETON: COCO keypoint pairs (0 nose, 1-2 eyes, 3-4 ears, 5-6 shoulders, 7-8 elbows,
// 9-10 wrists, 11-12 hips, 13-14 knees, 15-16 ankles).
const SKELETON = [
  [15, 13], [13, 11], [16, 14], [14, 12], [11, 12], [5, 11], [6, 12], [5, 6], [5, 7], [6, 8],
  [7, 9], [8, 10], [1, 2], [0, 1], [0, 2], [1, 3], [2, 4], [3, 5], [4, 6],
];
const BOX_COLOR = 'rgb(0, 255, 0)';
const KEYPOINT_COLOR = 'rgb(255, 0, 0)';
// Objects (detections without keypoints) take their class's colour, as draw.rs gives it:
// Ultralytics' palette, indexed by the class id.
const PALETTE = [
  '#FF3838', '#FF9D97', '#FF701F', '#FFB21D', '#CFD231', '#48F90A', '#92CC17', '#3DDB86', '#1A9334', '#00D4BB',
  '#2C99A8', '#00C2FF', '#344593', '#6473FF', '#0018EC', '#8438FF', '#520085', '#CB38FF', '#FF95C8', '#FF37C7',
];

/** The colour of a detection: green for people with keypoints, the class's colour for objects. */
function detectionColor(d) {
  if (Array.isArray(d?.keypoints) && d.keypoints.length) return BOX_COLOR;
  const id = Number.isInteger(d?.class_id) ? d.class_id : 0;
  return PALETTE[id % PALETTE.length];
}

function limbColor(a, b) {
  if (Math.min(a, b) <= 4) return 'rgb(0, 200, 255)'; // head: light blue
  if (Math.max(a, b) <= 10) return 'rgb(255, 200, 0)'; // arms: orange
  return 'rgb(200, 0, 255)'; // torso and legs: violet
}

/**
 * Draws the frame's detections (in frame pixels: metadata.width × height) on the canvas, as the
 * server would on the picture shown (metadata.rendition: its size), letterboxed as the <img> under
 * the canvas is (object-fit: contain). Returns how many people it drew.
 */
function drawPoses(canvas, m, layers) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const fw = m?.width;
  const fh = m?.height;
  const dets = Array.isArray(m?.detections) ? m.detections : [];
  if (!(fw > 0 && fh > 0) || !dets.length || !(layers.skeletons || layers.boxes || layers.labels)) return 0;
  // The picture's pixels (the rendition), and frame pixels → picture pixels → canvas pixels.
  const pw = m.rendition?.width > 0 ? m.rendition.width : fw;
  const ph = m.rendition?.height > 0 ? m.rendition.height : fh;
  const k = pw / fw;
  const s = Math.min(w / pw, h / ph);
  ctx.setTransform(s, 0, 0, s, (w - pw * s) / 2, (h - ph * s) / 2);
  const t = Math.max(1, Math.ceil(Math.max(pw, ph) / 400));
  ctx.lineWidth = Math.max(t, 1 / s);
  ctx.lineCap = 'round';
  ctx.font = `${11 * t}px sans-serif`; // about as tall and wide as Hershey simplex at 0.4 × thickness
  ctx.textBaseline = 'alphabetic';
  let drawn = 0;
  for (const d of dets) {
    const [x1, y1, x2, y2] = Array.isArray(d?.bbox) ? d.bbox.map((v) => Math.trunc(v * k)) : [];
    const boxed = [x1, y1, x2, y2].every(Number.isFinite);
    const color = detectionColor(d);
    if (layers.boxes && boxed) {
      ctx.strokeStyle = color;
      ctx.strokeRect(x1, y1, Math.max(1, x2 - x1), Math.max(1, y2 - y1));
    }
    if (layers.labels && boxed && Number.isFinite(d.score)) {
      ctx.fillStyle = color;
      ctx.fillText(`${typeof d.class === 'string' ? d.class : 'person'} ${d.score.toFixed(2)}`, x1, Math.max(y1 - 4, 10));
    }
    const kp = Array.isArray(d?.keypoints) ? d.keypoints : [];
    if (layers.skeletons && kp.length) {
      const visible = (i) => i < kp.length && kp[i]?.[2] >= KEYPOINT_MIN_CONF;
      const at = (i) => [Math.round(kp[i][0] * k), Math.round(kp[i][1] * k)];
      for (const [a, b] of SKELETON) {
        if (!visible(a) || !visible(b)) continue;
        ctx.strokeStyle = limbColor(a, b);
        ctx.beginPath();
        ctx.moveTo(...at(a));
        ctx.lineTo(...at(b));
        ctx.stroke();
      }
      ctx.fillStyle = KEYPOINT_COLOR;
      const r = Math.max(t + 2, 1.5 / s);
      for (let i = 0; i < kp.length; i++) {
        if (!visible(i)) continue;
        ctx.beginPath();
        ctx.arc(...at(i), r, 0, 2 * Math.PI);
        ctx.fill();
      }
    }
    drawn++;
  }
  return drawn;
}

// Tiles out of view stream nothing (on a phone, most of a grid is): see Tile.setOnScreen.
const screenObserver = new IntersectionObserver((entries) => {
  for (const e of entries) tiles.get(e.target.closest('.tile')?.dataset.cameraId)?.setOnScreen(e.isIntersecting);
}, { rootMargin: `${OFFSCREEN_MARGIN_PX}px` });

// A tile whose picture changes size redraws its poses and, once the size has settled, asks for the
// rendition that fits.
const resizeObserver = new ResizeObserver((entries) => {
  for (const e of entries) {
    const t = tiles.get(e.target.closest('.tile')?.dataset.cameraId);
    if (!t) continue;
    t.drawPoses();
    t.player.refresh({ soon: true });
  }
});

class Tile {
  constructor(status) {
    this.id = status.camera_id;
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
    this.c = {
      ai: $('.c-ai', el),
      quality: $('.c-quality', el),
      fps: $('.c-fps', el),
      motion: $('.c-motion', el),
    };
    this.motionSvg = $('.motion-boxes', el);
    this.c.motion.checked = localStorage.getItem(MOTION_KEY + this.id) === '1';
    this.c.motion.setAttribute('aria-label', `Show what moves in ${this.id}`);
    this.c.motion.addEventListener('change', () => {
      localStorage.setItem(MOTION_KEY + this.id, this.c.motion.checked ? '1' : '0');
      if (!this.c.motion.checked) this.drawMotion(null);
    });
    $('.c-snapshot', el).href = withToken(`/api/cameras/${encodeURIComponent(this.id)}/snapshot.jpg`);
    this.c.ai.setAttribute('aria-label', `AI for ${this.id}`);
    this.c.quality.setAttribute('aria-label', `JPEG quality for ${this.id}`);
    this.c.fps.setAttribute('aria-label', `Frames per second for ${this.id} in this view`);
    $('.c-remove', el).setAttribute('aria-label', `Remove ${this.id}`);
    $('.c-snapshot', el).setAttribute('aria-label', `Snapshot of ${this.id}`);
    $('.fullscreen', el).setAttribute('aria-label', `Fullscreen ${this.id}`);

    resizeObserver.observe(this.media);
    screenObserver.observe(this.media);
    this.img.addEventListener('load', () => this.decoded(true));
    this.img.addEventListener('error', () => this.decoded(false));

    this.player = new Player(this);
    this.c.fps.insertAdjacentHTML('afterbegin', '<option value="">auto</option>');
    this.c.fps.value = this.player.fps;
    if (this.c.fps.value !== this.player.fps) {
      this.c.fps.value = '';
      this.player.fps = '';
    }

    this.c.ai.addEventListener('change', () => this.patch('ai', { ai_enabled: this.c.ai.checked }));
    this.modelsEl = $('.c-models', el);
    this.modelBoxes = new Map(); // model name → its checkbox
    this.c.quality.addEventListener('change', () => {
      const raw = this.c.quality.value;
      if (raw === '') {
        if (this.status) this.update(this.status);
        return;
      }
      this.patch('quality', { jpeg_quality: Number(raw) });
    });
    this.c.fps.addEventListener('change', () => this.player.setFps(this.c.fps.value));
    $('.c-focus', el).addEventListener('click', () => setFocus(view.focus === this.id ? null : this.id));
    $('.c-remove', el).addEventListener('click', () => confirmRemove(this.id));
    $('.fullscreen', el).addEventListener('click', () => toggleFullscreen(this));
    this.media.addEventListener('click', (ev) => {
      if (ev.target.closest('button, a')) return;
      setFocus(view.focus === this.id ? null : this.id);
    });
    this.media.addEventListener('dblclick', () => toggleFullscreen(this));
    el.addEventListener('keydown', (ev) => {
      if (ev.target !== el) return;
      if (ev.key === 'Enter' || ev.key === ' ') {
        ev.preventDefault();
        setFocus(view.focus === this.id ? null : this.id);
      }
    });

    this.update(status);
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
    const overlay = prefs.clientOverlay ? 'client' : 'server';
    const large = view.focus === this.id || document.fullscreenElement === this.media;
    if (large) return { width: null, quality: null, overlay };
    if (prefs.saver) return { width: LADDER[0], quality: SAVER_QUALITY, overlay };
    const px = (this.media.clientWidth || 0) * (window.devicePixelRatio || 1);
    const width = LADDER.find((w) => px <= w) ?? LADDER[LADDER.length - 1];
    return { width, quality: GRID_QUALITY, overlay };
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
    if (this.c.motion.checked) this.drawMotion(m);
    if (this.decoding) {
      this.pending = frame; // drop the older undisplayed frame
      return;
    }
    this.show(frame);
  }

  /** The frame's motion boxes over the picture (frame pixels; the SVG letterboxes like the image). */
  drawMotion(m) {
    const svg = this.motionSvg;
    const boxes = Array.isArray(m?.motion?.boxes) ? m.motion.boxes : [];
    svg.toggleAttribute('hidden', !m); // an SVG element has no .hidden property
    if (!m) return;
    if (m.width > 0 && m.height > 0) svg.setAttribute('viewBox', `0 0 ${m.width} ${m.height}`);
    while (svg.childElementCount > boxes.length) svg.lastElementChild.remove();
    while (svg.childElementCount < boxes.length) svg.appendChild(document.createElementNS(SVG_NS, 'rect'));
    boxes.forEach(([x1, y1, x2, y2], i) => {
      const r = svg.children[i];
      r.setAttribute('x', x1);
      r.setAttribute('y', y1);
      r.setAttribute('width', Math.max(1, x2 - x1));
      r.setAttribute('height', Math.max(1, y2 - y1));
    });
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
      if (d.rendition !== rendition) d.rendition = rendition;
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
    const n = drawPoses(canvas, m, prefs);
    const drawn = String(n);
    if (this.el.dataset.drawn !== drawn) this.el.dataset.drawn = drawn;
  }

  setLink(link, reason = '') {
    this.link = link;
    this.linkReason = reason || '';
    this.render();
  }

  staleAfterMs() {
    const fps = Number(this.player.fps) || this.status?.fps || 0;
    return Math.max(STALE_MIN_MS, fps > 0 ? 3000 / fps : 0);
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
      const rx = $('.s-rx', this.el);
      const idle = this.link === 'paused' || this.link === 'offscreen';
      rx.textContent = idle ? '–' : `${fmt.num(this.rxFps)} fps`;
      const r = this.shownMeta?.rendition;
      rx.title = idle ? '' : [
        `${fmt.num(kBps, 0)} kB/s`,
        this.el.dataset.rendition ? `picture ${this.el.dataset.rendition.replace('x', '×')}` : '',
        r?.quality ? `quality ${r.quality}` : '',
        r ? `drawn by the ${r.overlay === 'client' ? 'browser' : 'server'}` : '',
      ].filter(Boolean).join(' · ');
    }
    this.render(now);
  }

  update(status) {
    this.status = status;
    const s = status;
    this.el.dataset.state = s.state ?? '';
    this.el.dataset.connected = String(!!s.connected);
    const state = $('.state', this.el);
    state.textContent = s.state ?? '?';
    state.dataset.value = s.state ?? '';
    $('.s-fps', this.el).textContent = fmt.num(s.fps);
    // How often the model looks at this camera now (it does while something moves or people are tracked).
    const detect = $('.s-detect', this.el);
    detect.textContent = !(s.ai_active ?? s.ai_enabled) ? 'off' : `${fmt.num(s.detection_fps)} fps`;
    detect.title = s.motion ? `motion on ${fmt.num((s.motion_area ?? 0) * 100)} % of the frame` : 'nothing moves';
    $('.s-dropped', this.el).textContent = fmt.int(s.dropped_frames);
    $('.s-viewers', this.el).textContent = fmt.int(s.viewers);
    // ai_active (when the server reports it) is whether inference really runs; without a model it
    // cannot, whatever ai_enabled says.
    const active = s.ai_active ?? s.ai_enabled;
    $('.s-inference', this.el).textContent = engine && engine.loaded === false ? 'no model'
      : !active ? 'off' : s.inferences === 0 ? '–' : fmt.ms(s.inference_ms);
    this.el.title = [
      `${this.id}: ${s.source_type ?? ''} ${s.source ?? ''}`,
      s.width && s.height ? `${s.width}×${s.height}` : '',
      s.source_fps ? `source ${fmt.num(s.source_fps)} fps` : '',
      s.uptime_seconds !== undefined ? `up ${fmt.int(s.uptime_seconds)} s` : '',
      s.reconnects ? `${s.reconnects} reconnects` : '',
      s.last_error ? `last error: ${s.last_error}` : '',
      // What the camera encodes for its viewers now: "640 q60 binary ×1, full q80 text ×2".
      Array.isArray(s.renditions) && s.renditions.length ? `sent as ${s.renditions.map((r) => [
        r.width ?? 'full',
        (r.quality ?? s.jpeg_quality) ? `q${r.quality ?? s.jpeg_quality}` : '', // null: the camera's own
        r.overlay === 'client' ? 'undrawn' : '',
        r.format,
        `×${r.viewers}`,
      ].filter(Boolean).join(' ')).join(', ')}` : '',
    ].filter(Boolean).join(' · ');
    // Leave a control alone while the user edits it or while a change is in flight.
    if (!this.busy.has('ai')) this.c.ai.checked = !!s.ai_enabled;
    this.renderModels();
    if (!this.busy.has('quality') && document.activeElement !== this.c.quality) {
      this.c.quality.value = s.jpeg_quality ?? '';
    }
    this.render();
  }

  /**
   * One switch per model the server has loaded (GET /api/engine), checked where the camera runs it;
   * switching one PATCHes the camera's `models`, live.
   */
  renderModels() {
    // The fall model is asked by the events where someone may be down, not switched per camera.
    const loaded = (Array.isArray(engine?.models) ? engine.models : []).filter((m) => !m.fall_model);
    const names = loaded.map((m) => m.name);
    if (names.join('\n') !== [...this.modelBoxes.keys()].join('\n')) {
      this.modelBoxes.clear();
      this.modelsEl.replaceChildren(...loaded.map((m) => {
        const box = document.createElement('input');
        box.type = 'checkbox';
        box.className = 'c-model';
        box.dataset.model = m.name;
        box.setAttribute('aria-label', `${m.name} model for ${this.id}`);
        box.addEventListener('change', () => this.toggleModel(m.name, box.checked));
        this.modelBoxes.set(m.name, box);
        const label = document.createElement('label');
        label.className = 'check model';
        label.title = `${m.task === 'detect' ? `${m.classes} classes` : 'people and keypoints'} · ${m.description ?? ''}`;
        label.append(box, ` ${m.name}`);
        return label;
      }));
    }
    const on = new Set(Array.isArray(this.status?.models) ? this.status.models : ['pose']);
    for (const [name, box] of this.modelBoxes) {
      if (!this.busy.has(`model:${name}`)) box.checked = on.has(name);
    }
    this.modelsEl.hidden = this.modelBoxes.size < 2; // one model: the AI switch says it all
  }

  toggleModel(name, on) {
    const current = Array.isArray(this.status?.models) ? this.status.models : ['pose'];
    const models = on ? [...new Set([...current, name])] : current.filter((m) => m !== name);
    this.c[`model:${name}`] = this.modelBoxes.get(name);
    this.patch(`model:${name}`, { models });
  }

  async patch(what, body) {
    const control = this.c[what];
    this.busy.add(what);
    control.disabled = true;
    try {
      const status = await api('PATCH', `/api/cameras/${encodeURIComponent(this.id)}`, body);
      this.busy.delete(what);
      if (status?.camera_id) this.update(status);
      else refreshSoon();
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
    const s = this.status || {};
    const fresh = this.hasFrame && now - this.lastFrameAt < this.staleAfterMs();
    const down = !!this.status && (s.connected === false || DOWN_STATES.has(s.state));
    const paused = this.link === 'paused';
    // Out of view: nobody sees it, and its last picture is there the moment it is scrolled back.
    const offscreen = this.link === 'offscreen';
    const stale = this.hasFrame && !fresh && !paused && !offscreen;

    let title = '';
    let detail = '';
    if (paused) {
      title = 'Paused';
      detail = 'The tab is hidden; the stream resumes when you come back.';
    } else if (down && !fresh) {
      title = {
        retrying: 'Camera offline — retrying',
        ended: 'Stream ended',
        stopped: 'Camera stopped',
      }[s.state] || 'Camera offline';
      detail = s.last_error || '';
    } else if (this.link === 'closed') {
      title = 'Stream closed';
      detail = this.linkReason;
    } else if (!this.hasFrame && offscreen) {
      title = 'Paused';
      detail = 'Out of view; the stream resumes when you scroll to it.';
    } else if (!this.hasFrame) {
      title = s.state === 'starting' ? 'Starting…' : this.link === 'reconnecting' ? 'Reconnecting…' : 'Connecting…';
      detail = this.link === 'reconnecting' ? this.linkReason : '';
    }
    const showPh = title !== '';
    this.ph.hidden = !showPh;
    if (showPh) {
      $('.ph-title', this.ph).textContent = title;
      $('.ph-detail', this.ph).textContent = detail;
    }

    const d = this.el.dataset;
    d.down = String(down && !fresh);
    d.stale = String(stale);
    d.link = this.link;
    const badge = $('.link', this.el);
    let text = { live: 'live', connecting: 'connecting', reconnecting: 'reconnecting', paused: 'paused', offscreen: 'off screen', closed: 'closed' }[this.link];
    if (this.link === 'live' && stale) text = `stale ${Math.round((now - this.lastFrameAt) / 1000)} s`;
    else if (this.link === 'live' && !this.hasFrame) text = 'waiting';
    badge.textContent = text;
    badge.dataset.value = this.link === 'live' && (stale || !this.hasFrame) ? 'stale' : offscreen ? 'paused' : this.link;
  }

  destroy() {
    this.player.stop('closed');
    this.pending = null;
    this.img.removeAttribute('src');
    for (const url of [this.shownUrl, this.loadingUrl]) if (url) URL.revokeObjectURL(url);
    this.shownUrl = this.loadingUrl = null;
    resizeObserver.unobserve(this.media);
    screenObserver.unobserve(this.media);
    clearTimeout(this.offTimer);
    this.el.remove();
  }
}

// ---------------------------------------------------------------------------------------------
// The page: the list of tiles, the focus view, polling, visibility.

const tiles = new Map(); // camera id → Tile, in the server's order
const view = { focus: null };
let engine = null;
let lastListOk = true;

function visible() {
  return document.visibilityState !== 'hidden';
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
      tile = new Tile(status);
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

function addOrUpdate(status) {
  const list = [...tiles.values()].map((t) => t.status);
  const i = list.findIndex((s) => s.camera_id === status.camera_id);
  if (i >= 0) list[i] = status;
  else list.push(status);
  applyList(list);
}

function removeLocal(id) {
  applyList([...tiles.values()].map((t) => t.status).filter((s) => s.camera_id !== id));
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
  for (const t of tiles.values()) {
    const on = t.id === view.focus;
    t.el.dataset.focused = String(on);
    const b = $('.c-focus', t.el);
    b.textContent = on ? '▦' : '⤢';
    b.title = on ? 'Back to the grid (Esc)' : 'Focus (Enter)';
    b.setAttribute('aria-label', on ? 'Back to the grid' : `Focus ${t.id}`);
    b.setAttribute('aria-pressed', String(on));
  }
  grid.style.setProperty('--count', String(Math.max(1, tiles.size)));
  $('#empty').hidden = tiles.size > 0;
  // The focused camera full size, the others small: reopen the sockets whose rendition changed.
  for (const t of tiles.values()) t.player.refresh();

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

function setFocus(id) {
  view.focus = id && tiles.has(id) ? id : null;
  const url = new URL(location.href);
  url.hash = view.focus ? `focus=${encodeURIComponent(view.focus)}` : '';
  history.replaceState(null, '', url.hash ? url : url.pathname + url.search);
  layout();
  const t = view.focus && tiles.get(view.focus);
  if (t && !t.el.contains(document.activeElement)) t.el.focus({ preventScroll: true });
}

function focusFromHash() {
  const m = /^#focus=(.+)$/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : null;
}

function step(delta) {
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

function toggleFullscreen(tile) {
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

let pollTimer = null;
let refreshing = null;

async function refresh() {
  if (refreshing) return refreshing;
  refreshing = (async () => {
    try {
      const data = await api('GET', '/api/cameras');
      applyList(Array.isArray(data?.cameras) ? data.cameras : []);
      if (!lastListOk) {
        // The server is back: give every socket a fresh try instead of waiting out its backoff.
        for (const t of tiles.values()) t.player.reconnectNow();
      }
      lastListOk = true;
      banner(null);
      if (!engine) {
        engine = await api('GET', '/api/engine').catch(() => null);
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

function schedulePoll(ms = POLL_MS) {
  clearTimeout(pollTimer);
  pollTimer = visible() ? setTimeout(poll, ms) : null;
}

async function poll() {
  await refresh();
  schedulePoll();
}

let soonTimer = null;
function refreshSoon() {
  clearTimeout(soonTimer);
  soonTimer = setTimeout(() => refresh(), 150);
}

function onVisibility() {
  if (visible()) {
    for (const t of tiles.values()) t.resume();
    engine = null;
    poll();
  } else {
    // A hidden tab costs the server nothing: no sockets, no polling.
    clearTimeout(pollTimer);
    pollTimer = null;
    for (const t of tiles.values()) t.player.stop('paused');
  }
}

// ---------------------------------------------------------------------------------------------
// Add and remove.

function openAdd() {
  const dialog = $('#add-dialog');
  const form = $('#add-form');
  form.reset();
  showFormError('#add-error', null);
  for (const el of form.elements) el.removeAttribute?.('aria-invalid');
  dialog.showModal();
  form.elements.camera_id.focus();
}

function showFormError(sel, message) {
  const el = $(sel);
  el.hidden = !message;
  el.textContent = message || '';
}

async function submitAdd(ev) {
  ev.preventDefault();
  const form = ev.target;
  const f = form.elements;
  const body = {
    camera_id: f.camera_id.value.trim(),
    source: f.source.value.trim(),
    source_type: f.source_type.value,
    loop_video: f.loop_video.checked,
    ai_enabled: f.ai_enabled.checked,
  };
  if (f.jpeg_quality.value !== '') body.jpeg_quality = Number(f.jpeg_quality.value);
  if (f.resize_width.value !== '') body.resize_width = Number(f.resize_width.value);
  for (const el of form.elements) el.removeAttribute?.('aria-invalid');
  showFormError('#add-error', null);
  const submit = $('#add-submit');
  submit.disabled = true;
  try {
    const status = await api('POST', '/api/cameras', body);
    $('#add-dialog').close();
    toast(`Added ${body.camera_id}`);
    if (status?.camera_id) addOrUpdate(status);
    refreshSoon();
  } catch (e) {
    showFormError('#add-error', e.message);
    // Point at the field the server named, if it named one.
    const field = ['camera_id', 'source_type', 'source', 'jpeg_quality', 'resize_width', 'loop_video', 'ai_enabled']
      .find((name) => e.message.includes(name));
    if (field) {
      f[field].setAttribute('aria-invalid', 'true');
      f[field].focus();
    }
  } finally {
    submit.disabled = false;
  }
}

let removing = null;

function confirmRemove(id) {
  removing = id;
  $('#remove-name').textContent = id;
  showFormError('#remove-error', null);
  $('#remove-dialog').showModal();
  $('#remove-dialog button[data-close]').focus();
}

async function submitRemove(ev) {
  ev.preventDefault();
  const id = removing;
  if (!id) return;
  const button = $('#remove-confirm');
  button.disabled = true;
  try {
    await api('DELETE', `/api/cameras/${encodeURIComponent(id)}`);
    $('#remove-dialog').close();
    removing = null;
    removeLocal(id);
    toast(`Removed ${id}`);
    refreshSoon();
  } catch (e) {
    if (e.status === 404) {
      $('#remove-dialog').close();
      removeLocal(id);
    } else {
      showFormError('#remove-error', e.message);
    }
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Toasts and keyboard.

function toast(message, kind = 'info') {
  const el = document.createElement('div');
  el.className = `toast ${kind}`;
  el.textContent = message;
  $('#toasts').append(el);
  setTimeout(() => el.remove(), kind === 'error' ? 8000 : 4000);
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

// ---------------------------------------------------------------------------------------------
// The Display menu: who draws the poses, which layers the browser draws, the data saver.

function initDisplayMenu() {
  const menu = $('#display-menu');
  const c = {
    client: $('#opt-client'),
    skeletons: $('#opt-skeletons'),
    boxes: $('#opt-boxes'),
    labels: $('#opt-labels'),
    saver: $('#opt-saver'),
  };
  const show = () => {
    c.client.checked = prefs.clientOverlay;
    for (const k of ['skeletons', 'boxes', 'labels']) c[k].checked = prefs[k];
    c.saver.checked = prefs.saver;
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
  for (const k of ['skeletons', 'boxes', 'labels']) {
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

// ---------------------------------------------------------------------------------------------
// Start.

function init() {
  for (const dialog of document.querySelectorAll('dialog')) {
    for (const b of dialog.querySelectorAll('[data-close]')) b.addEventListener('click', () => dialog.close());
  }
  $('#add-camera-btn').addEventListener('click', openAdd);
  $('#add-form').addEventListener('submit', submitAdd);
  $('#remove-dialog form').addEventListener('submit', submitRemove);
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
  // Falls, from every camera: a banner until dismissed (kept open in hidden tabs too; it is tiny).
  startAlerts({
    banner: $('#alert-banner'),
    onEvent: (ev) => {
      // Mark the tile at once; its frames' metadata keeps the mark while the fall lasts.
      const t = ev.kind === 'fall' && tiles.get(ev.camera_id);
      if (!t) return;
      if (ev.phase === 'end' && ev.id != null) {
        t.endedFalls.add(ev.id);
        if (t.endedFalls.size > 100) t.endedFalls.delete(t.endedFalls.values().next().value);
      }
      t.el.dataset.alarm = String(ev.phase === 'start');
    },
  });

  view.focus = focusFromHash(); // the focused camera's first socket already asks for the full frame
  refresh().then(() => {
    const want = focusFromHash();
    if (want) setFocus(want);
    schedulePoll();
  });
}

init();
