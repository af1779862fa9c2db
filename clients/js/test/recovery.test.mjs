// Against a real `evd serve` keeping only 3 messages per room: a client kept off while 6 messages
// are sent rejoins with `recover`, gets `recovered:false`, and the room says so with
// `recovery_failed`; what it then delivers is only newer than what it had, in order, never twice.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeClients, makeClient, recordMessages, strictlyIncreasing } from './support/clients.mjs';
import { TcpProxy } from './support/proxy.mjs';
import { EvdServer } from '../../test-support/server.mjs';
import { mintToken } from '../../test-support/tokens.mjs';
import { nextEvent, waitFor } from '../../test-support/wait.mjs';

/** Messages the server keeps per room (its recovery window). */
const WINDOW = 3;

let server;
let proxy;
before(async () => {
  server = await EvdServer.start({ env: { EVD_HISTORY_SIZE: String(WINDOW) } });
  proxy = await TcpProxy.start(server.port);
});
after(async () => {
  closeClients();
  await proxy?.close();
  await server?.stop();
});

test('a gap older than the window: recovered:false surfaces as recovery_failed', async () => {
  const alice = makeClient({ url: proxy.wsUrl, token: mintToken('alice') });
  const bob = makeClient({ url: server.wsUrl, token: mintToken('bob') });
  const ra = alice.room('session:window', { history: WINDOW });
  const rb = bob.room('session:window');
  const ga = recordMessages(ra);
  alice.connect();
  bob.connect();
  await waitFor(() => ra.joined && rb.joined, 'both joined');
  await rb.send('seen');
  await waitFor(() => ga.has('seen'), 'alice has the first message');
  const epoch = ra.epoch;
  const had = ra.offset;

  proxy.refuse = true;
  const down = nextEvent(alice, 'disconnected');
  proxy.killAll();
  await down;
  const missed = [];
  for (let i = 0; i < 2 * WINDOW; i++) missed.push((await rb.send(`missed-${i}`)).offset);

  const failed = nextEvent(ra, 'recovery_failed', () => true, 15_000);
  const joined = nextEvent(ra, 'joined', () => true, 15_000);
  proxy.refuse = false;
  const [f, j] = await Promise.all([failed, joined]);
  assert.equal(j.recovered, false);
  assert.deepEqual(f, { epoch, offset: missed.at(-1), previous: { epoch, offset: had } });
  // The rejoin's history is the last WINDOW messages: delivered, since they are newer than `had`.
  await waitFor(() => ga.got.length === 1 + WINDOW, 'the window delivered');
  assert.deepEqual(ga.texts().slice(1), missed.slice(-WINDOW).map((_, i) => `missed-${WINDOW + i}`));
  assert.ok(strictlyIncreasing(ga.offsets()));
  assert.equal(ra.offset, missed.at(-1));
});
