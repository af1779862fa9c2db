// Reconnect delays: exponential growth with full jitter (a uniformly random wait between 0 and
// the current ceiling), so a crowd of clients dropped together comes back spread out.

import type { ReconnectOptions } from './types.js';

/** Ceiling of the first retry. */
export const DEFAULT_INITIAL_DELAY_MS = 500;
/** Largest ceiling. */
export const DEFAULT_MAX_DELAY_MS = 30_000;
/** Growth of the ceiling per failed attempt. */
export const DEFAULT_FACTOR = 2;

export class Backoff {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly factor: number;
  /** Failed attempts since the last reset. */
  attempt = 0;

  constructor(opts: ReconnectOptions = {}, private random: () => number = Math.random) {
    this.initialDelayMs = Math.max(0, opts.initialDelayMs ?? DEFAULT_INITIAL_DELAY_MS);
    this.maxDelayMs = Math.max(this.initialDelayMs, opts.maxDelayMs ?? DEFAULT_MAX_DELAY_MS);
    this.factor = Math.max(1, opts.factor ?? DEFAULT_FACTOR);
  }

  /** The ceiling for attempt `n` (0-based): min(max, initial × factor^n). */
  ceiling(n: number): number {
    return Math.min(this.maxDelayMs, this.initialDelayMs * Math.pow(this.factor, n));
  }

  /** The next delay, uniformly in [0, ceiling(attempt)]; counts the attempt. */
  next(): number {
    return Math.round(this.random() * this.ceiling(this.attempt++));
  }

  /** A random delay within the first ceiling, without counting an attempt (jitter on top of a server's hint). */
  jitter(): number {
    return Math.round(this.random() * this.initialDelayMs);
  }

  reset(): void {
    this.attempt = 0;
  }
}
