// What a tile says: its placeholder, its link badge, its stats' words, its model switches.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inferenceText, linkBadge, placeholder, staleAfterMs, statusTitle } from '../../ui/tile-status.js';
import { modelsOf, withModel } from '../../ui/tile-models.js';
import { fmt } from '../../ui/format.js';

const at = (over) => ({ s: { state: 'streaming' }, down: false, fresh: true, link: 'live', linkReason: '', hasFrame: true, ...over });

test('a live tile with a fresh picture shows no placeholder', () => {
  assert.deepEqual(placeholder(at({})), { title: '', detail: '' });
});

test('the placeholder says why there is no picture, the hidden tab first', () => {
  assert.equal(placeholder(at({ link: 'paused', down: true, fresh: false })).title, 'Paused');
  assert.deepEqual(placeholder(at({ s: { state: 'ended', last_error: 'end of file' }, down: true, fresh: false })),
    { title: 'Stream ended', detail: 'end of file' });
  assert.equal(placeholder(at({ s: { state: 'weird' }, down: true, fresh: false })).title, 'Camera offline');
  assert.deepEqual(placeholder(at({ link: 'closed', linkReason: 'camera removed' })), { title: 'Stream closed', detail: 'camera removed' });
  assert.equal(placeholder(at({ link: 'offscreen', hasFrame: false })).detail, 'Out of view; the stream resumes when you scroll to it.');
  assert.equal(placeholder(at({ link: 'offscreen' })).title, '', 'off screen with a picture: the last picture stays');
  assert.equal(placeholder(at({ hasFrame: false, s: { state: 'starting' } })).title, 'Starting…');
  assert.deepEqual(placeholder(at({ hasFrame: false, link: 'reconnecting', linkReason: 'bye' })), { title: 'Reconnecting…', detail: 'bye' });
  assert.equal(placeholder(at({ hasFrame: false, link: 'connecting' })).title, 'Connecting…');
});

test('the link badge: live, waiting for a first frame, stale for so many seconds, off screen', () => {
  assert.deepEqual(linkBadge({ link: 'live', stale: false, hasFrame: true }), { text: 'live', value: 'live' });
  assert.deepEqual(linkBadge({ link: 'live', stale: false, hasFrame: false }), { text: 'waiting', value: 'stale' });
  assert.deepEqual(linkBadge({ link: 'live', stale: true, hasFrame: true, staleMs: 4600 }), { text: 'stale 5 s', value: 'stale' });
  assert.deepEqual(linkBadge({ link: 'offscreen', stale: false, hasFrame: true }), { text: 'off screen', value: 'paused' });
});

test('a stream is stale after 3 s, or 3 frame periods when slower than 1 fps', () => {
  assert.equal(staleAfterMs(0), 3000);
  assert.equal(staleAfterMs(25), 3000);
  assert.equal(staleAfterMs(0.5), 6000);
});

test('the inference stat and the hover text', () => {
  assert.equal(inferenceText({ ai_enabled: true, inferences: 3, inference_ms: 12.34 }, { loaded: true }), '12.3 ms');
  assert.equal(inferenceText({ ai_enabled: true, inferences: 0 }, null), '–');
  assert.equal(inferenceText({ ai_enabled: true, ai_active: false }, null), 'off');
  assert.equal(inferenceText({ ai_enabled: true }, { loaded: false }), 'no model');
  const s = { source_type: 'video_file', source: 'a.mp4', width: 640, height: 480, jpeg_quality: 80,
    renditions: [{ width: 640, quality: 60, format: 'binary', viewers: 1 }, { width: null, quality: null, overlay: 'client', format: 'text', viewers: 2 }] };
  assert.equal(statusTitle('door', s), 'door: video_file a.mp4 · 640×480 · sent as 640 q60 binary ×1, full q80 undrawn text ×2');
});

test('switching a model on or off keeps the others', () => {
  assert.deepEqual(modelsOf({}), ['pose'], 'a camera without models runs the pose model');
  assert.deepEqual(withModel(['pose'], 'objects', true), ['pose', 'objects']);
  assert.deepEqual(withModel(['pose', 'objects'], 'objects', true), ['pose', 'objects']);
  assert.deepEqual(withModel(['pose', 'objects'], 'pose', false), ['objects']);
});

test('numbers read with a unit, or a dash when there is none', () => {
  assert.equal(fmt.num(12.345), '12.3');
  assert.equal(fmt.num(null), '–');
  assert.equal(fmt.int(2.6), '3');
  assert.equal(fmt.ms(123.4), '123 ms');
  assert.equal(fmt.ms(12.34), '12.3 ms');
  assert.equal(fmt.secs(4.25), '4.3 s');
  assert.equal(fmt.secs(125), '2 min 5 s');
  assert.equal(fmt.secs(3 * 3600 + 120), '3 h 2 min');
  assert.equal(fmt.clock(1.5), '1.500 s');
  assert.equal(fmt.time(NaN), '–');
});
