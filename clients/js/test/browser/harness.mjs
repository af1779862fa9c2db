// Shared by the browser tests: a real `evd serve` (the binary in EVD_BIN) on a free port over a
// temporary SQLite file, headless Chromium through playwright-core, and expect-style waiting
// (poll a condition until it holds or a bounded timeout fails the test with what was seen).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { evdBin } from '../../../test-support/evd-bin.mjs';
import { freePort } from '../../../test-support/ports.mjs';

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root. */
export const ROOT = join(here, '..', '..', '..', '..');
/** Where screenshots go (the repository's target/, ignored by git). */
export const SHOTS = join(ROOT, 'target', 'browser-screenshots');
/** Longest wait for anything the page should show. */
export const TIMEOUT_MS = Number(process.env.EVD_BROWSER_TIMEOUT_MS) || 20_000;

export { evdBin, freePort };

const running = new Set();
process.on('exit', () => {
  for (const child of running) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
});

/**
 * Starts `evd serve` on 127.0.0.1 and a free port, over a new SQLite file, with `env` added.
 * Resolves once /readyz answers 200. `stop()` kills it by its PID and removes the files.
 */
export async function startEvd(env = {}) {
  const bin = evdBin();
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'evd-page-'));
  const child = spawn(bin, ['serve', '--listen', `127.0.0.1:${port}`], {
    env: {
      ...process.env,
      EVD_DATABASE_URL: `sqlite://${join(dir, 'evd.db')}`,
      EVD_LOG: process.env.EVD_LOG || 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let log = '';
  const keep = (chunk) => {
    log += chunk;
    if (log.length > 200_000) log = log.slice(-100_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  const exit = new Promise((resolve) =>
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      running.delete(child);
      resolve();
    }),
  );
  const url = `http://127.0.0.1:${port}`;
  const server = {
    url,
    port,
    pid: child.pid,
    logs: () => log,
    async stop() {
      if (!exited) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // gone already
        }
        await exit;
      }
      // Children it may have left behind must not keep the test process alive through the pipes.
      child.stdout.destroy();
      child.stderr.destroy();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await waitUntil(
      async () => {
        if (exited) throw new Error(`evd exited (${JSON.stringify(exited)}) before it was ready:\n${log}`);
        try {
          return (await fetch(url + '/readyz')).status === 200;
        } catch {
          return false;
        }
      },
      { timeout: 30_000, what: `evd ready on ${url}` },
    );
  } catch (e) {
    await server.stop();
    throw e;
  }
  return server;
}

/** A development token minted by the server (POST /dev/token). */
export async function devToken(server, user, role = 'attendee', extra = {}) {
  const res = await fetch(server.url + '/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user, role, ...extra }),
  });
  if (!res.ok) throw new Error(`POST /dev/token answered ${res.status}: ${await res.text()}`);
  return (await res.json()).token;
}

/** Headless Chromium (EVD_CHROMIUM or /usr/bin/chromium). */
export function launchBrowser() {
  return chromium.launch({ executablePath: process.env.EVD_CHROMIUM || '/usr/bin/chromium' });
}

/**
 * Polls `check` (sync or async) until it returns something truthy, and returns that; fails after
 * `timeout` ms with `what` and the last value or error seen.
 */
export async function waitUntil(check, { timeout = TIMEOUT_MS, interval = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const seen = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeout} ms waiting for ${what}; last seen: ${seen}`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** Waits until the locator's text matches (a RegExp, or a string it must contain). */
export async function expectText(locator, expected, opts = {}) {
  const ok = (t) => (expected instanceof RegExp ? expected.test(t) : t.includes(expected));
  let text = '';
  await waitUntil(
    async () => {
      text = (await locator.first().textContent({ timeout: 1000 })) ?? '';
      return ok(text);
    },
    { what: `text ${expected} in ${locator}`, ...opts },
  );
  return text;
}

/** Waits until the locator matches exactly `n` elements. */
export async function expectCount(locator, n, opts = {}) {
  await waitUntil(async () => (await locator.count()) === n, { what: `${n} of ${locator}`, ...opts });
}

/** Waits until the element's attribute has the value. */
export async function expectAttr(locator, name, value, opts = {}) {
  await waitUntil(async () => (await locator.first().getAttribute(name, { timeout: 1000 })) === value, {
    what: `${name}=${value} on ${locator}`,
    ...opts,
  });
}

/** Saves a screenshot as target/browser-screenshots/<name>.png and returns its path. */
export async function screenshot(page, name, opts = {}) {
  mkdirSync(SHOTS, { recursive: true });
  const path = join(SHOTS, name + '.png');
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path, ...opts });
  return path;
}
