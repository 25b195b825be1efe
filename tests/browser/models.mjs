// Browser tests of the per-camera model switches and the events page's kind and class filters, in
// headless Chromium against the real server on loopback, with two models loaded: the pose model and
// the seeded-random detect fixture as "objects" (it finds a handful of random COCO objects).
//
//   cargo build -p haven && node tests/browser/models.mjs
//
// Environment as for run.mjs: HAVEN_BIN, CHROMIUM, HEADED=1.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BIN, openPage, startHaven, stopAll, shippedWithoutCameras, suiteScratch, until } from './harness.mjs';

const DETECT = process.env.HAVEN_DETECT_WEIGHTS ?? 'tests/fixtures/detect/yolov8n-detect-random.safetensors';

const scratch = suiteScratch('models', 6);
let child;
let base;
let browser;
let page;
const errors = [];


/** The shipped settings without their cameras, plus the objects model and one camera running both. */
function settingsFile() {
  const head = shippedWithoutCameras();
  const file = path.join(scratch, 'models.toml');
  writeFileSync(file, `${head}
[models.objects]
weights = "${DETECT}"
conf_threshold = 0.25
iou_threshold = 0.7

[[cameras]]
camera_id = "yard"
source = "data/1.mp4"
source_type = "video_file"
models = ["pose", "objects"]
object_events = ["person", "bicycle", "car", "dog", "cat", "bird", "chair", "bottle", "cup", "tv", "book", "clock"]
`);
  return file;
}

async function getJson(p) {
  const res = await fetch(base + p, { cache: 'no-store' });
  return res.json();
}

before(async () => {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: build it first (cargo build -p haven)`);
  ({ child, base } = await startHaven(settingsFile(), {
    HAVEN__EVENTS__DATA_DIR: path.join(scratch, 'events'),
    // The random model's objects come and go: let each one seen twice be an event.
    HAVEN__EVENTS__OBJECTS__MIN_SECS: '0',
    HAVEN__EVENTS__OBJECTS__MIN_SCORE: '0',
    HAVEN__EVENTS__OBJECTS__MAX_CENTER_DISTANCE: '2',
  }));
  ({ browser, page } = await openPage(errors));
});

after(async () => {
  await stopAll(browser, child);
});

test('each tile has a switch per loaded model, and switching one PATCHes the camera live', async () => {
  await page.goto(`${base}/`);
  const tile = page.locator('.tile[data-camera-id="yard"]');
  await until('the model switches', async () => (await tile.locator('input.c-model').count()) === 2);
  const pose = tile.locator('input.c-model[data-model="pose"]');
  const objects = tile.locator('input.c-model[data-model="objects"]');
  assert.equal(await pose.isChecked(), true);
  assert.equal(await objects.isChecked(), true);
  // Objects drawn by the server and sent in the metadata reach the page.
  await until('an object in a frame', () => page.evaluate(() => {
    const el = document.querySelector('.tile[data-camera-id="yard"]');
    return Number(el?.dataset.frames || 0) > 0;
  }));
  const uptime = (await getJson('/api/cameras/yard')).uptime_seconds;
  await objects.uncheck();
  await until('the server to run pose only', async () => JSON.stringify((await getJson('/api/cameras/yard')).models) === '["pose"]');
  assert.equal(await objects.isChecked(), false);
  const status = await getJson('/api/cameras/yard');
  assert.ok(status.uptime_seconds >= uptime, 'not restarted');
  await objects.check();
  await until('objects back on', async () => JSON.stringify((await getJson('/api/cameras/yard')).models) === '["pose","objects"]');
});

test('the browser draws objects in their class colour when it draws the overlay', async () => {
  await page.evaluate(() => {
    localStorage.setItem('haven.view', JSON.stringify({ clientOverlay: true, skeletons: true, boxes: true, labels: true, saver: false }));
  });
  await page.reload();
  // dataset.drawn counts what the canvas drew: people and objects together; objects' boxes are in
  // the colours of Ultralytics' palette (draw.rs), which neither people's green nor the limbs use.
  const palette = ['FF3838', 'FF9D97', 'FF701F', 'FFB21D', 'CFD231', '48F90A', '92CC17', '3DDB86', '1A9334', '00D4BB',
    '2C99A8', '00C2FF', '344593', '6473FF', '0018EC', '8438FF', '520085', 'CB38FF', 'FF95C8', 'FF37C7'];
  await until('objects drawn by the browser in their class colours', () => page.evaluate((colours) => {
    const el = document.querySelector('.tile[data-camera-id="yard"]');
    const canvas = el?.querySelector('canvas.poses');
    if (!canvas || canvas.hidden || !(Number(el.dataset.drawn || 0) > 0)) return false;
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    const wanted = new Set(colours.map((h) => parseInt(h, 16)));
    for (let i = 0; i < data.length; i += 4) {
      if (data[i + 3] === 255 && wanted.has((data[i] << 16) | (data[i + 1] << 8) | data[i + 2])) return true;
    }
    return false;
  }, palette));
  await page.evaluate(() => localStorage.removeItem('haven.view'));
});

test('the events page filters object events by kind and by class', async () => {
  const listed = await until('an object_detected event', async () => {
    const r = await getJson('/api/events?kind=object_detected');
    return r.events.length ? r.events : null;
  });
  const cls = listed[0].class;
  await page.goto(`${base}/events`);
  await page.selectOption('#f-kind', 'object_detected');
  await until('the list of object events', async () => (await page.locator('#event-list li').count()) > 0);
  const kinds = await page.locator('#event-list li').evaluateAll((lis) => lis.map((li) => li.dataset.kind));
  assert.ok(kinds.every((k) => k === 'object_detected'), kinds.join(','));
  await until('the class filter offers the class', async () => (await page.locator(`#f-class option[value="${cls}"]`).count()) === 1);
  await page.selectOption('#f-class', cls);
  await until('only that class listed', async () => {
    const classes = await page.locator('#event-list li').evaluateAll((lis) => lis.map((li) => li.dataset.class));
    return classes.length > 0 && classes.every((c) => c === cls);
  });
  const url = new URL(page.url());
  assert.equal(url.searchParams.get('kind'), 'object_detected');
  assert.equal(url.searchParams.get('class'), cls);
  assert.match(await page.locator('#event-list li .kind').first().textContent(), new RegExp(`Object: ${cls}`));
});

test('no script errors', () => {
  assert.deepEqual(errors, []);
});
