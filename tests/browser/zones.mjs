// Browser test of a camera's zone editor, in headless Chromium against the real server on loopback:
// a zone drawn by clicking on the tile's picture, named, saved (PATCH), seen by the API and in the
// settings file, still there after a reload (drawn with Display → Show zones), then deleted.
//
//   cargo build -p haven && node tests/browser/zones.mjs
//
// Environment as for run.mjs: HAVEN_BIN, CHROMIUM, HEADED=1.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BIN, openPage, startHaven, stopAll, shippedWithoutCameras, suiteScratch, until } from './harness.mjs';


const scratch = suiteScratch('zones', 4);
const settings = path.join(scratch, 'zones.toml');
let child;
let base;
let browser;
let page;
const errors = [];


/** The shipped settings without their cameras, plus one camera (AI off: nothing but its picture is needed). */
function writeSettings() {
  const head = shippedWithoutCameras();
  writeFileSync(settings, `${head}
[[cameras]]
camera_id = "room"
source = "data/1.mp4"
source_type = "video_file"
ai_enabled = false
`);
}

async function getJson(p) {
  const res = await fetch(base + p, { cache: 'no-store' });
  return res.json();
}

before(async () => {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: build it first (cargo build -p haven)`);
  writeSettings();
  ({ child, base } = await startHaven(settings, { HAVEN__EVENTS__DATA_DIR: path.join(scratch, 'events') }));
  ({ browser, page } = await openPage(errors));
});

after(async () => {
  await stopAll(browser, child);
});

/** Where the picture lies on the page (the media box letterboxes it): page pixels of a frame point. */
async function pictureOnPage(tile) {
  const { box, natural } = await tile.evaluate((el) => {
    const media = el.querySelector('.media').getBoundingClientRect();
    const img = el.querySelector('img.frame');
    return { box: { x: media.left, y: media.top, w: media.width, h: media.height }, natural: [img.naturalWidth, img.naturalHeight] };
  });
  const scale = Math.min(box.w / natural[0], box.h / natural[1]);
  const [w, h] = [natural[0] * scale, natural[1] * scale];
  const [x0, y0] = [box.x + (box.w - w) / 2, box.y + (box.h - h) / 2];
  return ([fx, fy]) => ({ x: x0 + fx * w, y: y0 + fy * h });
}

const corners = [[0.2, 0.3], [0.6, 0.3], [0.6, 0.8], [0.2, 0.8]];

test('a zone drawn by clicking on the tile is saved, seen by the API and in the file', async () => {
  await page.goto(`${base}/`);
  const tile = page.locator('.tile[data-camera-id="room"]');
  await until('a picture on the tile', () => tile.evaluate((el) => el.querySelector('img.frame').naturalWidth > 0));
  await tile.locator('button.c-zones').click();
  await until('the zone editor', () => tile.locator('.zone-editor').isVisible());
  const at = await pictureOnPage(tile);
  for (const c of corners) await page.mouse.click(at(c).x, at(c).y);
  assert.equal(await tile.locator('svg.zones polyline.zone-draft').count(), 1, 'the open shape is drawn');
  await page.mouse.click(at(corners[0]).x + 2, at(corners[0]).y + 2); // the first corner again: closed
  assert.equal(await tile.locator('svg.zones polygon.zone-draft').count(), 1, 'the closed shape is drawn');
  assert.equal(await page.evaluate(() => location.hash), '', 'clicks on the picture while editing do not focus the camera');
  await tile.locator('.z-name').fill('bed');
  await tile.locator('.z-kind').selectOption('no_falls');
  await tile.locator('.z-save').click();

  const zones = await until('the zone in the API', async () => {
    const z = (await getJson('/api/cameras/room')).zones;
    return z?.length ? z : null;
  });
  assert.equal(zones.length, 1);
  assert.equal(zones[0].name, 'bed');
  assert.equal(zones[0].kind, 'no_falls');
  assert.equal(zones[0].points.length, 4, JSON.stringify(zones[0]));
  zones[0].points.forEach(([x, y], i) => {
    assert.ok(Math.abs(x - corners[i][0]) < 0.01 && Math.abs(y - corners[i][1]) < 0.01, `corner ${i}: ${x}, ${y}`);
  });
  await until('the editor closed', async () => !(await tile.locator('.zone-editor').isVisible()));
  const file = readFileSync(settings, 'utf8');
  // The camera's entry (not the comment's example): zones = [{ name = "bed", kind = "no_falls", points = … }]
  assert.match(file, /^zones = .*name = "bed".*kind = "no_falls"/m, 'written to the settings file');
});

test('after a reload the zone is still there, drawn with Display → Show zones, and can be deleted', async () => {
  await page.reload();
  const tile = page.locator('.tile[data-camera-id="room"]');
  await until('a picture on the tile', () => tile.evaluate((el) => el.querySelector('img.frame').naturalWidth > 0));
  assert.equal(await tile.locator('svg.zones polygon.zone').count(), 0, 'not drawn unless asked');
  await page.locator('#display-menu summary').click();
  await page.locator('#opt-zones').check();
  await until('the saved zone drawn', async () => (await tile.locator('svg.zones polygon.zone[data-zone="bed"]').count()) === 1);
  assert.equal(await tile.locator('svg.zones').evaluate((s) => s.hasAttribute('hidden')), false);
  await page.keyboard.press('Escape');

  await tile.locator('button.c-zones').click();
  await until('the zone listed in the editor', async () => (await tile.locator('.z-list li[data-zone="bed"]').count()) === 1);
  await tile.locator('button.z-delete').click();
  assert.equal(await tile.locator('.z-list li').count(), 0);
  await tile.locator('.z-save').click();
  await until('no zone in the API', async () => (await getJson('/api/cameras/room')).zones?.length === 0);
  await until('no zone drawn', async () => (await tile.locator('svg.zones polygon').count()) === 0);
  assert.doesNotMatch(readFileSync(settings, 'utf8'), /^zones = /m);
  await page.locator('#display-menu summary').click();
  await page.locator('#opt-zones').uncheck();
});

test('a shape left open is not saved, and says why', async () => {
  const tile = page.locator('.tile[data-camera-id="room"]');
  await page.keyboard.press('Escape');
  await tile.locator('button.c-zones').click();
  const at = await pictureOnPage(tile);
  for (const c of corners.slice(0, 2)) await page.mouse.click(at(c).x, at(c).y);
  await tile.locator('.z-name').fill('half');
  await tile.locator('.z-save').click();
  await until('the reason shown', async () => /Close the shape/.test(await tile.locator('.z-error').textContent()));
  assert.equal((await getJson('/api/cameras/room')).zones.length, 0);
  await tile.locator('.z-cancel').click();
});

test('no script errors', () => {
  assert.deepEqual(errors, []);
});
