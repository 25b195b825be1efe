// The events page's clip player: steps frame by frame, with the event (and a fall's moment) marked
// on its timeline.

import { $ } from './dom.js';
import { page } from './events-state.js';
import { fmt } from './format.js';

export const video = () => $('#video');

/** How many frames a clip has: as recorded, or as many as its duration holds at its rate. */
export function clipFrames(clip, duration) {
  if (!clip) return 0;
  if (clip.frames > 0) return clip.frames;
  return Math.max(1, Math.round(duration * clip.fps));
}

/** The frame shown at time t of a clip at `fps` with `frames` frames: frame k covers [k / fps, (k + 1) / fps). */
export function frameIndex(t, fps, frames) {
  if (!fps) return 0;
  return Math.max(0, Math.min(frames - 1, Math.floor(t * fps + 1e-6)));
}

function clipDuration() {
  const v = video();
  if (Number.isFinite(v.duration) && v.duration > 0) return v.duration;
  const c = page.clip;
  return c && c.fps > 0 && c.frames > 0 ? c.frames / c.fps : 0;
}

export function frameCount() {
  return clipFrames(page.clip, clipDuration());
}

/** The frame of the clip in the player shown at time t. */
function frameAt(t) {
  const c = page.clip;
  if (!c?.fps) return 0;
  return frameIndex(t, c.fps, frameCount());
}

/** Shows frame k (paused): seeks to the middle of the frame, never onto a boundary. */
export function seekFrame(k) {
  const c = page.clip;
  const v = video();
  if (!c?.fps || !v.src) return;
  v.pause();
  const target = Math.max(0, Math.min(frameCount() - 1, k));
  v.currentTime = (target + 0.5) / c.fps;
  renderTime();
}

export function stepFrames(n) {
  if (!page.clip?.fps) return;
  seekFrame(frameAt(video().currentTime) + n);
}

export function goToEvent() {
  const c = page.clip;
  if (!c || !Number.isFinite(c.startAt)) return;
  seekFrame(frameAt(Math.max(0, c.startAt)));
}

export function togglePlay() {
  const v = video();
  if (!v.src) return;
  if (v.paused || v.ended) {
    if (v.ended) v.currentTime = 0;
    v.play().catch(() => {});
  } else {
    v.pause();
  }
}

let rafId = 0;
export function renderTime() {
  const v = video();
  const c = page.clip;
  const dur = clipDuration();
  const t = v.currentTime || 0;
  const frac = dur > 0 ? Math.min(1, t / dur) : 0;
  $('#tl-progress').style.width = `${(frac * 100).toFixed(3)}%`;
  $('#tl-head').style.left = `${(frac * 100).toFixed(3)}%`;
  const tl = $('#timeline');
  tl.setAttribute('aria-valuemax', dur.toFixed(3));
  tl.setAttribute('aria-valuenow', t.toFixed(3));
  const frames = frameCount();
  const k = frameAt(t);
  tl.setAttribute('aria-valuetext', `${t.toFixed(2)} s, frame ${k + 1} of ${frames}`);
  $('#p-time').textContent = `${fmt.clock(t)} / ${fmt.clock(dur)}`;
  $('#p-frame').textContent = c?.fps ? `frame ${k + 1} / ${frames}` : '';
  $('#viewer').dataset.frame = String(k);
  const play = $('#p-play');
  const playing = !v.paused && !v.ended;
  play.textContent = playing ? '❚❚' : '▶';
  play.setAttribute('aria-label', playing ? 'Pause (Space)' : 'Play (Space)');
  play.title = playing ? 'Pause (Space)' : 'Play (Space)';
}

export function animate() {
  cancelAnimationFrame(rafId);
  const loop = () => {
    renderTime();
    if (!video().paused) rafId = requestAnimationFrame(loop);
  };
  rafId = requestAnimationFrame(loop);
}

export function placeMarkers() {
  const c = page.clip;
  const dur = clipDuration();
  const marker = $('#fall-marker');
  const span = $('#tl-span');
  if (!c || !(dur > 0)) {
    marker.hidden = true;
    span.hidden = true;
    return;
  }
  const pct = (s) => `${((Math.max(0, Math.min(dur, s)) / dur) * 100).toFixed(3)}%`;
  if (Number.isFinite(c.startAt)) {
    const end = Number.isFinite(c.endAt) ? c.endAt : dur;
    span.hidden = false;
    span.style.left = pct(c.startAt);
    span.style.width = `${((Math.max(0, Math.min(dur, end) - Math.max(0, c.startAt)) / dur) * 100).toFixed(3)}%`;
    span.title = `The event: ${fmt.clock(c.startAt)} to ${Number.isFinite(c.endAt) ? fmt.clock(c.endAt) : 'the end of the clip'}`;
  } else {
    span.hidden = true;
  }
  const isFall = c.kind === 'fall' && Number.isFinite(c.startAt);
  marker.hidden = !isFall;
  if (isFall) {
    marker.style.left = pct(c.startAt);
    marker.dataset.time = c.startAt.toFixed(6);
    marker.title = `Fall at ${fmt.clock(c.startAt)} (frame ${frameAt(c.startAt) + 1})`;
    marker.setAttribute('aria-label', marker.title);
  }
  $('#p-event').textContent = isFall ? 'Go to fall' : 'Go to start';
  $('#p-event').title = `${isFall ? 'Go to the fall' : 'Go to the start of the event'} (g)`;
}
export function seekFromPointer(ev) {
  const tl = $('#timeline');
  const r = tl.getBoundingClientRect();
  const dur = clipDuration();
  if (!(dur > 0) || !page.clip) return;
  const frac = Math.max(0, Math.min(1, (ev.clientX - r.left) / r.width));
  seekFrame(frameAt(frac * dur));
}
