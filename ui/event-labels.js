// What an event is called, in the list, the banner and the player.

export const KIND_LABEL = { fall: 'Fall', person_detected: 'Person', object_detected: 'Object' };

export const REASON_LABEL = { pose: 'pose', model: 'fall model', 'pose+model': 'pose + fall model' };

/** What raised a fall, in a few words ("fall model"); '' for other events. */
export function reasonLabel(ev) {
  const by = ev.reason?.by;
  return by ? `by ${REASON_LABEL[by] ?? by}` : '';
}

/** What the event is: its kind, and for an object its class ("Object: car"). */
export function eventLabel(ev) {
  const kind = KIND_LABEL[ev.kind] ?? ev.kind;
  return ev.kind === 'object_detected' && ev.class ? `${kind}: ${ev.class}` : kind;
}

const CLIP_STATES = ['none', 'recording', 'ready', 'failed'];

/** What to expect of the event's clip, as the server says: none, recording, ready or failed. */
export function clipState(ev) {
  return CLIP_STATES.includes(ev.clip_status) ? ev.clip_status : 'none';
}

/** The list's word for the clip. */
export function clipLabel(ev) {
  return {
    ready: 'clip',
    recording: ev.phase === 'start' ? 'recording…' : 'finishing clip…',
    failed: 'clip failed',
    none: 'no clip',
  }[clipState(ev)];
}
