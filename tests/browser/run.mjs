// End-to-end tests of the HAVEN web UI in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core), against the real server on loopback with the three demo cameras.
//
//   bash tests/browser/setup.sh        # once: chromium (apt) and playwright-core (npm ci)
//   cargo build -p haven               # the runner builds nothing
//   node tests/browser/run.mjs         # from anywhere; exits non-zero on failure
//
// Environment: HAVEN_BIN (default target/debug/haven), HAVEN_SETTINGS (default
// settings/default.toml), CHROMIUM (default /usr/bin/chromium), UPDATE_SCREENSHOT=1 to rewrite
// docs/ui-grid.png (it is written anyway when missing; every run leaves a copy in
// target/browser-tests/), HEADED=1 to watch.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.resolve(ROOT, process.env.HAVEN_BIN ?? 'target/debug/haven');
// Only read: every server runs on a private copy of it (see settingsCopy below).
const SETTINGS = process.env.HAVEN_SETTINGS ?? 'settings/default.toml';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, 'target', 'browser-tests');
const DOC_SHOT = path.join(ROOT, 'docs', 'ui-grid.png');
const DEMO = ['cam1', 'cam2', 'cam3'];

// Generous: the demo runs pose inference on every camera on a small, shared machine.
const FRAME_WAIT_MS = 60_000;
const API_WAIT_MS = 20_000;

// ---------------------------------------------------------------------------------------------
// The server.

const servers = new Set();

// The server saves cameras added, changed or removed through the API back into its settings file,
// so every server here runs on a private copy: the repository's settings are never touched.
const scratch = mkdtempSync(path.join(tmpdir(), 'haven-ui-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

function settingsCopy(name, { cameras = true } = {}) {
  const text = readFileSync(path.resolve(ROOT, SETTINGS), 'utf8');
  const cut = text.search(/^\[\[cameras\]\]/m);
  const file = path.join(scratch, name);
  writeFileSync(file, cameras || cut < 0 ? text : text.slice(0, cut));
  return file;
}

function startServer({ settings, env = {} }) {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: build it first (cargo build -p haven)`);
  const child = spawn(BIN, ['--settings', settings], {
    cwd: ROOT,
    env: { ...process.env, HAVEN__SERVER__BIND: '127.0.0.1:0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  servers.add(child);
  const log = [];
  const keep = (chunk) => {
    for (const line of chunk.toString().split('\n')) {
      if (line) log.push(line);
    }
    if (log.length > 400) log.splice(0, log.length - 400);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const server = { child, log, settings, base: null };
  server.ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 90 s:\n${log.join('\n')}`)), 90_000);
    const onData = (chunk) => {
      const m = /HAVEN listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(log.join('\n') + chunk.toString());
      if (m) {
        clearTimeout(timer);
        child.stderr.off('data', onData);
        child.stdout.off('data', onData);
        server.base = m[1];
        resolve(server);
      }
    };
    child.stderr.on('data', onData);
    child.stdout.on('data', onData);
    child.once('exit', (code, signal) => {
      servers.delete(child);
      clearTimeout(timer);
      reject(new Error(`server exited (${code ?? signal}) before listening:\n${log.join('\n')}`));
    });
  });
  return server.ready;
}

async function stopServer(server) {
  const child = server?.child;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
  servers.delete(child);
}

function killAll() {
  for (const child of servers) {
    try { child.kill('SIGKILL'); } catch { /* gone */ }
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}
// Whatever happens, never hang a CI job.
setTimeout(() => {
  console.error('browser tests: global timeout (15 min)');
  killAll();
  process.exit(1);
}, 15 * 60_000).unref();

// ---------------------------------------------------------------------------------------------
// Helpers.

async function getJson(base, p) {
  const res = await fetch(base + p, { cache: 'no-store' });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function until(what, fn, timeout = API_WAIT_MS, every = 250) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
    }
    await new Promise((r) => setTimeout(r, every));
  }
}

async function camera(base, id) {
  const r = await getJson(base, `/api/cameras/${encodeURIComponent(id)}`);
  return r.status === 200 ? r.body : null;
}

function tile(page, id) {
  return page.locator(`.tile[data-camera-id="${id}"]`);
}

/** What the tile is showing now: how many frames it took, the last seq, and a hash of the JPEG. */
async function frameOf(page, id) {
  return page.evaluate((cid) => {
    const el = document.querySelector(`.tile[data-camera-id="${cid}"]`);
    const img = el?.querySelector('img.frame');
    if (!el || !img || img.hidden || !img.complete || !img.naturalWidth) return null;
    return {
      frames: Number(el.dataset.frames || 0),
      seq: el.dataset.seq ?? null,
      src: img.currentSrc || img.src,
      width: img.naturalWidth,
      height: img.naturalHeight,
    };
  }, id);
}

const hash = (s) => createHash('sha1').update(s).digest('hex');

async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: !process.env.HEADED,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

function watchErrors(page) {
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    // Sockets refused during a deliberate drop are expected; anything else is a bug.
    if (m.type() === 'error' && !/WebSocket|Failed to load resource/.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  return errors;
}

// ---------------------------------------------------------------------------------------------
// The suite: one server with the demo cameras, one browser page, tests in order.

let server;
let browser;
let context;
let page;
let errors;
const sockets = []; // URLs of every WebSocket the page opened
// cam1's socket runs through a route so tests can hold back its frames or drop it.
const cam1 = { routes: 0, hold: false, current: null }; // current: the server side of its socket

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  server = await startServer({ settings: settingsCopy('demo.toml') });
  browser = await launch();
  context = await browser.newContext({ viewport: { width: 1180, height: 940 } });
  page = await context.newPage();
  errors = watchErrors(page);
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await page.routeWebSocket(/\/ws\/stream\/cam1(\?|$)/, (ws) => {
    cam1.routes++;
    sockets.push(ws.url());
    const upstream = ws.connectToServer();
    upstream.onMessage((message) => {
      if (!cam1.hold) ws.send(message);
    });
    cam1.current = upstream;
  });
});

after(async () => {
  if (page && process.exitCode) {
    await page.screenshot({ path: path.join(ARTIFACTS, 'failure.png'), fullPage: true }).catch(() => {});
  }
  await browser?.close().catch(() => {});
  if (server && process.exitCode) {
    console.error(`--- server log (last lines) ---\n${server.log.slice(-60).join('\n')}`);
  }
  await stopServer(server);
});

test('the page loads and shows a tile per camera', async () => {
  const res = await page.goto(server.base + '/');
  assert.equal(res.status(), 200);
  assert.match(await page.title(), /HAVEN/);
  await page.locator('.tile').first().waitFor();
  await until('three tiles', async () => (await page.locator('.tile').count()) === 3);
  const ids = await page.locator('.tile').evaluateAll((els) => els.map((e) => e.dataset.cameraId));
  assert.deepEqual(ids, DEMO);
  for (const id of DEMO) {
    assert.equal(await tile(page, id).locator('.cam-id').textContent(), id);
  }
  // Static files come from the binary, with a JS content type for the module.
  const js = await fetch(server.base + '/ui/app.js');
  assert.match(js.headers.get('content-type') ?? '', /javascript/);
});

test('every tile shows frames that change over time', async () => {
  const first = {};
  for (const id of DEMO) {
    first[id] = await until(`a first frame on ${id}`, () => frameOf(page, id), FRAME_WAIT_MS);
    assert.ok(first[id].width > 0 && first[id].height > 0);
    assert.ok(first[id].src.startsWith('data:image/jpeg;base64,'), 'frames are shown as data: URLs');
  }
  for (const id of DEMO) {
    await until(`${id}'s picture to change`, async () => {
      const now = await frameOf(page, id);
      return now && now.frames > first[id].frames && now.seq !== first[id].seq && hash(now.src) !== hash(first[id].src);
    }, FRAME_WAIT_MS);
    assert.equal(await tile(page, id).getAttribute('data-link'), 'live');
    assert.equal(await tile(page, id).locator('.placeholder').isVisible(), false);
  }
});

test('tiles show the stats from /api/cameras', async () => {
  for (const id of DEMO) {
    const t = tile(page, id);
    await until(`${id}'s stats`, async () => {
      const viewers = await t.locator('.s-viewers').textContent();
      const fps = await t.locator('.s-fps').textContent();
      const state = await t.locator('.state').textContent();
      return Number(viewers) >= 1 && fps !== '–' && state === 'streaming';
    });
    const status = await camera(server.base, id);
    assert.ok(status.viewers >= 1, `${id} has the page as a viewer`);
    assert.match(await t.locator('.s-dropped').textContent(), /^\d+$/);
    assert.match(await t.locator('.s-inference').textContent(), /ms|off/);
  }
  assert.match(await page.locator('#summary').textContent(), /3 cameras/);
});

test('the focus view shows one camera large and switches camera', async () => {
  const grid = page.locator('#grid');
  const stage = page.locator('#stage');
  await tile(page, 'cam2').locator('.c-focus').click();
  assert.equal(await grid.getAttribute('data-mode'), 'focus');
  assert.equal(await stage.locator('.tile').getAttribute('data-camera-id'), 'cam2');
  const big = await tile(page, 'cam2').boundingBox();
  const small = await tile(page, 'cam1').boundingBox();
  assert.ok(big.width > small.width * 1.8, `focused tile is large (${big.width} vs ${small.width})`);
  assert.match(page.url(), /#focus=cam2$/);

  // Keyboard: a digit picks a camera, arrows step through them, Escape goes back to the grid.
  await page.locator('body').click({ position: { x: 5, y: 5 } }).catch(() => {});
  await page.keyboard.press('3');
  assert.equal(await stage.locator('.tile').getAttribute('data-camera-id'), 'cam3');
  await page.keyboard.press('ArrowRight');
  assert.equal(await stage.locator('.tile').getAttribute('data-camera-id'), 'cam1');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await stage.locator('.tile').getAttribute('data-camera-id'), 'cam3');
  // The header selector does the same.
  await page.locator('#view-select').selectOption('cam1');
  assert.equal(await stage.locator('.tile').getAttribute('data-camera-id'), 'cam1');
  // The focused camera keeps streaming.
  const before = await frameOf(page, 'cam1');
  await until('cam1 to keep streaming in focus', async () => (await frameOf(page, 'cam1'))?.frames > (before?.frames ?? 0), FRAME_WAIT_MS);
  await page.keyboard.press('Escape');
  assert.equal(await grid.getAttribute('data-mode'), 'grid');
  assert.equal(await stage.locator('.tile').count(), 0);
  // Enter on a tile that has the keyboard focus focuses it.
  await tile(page, 'cam2').focus();
  await page.keyboard.press('Enter');
  assert.equal(await stage.locator('.tile').getAttribute('data-camera-id'), 'cam2');
  await page.keyboard.press('g');
  assert.equal(await grid.getAttribute('data-mode'), 'grid');
  assert.ok(await tile(page, 'cam1').locator('.fullscreen').count(), 'a fullscreen button per tile');
});

test('toggling AI changes what the server reports', async () => {
  const id = 'cam1';
  const t = tile(page, id);
  const was = (await camera(server.base, id)).ai_enabled;
  assert.equal(await t.locator('.c-ai').isChecked(), was);
  await t.locator('.c-ai').click();
  await until(`${id}.ai_enabled == ${!was}`, async () => (await camera(server.base, id)).ai_enabled === !was);
  if (was) await until('the tile to show inference off', async () => (await t.locator('.s-inference').textContent()) === 'off');
  await t.locator('.c-ai').click();
  await until(`${id}.ai_enabled == ${was}`, async () => (await camera(server.base, id)).ai_enabled === was);
  // Other cameras were left alone.
  assert.equal((await camera(server.base, 'cam2')).ai_enabled, true);
});

test('JPEG quality is changed live, and a bad value shows the server\'s message', async () => {
  const id = 'cam2';
  const t = tile(page, id);
  const was = (await camera(server.base, id)).jpeg_quality;
  await t.locator('.c-quality').fill('35');
  await t.locator('.c-quality').press('Enter');
  await until(`${id}.jpeg_quality == 35`, async () => (await camera(server.base, id)).jpeg_quality === 35);
  await t.locator('.c-quality').fill('500');
  await t.locator('.c-quality').press('Enter');
  await page.locator('.toast.error').first().waitFor({ timeout: API_WAIT_MS });
  assert.match(await page.locator('.toast.error').first().textContent(), /cam2: .+/);
  assert.equal((await camera(server.base, id)).jpeg_quality, 35);
  await until('the control to show the server\'s value again', async () => (await t.locator('.c-quality').inputValue()) === '35');
  await t.locator('.c-quality').fill(String(was));
  await t.locator('.c-quality').press('Enter');
  await until(`${id}.jpeg_quality back to ${was}`, async () => (await camera(server.base, id)).jpeg_quality === was);
});

test('this viewer\'s FPS reconnects with ?fps=', async () => {
  const id = 'cam3';
  const seen = sockets.length;
  await tile(page, id).locator('.c-fps').selectOption('2');
  await until('a socket with fps=2', async () => sockets.slice(seen).some((u) => u.includes(`/ws/stream/${id}?fps=2`)));
  const before = await frameOf(page, id);
  await until(`${id} to stream at its new rate`, async () => (await frameOf(page, id))?.frames > before.frames, FRAME_WAIT_MS);
  await tile(page, id).locator('.c-fps').selectOption('');
  await until('a socket with the default rate', async () => sockets.slice(seen).some((u) => u.endsWith(`/ws/stream/${id}`)));
});

test('a stream that stops delivering is shown stale, then fresh again', async () => {
  const t = tile(page, 'cam1');
  await until('cam1 live', async () => (await t.getAttribute('data-link')) === 'live' && (await frameOf(page, 'cam1')));
  cam1.hold = true;
  await until('cam1 to be marked stale', async () => (await t.getAttribute('data-stale')) === 'true', 15_000);
  assert.match(await t.locator('.link').textContent(), /stale/);
  assert.equal(await tile(page, 'cam2').getAttribute('data-stale'), 'false');
  cam1.hold = false;
  await until('cam1 fresh again', async () => (await t.getAttribute('data-stale')) === 'false', FRAME_WAIT_MS);
});

test('when the server restarts, the page says so and every stream comes back by itself', async () => {
  const port = new URL(server.base).port;
  const settings = server.settings;
  const before = {};
  for (const id of DEMO) before[id] = (await frameOf(page, id))?.frames ?? 0;
  await stopServer(server);
  await until('the tiles to notice', async () => {
    const links = await page.locator('.tile').evaluateAll((els) => els.map((e) => e.dataset.link));
    return links.every((l) => l === 'reconnecting' || l === 'connecting');
  }, 15_000);
  await page.locator('#banner').waitFor({ timeout: 15_000 });
  server = await startServer({ settings, env: { HAVEN__SERVER__BIND: `127.0.0.1:${port}` } });
  for (const id of DEMO) {
    await until(`${id} to stream again`, async () => (await frameOf(page, id))?.frames > before[id] + 1, FRAME_WAIT_MS);
    assert.equal(await tile(page, id).getAttribute('data-link'), 'live');
  }
  await page.locator('#banner').waitFor({ state: 'hidden', timeout: API_WAIT_MS });
});

test('a hidden tab closes its sockets and comes back when shown', async () => {
  const hide = (hidden) => page.evaluate((h) => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (h ? 'hidden' : 'visible') });
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => h });
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
  await hide(true);
  await until('no viewers on the server', async () => {
    const { body } = await getJson(server.base, '/api/cameras');
    return body.cameras.every((c) => c.viewers === 0);
  });
  assert.equal(await tile(page, 'cam2').getAttribute('data-link'), 'paused');
  await hide(false);
  await until('viewers back', async () => {
    const { body } = await getJson(server.base, '/api/cameras');
    return body.cameras.every((c) => c.viewers >= 1);
  });
  const before = await frameOf(page, 'cam2');
  await until('frames again', async () => (await frameOf(page, 'cam2'))?.frames > before.frames, FRAME_WAIT_MS);
});

test('adding a camera shows the server\'s validation message, then the new tile', async () => {
  const dialog = page.locator('#add-dialog');
  const error = page.locator('#add-error');
  await page.locator('#add-camera-btn').click();
  await dialog.waitFor();

  // A file outside the media directories is refused; the message is the server's.
  await dialog.locator('[name=camera_id]').fill('e2e-added');
  await dialog.locator('[name=source]').fill('/etc/hostname');
  await dialog.locator('#add-submit').click();
  await error.waitFor({ timeout: API_WAIT_MS });
  const refused = await fetch(server.base + '/api/cameras', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ camera_id: 'e2e-added', source: '/etc/hostname', source_type: 'video_file' }),
  });
  assert.equal(refused.status, 400);
  assert.equal((await error.textContent()).trim(), (await refused.json()).error);
  assert.ok(await dialog.isVisible(), 'the form stays open');

  // A duplicate id is refused too.
  await dialog.locator('[name=camera_id]').fill('cam1');
  await dialog.locator('[name=source]').fill('data/1.mp4');
  await dialog.locator('#add-submit').click();
  await until('the duplicate message', async () => /cam1/.test(await error.textContent()));

  await dialog.locator('[name=camera_id]').fill('e2e-added');
  await dialog.locator('#add-submit').click();
  await dialog.waitFor({ state: 'hidden', timeout: API_WAIT_MS });
  await tile(page, 'e2e-added').waitFor();
  assert.equal(await page.locator('.tile').count(), 4);
  assert.ok(await camera(server.base, 'e2e-added'), 'the server lists it');
  await until('frames on the new camera', () => frameOf(page, 'e2e-added'), FRAME_WAIT_MS);
});

test('removing a camera asks first, then takes its tile away', async () => {
  const dialog = page.locator('#remove-dialog');
  await tile(page, 'e2e-added').locator('.c-remove').click();
  await dialog.waitFor();
  assert.match(await dialog.textContent(), /e2e-added/);
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await dialog.waitFor({ state: 'hidden' });
  assert.ok(await camera(server.base, 'e2e-added'), 'cancel keeps the camera');

  await tile(page, 'e2e-added').locator('.c-remove').click();
  await dialog.locator('#remove-confirm').click();
  await tile(page, 'e2e-added').waitFor({ state: 'detached', timeout: API_WAIT_MS });
  assert.equal((await getJson(server.base, '/api/cameras/e2e-added')).status, 404);
  assert.equal(await page.locator('.tile').count(), 3);
});

test('a camera that is down shows its placeholder', async () => {
  const res = await fetch(server.base + '/api/cameras', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ camera_id: 'door', source: 'data/missing.mp4', source_type: 'video_file' }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  // The page learns about cameras added elsewhere from its polling.
  const t = tile(page, 'door');
  await t.waitFor({ timeout: API_WAIT_MS });
  await until('door to be reported down', async () => (await camera(server.base, 'door'))?.connected === false);
  await until('the placeholder', async () => (await t.getAttribute('data-down')) === 'true' && (await t.locator('.placeholder').isVisible()), API_WAIT_MS);
  assert.match(await t.locator('.ph-title').textContent(), /offline|ended|stopped/i);
  const status = await camera(server.base, 'door');
  if (status.last_error) {
    await until('the error in the placeholder', async () => (await t.locator('.ph-detail').textContent()) === status.last_error || (await t.locator('.ph-detail').textContent()).length > 0);
  }
  assert.equal(await t.locator('img.frame').isVisible(), false);

  // The screenshot for the docs: three live cameras and one that is down.
  for (const id of DEMO) await until(`${id} fresh`, async () => (await tile(page, id).getAttribute('data-stale')) === 'false' && (await frameOf(page, id)), FRAME_WAIT_MS);
  await page.mouse.move(0, 0);
  await page.evaluate(() => document.querySelector('#toasts').replaceChildren());
  const shot = path.join(ARTIFACTS, 'ui-grid.png');
  await page.screenshot({ path: shot, fullPage: true });
  if (process.env.UPDATE_SCREENSHOT || !existsSync(DOC_SHOT)) copyFileSync(shot, DOC_SHOT);

  const del = await fetch(server.base + '/api/cameras/door', { method: 'DELETE' });
  assert.equal(del.status, 204);
  await t.waitFor({ state: 'detached', timeout: API_WAIT_MS });
});

test('streaming for a while grows neither the DOM nor the heap', async (t) => {
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  const measure = async () => {
    await cdp.send('HeapProfiler.collectGarbage');
    const { metrics } = await cdp.send('Performance.getMetrics');
    return Object.fromEntries(metrics.map((m) => [m.name, m.value]));
  };
  const start = await measure();
  const frames = (await frameOf(page, 'cam1'))?.frames ?? 0;
  await new Promise((r) => setTimeout(r, 12_000));
  const end = await measure();
  assert.ok((await frameOf(page, 'cam1')).frames > frames + 5, 'frames kept coming');
  const grew = (k) => end[k] - start[k];
  t.diagnostic(`over 12 s: nodes ${grew('Nodes')}, listeners ${grew('JSEventListeners')}, heap ${(grew('JSHeapUsedSize') / 1e3).toFixed(0)} kB`);
  assert.ok(grew('Nodes') <= 50, `DOM nodes grew by ${grew('Nodes')}`);
  assert.ok(grew('JSEventListeners') <= 20, `listeners grew by ${grew('JSEventListeners')}`);
  assert.ok(grew('JSHeapUsedSize') < 4 * 1024 * 1024, `JS heap grew by ${(grew('JSHeapUsedSize') / 1e6).toFixed(1)} MB`);
  await cdp.detach();
});

test('no script errors in the page', () => {
  assert.deepEqual(errors, []);
});

// ---------------------------------------------------------------------------------------------
// With a token configured, the page asks for it once and sends it on changes.

test('with a token, the page asks for it once and sends it as a bearer token', async () => {
  // The same settings without the demo cameras, and no model to load.
  const settings = settingsCopy('secured.toml', { cameras: false });
  const secured = await startServer({ settings, env: { HAVEN__API__TOKEN: 'open-sesame', HAVEN__MODEL__ENABLED: 'false' } });
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  try {
    const p = await ctx.newPage();
    const errs = watchErrors(p);
    const auth = [];
    p.on('request', (r) => {
      if (r.method() !== 'GET') auth.push(r.headers().authorization ?? null);
    });
    await p.goto(secured.base + '/');
    await p.locator('#empty').waitFor();

    const add = async (id) => {
      await p.locator('#add-camera-btn').click();
      await p.locator('#add-dialog [name=camera_id]').fill(id);
      await p.locator('#add-dialog [name=source]').fill('data/1.mp4');
      await p.locator('#add-submit').click();
    };
    const tokenDialog = p.locator('#token-dialog');

    // A wrong token: asked once, refused, the form says so.
    await add('t1');
    await tokenDialog.waitFor();
    await tokenDialog.locator('[name=token]').fill('wrong');
    await tokenDialog.locator('button[type=submit]').click();
    await p.locator('#add-error').waitFor();
    assert.equal(await tokenDialog.isVisible(), false, 'asked only once per change');
    assert.equal(await p.evaluate(() => sessionStorage.getItem('haven.token')), null, 'a refused token is forgotten');

    // The right one: the change goes through, and the token is kept for the next changes.
    await p.locator('#add-submit').click();
    await tokenDialog.waitFor();
    await tokenDialog.locator('[name=token]').fill('open-sesame');
    await tokenDialog.locator('button[type=submit]').click();
    await p.locator('#add-dialog').waitFor({ state: 'hidden', timeout: API_WAIT_MS });
    await tile(p, 't1').waitFor();
    assert.equal(await p.evaluate(() => sessionStorage.getItem('haven.token')), 'open-sesame');

    await tile(p, 't1').locator('.c-ai').click();
    await until('t1.ai_enabled false', async () => (await camera(secured.base, 't1'))?.ai_enabled === false);
    assert.equal(await tokenDialog.isVisible(), false, 'not asked again');
    assert.deepEqual(auth, [null, 'Bearer wrong', null, 'Bearer open-sesame', 'Bearer open-sesame']);
    assert.deepEqual(errs, []);
  } finally {
    await ctx.close().catch(() => {});
    await stopServer(secured);
  }
});
