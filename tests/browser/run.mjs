// End-to-end tests of the HAVEN web UI in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core), against the real server on loopback with the three demo cameras.
//
//   bash tests/browser/setup.sh        # once: chromium (apt) and playwright-core (npm ci)
//   cargo build -p haven               # the runner builds nothing
//   node tests/browser/run.mjs         # from anywhere; exits non-zero on failure
//
// Environment: HAVEN_BIN (default target/debug/haven), HAVEN_SETTINGS (default
// settings/default.toml), CHROMIUM (default /usr/bin/chromium), FFMPEG (default ffmpeg, makes the
// fall video of the events tests), UPDATE_SCREENSHOT=1 to rewrite docs/ui-grid.png and
// docs/ui-events.png (they are written anyway when missing; every run leaves a copy in
// target/browser-tests/), HEADED=1 to watch.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { until as untilIn } from './harness.mjs';

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
    env: {
      ...process.env,
      HAVEN__SERVER__BIND: '127.0.0.1:0',
      // Events (clips, snapshots, their database) go to the scratch directory, one store per
      // settings file (a restarted server finds its events again), never into the repository's data/.
      HAVEN__EVENTS__DATA_DIR: path.join(scratch, `events-${path.basename(settings, '.toml')}`),
      ...env,
    },
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

/** The harness's `until`, waiting `API_WAIT_MS` unless told otherwise. */
const until = (what, fn, timeout = API_WAIT_MS, every = 250) => untilIn(what, fn, timeout, every);

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
// Every camera socket the page opened (cam1's, routed below, excepted): its URL, how many binary and
// text frames it received, and the rendition (metadata.rendition) of its last binary frame.
const streams = [];
const liveStream = (id) => streams.findLast((s) => s.url.pathname === `/ws/stream/${id}` && !s.closed);

function recordStream(ws) {
  if (!ws.url().includes('/ws/stream/')) return;
  const s = { url: new URL(ws.url()), binary: 0, text: 0, rendition: null, frame: null, closed: false };
  streams.push(s);
  ws.on('framereceived', ({ payload }) => {
    if (typeof payload === 'string') {
      if (payload.startsWith('{"type":"frame"')) s.text++;
      return;
    }
    // u32 big-endian N, N bytes of JSON {"type":"frame","metadata":{…}}, the JPEG.
    s.binary++;
    try {
      const n = payload.readUInt32BE(0);
      const header = JSON.parse(payload.subarray(4, 4 + n).toString('utf8'));
      if (header.type !== 'frame') throw new Error(`type ${header.type}`);
      // The JPEG follows the header: it starts with SOI.
      if (payload.readUInt16BE(4 + n) !== 0xffd8) throw new Error('no JPEG after the header');
      s.rendition = header.metadata.rendition;
      s.frame = { width: header.metadata.width, height: header.metadata.height };
    } catch (e) {
      s.bad = `${s.url}: ${e.message}`;
    }
  });
  ws.on('close', () => { s.closed = true; });
}
// cam1's socket runs through a route so tests can hold back its frames or drop it.
const cam1 = { routes: 0, hold: false, current: null }; // current: the server side of its socket

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  server = await startServer({ settings: settingsCopy('demo.toml') });
  browser = await launch();
  context = await browser.newContext({ viewport: { width: 1180, height: 940 } });
  page = await context.newPage();
  errors = watchErrors(page);
  page.on('websocket', (ws) => {
    sockets.push(ws.url());
    recordStream(ws);
  });
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
    assert.ok(first[id].src.startsWith('blob:'), 'binary frames are shown through object URLs');
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

/** The ladder step a grid tile should ask for: the smallest of 320, 640 that covers its picture's device pixels. */
async function gridWidthOf(p, id) {
  const px = await tile(p, id).locator('.media').evaluate((e) => e.clientWidth * devicePixelRatio);
  return px <= 320 ? 320 : 640;
}

test('grid tiles get small binary pictures, the focused camera the full frame', async () => {
  await page.locator('#view-select').selectOption('');
  const full = await camera(server.base, 'cam2');
  assert.ok(full.width > 640, `the demo frames are wider than 640 (${full.width})`);
  // In the grid: binary frames of the ladder step that covers the tile, at quality 60.
  for (const id of ['cam2', 'cam3']) {
    const want = await gridWidthOf(page, id);
    const s = await until(`${id}'s small binary frames`, () => {
      const s = liveStream(id);
      return s?.binary > 2 && s.url.searchParams.get('width') === String(want) && s;
    }, FRAME_WAIT_MS);
    assert.equal(s.url.searchParams.get('format'), 'binary');
    assert.equal(s.url.searchParams.get('quality'), '60');
    assert.equal(s.text, 0, 'no text frames on a binary socket');
    assert.equal(s.bad, undefined);
    assert.deepEqual(s.frame, { width: full.width, height: full.height }, 'metadata keeps the frame size');
    assert.equal(s.rendition.width, want);
    assert.equal(s.rendition.quality, 60);
    const shown = await until(`${id} to show the ${want} px picture`, async () => {
      const f = await frameOf(page, id);
      return f?.width === want ? f : null;
    }, FRAME_WAIT_MS);
    assert.match(shown.src, /^blob:/);
  }
  const cam2Grid = liveStream('cam2');

  // Focused: cam2's socket is reopened for the full frame; the others, now in the narrow column,
  // ask for the smallest step.
  await page.locator('#view-select').selectOption('cam2');
  const focused = await until('cam2 reopened for the full frame', () => {
    const s = liveStream('cam2');
    return s !== cam2Grid && s?.binary > 0 && s;
  }, FRAME_WAIT_MS);
  assert.equal(focused.url.searchParams.get('width'), null);
  assert.equal(focused.url.searchParams.get('quality'), null, 'the camera\'s own quality');
  assert.equal(focused.url.searchParams.get('format'), 'binary');
  assert.deepEqual([focused.rendition.width, focused.rendition.height], [full.width, full.height]);
  await until('the grid socket closed', () => cam2Grid.closed);
  await until('cam2 to show the full frame', async () => (await frameOf(page, 'cam2'))?.width === full.width, FRAME_WAIT_MS);
  assert.equal(await tile(page, 'cam2').getAttribute('data-rendition'), `${full.width}x${full.height}`);
  assert.equal(await gridWidthOf(page, 'cam3'), 320, 'the column beside the focused camera is narrow');
  await until('cam3 to ask for 320', () => liveStream('cam3')?.url.searchParams.get('width') === '320' && liveStream('cam3').binary > 0, FRAME_WAIT_MS);
  // The server counts the full rendition's viewer.
  await until('the server to list cam2\'s full binary rendition', async () => (await camera(server.base, 'cam2'))
    .renditions?.some((r) => r.width === null && r.format === 'binary' && r.viewers >= 1));
  // … and so does the tile's tooltip, from the same list.
  await until('cam2\'s tooltip to say what it sends', async () => /sent as (.+, )?full q\d+ binary ×\d/.test(await tile(page, 'cam2').getAttribute('title')));

  // Back to the grid: small again.
  await page.keyboard.press('Escape');
  const want = await gridWidthOf(page, 'cam2');
  await until('cam2 small again', () => {
    const s = liveStream('cam2');
    return s !== focused && s?.url.searchParams.get('width') === String(want) && s.binary > 0;
  }, FRAME_WAIT_MS);
  await until('cam2 to show the small picture', async () => (await frameOf(page, 'cam2'))?.width === want, FRAME_WAIT_MS);
  await until('cam3 back to its grid size', () => liveStream('cam3')?.url.searchParams.get('width') === String(want), FRAME_WAIT_MS);
  assert.deepEqual(streams.filter((s) => s.text > 0).map((s) => s.url.href), [], 'no socket got text frames');
});

/**
 * What the browser drew over a tile's picture: its canvas's pixels by colour (the server's palette:
 * limbs, keypoints, box and label green), and how many people the tile says it drew, read together.
 */
function canvasColours(p, id) {
  return p.evaluate((cid) => {
    const el = document.querySelector(`.tile[data-camera-id="${cid}"]`);
    const c = el.querySelector('canvas.poses');
    const out = { drawn: Number(el.dataset.drawn || 0), hidden: c.hidden, painted: 0, limbs: 0, keypoints: 0, green: 0 };
    if (!c.width || !c.height) return out;
    const palette = [
      ['limbs', [0, 200, 255]], ['limbs', [255, 200, 0]], ['limbs', [200, 0, 255]],
      ['keypoints', [255, 0, 0]], ['green', [0, 255, 0]],
    ];
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < px.length; i += 4) {
      if (px[i + 3] === 0) continue;
      out.painted++;
      if (px[i + 3] < 64) continue; // faint antialiased edges: colour unreliable
      let best = null;
      let dist = Infinity;
      for (const [name, [r, g, b]] of palette) {
        const d = Math.hypot(px[i] - r, px[i + 1] - g, px[i + 2] - b);
        if (d < dist) { dist = d; best = name; }
      }
      if (dist < 80) out[best]++;
    }
    return out;
  }, id);
}

test('poses drawn by the browser: the overlay toggle, and skeletons, boxes and labels switched without the server', async () => {
  const id = 'cam2';
  const t = tile(page, id);
  await page.locator('#view-select').selectOption(id); // large: plenty of pixels to look at
  const full = await camera(server.base, id);
  await until(`${id} server-drawn, full size`, async () => (await t.getAttribute('data-overlay')) === 'server'
    && (await frameOf(page, id))?.width === full.width, FRAME_WAIT_MS);
  assert.equal(await t.locator('canvas.poses').isVisible(), false);
  // For people to compare: the server's drawing, and (below) the browser's.
  await page.mouse.move(0, 0);
  await t.locator('.media').screenshot({ path: path.join(ARTIFACTS, 'overlay-server.png') });
  const menu = page.locator('#display-menu');
  await menu.locator('summary').click();
  assert.equal(await page.locator('#opt-client').isChecked(), false, 'the server draws by default');
  assert.equal(await page.locator('#opt-layers').evaluate((f) => f.disabled), true, 'the layers wait for the browser to draw');

  // On: every socket reopens for pictures without drawings; the page draws the people it is told about.
  const seen = streams.length;
  await page.locator('#opt-client').check();
  for (const cid of ['cam2', 'cam3']) {
    await until(`${cid} reopened with overlay=client`, () => {
      const s = liveStream(cid);
      return streams.indexOf(s) >= seen && s.url.searchParams.get('overlay') === 'client' && s.binary > 0 && s.rendition?.overlay === 'client';
    }, FRAME_WAIT_MS);
  }
  await until(`${id} showing a picture without drawings`, async () => (await t.getAttribute('data-overlay')) === 'client', FRAME_WAIT_MS);
  await until('the server to list the client-drawn rendition', async () => (await camera(server.base, id))
    .renditions?.some((r) => r.overlay === 'client' && r.viewers >= 1));
  // People walk in every demo video: wait for a frame with a confident skeleton.
  const on = await until('skeletons, keypoints and boxes on the canvas', async () => {
    const c = await canvasColours(page, id);
    return c.drawn > 0 && !c.hidden && c.limbs > 0 && c.keypoints > 0 && c.green > 0 && c;
  }, FRAME_WAIT_MS);
  await menu.evaluate((d) => { d.open = false; });
  await t.locator('.media').screenshot({ path: path.join(ARTIFACTS, 'overlay-client.png') });
  await menu.evaluate((d) => { d.open = true; });

  // Skeletons off: no limb or keypoint pixel is left, the boxes stay; no socket was opened for it.
  const sockets0 = sockets.length;
  await page.locator('#opt-skeletons').uncheck();
  let c = await canvasColours(page, id);
  assert.equal(c.limbs + c.keypoints, 0, `skeletons cleared at once (${JSON.stringify(c)}, was ${JSON.stringify(on)})`);
  assert.ok(c.drawn === 0 || c.green > 0, 'boxes still drawn');
  // … and the frames after it are drawn the same way.
  const frames = (await frameOf(page, id))?.frames ?? 0;
  await until('three more frames', async () => (await frameOf(page, id))?.frames > frames + 3, FRAME_WAIT_MS);
  c = await canvasColours(page, id);
  assert.equal(c.limbs + c.keypoints, 0, `no skeletons on later frames (${JSON.stringify(c)})`);
  await until('a box on a later frame', async () => (await canvasColours(page, id)).green > 0, FRAME_WAIT_MS);

  // Boxes and labels off too: nothing drawn at all.
  await page.locator('#opt-boxes').uncheck();
  await page.locator('#opt-labels').uncheck();
  c = await canvasColours(page, id);
  assert.equal(c.painted, 0, `an empty canvas (${JSON.stringify(c)})`);
  assert.equal(sockets.length, sockets0, 'switching layers asks the server nothing');

  // Back on: drawn again from the next frame's metadata (or at once).
  for (const k of ['skeletons', 'boxes', 'labels']) await page.locator(`#opt-${k}`).check();
  await until('skeletons back', async () => (await canvasColours(page, id)).limbs > 0, FRAME_WAIT_MS);
  assert.equal(sockets.length, sockets0, 'still no new socket');
  // The choice is the browser's: kept over a reload.
  assert.deepEqual(JSON.parse(await page.evaluate(() => localStorage.getItem('haven.view'))),
    { clientOverlay: true, skeletons: true, boxes: true, labels: true, saver: false, showZones: false });

  // Off: the server draws again, the canvas goes away.
  const seen2 = streams.length;
  await page.locator('#opt-client').uncheck();
  await until(`${id} reopened without overlay=client`, () => {
    const s = liveStream(id);
    return streams.indexOf(s) >= seen2 && !s.url.searchParams.has('overlay') && s.binary > 0;
  }, FRAME_WAIT_MS);
  await until(`${id} server-drawn again`, async () => (await t.getAttribute('data-overlay')) === 'server', FRAME_WAIT_MS);
  assert.equal(await t.locator('canvas.poses').isVisible(), false);
  await page.keyboard.press('Escape'); // closes the menu
  assert.equal(await menu.evaluate((d) => d.open), false);
  await page.keyboard.press('Escape'); // back to the grid
  assert.equal(await page.locator('#grid').getAttribute('data-mode'), 'grid');
});

test('the data saver asks for 320 px pictures at quality 40 in the grid', async () => {
  await page.locator('#display-menu summary').click();
  await page.locator('#opt-saver').check();
  await until('cam3 at 320 px, quality 40', () => {
    const s = liveStream('cam3');
    return s?.url.searchParams.get('width') === '320' && s.url.searchParams.get('quality') === '40' && s.rendition?.quality === 40 && s;
  }, FRAME_WAIT_MS);
  await until('cam3 showing 320 px pictures', async () => (await frameOf(page, 'cam3'))?.width === 320, FRAME_WAIT_MS);
  await page.locator('#opt-saver').uncheck();
  const want = await gridWidthOf(page, 'cam3');
  await until('cam3 back to its size', () => liveStream('cam3')?.url.searchParams.get('width') === String(want) && liveStream('cam3').binary > 0, FRAME_WAIT_MS);
  await page.keyboard.press('Escape');
});

test('tiles out of view stream nothing until they are scrolled back into view', async () => {
  // A phone-wide, short window: one tile and a bit in view, cam3 two tiles further down.
  const ctx = await browser.newContext({ viewport: { width: 390, height: 500 } });
  try {
    const p = await ctx.newPage();
    const errs = watchErrors(p);
    const opened = [];
    p.on('websocket', (ws) => {
      if (!ws.url().includes('/ws/stream/')) return;
      const s = { id: decodeURIComponent(new URL(ws.url()).pathname.split('/').pop()), closed: false };
      opened.push(s);
      ws.on('close', () => { s.closed = true; });
    });
    await p.goto(server.base + '/');
    await until('cam1 streaming', async () => ((await frameOf(p, 'cam1'))?.frames ?? 0) > 2, FRAME_WAIT_MS);
    await until('cam3 paused out of view', async () => (await tile(p, 'cam3').getAttribute('data-link')) === 'offscreen');
    await until('no socket open for cam3', () => opened.filter((s) => s.id === 'cam3').every((s) => s.closed));
    assert.equal(await tile(p, 'cam3').locator('.link').textContent(), 'off screen');
    assert.equal(await tile(p, 'cam1').getAttribute('data-link'), 'live');

    // Scrolled to, it streams again; cam1, now far above, pauses.
    const before = (await frameOf(p, 'cam3'))?.frames ?? 0;
    await tile(p, 'cam3').scrollIntoViewIfNeeded();
    await until('cam3 streaming again', async () => (await tile(p, 'cam3').getAttribute('data-link')) === 'live'
      && ((await frameOf(p, 'cam3'))?.frames ?? 0) > before, FRAME_WAIT_MS);
    assert.ok(opened.some((s) => s.id === 'cam3' && !s.closed), 'cam3 has a socket again');
    await until('cam1 paused out of view', async () => (await tile(p, 'cam1').getAttribute('data-link')) === 'offscreen');
    await until('no socket open for cam1', () => opened.filter((s) => s.id === 'cam1').every((s) => s.closed));
    assert.deepEqual(errs, []);
  } finally {
    await ctx.close().catch(() => {});
  }
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

test('each tile shows how often the model looks at it, and the motion boxes on request', async () => {
  const id = 'cam1';
  const t = tile(page, id);
  // People walk in every demo video: the model looks at it at its detect rate.
  await until(`${id}'s detect rate`, async () => /^\d+(\.\d)? fps$/.test(await t.locator('.s-detect').textContent())
    && (await camera(server.base, id)).detection_fps > 0);
  await until(`${id} moving`, async () => (await t.getAttribute('data-moving')) === 'true');
  const svg = t.locator('svg.motion-boxes');
  assert.equal(await svg.isVisible(), false, 'motion boxes are off until asked for');
  await t.locator('.c-motion').check();
  await until('motion boxes drawn over the picture', async () => (await svg.isVisible()) && (await svg.locator('rect').count()) > 0);
  // The boxes are in the frame's pixels: the SVG's viewBox is the frame's size.
  const status = await camera(server.base, id);
  assert.equal(await svg.getAttribute('viewBox'), `0 0 ${status.width} ${status.height}`);
  await page.reload();
  await tile(page, id).locator('.c-motion').waitFor();
  assert.equal(await tile(page, id).locator('.c-motion').isChecked(), true, 'the choice is kept per camera');
  await tile(page, id).locator('.c-motion').uncheck();
  await until('motion boxes hidden', async () => !(await tile(page, id).locator('svg.motion-boxes').isVisible()));
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
  const query = (u) => new URL(u).searchParams;
  const of = (u) => new URL(u).pathname === `/ws/stream/${id}`;
  await tile(page, id).locator('.c-fps').selectOption('2');
  await until('a socket with fps=2', async () => sockets.slice(seen).some((u) => of(u) && query(u).get('fps') === '2'));
  const before = await frameOf(page, id);
  await until(`${id} to stream at its new rate`, async () => (await frameOf(page, id))?.frames > before.frames, FRAME_WAIT_MS);
  await tile(page, id).locator('.c-fps').selectOption('');
  await until('a socket with the default rate', async () => sockets.slice(seen).some((u) => of(u) && !query(u).has('fps')));
  // Whatever the rate, the tile keeps asking for its small binary picture.
  assert.ok(sockets.slice(seen).filter(of).every((u) => query(u).get('format') === 'binary' && query(u).has('width')));
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
  await stopServer(server);
  await until('the tiles to notice', async () => {
    const links = await page.locator('.tile').evaluateAll((els) => els.map((e) => e.dataset.link));
    return links.every((l) => l === 'reconnecting' || l === 'connecting');
  }, 15_000);
  // Counted once every socket is down: frames the old server sent while it stopped are not new ones.
  const before = {};
  for (const id of DEMO) before[id] = (await frameOf(page, id))?.frames ?? 0;
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
  // The picture may be between two frames (decoding) at the moment it is read: wait for one shown.
  const before = await until('a frame shown', () => frameOf(page, 'cam2'), FRAME_WAIT_MS);
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
  // Sampled between two frames the tile's image may be loading the next one: wait for a shown one.
  const after = await until('a frame of cam1 shown', () => frameOf(page, 'cam1'));
  assert.ok(after.frames > frames + 5, 'frames kept coming');
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

test('with protected reads, the pages ask for the token once, then stream and list with it', async () => {
  const settings = settingsCopy('protected.toml', { cameras: false });
  const secured = await startServer({
    settings,
    env: { HAVEN__API__TOKEN: 'open-sesame', HAVEN__API__PROTECT_READS: 'true', HAVEN__MODEL__ENABLED: 'false' },
  });
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  try {
    const added = await fetch(secured.base + '/api/cameras', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: 'Bearer open-sesame' },
      body: JSON.stringify({ camera_id: 'p1', source: 'data/1.mp4', source_type: 'video_file' }),
    });
    assert.equal(added.status, 201, await added.text());
    const p = await ctx.newPage();
    const errs = watchErrors(p);
    const sockets = [];
    p.on('websocket', (ws) => sockets.push(ws.url()));

    // The live page cannot even list the cameras without the token: it asks, once.
    await p.goto(secured.base + '/');
    const tokenDialog = p.locator('#token-dialog');
    await tokenDialog.waitFor();
    await tokenDialog.locator('[name=token]').fill('open-sesame');
    await tokenDialog.locator('button[type=submit]').click();
    // Then the tile streams (its socket carries the token, a browser socket cannot send a header)
    // and the alerts socket is live.
    await until('p1 showing frames', async () => ((await frameOf(p, 'p1'))?.frames ?? 0) > 2, FRAME_WAIT_MS);
    assert.ok(sockets.some((u) => u.includes('/ws/stream/p1') && u.includes('token=open-sesame')), sockets.join(' '));
    await until('the alerts socket to be live', async () => (await alertsState(p)) === 'live');
    assert.equal(await tokenDialog.isVisible(), false, 'asked only once');

    // The events page, in the same tab: the token is kept, the list loads, alerts are live.
    await p.goto(secured.base + '/events');
    await p.locator('#no-events').waitFor();
    await until('the events page alerts socket to be live', async () => (await alertsState(p)) === 'live');
    assert.equal(await p.locator('#token-dialog').isVisible(), false, 'not asked again');
    assert.deepEqual(errs, []);
  } finally {
    await ctx.close().catch(() => {});
    await stopServer(secured);
  }
});

// ---------------------------------------------------------------------------------------------
// Events: a server of its own watches a generated video in which a real person falls. The live
// page and the events page are open before the camera is added; the fall must reach both, be
// listed with its snapshot, and its clip must play and step frame by frame.

const FFMPEG = process.env.FFMPEG ?? 'ffmpeg';
const FALL_VIDEO = 'data/test-fall.mp4'; // files added through the API must lie under data/
const FALL_VIDEO_PATH = path.join(ROOT, FALL_VIDEO);
const EVENTS_SHOT = path.join(ROOT, 'docs', 'ui-events.png');
let fallVideoMade = false;
process.on('exit', () => { if (fallVideoMade) rmSync(FALL_VIDEO_PATH, { force: true }); });

/**
 * The left player of tests/fixtures/pose/basketball1.png alone on a grey 640x480 scene, as in
 * tests/it/events.rs: 2 s upright, a 0.8 s fall (rotated about the feet, angle growing with the
 * square of time), 4 s lying, 2 s of empty scene, at 10 fps. The feet stand at (150, 420): the
 * scene is built in the middle of a 1280x960 canvas so that `rotate`, which turns about the
 * centre, turns about them.
 */
function makeFallVideo() {
  const angle = 'if(lt(n,20),0,if(lt(n,28),PI/2*pow((n-19)/8,2),PI/2))';
  const filter = [
    'crop=175:420:14:60',
    'scale=140:336:flags=area',
    'pad=1280:960:570:147:color=0x727272',
    `rotate='${angle}':c=0x727272`,
    'crop=640:480:490:60',
    "drawbox=enable='gte(n,68)':x=0:y=0:w=iw:h=ih:c=0x727272:t=fill",
    'format=yuv420p',
  ].join(',');
  mkdirSync(path.dirname(FALL_VIDEO_PATH), { recursive: true });
  fallVideoMade = true;
  const r = spawnSync(FFMPEG, [
    '-hide_banner', '-loglevel', 'error', '-y',
    '-loop', '1', '-framerate', '10', '-i', path.join(ROOT, 'tests/fixtures/pose/basketball1.png'),
    '-vf', filter, '-frames:v', '88', '-r', '10', '-c:v', 'mpeg4', '-q:v', '2', FALL_VIDEO_PATH,
  ], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`${FFMPEG} could not make ${FALL_VIDEO}: ${r.error?.message ?? r.stderr}`);
}

const ev = {
  server: null,
  ctx: null,
  live: null, // the live page (/)
  events: null, // the events page (/events)
  errors: [], // one list per page (watchErrors)
  alertSockets: [], // { page, at } for every /ws/alerts the pages opened
  fallId: null,
  fall: null, // the stored fall, once its clip is complete
};

async function postCamera(base, body) {
  const res = await fetch(base + '/api/cameras', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ source_type: 'video_file', ...body }),
  });
  assert.equal(res.status, 201, await res.clone().text());
}

const alertsState = (p) => p.evaluate(() => document.documentElement.dataset.alerts ?? null);
const listedIds = (p) => p.locator('#event-list .event').evaluateAll((els) => els.map((e) => Number(e.dataset.eventId)));
const storeIds = async (base, q = '') => (await getJson(base, `/api/events${q}`)).body.events.map((e) => e.id);
const sameIds = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

/** The player's state, and a hash of the picture it shows. */
function playerState(p) {
  return p.evaluate(() => {
    const v = document.querySelector('#video');
    let picture = null;
    if (v.readyState >= 2 && v.videoWidth) {
      const c = document.createElement('canvas');
      c.width = 160;
      c.height = 120;
      const g = c.getContext('2d', { willReadFrequently: true });
      g.drawImage(v, 0, 0, c.width, c.height);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      let h = 0;
      for (let i = 0; i < d.length; i += 4) h = (h * 31 + d[i] + d[i + 1] * 7 + d[i + 2] * 13) >>> 0;
      picture = h;
    }
    return {
      t: v.currentTime,
      paused: v.paused,
      seeking: v.seeking,
      ready: v.readyState,
      duration: v.duration,
      width: v.videoWidth,
      frame: Number(document.querySelector('#viewer').dataset.frame),
      label: document.querySelector('#p-frame').textContent,
      picture,
    };
  });
}

after(async () => {
  if (process.exitCode && ev.events) {
    await ev.events.screenshot({ path: path.join(ARTIFACTS, 'failure-events.png'), fullPage: true }).catch(() => {});
    await ev.live?.screenshot({ path: path.join(ARTIFACTS, 'failure-live.png'), fullPage: true }).catch(() => {});
  }
  await ev.ctx?.close().catch(() => {});
  if (ev.server && process.exitCode) {
    console.error(`--- events server log (last lines) ---\n${ev.server.log.slice(-60).join('\n')}`);
  }
  await stopServer(ev.server);
  if (fallVideoMade) rmSync(FALL_VIDEO_PATH, { force: true });
});

test('events: a person falling raises the alert banner on the live page and on the events page', async () => {
  // The demo cameras' inference would compete with the fall camera's on a small machine.
  await page.goto('about:blank').catch(() => {});
  await stopServer(server);
  makeFallVideo();

  ev.server = await startServer({
    settings: settingsCopy('events.toml', { cameras: false }),
    // A long lie 1 s after the fall is raised: the person lies 4 s in the video.
    env: { HAVEN__EVENTS__PRE_ROLL_SECS: '2', HAVEN__EVENTS__POST_ROLL_SECS: '1', HAVEN__EVENTS__FALL__LONG_LIE_SECS: '1' },
  });
  const base = ev.server.base;
  // A second camera, for the camera filter: it never delivers, so it has no events.
  await postCamera(base, { camera_id: 'hall', source: 'data/missing-hall.mp4', ai_enabled: false });

  ev.ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  ev.live = await ev.ctx.newPage();
  ev.events = await ev.ctx.newPage();
  for (const p of [ev.live, ev.events]) {
    ev.errors.push(watchErrors(p));
    p.on('websocket', (ws) => {
      if (ws.url().includes('/ws/alerts')) ev.alertSockets.push({ page: p, at: Date.now() });
    });
  }
  await ev.live.goto(base + '/');
  await ev.events.goto(base + '/events');
  assert.match(await ev.events.title(), /HAVEN/);
  for (const p of [ev.live, ev.events]) {
    await until('the alerts socket to be live', async () => (await alertsState(p)) === 'live');
    assert.equal(await p.locator('#alert-banner').isVisible(), false);
  }
  await ev.events.locator('#no-events').waitFor();
  assert.equal(await ev.events.locator('#alerts-state').textContent(), 'live');
  // The pages link to each other.
  assert.equal(await ev.live.locator('.nav a[href="/events"]').count(), 1);
  assert.equal(await ev.events.locator('.nav a[href="/"]').count(), 1);

  await postCamera(base, { camera_id: 'ward', source: FALL_VIDEO, ai_enabled: true, loop_video: false });

  // The live page: a banner for the fall, as it happens.
  const item = ev.live.locator('#alert-banner .alert-item[data-kind="fall"]');
  await item.waitFor({ timeout: FRAME_WAIT_MS });
  assert.match(await item.textContent(), /Fall detected on ward at .+ongoing/);
  assert.equal(await item.getAttribute('data-phase'), 'start');
  assert.match(await ev.live.title(), /^⚠ Fall — HAVEN/);
  ev.fallId = Number(await item.getAttribute('data-event-id'));
  assert.ok(ev.fallId > 0, 'the alert carries the stored event id');
  assert.equal(await item.locator('.alert-view').getAttribute('href'), `/events#event=${ev.fallId}`);
  // Its tile is marked while the fall lasts (the frames' metadata lists the camera's active events).
  await until('the ward tile marked', async () => (await tile(ev.live, 'ward').getAttribute('data-alarm')) === 'true', 15_000);

  // The events page: the same banner, and the fall in its list without a reload.
  await ev.events.locator(`#alert-banner .alert-item[data-event-id="${ev.fallId}"]`).waitFor({ timeout: API_WAIT_MS });
  await ev.events.locator(`#event-list .event[data-event-id="${ev.fallId}"][data-kind="fall"]`).waitFor({ timeout: API_WAIT_MS });

  // Opened in the player and acknowledged there: asked for a name once (kept in this browser), then
  // the player, both pages' banners and the list say who; the buttons are gone, the store has it.
  const ackItem = ev.events.locator(`#alert-banner .alert-item[data-event-id="${ev.fallId}"]`);
  assert.equal(await ackItem.locator('.ack-button').count(), 1, 'the banner offers it too');
  await ev.events.locator(`#event-list .event[data-event-id="${ev.fallId}"] .ev-main`).click();
  const playerAck = ev.events.locator('#v-ack .ack-button');
  await playerAck.waitFor({ timeout: API_WAIT_MS });
  ev.events.once('dialog', (d) => d.accept('  Ann Nurse '));
  await playerAck.click();
  await until('the player to say who acknowledged', async () => /acknowledged by Ann Nurse at /.test(await ev.events.locator('#v-ack').textContent()), API_WAIT_MS);
  assert.equal(await playerAck.count(), 0, 'no button in the player once acknowledged');
  assert.match(await ev.events.locator('#v-details').textContent(), /AcknowledgedBy Ann Nurse at /i);
  await until('the events page banner to say who acknowledged', async () => /acknowledged by Ann Nurse at /.test(await ackItem.textContent()), API_WAIT_MS);
  assert.equal(await ackItem.locator('.ack-button').count(), 0, 'no button once acknowledged');
  await ev.events.locator('#v-close').click();
  assert.equal(await ev.events.evaluate(() => localStorage.getItem('haven.ack-name')), 'Ann Nurse');
  const ackRow = ev.events.locator(`#event-list .event[data-event-id="${ev.fallId}"]`);
  await until('the list row to say who acknowledged', async () => (await ackRow.locator('.ack-by').count()) === 1, API_WAIT_MS);
  await until('the live page banner to say who acknowledged', async () => /acknowledged by Ann Nurse/.test(await item.textContent()), API_WAIT_MS);
  const acked = (await getJson(base, `/api/events/${ev.fallId}`)).body;
  assert.equal(acked.acknowledged_by, 'Ann Nurse');
  assert.ok(acked.acknowledged_at > 0);
  // Still down a second after it was raised: a long lie, marked in red on both pages.
  await ackItem.locator('.badge-long-lie').waitFor({ timeout: FRAME_WAIT_MS });
  await ackRow.locator('.badge-long-lie').waitFor({ timeout: API_WAIT_MS });
  assert.equal((await getJson(base, `/api/events/${ev.fallId}`)).body.long_lie, true);

  // Dismissed on the live page: gone, the title is back, and the tab remembers it.
  await item.locator('.alert-dismiss').click();
  await item.waitFor({ state: 'detached' });
  assert.equal(await ev.live.locator('#alert-banner').isVisible(), false);
  assert.doesNotMatch(await ev.live.title(), /⚠/);
  assert.deepEqual(JSON.parse(await ev.live.evaluate(() => sessionStorage.getItem('haven.dismissed-alerts'))), [String(ev.fallId)]);

  // The events page's banner (not dismissed there) says when the fall is over.
  const ended = ev.events.locator(`#alert-banner .alert-item[data-event-id="${ev.fallId}"][data-phase="end"]`);
  await ended.waitFor({ timeout: FRAME_WAIT_MS });
  assert.match(await ended.textContent(), /over after \d/);
  await until('the tile unmarked', async () => (await tile(ev.live, 'ward').getAttribute('data-alarm')) !== 'true', 15_000);

  const falls = (await getJson(base, '/api/events?kind=fall')).body;
  assert.equal(falls.total, 1, JSON.stringify(falls.events.map((e) => [e.id, e.kind, e.phase])));
  assert.equal(falls.events[0].id, ev.fallId);
});

test('events: the page lists the fall with its snapshot, and filters by kind and camera', async () => {
  const p = ev.events;
  const base = ev.server.base;
  // The clip is complete some seconds after the end (post-roll, and the writer runs behind the
  // camera): the page notices by itself.
  ev.fall = await until('the fall\'s clip in the store', async () => {
    const { body } = await getJson(base, `/api/events/${ev.fallId}`);
    return body?.clip_path && body?.snapshot_path ? body : null;
  }, FRAME_WAIT_MS);
  const row = p.locator(`#event-list .event[data-event-id="${ev.fallId}"]`);
  await until('the row to say its clip is ready', async () => (await row.getAttribute('data-clip')) === 'ready', API_WAIT_MS);
  assert.match(await row.textContent(), /Fall\s*ward/);
  // It says what raised it, and why in full on hover and in the player.
  const reason = row.locator('.ev-reason');
  assert.match(await reason.textContent(), /^by (pose|fall model|pose \+ fall model)$/);
  assert.equal(await reason.getAttribute('title'), ev.fall.reason.summary);
  const thumb = row.locator('img.thumb');
  assert.match(await thumb.getAttribute('src'), new RegExp(`/api/events/${ev.fallId}/snapshot\\.jpg$`));
  const size = await until('the snapshot to load', () => thumb.evaluate((img) => (img.complete && img.naturalWidth ? [img.naturalWidth, img.naturalHeight] : null)));
  assert.deepEqual(size, [640, 480]);

  // The banner's "View clip" opens the fall in the player, in place; dismissed, the banner goes.
  const alert = p.locator(`#alert-banner .alert-item[data-event-id="${ev.fallId}"]`);
  await alert.locator('.alert-view').click();
  await p.locator('#viewer').waitFor();
  assert.equal(await p.locator('#viewer').getAttribute('data-event-id'), String(ev.fallId));
  assert.ok((await p.locator('#v-details').textContent()).includes(`Why${ev.fall.reason.summary}`), 'the player says why');
  assert.equal(new URL(p.url()).pathname, '/events');
  await p.locator('#v-close').click();
  await alert.locator('.alert-dismiss').click();
  assert.equal(await p.locator('#alert-banner').isVisible(), false);

  // Everything in the store, newest first; the person who fell was detected too.
  await until('the list to match the store', async () => sameIds(await listedIds(p), await storeIds(base)));
  const kinds = await p.locator('#event-list .event').evaluateAll((els) => els.map((e) => e.dataset.kind));
  assert.ok(kinds.includes('person_detected') && kinds.includes('fall'), kinds.join(', '));
  assert.match(await p.locator('#summary').textContent(), new RegExp(`^${kinds.length} events`));

  // By kind.
  await p.locator('#f-kind').selectOption('fall');
  await until('only the fall', async () => sameIds(await listedIds(p), [ev.fallId]));
  assert.deepEqual(await storeIds(base, '?kind=fall'), [ev.fallId]);
  assert.match(p.url(), /[?&]kind=fall/);
  await p.locator('#f-kind').selectOption('person_detected');
  const people = await storeIds(base, '?kind=person_detected');
  assert.ok(people.length >= 1);
  await until('only people', async () => sameIds(await listedIds(p), people));
  assert.ok((await p.locator('#event-list .event').evaluateAll((els) => els.map((e) => e.dataset.kind))).every((k) => k === 'person_detected'));
  // With the shipped settings (person_clips = false) no clip comes for them, and the rows say so
  // rather than "recording…" or "clip pending".
  const clipLabels = await p.locator('#event-list .event .ev-clip').evaluateAll((els) => els.map((e) => [e.dataset.clip, e.textContent]));
  assert.ok(clipLabels.length >= 1 && clipLabels.every(([c, text]) => c === 'none' && text === 'no clip'), JSON.stringify(clipLabels));
  await p.locator('#f-kind').selectOption('');

  // By camera: both cameras are offered; hall has nothing, ward has it all.
  const options = await p.locator('#f-camera option').evaluateAll((els) => els.map((o) => o.value));
  assert.deepEqual(options, ['', 'hall', 'ward']);
  await p.locator('#f-camera').selectOption('hall');
  await until('no events on hall', async () => (await listedIds(p)).length === 0 && (await p.locator('#no-events').isVisible()));
  assert.match(p.url(), /[?&]camera=hall/);
  await p.locator('#f-camera').selectOption('ward');
  await until('ward\'s events', async () => sameIds(await listedIds(p), await storeIds(base, '?camera=ward')));
  assert.ok((await listedIds(p)).length >= 2);

  // The filters are in the URL: a reload keeps them.
  await p.locator('#f-kind').selectOption('fall');
  await until('only the fall on ward', async () => sameIds(await listedIds(p), [ev.fallId]));
  await p.reload();
  await until('the same list after a reload', async () => sameIds(await listedIds(p), [ev.fallId]));
  assert.equal(await p.locator('#f-camera').inputValue(), 'ward');
  assert.equal(await p.locator('#f-kind').inputValue(), 'fall');
  await until('the alerts socket live again', async () => (await alertsState(p)) === 'live');
});

test('events: the clip plays, steps exactly one frame at a time, and marks the fall on its timeline', async (t) => {
  const p = ev.events;
  const fall = ev.fall;
  const fps = fall.clip_fps;
  const dt = 1 / fps;
  const fallAt = fall.started_at - fall.clip_started_at;
  const fallFrame = Math.floor(fallAt * fps);
  assert.ok(fps > 0 && fall.clip_frames > 0 && fallAt > 0, JSON.stringify(fall));
  t.diagnostic(`clip: ${fall.clip_frames} frames at ${fps.toFixed(2)} fps, the fall ${fallAt.toFixed(2)} s in (frame ${fallFrame + 1})`);

  await p.locator(`#event-list .event[data-event-id="${fall.id}"]`).click();
  await p.locator('#viewer').waitFor();
  assert.match(p.url(), new RegExp(`#event=${fall.id}$`));
  assert.match(await p.locator('#video').getAttribute('src'), new RegExp(`/api/events/${fall.id}/clip\\.mp4$`));
  assert.match(await p.locator('#v-title').textContent(), /Fall\s*ward/);

  // Opening it plays it.
  const playing = await until('the clip to play', async () => {
    const s = await playerState(p);
    return s.ready >= 2 && !s.paused && s.t > 0.3 ? s : null;
  }, FRAME_WAIT_MS);
  assert.equal(playing.width, 640);
  assert.ok(Math.abs(playing.duration - fall.clip_frames / fps) < 1.5 * dt, `duration ${playing.duration} for ${fall.clip_frames} frames at ${fps}`);

  // The fall is marked where it happened.
  const marker = p.locator('#fall-marker');
  assert.ok(await marker.isVisible(), 'the fall marker is shown');
  assert.ok(Math.abs(Number(await marker.getAttribute('data-time')) - fallAt) < 1e-3);
  const line = await p.locator('#timeline').boundingBox();
  const mark = await marker.boundingBox();
  const expectX = (fallAt / playing.duration) * line.width;
  assert.ok(Math.abs(mark.x + mark.width / 2 - line.x - expectX) < 2, `marker at ${mark.x + mark.width / 2 - line.x} px, expected ${expectX}`);

  const settled = (what) => until(what, async () => {
    const s = await playerState(p);
    return s.paused && !s.seeking && s.ready >= 2 ? s : null;
  });

  // "Go to fall" pauses on the frame on which the fall was raised.
  await p.locator('#p-event').click();
  let s = await settled('the player on the fall');
  assert.equal(s.frame, fallFrame);
  assert.equal(Math.floor(s.t * fps), fallFrame);
  assert.equal(s.label, `frame ${fallFrame + 1} / ${fall.clip_frames}`);

  // Every step moves exactly one frame: currentTime by 1 / clip_fps, and the picture changes.
  const step = async (how, frames) => {
    const before = await settled('the player to settle');
    await how();
    const now = await until('the step', async () => {
      const x = await playerState(p);
      return x.paused && !x.seeking && x.ready >= 2 && x.frame === before.frame + frames ? x : null;
    });
    assert.ok(Math.abs(now.t - before.t - frames * dt) < 1e-4, `${before.t} → ${now.t}: not ${frames} frame(s) of ${dt} s`);
    return [before, now];
  };
  const pictures = new Set([s.picture]);
  for (let i = 0; i < 4; i++) pictures.add((await step(() => p.locator('#p-prev').click(), -1))[1].picture);
  assert.ok(pictures.size >= 2, 'stepping back from the fall shows other pictures');
  await step(() => p.locator('#p-next').click(), 1);
  await step(() => p.locator('#p-next').click(), 1);
  // The keyboard: , and . or the arrows; with Shift, ten frames.
  await step(() => p.keyboard.press('.'), 1);
  await step(() => p.keyboard.press(','), -1);
  await step(() => p.keyboard.press('ArrowRight'), 1);
  await step(() => p.keyboard.press('ArrowLeft'), -1);
  await step(() => p.keyboard.press('Shift+ArrowRight'), 10);
  await step(() => p.keyboard.press('Shift+ArrowLeft'), -10);

  // The ends of the clip: stepping stops there.
  await p.keyboard.press('End');
  s = await until('the last frame', async () => {
    const x = await playerState(p);
    return !x.seeking && x.frame === fall.clip_frames - 1 ? x : null;
  });
  await p.locator('#p-next').click();
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await settled('the player at the end')).frame, fall.clip_frames - 1);
  await p.keyboard.press('Home');
  s = await until('the first frame', async () => {
    const x = await playerState(p);
    return !x.seeking && x.frame === 0 ? x : null;
  });
  await p.locator('#p-prev').click();
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await settled('the player at the start')).frame, 0);

  // Play and pause.
  await p.locator('#p-play').click();
  await until('playing again', async () => {
    const x = await playerState(p);
    return !x.paused && x.t > s.t + 0.2;
  });
  await p.locator('#p-play').click();
  await settled('paused');

  // The screenshot for the docs: every event listed, the fall on its frame in the player.
  await p.locator('#f-camera').selectOption('');
  await p.locator('#f-kind').selectOption('');
  await until('every event listed', async () => sameIds(await listedIds(p), await storeIds(ev.server.base)));
  assert.equal(await p.locator('#viewer').getAttribute('data-event-id'), String(fall.id), 'the player stays on the fall');
  await p.locator('#p-event').click();
  await settled('the player on the fall');
  await p.mouse.move(0, 0);
  await p.evaluate(() => document.querySelector('#toasts').replaceChildren());
  const shot = path.join(ARTIFACTS, 'ui-events.png');
  await p.screenshot({ path: shot });
  if (process.env.UPDATE_SCREENSHOT || !existsSync(EVENTS_SHOT)) copyFileSync(shot, EVENTS_SHOT);
});

test('events: a link to an event opens it in the player', async () => {
  const base = ev.server.base;
  const p = await ev.ctx.newPage();
  const errs = watchErrors(p);
  try {
    await p.goto(`${base}/events#event=${ev.fallId}`);
    await p.locator('#viewer').waitFor();
    assert.equal(await p.locator('#viewer').getAttribute('data-event-id'), String(ev.fallId));
    await until('the clip loaded', async () => (await playerState(p)).ready >= 2);
    await p.locator('#v-close').click();
    assert.equal(await p.locator('#viewer').isVisible(), false);
    assert.doesNotMatch(p.url(), /#event=/);
    assert.deepEqual(errs, []);
  } finally {
    await p.close();
  }
});

/**
 * What sticks out of the viewport sideways: the document's own overflow, and every visible element
 * whose box leaves it. Text cut short inside a box that hides its overflow (an ellipsis) is not
 * counted; a control (button, link, field) is counted wherever it is, since it must be reachable.
 */
function overflowAt(p) {
  return p.evaluate(() => {
    const vw = document.documentElement.clientWidth;
    const out = [];
    const doc = document.documentElement.scrollWidth;
    if (doc > vw) out.push(`the document is ${doc} px wide`);
    const describe = (e) => e.tagName.toLowerCase() + (e.id ? `#${e.id}` : '') + [...e.classList].map((c) => `.${c}`).join('');
    const clipped = (e) => {
      for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
        const ox = getComputedStyle(a).overflowX;
        if (ox === 'hidden' || ox === 'clip') return true;
      }
      return false;
    };
    for (const e of document.body.querySelectorAll('*')) {
      if (!e.checkVisibility?.() || e.closest('dialog:not([open]), .visually-hidden, option')) continue;
      const r = e.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      if (r.left >= -0.5 && r.right <= vw + 0.5) continue;
      const control = e.matches('button, a, input, select, textarea, [tabindex]');
      if (control || !clipped(e)) out.push(`${describe(e)} spans ${Math.round(r.left)}..${Math.round(r.right)} of ${vw} px`);
    }
    return out;
  });
}

test('layout: no element overflows the viewport on either page, at 1400x900 and on a phone (390x844)', async (t) => {
  const base = ev.server.base;
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const p = await ctx.newPage();
  const errs = watchErrors(p);
  try {
    for (const [width, height] of [[1400, 900], [390, 844]]) {
      await p.setViewportSize({ width, height });
      const size = `${width}x${height}`;
      // The live page: the grid (one tile wide on a phone), then one camera in focus.
      await p.goto(base + '/');
      await tile(p, 'ward').waitFor();
      await tile(p, 'hall').waitFor();
      await p.waitForLoadState('networkidle').catch(() => {});
      assert.deepEqual(await overflowAt(p), [], `live page, grid, ${size}`);
      const lefts = await p.locator('.tile').evaluateAll((els) => els.map((e) => Math.round(e.getBoundingClientRect().left)));
      if (width < 600) assert.equal(new Set(lefts).size, 1, `one tile per row at ${size}: lefts ${lefts}`);
      else assert.ok(new Set(lefts).size > 1, `tiles side by side at ${size}: lefts ${lefts}`);
      // Every control of the header is on screen and can be used.
      for (const sel of ['#view-select', '#display-menu summary', '#add-camera-btn', '#help-btn', '.nav a[href="/events"]']) {
        const box = await p.locator(sel).boundingBox();
        assert.ok(box && box.x >= 0 && box.x + box.width <= width && box.y >= 0 && box.y + box.height <= height, `${sel} on screen at ${size}: ${JSON.stringify(box)}`);
      }
      // The Display menu, open, fits too, every switch on screen.
      await p.locator('#display-menu summary').click();
      await p.locator('#opt-saver').waitFor();
      assert.deepEqual(await overflowAt(p), [], `live page, Display menu, ${size}`);
      for (const sel of ['#opt-client', '#opt-skeletons', '#opt-boxes', '#opt-labels', '#opt-saver']) {
        const box = await p.locator(sel).boundingBox();
        assert.ok(box && box.x >= 0 && box.x + box.width <= width && box.y >= 0 && box.y + box.height <= height, `${sel} on screen at ${size}: ${JSON.stringify(box)}`);
      }
      await p.locator('#display-menu summary').click();
      await p.locator('#view-select').selectOption('ward');
      await until('ward in focus', async () => (await p.locator('#grid').getAttribute('data-mode')) === 'focus');
      assert.deepEqual(await overflowAt(p), [], `live page, focus, ${size}`);
      await p.locator('#view-select').selectOption('');
      // The add-camera dialog fits too.
      await p.locator('#add-camera-btn').click();
      await p.locator('#add-dialog[open]').waitFor();
      assert.deepEqual(await overflowAt(p), [], `live page, add dialog, ${size}`);
      await p.keyboard.press('Escape');

      // The events page: the list, then the fall open in the player.
      await p.goto(base + '/events');
      await p.locator(`#event-list .event[data-event-id="${ev.fallId}"]`).waitFor();
      assert.deepEqual(await overflowAt(p), [], `events page, list, ${size}`);
      await p.locator(`#event-list .event[data-event-id="${ev.fallId}"]`).click();
      await p.locator('#viewer').waitFor();
      await until('the clip loaded', async () => (await playerState(p)).ready >= 2);
      assert.deepEqual(await overflowAt(p), [], `events page, player, ${size}`);
      for (const sel of ['#p-play', '#p-prev', '#p-next', '#v-close']) {
        await p.locator(sel).scrollIntoViewIfNeeded();
        const box = await p.locator(sel).boundingBox();
        assert.ok(box && box.x >= 0 && box.x + box.width <= width, `${sel} reachable at ${size}: ${JSON.stringify(box)}`);
      }
      if (width < 600) await p.screenshot({ path: path.join(ARTIFACTS, 'phone-events.png'), fullPage: true });
      t.diagnostic(`${size}: nothing overflows`);
    }
    assert.deepEqual(errs, []);
  } finally {
    await ctx.close();
  }
});

test('events: the alerts socket reconnects with backoff when the server goes away', async (t) => {
  const base = ev.server.base;
  const port = new URL(base).port;
  const settings = ev.server.settings;
  // Nothing to watch after the restart: the fall camera would fall again.
  for (const id of ['ward', 'hall']) assert.equal((await fetch(`${base}/api/cameras/${id}`, { method: 'DELETE' })).status, 204);
  const stopped = Date.now();
  await stopServer(ev.server);
  for (const p of [ev.live, ev.events]) await until('the pages to notice', async () => (await alertsState(p)) === 'reconnecting', 15_000);
  assert.equal(await ev.events.locator('#alerts-state').textContent(), 'reconnecting');
  // Attempts come ever further apart: 0.5 s doubling (±25 %).
  const attempts = () => ev.alertSockets.filter((a) => a.page === ev.events && a.at > stopped).map((a) => a.at);
  await until('four attempts', async () => attempts().length >= 4, 20_000);
  const times = attempts();
  const gaps = times.slice(1).map((t, i) => t - times[i]);
  t.diagnostic(`alerts socket retries ${gaps.join(', ')} ms apart`);
  for (let i = 1; i < gaps.length; i++) assert.ok(gaps[i] > gaps[i - 1], `retry gaps grow: ${gaps.join(', ')} ms`);
  assert.ok(gaps[0] < 2000, `the first retries are quick (${gaps.join(', ')} ms)`);

  // Back: live again, and the list (read again on reconnect) still has the fall.
  const reads = [];
  const onRequest = (r) => { if (r.url().includes('/api/events?')) reads.push(r.url()); };
  ev.events.on('request', onRequest);
  ev.server = await startServer({ settings, env: { HAVEN__SERVER__BIND: `127.0.0.1:${port}` } });
  for (const p of [ev.live, ev.events]) await until('live again', async () => (await alertsState(p)) === 'live', 30_000);
  await until('the list read again', async () => reads.length > 0);
  ev.events.off('request', onRequest);
  await until('the list to match the store', async () => sameIds(await listedIds(ev.events), await storeIds(ev.server.base)));
  assert.ok((await listedIds(ev.events)).includes(ev.fallId));
  // A fall dismissed in this tab stays dismissed.
  assert.equal(await ev.live.locator('#alert-banner').isVisible(), false);
});

test('events: no script errors on the events and live pages', async () => {
  assert.deepEqual(ev.errors.flat(), []);
  await ev.ctx.close();
  ev.ctx = null;
  await stopServer(ev.server);
  rmSync(FALL_VIDEO_PATH, { force: true });
  assert.equal(existsSync(FALL_VIDEO_PATH), false);
});
