// Browser test of accounts (issue 27), in headless Chromium against the real server on loopback: a
// viewer of one camera opens the grid, is sent to the login page, signs in, sees that one camera's
// tile with its picture and none of the settings, and signs out again.
//
//   cargo build -p haven && node tests/browser/accounts.mjs
//
// Environment as for run.mjs: HAVEN_BIN, CHROMIUM, HEADED=1.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { BIN, openPage, ROOT, startHaven, stopAll, shippedWithoutCameras, suiteScratch, until } from './harness.mjs';

const scratch = suiteScratch('accounts', 4);
const settings = path.join(scratch, 'accounts.toml');
const PASSWORD = 'correct horse battery';
let child;
let base;
let browser;
let page;
const errors = [];


/** The shipped settings without their cameras, plus two cameras (AI off), events in the scratch dir. */
function writeSettings() {
  const head = shippedWithoutCameras().replace(/^data_dir = .*$/m, `data_dir = ${JSON.stringify(path.join(scratch, 'events'))}`);
  const cam = (id, n) => `[[cameras]]\ncamera_id = "${id}"\nsource = "data/${n}.mp4"\nsource_type = "video_file"\nai_enabled = false\n`;
  writeFileSync(settings, `${head}\n${cam('ward-a-1', 1)}\n${cam('door', 2)}`);
}

/** `haven user add` with the password on stdin, as an administrator would script it. */
function addUser(name, role, cameras) {
  const args = ['--settings', settings, 'user', 'add', name, '--role', role, ...(cameras ? ['--cameras', cameras] : [])];
  const out = spawnSync(BIN, args, { cwd: ROOT, input: `${PASSWORD}\n`, encoding: 'utf8' });
  assert.equal(out.status, 0, `haven user add ${name}: ${out.stderr}`);
}

before(async () => {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: build it first (cargo build -p haven)`);
  writeSettings();
  addUser('ann', 'admin');
  addUser('vic', 'viewer', 'ward-a-*');
  ({ child, base } = await startHaven(settings, {}));
  ({ browser, page } = await openPage(errors));
});

after(async () => {
  await stopAll(browser, child);
});

const visible = (sel) => page.locator(sel).evaluateAll((els) => els.filter((e) => e.getClientRects().length > 0).length);

test('a viewer of one camera signs in and sees one tile and no settings', async () => {
  await page.goto(`${base}/`);
  await until('the login page', () => page.url().endsWith('/login'));
  await page.fill('input[name=name]', 'vic');
  await page.fill('input[name=password]', 'not the password');
  await page.click('button[type=submit]');
  await until('the refusal', async () => (await page.textContent('#login-error')).includes('wrong name or password'));

  await page.fill('input[name=password]', PASSWORD);
  await page.click('button[type=submit]');
  await until('the grid', () => new URL(page.url()).pathname === '/');
  await until('one tile with its picture', async () => {
    const ids = await page.locator('#tiles .tile .cam-id').allTextContents();
    const shown = await visible('#tiles .tile img.frame, #tiles .tile canvas.poses');
    return ids.length === 1 && ids[0] === 'ward-a-1' && shown > 0;
  });
  assert.deepEqual(await page.locator('#tiles .tile .cam-id').allTextContents(), ['ward-a-1']);
  for (const sel of ['#add-camera-btn', '.c-remove', '.c-zones', '.c-ai', '.c-quality', '#admin-link']) {
    assert.equal(await visible(sel), 0, `${sel} is shown to a viewer`);
  }
  assert.equal(await visible('#signout-btn'), 1, 'a way to sign out');
  // The session cookie is the page's credentials, and script cannot read it.
  assert.equal(await page.evaluate(() => document.cookie), '');
  const cams = await page.evaluate(async () => (await (await fetch('/api/cameras')).json()).total_cameras);
  assert.equal(cams, 1);

  await page.click('#signout-btn');
  await until('the login page again', () => page.url().endsWith('/login'));
  const after = await page.evaluate(async () => (await fetch('/api/cameras')).status);
  assert.equal(after, 401);
  assert.deepEqual(errors, []);
});

test('an admin sees every camera, the settings and the People page', async () => {
  await page.fill('input[name=name]', 'ann');
  await page.fill('input[name=password]', PASSWORD);
  await page.click('button[type=submit]');
  await until('two tiles', async () => (await page.locator('#tiles .tile').count()) === 2);
  assert.equal(await visible('#add-camera-btn'), 1);
  assert.equal(await visible('#admin-link'), 1);
  await page.click('#admin-link');
  await until('the accounts listed', async () => (await page.locator('#users tbody tr').count()) === 2);
  assert.deepEqual(errors, []);
});
