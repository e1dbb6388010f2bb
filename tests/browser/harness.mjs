// The real pieces of the browser tests: the `tally` binary serving on a fresh SQLite file, and Debian's
// Chromium driven by playwright-core. Nothing is mocked.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

export const ROOT = resolve(import.meta.dirname, '../..');
export const ADMIN = 'browser-test-admin-token';
export const ARTIFACTS = process.env.TALLY_BROWSER_ARTIFACTS ?? join(ROOT, 'target/browser-artifacts');
mkdirSync(ARTIFACTS, { recursive: true });

/** Starts `tally serve` on a free port and a fresh SQLite file (or `options.database`); resolves to { url, stop,
 * database }. */
export async function startTally(extraArgs = [], options = {}) {
  const bin = process.env.TALLY_BIN ?? join(ROOT, 'target/debug/tally');
  const dir = mkdtempSync(join(tmpdir(), 'tally-browser-'));
  const database = options.database ?? `sqlite://${join(dir, 'tally.db')}?mode=rwc`;
  const child = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--database', database, ...extraArgs], {
    env: { ...process.env, TALLY_ADMIN_TOKEN: ADMIN, RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // It says where it listens on standard error, with its other start-up lines. Only a whole line counts: Rust's
  // standard error is unbuffered, so a line can arrive in pieces ("…http://127.0.0.1:" then the port).
  let log = '';
  const url = await new Promise((ok, fail) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); fail(new Error(`tally did not start:\n${log}`)); }, 30000);
    const read = (d) => {
      log += d;
      const m = log.match(/listening on (http:\/\/\S+)\r?\n/);
      if (m) { clearTimeout(timer); ok(m[1]); }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.on('exit', (code) => { clearTimeout(timer); fail(new Error(`tally exited (${code}):\n${log}`)); });
  });
  return {
    url, database, bin, log: () => log,
    stop: () => new Promise((ok) => { child.on('exit', ok); child.kill('SIGTERM'); }),
  };
}

/** Debian's Chromium, headless, with the flags this closed network needs. */
export async function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** A page that records console errors and uncaught exceptions. */
export async function openPage(browser, url, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
  const page = await context.newPage();
  page.errors = [];
  page.on('console', (m) => { if (m.type() === 'error') page.errors.push(m.text()); });
  page.on('pageerror', (e) => page.errors.push(String(e)));
  await page.goto(url);
  if (options.javaScriptEnabled !== false) {
    await page.waitForSelector('body[data-hydrated="true"]', { timeout: 30000 });
  }
  return page;
}

/** POST JSON to the service; resolves to [status, body]. */
export async function api(base, method, path, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = text; }
  return [res.status, json];
}

/** The total the page shows: the `data-amount` of #total. */
export async function pageTotal(page) {
  return page.locator('#total').getAttribute('data-amount');
}

/** A small seeded random generator (mulberry32), so a failure can be replayed with its seed. */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
