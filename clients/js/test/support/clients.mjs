// SDK clients for the tests: the built SDK (dist/) with `ws` as its WebSocket, fast reconnects,
// and a recorder of what a room delivered.
import WebSocket from 'ws';
import { Client } from '../../dist/index.js';

/** Reconnect bounds that keep the tests quick. */
export const FAST_RECONNECT = { initialDelayMs: 50, maxDelayMs: 400, factor: 2 };

const made = new Set();

export function makeClient(opts) {
  const c = new Client({ WebSocket, reconnect: FAST_RECONNECT, opTimeoutMs: 10_000, ...opts });
  made.add(c);
  return c;
}

/** Closes every client made so far (after() hooks). */
export function closeClients() {
  for (const c of made) c.close();
  made.clear();
}

/** Records the room's messages; `texts()` and `offsets()` read them back. */
export function recordMessages(room) {
  const got = [];
  room.on('message', (m) => got.push(m));
  return {
    got,
    texts: () => got.map((m) => m.text),
    offsets: () => got.map((m) => m.offset),
    has: (text) => got.some((m) => m.text === text),
  };
}

/** Asserts offsets strictly increase (offset order, no duplicate). */
export function strictlyIncreasing(offsets) {
  return offsets.every((o, i) => i === 0 || o > offsets[i - 1]);
}
