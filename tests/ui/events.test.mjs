// The events page's words and arithmetic: filters, the list's query and summary, labels, and
// which frame of a clip is shown when.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eventKey } from '../../ui/alerts.js';
import { clipFrames, frameIndex } from '../../ui/clip-player.js';
import { clipLabel, clipState, eventLabel, reasonLabel } from '../../ui/event-labels.js';
import { eventDetails } from '../../ui/event-viewer.js';
import { listQuery, matchesFilters, summaryText } from '../../ui/events-list.js';

const NONE = { camera: '', kind: '', cls: '', zone: '', since: '' };
const fall = { id: 4, kind: 'fall', camera_id: 'door', started_at: 1000, phase: 'start' };
const car = { id: 5, kind: 'object_detected', class: 'car', camera_id: 'yard', started_at: 1100 };

test('an event pushed by the alerts socket joins the list only if the filters keep it', () => {
  assert.ok(matchesFilters(fall, NONE));
  assert.ok(matchesFilters(fall, { ...NONE, camera: 'door', kind: 'fall' }));
  assert.ok(!matchesFilters(fall, { ...NONE, camera: 'yard' }));
  assert.ok(!matchesFilters(fall, { ...NONE, kind: 'person_detected' }));
  assert.ok(matchesFilters(car, { ...NONE, cls: 'car' }));
  assert.ok(!matchesFilters(car, { ...NONE, cls: 'truck' }));
  assert.ok(matchesFilters(fall, { ...NONE, since: '3600' }, 1000 + 3600), 'an hour back, to the second');
  assert.ok(!matchesFilters(fall, { ...NONE, since: '3600' }, 1001 + 3600));
  assert.ok(matchesFilters({ ...fall, zones: ['door', 'bed'] }, { ...NONE, zone: 'bed' }));
  assert.ok(!matchesFilters(fall, { ...NONE, zone: 'bed' }), 'an event in no zone is not in bed');
});

test('the list asks the store for the filters, the last 200 at most', () => {
  assert.equal(listQuery(NONE).toString(), 'limit=200');
  assert.equal(listQuery({ camera: 'door', kind: 'fall', cls: 'car', since: '60' }, 1000.5).toString(),
    'camera=door&kind=fall&class=car&since=940&limit=200');
  assert.equal(listQuery({ ...NONE, zone: 'bed' }).toString(), 'zone=bed&limit=200');
});

test('the summary counts what is shown, in the filters\' words', () => {
  assert.equal(summaryText(1, 1, NONE), '1 event');
  assert.equal(summaryText(3, 3, { ...NONE, kind: 'fall', camera: 'door' }), '3 falls on door');
  assert.equal(summaryText(200, 512, { ...NONE, kind: 'object_detected', cls: 'car' }), '200 of 512 object events (car)');
  assert.equal(summaryText(0, 0, NONE), '0 events');
  assert.equal(summaryText(2, 2, { ...NONE, kind: 'fall', camera: 'ward', zone: 'bed' }), '2 falls on ward in bed');
});

test('events are named by kind (objects by class) and by what raised a fall', () => {
  assert.equal(eventLabel(fall), 'Fall');
  assert.equal(eventLabel(car), 'Object: car');
  assert.equal(eventLabel({ kind: 'something_new' }), 'something_new');
  assert.equal(reasonLabel({ reason: { by: 'pose+model' } }), 'by pose + fall model');
  assert.equal(reasonLabel({}), '');
});

test('a clip is none, recording, ready or failed, whatever else the server says', () => {
  assert.equal(clipState({ clip_status: 'ready' }), 'ready');
  assert.equal(clipState({ clip_status: 'bogus' }), 'none');
  assert.equal(clipLabel({ clip_status: 'recording', phase: 'start' }), 'recording…');
  assert.equal(clipLabel({ clip_status: 'recording', phase: 'end' }), 'finishing clip…');
  assert.equal(clipLabel({}), 'no clip');
});

test('the viewer lists the event\'s details, and where the fall is in its clip', () => {
  const details = new Map(eventDetails({ ...fall, score: 0.912, clip_status: 'ready', clip_frames: 90, clip_fps: 15, clip_started_at: 997.5 }));
  assert.equal(details.get('Camera'), 'door');
  assert.equal(details.get('Zones'), undefined, 'no zones, no line');
  assert.equal(new Map(eventDetails({ ...fall, zones: ['bed', 'door'] })).get('Zones'), 'bed, door');
  assert.equal(details.get('Ended'), 'ongoing');
  assert.equal(details.get('Score'), '0.91');
  assert.equal(details.get('Clip'), '90 frames at 15.00 fps');
  assert.equal(details.get('Fall at'), '2.500 s into the clip');
  assert.ok(!details.has('Why'));
  assert.equal(details.get('Acknowledged'), 'not yet');
  assert.ok(!details.has('Long lie') && !details.has('Note'));
  const acked = new Map(eventDetails({ ...fall, acknowledged_at: 1010, acknowledged_by: 'Ann', ack_note: 'on my way', long_lie: true, long_lie_at: 1070 }));
  assert.match(acked.get('Acknowledged'), /^by Ann at /);
  assert.equal(acked.get('Note'), 'on my way');
  assert.match(acked.get('Long lie'), /^still down at /);
  assert.ok(!new Map(eventDetails(car)).has('Acknowledged'), 'only falls wait for one');
});

test('frame k of a clip is shown from k / fps until the next frame', () => {
  assert.equal(frameIndex(0, 15, 90), 0);
  assert.equal(frameIndex(1 / 15, 15, 90), 1, 'a boundary belongs to the next frame');
  assert.equal(frameIndex(0.999 / 15, 15, 90), 0);
  assert.equal(frameIndex(100, 15, 90), 89, 'past the end: the last frame');
  assert.equal(frameIndex(1, 0, 90), 0, 'no rate: the first frame');
  assert.equal(clipFrames({ frames: 90, fps: 15 }, 7), 90, 'as recorded');
  assert.equal(clipFrames({ frames: 0, fps: 15 }, 2.1), 32, 'or as the duration holds');
  assert.equal(clipFrames(null, 3), 0);
});

test('an alert is one banner line per event, by id or else by camera, track and start', () => {
  assert.equal(eventKey({ id: 7 }), '7');
  assert.equal(eventKey({ id: null, camera_id: 'door', track_id: 3, started_at: 12.5 }), 'door/3/12.5');
});
