// Liveness of one connection: a `ping` op every heartbeat_ms / 2 (the server wants one at least
// every heartbeat_ms), and the connection declared dead when nothing at all has arrived for
// heartbeat_ms × SILENCE_FACTOR. Checked on each ping tick, so a dead socket is noticed between
// 1× and 1.5× that silence.

/** Pings per heartbeat_ms. */
export const PINGS_PER_HEARTBEAT = 2;
/** Silence, in heartbeats, after which the connection counts as dead. */
export const SILENCE_FACTOR = 1;

export class Heartbeat {
  private timer: ReturnType<typeof setInterval> | undefined;
  private lastReceived = 0;

  /** Starts pinging; `onDead(silentMs)` is called once if the silence limit is reached. */
  start(heartbeatMs: number, ping: () => void, onDead: (silentMs: number) => void): void {
    this.stop();
    this.lastReceived = Date.now();
    const limit = heartbeatMs * SILENCE_FACTOR;
    this.timer = setInterval(() => {
      const silent = Date.now() - this.lastReceived;
      if (silent >= limit) {
        this.stop();
        onDead(silent);
      } else ping();
    }, Math.max(1, Math.floor(heartbeatMs / PINGS_PER_HEARTBEAT)));
  }

  /** Something arrived. */
  touch(): void {
    this.lastReceived = Date.now();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
