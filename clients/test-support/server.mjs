// One `evd serve` per test file: a free port, a temp SQLite database, ready when GET /readyz
// answers 200, killed by PID when the file's tests end (after() hooks, and an exit hook as a
// backstop so a failing run leaves no server behind). Its output is kept for failure messages.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { evdBin } from './evd-bin.mjs';
import { freePort } from './ports.mjs';

/** Longest wait for /readyz. */
const READY_TIMEOUT_MS = 30_000;
/** Longest wait for a signalled server to exit. */
const EXIT_TIMEOUT_MS = 15_000;

const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {}
  }
});

export class EvdServer {
  /** Starts evd on `port` (free one if omitted) with extra EVD_* `env`; resolves once ready. */
  static async start({ port, env = {}, dir } = {}) {
    const s = new EvdServer();
    s.port = port ?? (await freePort());
    s.dir = dir ?? mkdtempSync(join(tmpdir(), 'evd-test-'));
    s.ownsDir = dir == null;
    s.env = env;
    await s.spawn();
    return s;
  }

  get wsUrl() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  get httpUrl() {
    return `http://127.0.0.1:${this.port}`;
  }

  async spawn() {
    this.output = '';
    const child = spawn(evdBin(), ['serve', '--listen', `127.0.0.1:${this.port}`], {
      env: {
        ...process.env,
        EVD_DATABASE_URL: `sqlite://${join(this.dir, 'evd.db')}`,
        EVD_LOG: 'warn',
        EVD_LIMITS_CONN_RATE_PER_IP: '0',
        ...this.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    live.add(child);
    const keep = (d) => {
      this.output = (this.output + d).slice(-20_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    this.exited = new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        live.delete(child);
        resolve({ code, signal });
      }),
    );
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (child.exitCode != null) throw new Error(`evd exited with ${child.exitCode} before ready:\n${this.output}`);
      try {
        const res = await fetch(`${this.httpUrl}/readyz`);
        if (res.status === 200) return;
      } catch {}
      if (Date.now() > deadline) {
        await this.stop();
        throw new Error(`evd not ready within ${READY_TIMEOUT_MS} ms:\n${this.output}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  get pid() {
    return this.child?.pid;
  }

  /** Sends SIGTERM (a drain) and resolves when the process has exited. */
  async terminate() {
    process.kill(this.pid, 'SIGTERM');
    return this.waitExit();
  }

  async waitExit() {
    let timer;
    const res = await Promise.race([
      this.exited,
      new Promise((r) => (timer = setTimeout(() => r(null), EXIT_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
    if (!res) {
      this.child.kill('SIGKILL');
      throw new Error(`evd (pid ${this.pid}) did not exit within ${EXIT_TIMEOUT_MS} ms`);
    }
    return res;
  }

  /** Starts the binary again on the same port and database. */
  restart() {
    return this.spawn();
  }

  /** Kills it (SIGKILL, by PID) if it runs, and removes its temp directory. Safe to call twice. */
  async stop() {
    if (this.child && this.child.exitCode == null && this.child.signalCode == null) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }
}
