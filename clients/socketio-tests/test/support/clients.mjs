// Clients for the tests: socket.io-client as an unchanged app would create it, and a bare
// native-protocol client on `ws`. Every client made here is closed by closeAll().
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { within } from '../../../test-support/wait.mjs';

const open = new Set();

/** A socket.io-client socket for `server` (not yet connected unless `autoConnect`). */
export function sio(server, opts = {}) {
  const socket = io(server.httpUrl, { reconnection: false, forceNew: true, ...opts });
  open.add(socket);
  return socket;
}

/** Resolves on `connect`, rejects on `connect_error` with its error. */
export function connected(socket, what = 'connect') {
  return within(
    new Promise((resolve, reject) => {
      if (socket.connected) return resolve(socket);
      socket.once('connect', () => resolve(socket));
      socket.once('connect_error', reject);
    }),
    what,
  );
}

/** `emit` with an ack callback, as a promise of the ack's payload. */
export function call(socket, ev, ...args) {
  return within(new Promise((resolve) => socket.emit(ev, ...args, resolve)), `ack of ${ev}`);
}

/** Every event a socket gets, by name, in order. */
export function record(socket) {
  const got = [];
  socket.onAny((ev, payload) => got.push({ ev, payload }));
  return {
    got,
    of: (ev) => got.filter((g) => g.ev === ev).map((g) => g.payload),
  };
}

/** A native-protocol (evd.v1.json) client: `send(op)`, and `events` with every event received. */
export async function native(server, token) {
  const ws = new WebSocket(`${server.wsUrl}?token=${token}`, ['evd.v1.json']);
  open.add(ws);
  const events = [];
  ws.on('message', (data) => {
    const v = JSON.parse(data.toString());
    for (const e of Array.isArray(v) ? v : [v]) events.push(e);
  });
  await within(new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  }), 'native client open');
  let ref = 0;
  return {
    ws,
    events,
    /** Sends `op` with a fresh ref; returns the ref. */
    send(op) {
      ref += 1;
      ws.send(JSON.stringify({ ...op, ref }));
      return ref;
    },
  };
}

export function closeAll() {
  for (const c of open) {
    try {
      if (c instanceof WebSocket) c.terminate();
      else c.disconnect();
    } catch {}
  }
  open.clear();
}
