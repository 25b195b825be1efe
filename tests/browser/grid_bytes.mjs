// How many bytes a grid of cameras costs the browser: opens the live page in Chromium with N cameras
// (default 9, over the demo videos data/1.mp4, data/2.mp4, data/3.mp4 in turn), waits for every tile
// to stream, then counts what the page's camera sockets receive over a window (Playwright's
// `framereceived` payload lengths: the WebSocket messages' bytes, text or binary, without framing).
//
//   cargo build -p haven
//   node tests/browser/grid_bytes.mjs [--cameras 9] [--seconds 20] [--warmup 8] [--viewport 1400x900]
//                                     [--dpr 1] [--focus cam1] [--model] [--prefs '{"saver":true}']
//                                     [--app-js old-app.js] [--json out.json]
//
// The figure before renditions, on the same server: the UI of 661f4e3 sends no width/format, so the
// server sends it what it always did (text, full size):
//   git show 661f4e3:ui/app.js > /tmp/app-before.js
//   node tests/browser/grid_bytes.mjs --app-js /tmp/app-before.js
//
// Starts its own server on a free loopback port, on a private settings file (the repository's is
// never touched), with the model off unless --model (so the cameras run at their source's rate and
// the figure is the transport's, not how fast two cores run pose inference). Prints one line per
// socket (URL, messages/s, bytes/s, bytes per message) and the total; --json writes the same.
// Environment: HAVEN_BIN (default target/debug/haven), HAVEN_SETTINGS (default settings/default.toml),
// CHROMIUM (default /usr/bin/chromium).

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.resolve(ROOT, process.env.HAVEN_BIN ?? 'target/debug/haven');
const SETTINGS = process.env.HAVEN_SETTINGS ?? 'settings/default.toml';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

const { values: opt } = parseArgs({
  options: {
    cameras: { type: 'string', default: '9' },
    seconds: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '8' },
    viewport: { type: 'string', default: '1400x900' },
    dpr: { type: 'string', default: '1' },
    focus: { type: 'string' },
    model: { type: 'boolean', default: false },
    prefs: { type: 'string' }, // the page's Display settings, e.g. '{"saver":true}' or '{"clientOverlay":true}'
    'app-js': { type: 'string' }, // serve this file as /ui/app.js: another version of the UI, e.g. the one before renditions
    json: { type: 'string' },
  },
});
const N = Number(opt.cameras);
const [VW, VH] = opt.viewport.split('x').map(Number);

const scratch = mkdtempSync(path.join(tmpdir(), 'haven-bytes-'));
let child = null;
const cleanup = () => {
  try { child?.kill('SIGKILL'); } catch { /* gone */ }
  rmSync(scratch, { recursive: true, force: true });
};
process.on('exit', cleanup);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));
setTimeout(() => { console.error('grid_bytes: timed out (5 min)'); process.exit(1); }, 5 * 60_000).unref();

function settingsFile() {
  const text = readFileSync(path.resolve(ROOT, SETTINGS), 'utf8');
  const cut = text.search(/^\[\[cameras\]\]/m);
  const cams = Array.from({ length: N }, (_, i) => `[[cameras]]
camera_id = "cam${i + 1}"
source = "data/${(i % 3) + 1}.mp4"
source_type = "video_file"
loop_video = true
ai_enabled = true
jpeg_quality = 80
`).join('\n');
  const file = path.join(scratch, 'grid.toml');
  writeFileSync(file, `${cut < 0 ? text : text.slice(0, cut)}\n${cams}`);
  return file;
}

function startServer() {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: cargo build -p haven`);
  child = spawn(BIN, ['--settings', settingsFile()], {
    cwd: ROOT,
    env: {
      ...process.env,
      HAVEN__SERVER__BIND: '127.0.0.1:0',
      HAVEN__EVENTS__DATA_DIR: path.join(scratch, 'events'),
      HAVEN__MODEL__ENABLED: String(opt.model),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  return new Promise((resolve, reject) => {
    const onData = (chunk) => {
      log += chunk.toString();
      const m = /HAVEN listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
      if (m) resolve(m[1]);
      if (log.length > 100_000) log = log.slice(-50_000);
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`server exited (${code}):\n${log.slice(-4000)}`)));
  });
}

const base = await startServer();
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'],
});
const context = await browser.newContext({ viewport: { width: VW, height: VH }, deviceScaleFactor: Number(opt.dpr) });
const page = await context.newPage();
if (opt['app-js']) {
  const body = readFileSync(opt['app-js'], 'utf8');
  await page.route('**/ui/app.js', (r) => r.fulfill({ contentType: 'text/javascript; charset=utf-8', body }));
}
if (opt.prefs) await page.addInitScript((p) => localStorage.setItem('haven.view', p), opt.prefs);

// Every camera socket: its URL, and what it received since counting began.
const sockets = [];
let counting = false;
page.on('websocket', (ws) => {
  if (!ws.url().includes('/ws/stream/')) return;
  const s = { url: ws.url(), messages: 0, bytes: 0, jpeg: 0, binary: 0, text: 0, open: true };
  sockets.push(s);
  ws.on('framereceived', ({ payload }) => {
    if (!counting) return;
    s.messages++;
    if (typeof payload === 'string') {
      s.text++;
      s.bytes += Buffer.byteLength(payload, 'utf8');
      // {"type":"frame","data":"<base64>","metadata":…}: the JPEG is the base64 part.
      const start = payload.indexOf('"data":"');
      const end = start < 0 ? -1 : payload.indexOf('"', start + 8);
      if (end > 0) s.jpeg += end - start - 8;
    } else {
      s.binary++;
      s.bytes += payload.length;
      if (payload.length >= 4) s.jpeg += payload.length - 4 - payload.readUInt32BE(0);
    }
  });
  ws.on('close', () => { s.open = false; });
});

await page.goto(`${base}/${opt.focus ? `#focus=${encodeURIComponent(opt.focus)}` : ''}`);
const deadline = Date.now() + 120_000;
for (;;) {
  // Every tile streams, or is out of view (paused: it streams nothing, see docs/ui.md).
  const live = await page.evaluate(() => [...document.querySelectorAll('.tile')]
    .filter((t) => Number(t.dataset.frames || 0) > 2 || t.dataset.link === 'offscreen').length);
  if (live >= N) break;
  if (Date.now() > deadline) throw new Error(`only ${live} of ${N} tiles streamed within 120 s`);
  await new Promise((r) => setTimeout(r, 500));
}
await new Promise((r) => setTimeout(r, Number(opt.warmup) * 1000));
counting = true;
const t0 = performance.now();
await new Promise((r) => setTimeout(r, Number(opt.seconds) * 1000));
counting = false;
const secs = (performance.now() - t0) / 1000;

const tiles = await page.evaluate(() => [...document.querySelectorAll('.tile')].map((t) => {
  const r = t.querySelector('.media').getBoundingClientRect();
  return { id: t.dataset.cameraId, css_width: Math.round(r.width), link: t.dataset.link };
}));
await browser.close();

const rows = sockets.filter((s) => s.messages > 0).map((s) => ({
  url: s.url.replace(base.replace('http', 'ws'), ''),
  msgs_per_s: s.messages / secs,
  bytes_per_s: s.bytes / secs,
  bytes_per_msg: s.bytes / s.messages,
  // What is not the picture (base64 or JPEG bytes): metadata JSON, header.
  meta_per_msg: (s.bytes - s.jpeg) / s.messages,
  kind: s.binary && s.text ? 'mixed' : s.binary ? 'binary' : 'text',
}));
const total = rows.reduce((a, r) => a + r.bytes_per_s, 0);
const msgs = rows.reduce((a, r) => a + r.msgs_per_s, 0);
const kib = (b) => `${(b / 1024).toFixed(1)} KiB`;
console.log(`${N} cameras, ${VW}x${VH} @${opt.dpr}x, model ${opt.model ? 'on' : 'off'}${opt.focus ? `, focus ${opt.focus}` : ''}${opt.prefs ? `, prefs ${opt.prefs}` : ''}${opt['app-js'] ? `, app.js from ${opt['app-js']}` : ''}, ${secs.toFixed(1)} s window`);
console.log(`tiles (css px wide): ${tiles.map((t) => `${t.id}=${t.css_width}${t.link === 'offscreen' ? ' (off screen)' : ''}`).join(' ')}`);
for (const r of rows) {
  console.log(`  ${r.url.padEnd(60)} ${r.kind.padEnd(6)} ${r.msgs_per_s.toFixed(1).padStart(5)} msg/s ${kib(r.bytes_per_s).padStart(11)}/s ${kib(r.bytes_per_msg).padStart(9)}/msg (${kib(r.meta_per_msg)} metadata)`);
}
console.log(`TOTAL ${rows.length} sockets: ${kib(total)}/s = ${(total * 8 / 1e6).toFixed(2)} Mbit/s, ${msgs.toFixed(1)} msg/s, ${kib(total / Math.max(1, rows.length))}/s per tile, ${kib(total / Math.max(1e-9, msgs))}/msg`);
if (opt.json) {
  writeFileSync(opt.json, JSON.stringify({ cameras: N, viewport: opt.viewport, dpr: Number(opt.dpr), model: opt.model, focus: opt.focus ?? null, prefs: opt.prefs ?? null, app_js: opt['app-js'] ?? null, seconds: secs, tiles, rows, total_bytes_per_s: total, msgs_per_s: msgs }, null, 2));
}
process.exit(0);
