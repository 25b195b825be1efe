// A camera's zones in the UI: where the letterboxed picture lies, clicks as frame points and back,
// a polygon built click by click, and the server's rules checked before a save.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  addPoint, closeDraft, CLOSE_RADIUS, MAX_POINTS, newDraft, pictureRect, svgPoints, toBox, toFrame, undoPoint, zoneProblem,
} from '../../ui/zones.js';

test('a wide picture in a tall box is letterboxed top and bottom, a tall one left and right', () => {
  assert.deepEqual(pictureRect(400, 400, 640, 320), { x: 0, y: 100, w: 400, h: 200 });
  assert.deepEqual(pictureRect(400, 200, 300, 400), { x: 125, y: 0, w: 150, h: 200 });
  assert.deepEqual(pictureRect(320, 180, 1280, 720), { x: 0, y: 0, w: 320, h: 180 });
  assert.deepEqual(pictureRect(0, 0, 640, 480), { x: 0, y: 0, w: 0, h: 0 }, 'no box yet: no picture');
});

test('a click on the box is a point of the frame in 0..1, clamped to the picture, and back', () => {
  const rect = pictureRect(400, 400, 640, 320); // the picture from y 100 to 300
  assert.deepEqual(toFrame(200, 200, rect), [0.5, 0.5]);
  assert.deepEqual(toFrame(0, 100, rect), [0, 0]);
  assert.deepEqual(toFrame(400, 300, rect), [1, 1]);
  assert.deepEqual(toFrame(100, 50, rect), [0.25, 0], 'in the black band above: on the top edge');
  assert.deepEqual(toFrame(133.33333, 150, rect), [0.3333, 0.25], 'four decimals');
  assert.deepEqual(toBox([0.25, 0.75], rect), [100, 250]);
  for (const [x, y] of [[10, 120], [390, 299], [200, 180]]) {
    const [bx, by] = toBox(toFrame(x, y, rect), rect);
    assert.ok(Math.abs(bx - x) < 0.1 && Math.abs(by - y) < 0.1, `${x},${y} → ${bx},${by}`);
  }
});

test('a polygon is built click by click and closed by a click on its first corner', () => {
  let d = newDraft();
  d = addPoint(d, [0.1, 0.1]);
  d = addPoint(d, [0.5, 0.1]);
  // Near the first corner with only two: a corner, not a close.
  assert.deepEqual(addPoint(d, [0.11, 0.1]), { points: [[0.1, 0.1], [0.5, 0.1], [0.11, 0.1]], closed: false });
  d = addPoint(d, [0.5, 0.5]);
  d = addPoint(d, [0.1 + CLOSE_RADIUS / 2, 0.1]);
  assert.deepEqual(d, { points: [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]], closed: true });
  assert.equal(addPoint(d, [0.9, 0.9]), d, 'closed: no more corners');
  assert.deepEqual(undoPoint(d), { points: [[0.1, 0.1], [0.5, 0.1]], closed: false });
  assert.deepEqual(closeDraft(undoPoint(d)), { points: [[0.1, 0.1], [0.5, 0.1]], closed: false }, 'two corners do not close');
  assert.equal(closeDraft(addPoint(undoPoint(d), [0.2, 0.6])).closed, true);
  let many = newDraft();
  for (let i = 0; i < MAX_POINTS + 5; i++) many = addPoint(many, [0.05 + i * 0.01, i % 2 ? 0.1 : 0.9]);
  assert.equal(many.points.length, MAX_POINTS);
});

test('a zone is checked as the server checks it', () => {
  const bed = { name: 'bed', kind: 'no_falls', points: [[0, 0], [1, 0], [1, 1]] };
  assert.equal(zoneProblem(bed, []), null);
  assert.match(zoneProblem({ ...bed, name: 'my bed' }, []), /a name of letters/);
  assert.match(zoneProblem({ ...bed, name: '' }, []), /a name/);
  assert.match(zoneProblem(bed, [bed]), /another zone is named "bed"/);
  assert.match(zoneProblem({ ...bed, kind: 'bedroom' }, []), /a kind/);
  assert.match(zoneProblem({ ...bed, points: [[0, 0], [1, 1]] }, []), /at least 3 corners/);
  assert.match(zoneProblem({ ...bed, points: [[0, 0], [1, 1.2], [0, 1]] }, []), /inside the picture/);
  const full = Array.from({ length: 32 }, (_, i) => ({ ...bed, name: `z${i}` }));
  assert.match(zoneProblem(bed, full), /at most 32 zones/);
});

test('zones are drawn in the frame pixels of the picture', () => {
  assert.equal(svgPoints([[0, 0], [0.5, 0.25], [1, 1]], 640, 480), '0,0 320,120 640,480');
});
