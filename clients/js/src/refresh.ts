// Refreshing the token of a live connection in place: when the server sends TOKEN_EXPIRING, or
// on a timer set from the token's own `exp` (read locally) in case that event is missed, the
// client asks getToken for a new token and sends `refresh`. This file only decides when; the
// client does the asking and the sending.

import { tokenExpiresAt } from './token.js';

/** The timer fires this long before `exp` (or at half the remaining life, if that is shorter). */
export const REFRESH_BEFORE_EXP_MS = 30_000;
/** Wait between tries when getToken fails or the refresh is not answered. */
export const REFRESH_RETRY_MS = 1_000;
/** setTimeout's largest delay; a longer wait is taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class TokenRefresher {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private running = false;

  /** `refresh()` gets and sends a new token, resolving true when the server took it. */
  constructor(
    private readonly refresh: () => Promise<boolean>,
    private readonly now: () => number,
  ) {}

  /** Arms the timer for `token` (a token without `exp` never needs one). */
  schedule(token: string | undefined): void {
    this.stop();
    const exp = token == null ? null : tokenExpiresAt(token);
    if (exp != null) this.armFor(exp);
  }

  private armFor(exp: number): void {
    const left = exp - this.now();
    const wait = left - Math.min(REFRESH_BEFORE_EXP_MS, left / 2);
    if (wait > MAX_TIMER_MS) this.timer = setTimeout(() => this.armFor(exp), MAX_TIMER_MS);
    else this.timer = setTimeout(() => void this.fire(), Math.max(0, wait));
  }

  /** Refreshes now (TOKEN_EXPIRING, or the timer); one at a time, retried while it fails. */
  async fire(): Promise<void> {
    if (this.running) return;
    this.running = true;
    clearTimeout(this.timer);
    let ok = false;
    try {
      ok = await this.refresh();
    } finally {
      this.running = false;
    }
    if (!ok) this.timer = setTimeout(() => void this.fire(), REFRESH_RETRY_MS);
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
