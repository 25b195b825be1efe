// Which picture a tile asks the server for: the smallest ladder step that covers it in device
// pixels, the full frame when focused, 320 px at low quality with the data saver.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseRendition, GRID_QUALITY, SAVER_QUALITY, streamQuery } from '../../ui/renditions.js';

test('a grid tile gets the smallest step at least as wide as it is in device pixels', () => {
  const width = (cssWidth, dpr) => chooseRendition({ cssWidth, dpr }).width;
  assert.equal(width(300, 1), 320);
  assert.equal(width(320, 1), 320);
  assert.equal(width(321, 1), 640);
  assert.equal(width(300, 2), 640, 'a 300 px tile on a 2× screen needs 600 device pixels');
  assert.equal(width(1000, 1), 640, 'wider than the ladder: still 640, full size is for the focused camera');
  assert.equal(width(0, 1), 320, 'not laid out yet');
  assert.equal(chooseRendition({ cssWidth: 300, dpr: undefined }).width, 320, 'no device pixel ratio: 1');
  assert.equal(chooseRendition({ cssWidth: 300 }).quality, GRID_QUALITY);
});

test('the focused or fullscreen camera gets the full frame at the camera\'s quality, saver or not', () => {
  assert.deepEqual(chooseRendition({ large: true, saver: true, cssWidth: 200 }), { width: null, quality: null, overlay: 'server' });
});

test('the data saver asks for 320 px at its own quality whatever the size', () => {
  assert.deepEqual(chooseRendition({ saver: true, cssWidth: 1200, dpr: 3 }), { width: 320, quality: SAVER_QUALITY, overlay: 'server' });
});

test('drawing in the browser asks for pictures without drawings', () => {
  assert.equal(chooseRendition({ clientOverlay: true, cssWidth: 300 }).overlay, 'client');
  assert.equal(streamQuery({ width: 640, quality: 60, overlay: 'client' }, '5'), 'fps=5&format=binary&width=640&quality=60&overlay=client');
  assert.equal(streamQuery({ width: null, quality: null, overlay: 'server' }, ''), 'format=binary');
});
