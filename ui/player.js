// One camera's socket: reconnects with jittered exponential backoff, can be paused, and is reopened
// when the tile needs another rendition (focus, size, overlay, data saver).

import { storedToken } from './api.js';
import { parseBinary, parseText } from './frames.js';
import { streamQuery } from './renditions.js';

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;
const FPS_KEY = 'haven.fps.';
const REOPEN_DELAY_MS = 400; // a tile resized to another rendition waits this long for the size to settle

export class Player {
  /**
   * `tile`: { id, rendition(), setLink(link, reason), onFrame(frame) }; `onRemoved`: the server
   * closed the stream because the camera is gone.
   */
  constructor(tile, { onRemoved = () => {} } = {}) {
    this.tile = tile;
    this.onRemoved = onRemoved;
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
    return streamQuery(this.tile.rendition(), this.fps);
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
        this.onRemoved();
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
