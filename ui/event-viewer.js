// The events page's viewer: one event's details and its clip in the player.

import { ackMarks } from './ack.js';
import { getJson, withToken } from './api.js';
import { $, el, toast } from './dom.js';
import { clipState, eventLabel, reasonLabel } from './event-labels.js';
import { CLIP_WAIT_MS, onAlert, schedulePoll } from './events-list.js';
import { page } from './events-state.js';
import { placeMarkers, renderTime, video } from './clip-player.js';
import { fmt } from './format.js';

/** The player's details list: [label, value] pairs. */
export function eventDetails(ev) {
  const details = [
    ['Camera', ev.camera_id],
    ['Kind', ev.kind],
    ['Class', ev.class ?? '–'],
    ['Model', ev.model ?? '–'],
    ['Track', ev.track_id ?? '–'],
    ['Started', fmt.dateTime(ev.started_at)],
    ['Ended', Number.isFinite(ev.ended_at) ? fmt.dateTime(ev.ended_at) : 'ongoing'],
    ['Duration', Number.isFinite(ev.ended_at) ? fmt.secs(ev.ended_at - ev.started_at) : '–'],
    ['Score', Number.isFinite(ev.score) ? ev.score.toFixed(2) : '–'],
    ...(Number.isFinite(ev.raised_at) ? [['Raised', `${fmt.dateTime(ev.raised_at)} (${fmt.secs(Math.max(0, ev.raised_at - ev.started_at))} after it began)`]] : []),
    ...(ev.reason ? [['Why', ev.reason.summary ?? reasonLabel(ev)]] : []),
    ...(ev.zones?.length ? [['Zones', ev.zones.join(', ')]] : []),
    ['Clip', {
      ready: `${ev.clip_frames ?? '?'} frames at ${Number.isFinite(ev.clip_fps) ? ev.clip_fps.toFixed(2) : '?'} fps`,
      recording: ev.phase === 'start' ? 'recording…' : 'being finished…',
      failed: `failed: ${ev.clip_error ?? 'no reason given'}`,
      none: 'none recorded for this event',
    }[clipState(ev)]],
  ];
  if (ev.kind === 'fall' && Number.isFinite(ev.clip_started_at)) details.push(['Fall at', `${fmt.clock(ev.started_at - ev.clip_started_at)} into the clip`]);
  if (ev.long_lie) details.push(['Long lie', `still down at ${fmt.dateTime(ev.long_lie_at)}`]);
  if (ev.acknowledged_at != null) {
    details.push(['Acknowledged', `by ${ev.acknowledged_by ?? '?'} at ${fmt.dateTime(ev.acknowledged_at)}`]);
    if (ev.ack_note) details.push(['Note', ev.ack_note]);
  } else if (ev.kind === 'fall') {
    details.push(['Acknowledged', 'not yet']);
  }
  return details;
}

/** The details, and the long-lie and acknowledgement marks with the Acknowledge button while the
 * event needs one; an acknowledgement updates the list and the player at once. */
function renderMarks(ev) {
  $('#v-details').replaceChildren(...eventDetails(ev).map(([k, v]) => el('div', {}, el('dt', { text: k }), el('dd', { text: String(v) }))));
  $('#v-ack').replaceChildren(...ackMarks(ev, (acked) => {
    const now = { ...ev, ...acked };
    onAlert(now);
    if (page.selected?.id === now.id) {
      page.selected = now;
      renderMarks(now);
    }
  }));
}

/** The player without a clip: why there is none (yet). */
function showNoClip(ev, controls) {
  const v = video();
  const viewer = $('#viewer');
  const noClip = $('#v-noclip');
  if (v.getAttribute('src')) {
    v.removeAttribute('src');
    v.load();
  }
  page.clip = null;
  noClip.hidden = false;
  $('#v-noclip .ph-title').textContent = { recording: 'No clip yet', failed: 'Clip failed' }[clipState(ev)] ?? 'No clip';
  $('#v-noclip-text').textContent = {
    recording: ev.phase === 'start'
      ? 'The event is still going on: its clip is recorded until it ends.'
      : 'The clip is being finished (its post-roll, then the file)…',
    failed: `The clip could not be recorded: ${ev.clip_error ?? 'no reason given'}`,
    none: ev.kind === 'person_detected' || ev.kind === 'object_detected'
      ? `No clip is recorded for this event (${ev.kind} clips are off, or too many clips were being written at once).`
      : 'No clip is recorded for this event.',
  }[clipState(ev)] ?? 'No clip.';
  viewer.dataset.clip = 'none';
  for (const c of controls) c.disabled = true;
  $('#p-download').hidden = true;
  placeMarkers();
  renderTime();
}

export function showEvent(ev) {
  page.selected = ev;
  for (const [id, li] of page.rows) li.setAttribute('aria-selected', String(id === ev.id));
  const viewer = $('#viewer');
  viewer.hidden = false;
  $('#viewer-empty').hidden = true;
  viewer.dataset.eventId = String(ev.id);
  viewer.dataset.kind = ev.kind;
  $('#v-title').replaceChildren(
    el('span', { class: 'kind', dataset: { kind: ev.kind }, text: eventLabel(ev) }),
    ` ${ev.camera_id} · ${fmt.dateTime(ev.started_at)}`,
  );
  renderMarks(ev);

  const v = video();
  const url = ev.clip_path ? withToken(`/api/events/${ev.id}/clip.mp4`) : null;
  const noClip = $('#v-noclip');
  const controls = [...document.querySelectorAll('#player-controls button, #player-controls select')];
  if (!url) {
    showNoClip(ev, controls);
    return;
  }
  noClip.hidden = true;
  for (const c of controls) c.disabled = false;
  const download = $('#p-download');
  download.hidden = false;
  download.href = url;
  download.setAttribute('download', `haven-${ev.camera_id}-${ev.id}-${ev.kind}.mp4`);
  const fps = Number(ev.clip_fps) || 0;
  const base = Number(ev.clip_started_at);
  page.clip = {
    id: ev.id,
    url,
    kind: ev.kind,
    fps,
    frames: Number(ev.clip_frames) || 0,
    startAt: Number.isFinite(base) ? ev.started_at - base : NaN,
    endAt: Number.isFinite(base) && Number.isFinite(ev.ended_at) ? ev.ended_at - base : NaN,
  };
  viewer.dataset.fps = String(fps);
  $('#p-fps').textContent = fps ? `${fps.toFixed(2)} fps` : '';
  if (v.getAttribute('src') !== url) {
    viewer.dataset.clip = 'loading';
    v.src = url;
    v.playbackRate = Number($('#p-rate').value) || 1;
    v.play().catch(() => { /* autoplay refused: the play button is there */ });
  }
  placeMarkers();
  renderTime();
}

export async function openEvent(id, { updateHash = true } = {}) {
  if (!Number.isFinite(id)) return;
  if (updateHash) {
    const url = new URL(location.href);
    url.hash = `event=${id}`;
    history.replaceState(null, '', url);
  }
  let ev = page.events.find((e) => e.id === id);
  if (!ev) {
    try {
      ev = await getJson(`/api/events/${id}`);
    } catch (e) {
      toast(`Event ${id}: ${e.message}`, 'error');
      return;
    }
  }
  showEvent(ev);
  if (clipState(ev) === 'recording') {
    page.clipWaitUntil = Math.max(page.clipWaitUntil, Date.now() + CLIP_WAIT_MS);
    schedulePoll();
  }
}

export function closeViewer() {
  page.selected = null;
  page.clip = null;
  const v = video();
  v.pause();
  v.removeAttribute('src');
  v.load();
  $('#viewer').hidden = true;
  $('#viewer-empty').hidden = false;
  for (const li of page.rows.values()) li.setAttribute('aria-selected', 'false');
  const url = new URL(location.href);
  url.hash = '';
  history.replaceState(null, '', url.pathname + url.search);
}
