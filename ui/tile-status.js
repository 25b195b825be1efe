// What a tile says about its camera and its stream: the stats from /api/cameras, the placeholder
// over a picture that is missing or old, and the link badge. The words are pure functions of the
// state (tested in tests/ui); show* write them into the tile.

import { $ } from './dom.js';
import { fmt } from './format.js';

const STALE_MIN_MS = 3000; // a stream with no frame for this long (or 3 frame periods) is stale
const DOWN_STATES = new Set(['retrying', 'ended', 'stopped']);
const LINK_TEXT = { live: 'live', connecting: 'connecting', reconnecting: 'reconnecting', paused: 'paused', offscreen: 'off screen', closed: 'closed' };

/** How long without a frame before a stream at `fps` counts as stale. */
export function staleAfterMs(fps) {
  return Math.max(STALE_MIN_MS, fps > 0 ? 3000 / fps : 0);
}

/** The tile's hover text: source, size, uptime, errors, and what the camera encodes for its viewers. */
export function statusTitle(id, s) {
  return [
    `${id}: ${s.source_type ?? ''} ${s.source ?? ''}`,
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
}

/** The inference stat: 'no model', 'off', '–' before the first one, or its time. */
export function inferenceText(s, engine) {
  // ai_active (when the server reports it) is whether inference really runs; without a model it
  // cannot, whatever ai_enabled says.
  const active = s.ai_active ?? s.ai_enabled;
  return engine && engine.loaded === false ? 'no model' : !active ? 'off' : s.inferences === 0 ? '–' : fmt.ms(s.inference_ms);
}

/**
 * The placeholder over the picture ({ title, detail }; title '' = none): `down` the camera is,
 * `fresh` its last frame is, `link` the socket's state.
 */
export function placeholder({ s, down, fresh, link, linkReason, hasFrame }) {
  if (link === 'paused') return { title: 'Paused', detail: 'The tab is hidden; the stream resumes when you come back.' };
  if (down && !fresh) {
    const title = { retrying: 'Camera offline — retrying', ended: 'Stream ended', stopped: 'Camera stopped' }[s.state] || 'Camera offline';
    return { title, detail: s.last_error || '' };
  }
  if (link === 'closed') return { title: 'Stream closed', detail: linkReason };
  if (!hasFrame && link === 'offscreen') return { title: 'Paused', detail: 'Out of view; the stream resumes when you scroll to it.' };
  if (!hasFrame) {
    const title = s.state === 'starting' ? 'Starting…' : link === 'reconnecting' ? 'Reconnecting…' : 'Connecting…';
    return { title, detail: link === 'reconnecting' ? linkReason : '' };
  }
  return { title: '', detail: '' };
}

/** The link badge ({ text, value }): `staleMs` since the last frame when the stream is stale. */
export function linkBadge({ link, stale, hasFrame, staleMs }) {
  let text = LINK_TEXT[link];
  if (link === 'live' && stale) text = `stale ${Math.round(staleMs / 1000)} s`;
  else if (link === 'live' && !hasFrame) text = 'waiting';
  const value = link === 'live' && (stale || !hasFrame) ? 'stale' : link === 'offscreen' ? 'paused' : link;
  return { text, value };
}

/** The camera's stats and hover text from its status. */
export function showStatus(tile, s, engine) {
  const el = tile.el;
  el.dataset.state = s.state ?? '';
  el.dataset.connected = String(!!s.connected);
  const state = $('.state', el);
  state.textContent = s.state ?? '?';
  state.dataset.value = s.state ?? '';
  $('.s-fps', el).textContent = fmt.num(s.fps);
  // How often the model looks at this camera now (it does while something moves or people are tracked).
  const detect = $('.s-detect', el);
  detect.textContent = !(s.ai_active ?? s.ai_enabled) ? 'off' : `${fmt.num(s.detection_fps)} fps`;
  detect.title = s.motion ? `motion on ${fmt.num((s.motion_area ?? 0) * 100)} % of the frame` : 'nothing moves';
  $('.s-dropped', el).textContent = fmt.int(s.dropped_frames);
  $('.s-viewers', el).textContent = fmt.int(s.viewers);
  $('.s-inference', el).textContent = inferenceText(s, engine);
  el.title = statusTitle(tile.id, s);
}

/** What the tile received in the last second (its rx fps, `kBps`) in its rx stat and hover text. */
export function showReceived(tile, kBps) {
  const rx = $('.s-rx', tile.el);
  const idle = tile.link === 'paused' || tile.link === 'offscreen';
  rx.textContent = idle ? '–' : `${fmt.num(tile.rxFps)} fps`;
  const r = tile.shownMeta?.rendition;
  const shown = tile.el.dataset.rendition;
  rx.title = idle ? '' : [
    `${fmt.num(kBps, 0)} kB/s`,
    shown ? `picture ${shown.replace('x', '×')}` : '',
    r?.quality ? `quality ${r.quality}` : '',
    r ? `drawn by the ${r.overlay === 'client' ? 'browser' : 'server'}` : '',
  ].filter(Boolean).join(' · ');
}

/** The placeholder, the link badge and the down/stale marks, as the tile is at `now`. */
export function showLink(tile, now) {
  const s = tile.status || {};
  const fresh = tile.hasFrame && now - tile.lastFrameAt < tile.staleAfterMs();
  const down = !!tile.status && (s.connected === false || DOWN_STATES.has(s.state));
  // Paused or out of view: nobody sees it, and its last picture is there the moment it is back.
  const idle = tile.link === 'paused' || tile.link === 'offscreen';
  const stale = tile.hasFrame && !fresh && !idle;

  const { title, detail } = placeholder({ s, down, fresh, link: tile.link, linkReason: tile.linkReason, hasFrame: tile.hasFrame });
  tile.ph.hidden = title === '';
  if (title) {
    $('.ph-title', tile.ph).textContent = title;
    $('.ph-detail', tile.ph).textContent = detail;
  }

  const d = tile.el.dataset;
  d.down = String(down && !fresh);
  d.stale = String(stale);
  d.link = tile.link;
  const badge = $('.link', tile.el);
  const { text, value } = linkBadge({ link: tile.link, stale, hasFrame: tile.hasFrame, staleMs: now - tile.lastFrameAt });
  badge.textContent = text;
  badge.dataset.value = value;
}
