// HAVEN web UI: a live grid of every camera, a focus view, per-camera controls.
// Plain ES module, no build step, nothing fetched from anywhere but this server.
//
// Frames arrive over one WebSocket per camera as JSON {"type":"frame","data":"<base64 JPEG>",
// "metadata":{…}}. Each is shown by pointing the tile's <img> at a data: URL, so nothing has to be
// revoked and no memory piles up; while a frame is still decoding, only the newest one is kept.
// Falls raise a banner from /ws/alerts (startAlerts, shared with the events page).

import { startAlerts, fetchWithToken, storedToken, withToken, TOKEN_KEY } from './events.js';

const POLL_MS = 2000; // how often /api/cameras is read for the stats
const STALE_MIN_MS = 3000; // a stream with no frame for this long (or 3 frame periods) is stale
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;
const FPS_KEY = 'haven.fps.';
const MOTION_KEY = 'haven.motion.';
const SVG_NS = 'http://www.w3.org/2000/svg';
const DOWN_STATES = new Set(['retrying', 'ended', 'stopped']);

const $ = (sel, root = document) => root.querySelector(sel);

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
// One camera's socket: reconnects with jittered exponential backoff, can be paused.

class Player {
  constructor(tile) {
    this.tile = tile;
    this.ws = null;
    this.wanted = false;
    this.timer = null;
    this.backoff = BACKOFF_MIN_MS;
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
    this.timer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try { ws.close(1000, link); } catch { /* already closed */ }
    }
    this.tile.setLink(link);
  }

  setFps(fps) {
    this.fps = fps;
    if (fps) localStorage.setItem(FPS_KEY + this.tile.id, fps);
    else localStorage.removeItem(FPS_KEY + this.tile.id);
    if (this.wanted) {
      this.stop('connecting');
      this.start();
    }
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (!this.wanted || this.ws) return;
    const url = new URL(`/ws/stream/${encodeURIComponent(this.tile.id)}`, location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    if (this.fps) url.searchParams.set('fps', this.fps);
    if (storedToken()) url.searchParams.set('token', storedToken());
    const ws = new WebSocket(url);
    this.ws = ws;
    this.tile.setLink('connecting');
    ws.onopen = () => this.tile.setLink('live');
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (msg?.type !== 'frame' || typeof msg.data !== 'string') return;
      this.backoff = BACKOFF_MIN_MS; // only a frame proves the stream works
      this.tile.onFrame(msg);
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
    this.rxSince = performance.now();
    this.rxFps = 0;
    this.link = 'connecting';
    this.linkReason = '';
    this.busy = new Set(); // controls with a request in flight

    const el = $('#tile-template').content.firstElementChild.cloneNode(true);
    this.el = el;
    el.dataset.cameraId = this.id;
    el.setAttribute('aria-label', `Camera ${this.id}`);
    $('.cam-id', el).textContent = this.id;
    this.img = $('.frame', el);
    this.img.alt = `Live view of ${this.id}`;
    this.media = $('.media', el);
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

  onFrame(msg) {
    this.lastFrameAt = performance.now();
    this.frames++;
    this.rxFrames++;
    const m = msg.metadata || {};
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
      this.pending = msg.data; // drop the older undisplayed frame
      return;
    }
    this.show(msg.data);
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

  show(data) {
    this.decoding = true;
    this.img.src = `data:image/jpeg;base64,${data}`;
  }

  decoded(ok) {
    this.decoding = false;
    if (ok && !this.hasFrame) {
      this.hasFrame = true;
      this.img.hidden = false;
      this.render();
    }
    if (this.pending) {
      const data = this.pending;
      this.pending = null;
      this.show(data);
    }
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
      this.rxFrames = 0;
      this.rxSince = now;
      $('.s-rx', this.el).textContent = this.link === 'paused' ? '–' : `${fmt.num(this.rxFps)} fps`;
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
    ].filter(Boolean).join(' · ');
    // Leave a control alone while the user edits it or while a change is in flight.
    if (!this.busy.has('ai')) this.c.ai.checked = !!s.ai_enabled;
    if (!this.busy.has('quality') && document.activeElement !== this.c.quality) {
      this.c.quality.value = s.jpeg_quality ?? '';
    }
    this.render();
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
    const stale = this.hasFrame && !fresh && !paused;

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
    let text = { live: 'live', connecting: 'connecting', reconnecting: 'reconnecting', paused: 'paused', closed: 'closed' }[this.link];
    if (this.link === 'live' && stale) text = `stale ${Math.round((now - this.lastFrameAt) / 1000)} s`;
    else if (this.link === 'live' && !this.hasFrame) text = 'waiting';
    badge.textContent = text;
    badge.dataset.value = this.link === 'live' && (stale || !this.hasFrame) ? 'stale' : this.link;
  }

  destroy() {
    this.player.stop('closed');
    this.pending = null;
    this.img.removeAttribute('src');
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
  for (const status of list) {
    seen.add(status.camera_id);
    let tile = tiles.get(status.camera_id);
    if (tile) {
      tile.update(status);
    } else {
      tile = new Tile(status);
      tiles.set(tile.id, tile);
      if (visible()) tile.player.start();
      else tile.player.stop('paused');
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
  if (engine) parts.push(engine.loaded ? `pose: ${engine.name}` : 'pose: not loaded');
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
      if (!engine) engine = await api('GET', '/api/engine').catch(() => null);
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
    for (const t of tiles.values()) t.player.start();
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

  refresh().then(() => {
    const want = focusFromHash();
    if (want) setFocus(want);
    schedulePoll();
  });
}

init();
