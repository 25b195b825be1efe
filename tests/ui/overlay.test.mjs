// The browser draws poses as the server does: only confident limbs, the server's colours, frame
// pixels scaled to the picture and letterboxed onto the canvas.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detectionColor, drawPoses } from '../../ui/overlay.js';

// What GET /api/overlay answers (src/api/overlay.rs), cut to a few limbs and classes.
const STYLE = {
  skeleton: [[15, 13], [13, 11], [5, 7], [1, 2]],
  limb_colors: ['#C800FF', '#C800FF', '#FFC800', '#00C8FF'],
  keypoint_color: '#FF0000',
  keypoint_min_conf: 0.5,
  person_color: '#00FF00',
  class_colors: ['#FF3838', '#FF9D97', '#FF701F'],
};
const ALL = { skeletons: true, boxes: true, labels: true };

/** A canvas whose 2D context records every call and the style each drawing call was made with. */
function fakeCanvas(clientWidth, clientHeight) {
  const calls = [];
  const ctx = new Proxy({ calls }, {
    get(target, prop) {
      if (prop in target) return target[prop];
      return (...args) => calls.push({ op: prop, args, stroke: target.strokeStyle, fill: target.fillStyle });
    },
    set(target, prop, value) {
      target[prop] = value;
      return true;
    },
  });
  return { clientWidth, clientHeight, width: 0, height: 0, getContext: () => ctx, ctx, calls };
}

/** 17 keypoints at (10·i, 20·i), confident except those in `doubtful`. */
function keypoints(doubtful = []) {
  return Array.from({ length: 17 }, (_, i) => [10 * i, 20 * i, doubtful.includes(i) ? 0.3 : 0.9]);
}

const person = (kp) => ({ class: 'person', class_id: 0, score: 0.87, bbox: [100, 50, 300, 450], keypoints: kp });
const frame = (detections, extra = {}) => ({ width: 640, height: 480, detections, ...extra });
const lines = (calls) => calls.filter((c) => c.op === 'moveTo').map((c, i) => [c.args, calls.filter((l) => l.op === 'lineTo')[i].args]);

test('a limb is drawn only between two keypoints above the confidence threshold', () => {
  const canvas = fakeCanvas(640, 480);
  // 13 (left knee) is doubtful: the two leg limbs through it go; 5-7 and 1-2 stay.
  const n = drawPoses(canvas, frame([person(keypoints([13]))]), ALL, STYLE, 1);
  assert.equal(n, 1);
  assert.deepEqual(lines(canvas.calls), [[[50, 100], [70, 140]], [[10, 20], [20, 40]]]);
  const strokes = canvas.calls.filter((c) => c.op === 'stroke').map((c) => c.stroke);
  assert.deepEqual(strokes, ['#FFC800', '#00C8FF'], 'each limb in its body part\'s colour');
  const dots = canvas.calls.filter((c) => c.op === 'arc');
  assert.equal(dots.length, 16, 'every confident keypoint gets a dot');
  assert.ok(canvas.calls.filter((c) => c.op === 'fill').every((c) => c.fill === '#FF0000'));
});

test('people are boxed in the person colour, objects in their class colour (wrapping round the palette)', () => {
  const car = { class: 'car', class_id: 2, score: 0.64, bbox: [10, 10, 50, 40], keypoints: [] };
  const truck = { class: 'truck', class_id: 4, score: 0.5, bbox: [60, 10, 90, 40], keypoints: [] };
  assert.equal(detectionColor(person(keypoints()), STYLE), '#00FF00');
  assert.equal(detectionColor(car, STYLE), '#FF701F');
  assert.equal(detectionColor(truck, STYLE), '#FF9D97', 'class 4 of a 3-colour palette is colour 1');
  assert.equal(detectionColor({ bbox: [0, 0, 1, 1] }, STYLE), '#FF3838', 'no class id: class 0');

  const canvas = fakeCanvas(640, 480);
  assert.equal(drawPoses(canvas, frame([car, truck]), ALL, STYLE, 1), 2);
  const boxes = canvas.calls.filter((c) => c.op === 'strokeRect');
  assert.deepEqual(boxes.map((c) => [c.stroke, ...c.args]), [['#FF701F', 10, 10, 40, 30], ['#FF9D97', 60, 10, 30, 30]]);
  const labels = canvas.calls.filter((c) => c.op === 'fillText');
  assert.deepEqual(labels.map((c) => [c.fill, c.args[0]]), [['#FF701F', 'car 0.64'], ['#FF9D97', 'truck 0.50']]);
});

test('frame pixels are scaled to the rendition, then the picture is letterboxed onto the canvas', () => {
  // A 1280×720 frame sent as a 640×360 rendition, shown in a 320×320 CSS box at 2 device pixels
  // per CSS pixel: the canvas is 640×640, the picture fills its width, 140 px bars above and below.
  const canvas = fakeCanvas(320, 320);
  const m = { width: 1280, height: 720, rendition: { width: 640, height: 360 }, detections: [person(keypoints())] };
  drawPoses(canvas, m, ALL, STYLE, 2);
  assert.equal(canvas.width, 640);
  assert.equal(canvas.height, 640);
  const transforms = canvas.calls.filter((c) => c.op === 'setTransform').map((c) => c.args);
  assert.deepEqual(transforms, [[1, 0, 0, 1, 0, 0], [1, 0, 0, 1, 0, 140]]);
  const box = canvas.calls.find((c) => c.op === 'strokeRect');
  assert.deepEqual(box.args, [50, 25, 100, 200], 'the box at half the frame coordinates');
  assert.equal(canvas.ctx.lineWidth, 2, 'one pixel per 400 of the picture\'s longer side, rounded up');
});

test('nothing is drawn without the server\'s style, without detections, or with every layer off', () => {
  const m = frame([person(keypoints())]);
  for (const [style, layers, what] of [
    [null, ALL, 'no style'],
    [STYLE, { skeletons: false, boxes: false, labels: false }, 'layers off'],
  ]) {
    const canvas = fakeCanvas(640, 480);
    assert.equal(drawPoses(canvas, m, layers, style, 1), 0, what);
    assert.deepEqual(canvas.calls.map((c) => c.op), ['setTransform', 'clearRect'], `${what}: only cleared`);
  }
  const canvas = fakeCanvas(640, 480);
  assert.equal(drawPoses(canvas, frame([]), ALL, STYLE, 1), 0);
});

test('boxes only: no limbs, no dots, no labels', () => {
  const canvas = fakeCanvas(640, 480);
  drawPoses(canvas, frame([person(keypoints())]), { skeletons: false, boxes: true, labels: false }, STYLE, 1);
  const ops = new Set(canvas.calls.map((c) => c.op));
  assert.ok(ops.has('strokeRect'));
  for (const op of ['lineTo', 'arc', 'fillText']) assert.ok(!ops.has(op), op);
});
