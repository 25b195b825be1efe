// The events page's state: the filters, the list shown, and the event in the player.

export const page = {
  filters: { camera: '', kind: '', cls: '', zone: '', since: '' },
  classes: new Set(), // classes seen in events, for the class filter
  zones: new Set(), // zones of the cameras and of the events listed, for the zone filter
  events: [], // what the list shows, newest first
  total: 0,
  rows: new Map(), // id → <li>
  cameras: new Set(),
  selected: null, // the event in the player
  clip: null, // { id, url, fps, frames, fallAt, startAt, endAt }
  fetchSeq: 0,
  fetchTimer: null,
  pollTimer: null,
  clipWaitUntil: 0,
  socket: null,
  reachable: true,
};
