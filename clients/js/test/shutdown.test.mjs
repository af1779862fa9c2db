// Against a real `evd serve`: SIGTERM drains (RECONNECT, then close 4001); the client waits at
// least the RECONNECT's after_ms, keeps retrying while the server is gone, and comes back on its
// own to the server restarted on the same port, rejoining its room with `recover`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeClients, makeClient, recordMessages } from './support/clients.mjs';
import { EvdServer } from '../../test-support/server.mjs';
import { mintToken } from '../../test-support/tokens.mjs';
import { nextEvent, waitFor } from '../../test-support/wait.mjs';

let server;
before(async () => {
  server = await EvdServer.start({
    env: { EVD_DRAIN_GRACE_MS: '300', EVD_DRAIN_RECONNECT_AFTER_MAX_MS: '400', EVD_DRAIN_CLOSE_TIMEOUT_MS: '1000' },
  });
});
after(async () => {
  closeClients();
  await server?.stop();
});

test('SIGTERM then a restarted server: the client reconnects and rejoins by itself', async () => {
  const alice = makeClient({ url: server.wsUrl, token: mintToken('alice') });
  const room = alice.room('session:drain', { history: 10 });
  const g = recordMessages(room);
  const joins = [];
  room.on('joined', (j) => joins.push(j));
  const failed = [];
  room.on('recovery_failed', (f) => failed.push(f));
  const reconnects = [];
  alice.on('event', (ev) => ev.ev === 'RECONNECT' && reconnects.push(ev));
  const connected = [];
  alice.on('connected', (h) => connected.push(h));
  alice.connect();
  await waitFor(() => joins.length === 1, 'the first join');
  await room.send('before the restart');
  await waitFor(() => g.has('before the restart'), 'own message');

  const disconnected = nextEvent(alice, 'disconnected');
  await server.terminate();
  const d = await disconnected;
  assert.equal(d.code, 4001, 'drained with 4001');
  assert.equal(reconnects.length, 1, 'RECONNECT came before the close');
  assert.ok(d.reconnectInMs >= reconnects[0].after_ms, `waits at least after_ms (${d.reconnectInMs} >= ${reconnects[0].after_ms})`);
  assert.notEqual(alice.state, 'closed');

  await server.restart();
  await waitFor(() => connected.length === 2 && joins.length === 2, 'back on the restarted server, room rejoined', 15_000);
  assert.equal(alice.state, 'connected');
  assert.notEqual(connected[1].node, connected[0].node, 'a new server process');
  // The restart lost the in-memory history: a recovery that fails must say so.
  assert.ok(joins[1].recovered || failed.length === 1, 'recovered, or recovery_failed surfaced');

  const bob = makeClient({ url: server.wsUrl, token: mintToken('bob') });
  const rb = bob.room('session:drain');
  bob.connect();
  await waitFor(() => rb.joined, 'bob joined');
  await rb.send('after the restart');
  await waitFor(() => g.has('after the restart'), 'alice gets it');
  assert.equal(g.texts().filter((t) => t === 'after the restart').length, 1);
});
