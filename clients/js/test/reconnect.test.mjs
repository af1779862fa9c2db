// Against a real `evd serve`, through a TCP proxy: a socket killed under the client reconnects,
// rejoins with `recover` and misses nothing the other client sent meanwhile, with no duplicate;
// and a connection gone silent (bytes blackholed, no close) is noticed by the heartbeat.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { closeClients, makeClient, recordMessages, strictlyIncreasing } from './support/clients.mjs';
import { TcpProxy } from './support/proxy.mjs';
import { EvdServer } from '../../test-support/server.mjs';
import { mintToken } from '../../test-support/tokens.mjs';
import { nextEvent, waitFor } from '../../test-support/wait.mjs';

/** Heartbeat the server announces, short so a silent connection is noticed quickly. */
const HEARTBEAT_MS = 1000;

let server;
let proxy;
before(async () => {
  server = await EvdServer.start({ env: { EVD_HEARTBEAT_MS: String(HEARTBEAT_MS) } });
  proxy = await TcpProxy.start(server.port);
});
after(async () => {
  closeClients();
  await proxy?.close();
  await server?.stop();
});

test('a killed socket: reconnect, rejoin with recover, nothing missed, nothing twice', async () => {
  const roomName = 'session:kill';
  // The client under test goes through the proxy, and records the join_room ops it sends.
  const joins = [];
  class Recording extends WebSocket {
    send(data, ...rest) {
      const op = JSON.parse(data);
      if (op.op === 'join_room') joins.push(op);
      return super.send(data, ...rest);
    }
  }
  const alice = makeClient({ url: proxy.wsUrl, token: mintToken('alice'), WebSocket: Recording });
  const bob = makeClient({ url: server.wsUrl, token: mintToken('bob') });
  const ra = alice.room(roomName);
  const rb = bob.room(roomName);
  const ga = recordMessages(ra);
  const joinedEvents = [];
  ra.on('joined', (j) => joinedEvents.push(j));
  alice.connect();
  bob.connect();
  await waitFor(() => ra.joined && rb.joined, 'both joined');

  for (const t of ['before-1', 'before-2']) await rb.send(t);
  await waitFor(() => ga.got.length === 2, 'alice has the first two');

  // Cut alice off and keep her off while bob talks.
  proxy.refuse = true;
  const down = nextEvent(alice, 'disconnected');
  proxy.killAll();
  await down;
  assert.equal(ra.joined, false);
  const during = [];
  for (let i = 0; i < 6; i++) during.push((await rb.send(`during-${i}`)).offset);
  assert.equal(ga.got.length, 2, 'alice is off while bob sends');

  const rejoined = nextEvent(ra, 'joined', () => true, 15_000);
  proxy.refuse = false;
  const j = await rejoined;
  assert.equal(j.recovered, true, 'the rejoin recovered the gap');
  const lastJoin = joins.at(-1);
  assert.deepEqual(lastJoin.recover, { epoch: joinedEvents[0].epoch, offset: ga.got[1].offset }, 'recover from the last delivered offset');

  await rb.send('after');
  await waitFor(() => ga.has('after'), "alice gets bob's next message");
  assert.deepEqual(ga.texts(), ['before-1', 'before-2', ...during.map((_, i) => `during-${i}`), 'after']);
  assert.ok(strictlyIncreasing(ga.offsets()), 'offset order, no duplicate');
  assert.deepEqual(ga.offsets().slice(2, 8), during);
});

test('a silent connection (no close, no bytes) is noticed within the heartbeat and replaced', async () => {
  const alice = makeClient({ url: proxy.wsUrl, token: mintToken('alice2') });
  const room = alice.room('session:silent');
  const g = recordMessages(room);
  const bob = makeClient({ url: server.wsUrl, token: mintToken('bob2') });
  const rb = bob.room('session:silent');
  const hellos = [];
  alice.on('connected', (h) => hellos.push(h));
  alice.connect();
  bob.connect();
  await waitFor(() => room.joined && rb.joined, 'joined');
  assert.equal(hellos[0].heartbeat_ms, HEARTBEAT_MS);

  const down = nextEvent(alice, 'disconnected', () => true, HEARTBEAT_MS * 3);
  proxy.blackhole('both');
  const d = await down;
  assert.match(d.reason, /nothing received for \d+ ms/);
  await rb.send('after the silence');
  await waitFor(() => hellos.length === 2 && g.has('after the silence'), 'a new connection and the message', 10_000);
  assert.equal(g.got.length, 1);
});
