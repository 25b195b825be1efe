// What the browser suites share: the real `haven` binary started on a free port with a settings
// file and environment overrides, a headless chromium page that records page errors, and both
// stopped at the end.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BIN = path.resolve(ROOT, process.env.HAVEN_BIN ?? 'target/debug/haven');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
/** Servers started and not yet exited: killed when the suite's process exits, however it ends. */
const running = new Set();

/** A scratch directory for the suite `name`, removed when the process exits (every server still
 * running killed first); the whole suite fails after `minutes`. */
export function suiteScratch(name, minutes) {
  const scratch = mkdtempSync(path.join(tmpdir(), `haven-ui-${name}-`));
  process.on('exit', () => {
    for (const child of running) {
      try { child.kill('SIGKILL'); } catch { /* gone */ }
    }
    rmSync(scratch, { recursive: true, force: true });
  });
  setTimeout(() => {
    console.error(`${name} browser tests: global timeout (${minutes} min)`);
    process.exit(1);
  }, minutes * 60_000).unref();
  return scratch;
}

/** Polls `fn` every `every` ms until it gives something truthy (returned), or fails after `timeout`
 * ms naming `what` and the last answer or error. */
export async function until(what, fn, timeout = 60_000, every = 250) {
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

/** The shipped settings (settings/default.toml) up to their first camera: every section, no camera. */
export function shippedWithoutCameras() {
  const text = readFileSync(path.join(ROOT, 'settings/default.toml'), 'utf8');
  return text.slice(0, text.search(/^\[\[cameras\]\]/m));
}

/** Starts `haven --settings settings` with `env` over the process's; resolves to the child and the
 * base URL it says it listens on (fails with its log if it exits or is silent for 90 s). */
export async function startHaven(settings, env) {
  const child = spawn(BIN, ['--settings', settings], {
    cwd: ROOT,
    env: { ...process.env, HAVEN__SERVER__BIND: '127.0.0.1:0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  const log = [];
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log.join('')}`)), 90_000);
    const onData = (chunk) => {
      log.push(chunk.toString());
      const m = /HAVEN listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(log.join(''));
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => reject(new Error(`server exited (${code}):\n${log.join('')}`)));
  });
  return { child, base };
}

/** A headless chromium page; page errors and console errors (but socket noise) go to `errors`. */
export async function openPage(errors) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: !process.env.HEADED, args: ['--no-sandbox', '--disable-gpu'] });
  const page = await (await browser.newContext({ viewport: { width: 1180, height: 900 } })).newPage();
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/WebSocket|Failed to load resource/.test(m.text())) errors.push(`console: ${m.text()}`);
  });
  return { browser, page };
}

/** Closes the browser and stops the server as SIGTERM does. */
export async function stopAll(browser, child) {
  await browser?.close().catch(() => {});
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
}
