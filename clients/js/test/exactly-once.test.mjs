// Against a real `evd serve`, through a TCP proxy: a send in flight when the socket dies lands
// exactly once. Two cases: the server got the send but the ACK never reached the client (the
// resend with the same client_id is answered with the original offset), and the send never
// reached the server (the resend publishes it). Bob, connected directly, counts MESSAGE_RECEIVED
// with that text up to a later marker message, so a duplicate would be seen.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeClients, makeClient, recordMessages, strictlyIncreasing } from './support/clients.mjs';
import { TcpProxy } from './support/proxy.mjs';
import { EvdServer } from '../../test-support/server.mjs';
import { mintToken } from '../../test-support/tokens.mjs';
import { nextEvent, waitFor } from '../../test-support/wait.mjs';

let server;
let proxy;
before(async () => {
  server = await EvdServer.start();
  proxy = await TcpProxy.start(server.port);
});
after(async () => {
  closeClients();
  await proxy?.close();
  await server?.stop();
});

async function pair(roomName, users) {
  const alice = makeClient({ url: proxy.wsUrl, token: mintToken(users[0]) });
  const bob = makeClient({ url: server.wsUrl, token: mintToken(users[1]) });
  const ra = alice.room(roomName);
  const rb = bob.room(roomName);
  const ga = recordMessages(ra);
  const gb = recordMessages(rb);
  alice.connect();
  bob.connect();
  await waitFor(() => ra.joined && rb.joined, 'both joined');
  return { alice, ra, rb, ga, gb };
}

test('the server got the send, the ACK was lost: resent with the same client_id, one message', async () => {
  const { alice, ra, ga, gb } = await pair('session:once-ack-lost', ['alice', 'bob']);
  proxy.blackhole('down'); // alice's frames still reach evd; nothing comes back
  const sending = ra.send('exactly once', { clientId: 'cid-ack-lost' });
  await waitFor(() => gb.has('exactly once'), 'bob sees the message (so evd processed the send)');
  const offsetSeen = gb.got.find((m) => m.text === 'exactly once').offset;
  const down = nextEvent(alice, 'disconnected');
  proxy.killAll();
  await down;
  const { offset } = await sending;
  assert.equal(offset, offsetSeen, 'the send resolves with the original offset');

  await ra.send('marker');
  await waitFor(() => gb.has('marker') && ga.has('marker'), 'the marker on both sides');
  assert.equal(gb.texts().filter((t) => t === 'exactly once').length, 1, 'bob saw it once');
  assert.equal(ga.texts().filter((t) => t === 'exactly once').length, 1, 'alice (recovering) saw it once');
  assert.ok(strictlyIncreasing(ga.offsets()) && strictlyIncreasing(gb.offsets()));
});

test('the send never reached the server: the resend publishes it, once', async () => {
  const { alice, ra, ga, gb } = await pair('session:once-lost-up', ['carol', 'dave']);
  proxy.blackhole('up'); // alice's send goes nowhere
  const sending = ra.send('sent into the void');
  const down = nextEvent(alice, 'disconnected');
  proxy.killAll();
  await down;
  const { offset } = await sending;
  await ra.send('marker');
  await waitFor(() => gb.has('marker') && ga.has('marker'), 'the marker on both sides');
  const seen = gb.got.filter((m) => m.text === 'sent into the void');
  assert.equal(seen.length, 1, 'bob saw it once');
  assert.equal(seen[0].offset, offset, 'the send resolves with its offset');
  assert.equal(ga.texts().filter((t) => t === 'sent into the void').length, 1);
});
