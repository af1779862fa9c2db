// A draining node sends a Socket.IO client the RECONNECT event, then closes it with 4001, as it
// does a native client.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeAll, connected, record, sio } from './support/clients.mjs';
import { EvdServer } from '../../test-support/server.mjs';
import { mintToken } from '../../test-support/tokens.mjs';
import { within } from '../../test-support/wait.mjs';

let server;
before(async () => {
  server = await EvdServer.start({ env: { EVD_DRAIN_GRACE_MS: '1000' } });
});
after(async () => {
  closeAll();
  await server?.stop();
});

test('drain: the RECONNECT event, then a close with 4001', async () => {
  const s = sio(server, { transports: ['websocket'], auth: { token: mintToken('drained') } });
  const events = record(s);
  await connected(s);
  const closed = within(
    new Promise((resolve) => s.once('disconnect', (reason, details) => resolve({ reason, details }))),
    'the drain close',
    20_000,
  );
  const exited = server.terminate();
  const { reason, details } = await closed;
  assert.equal(reason, 'transport close');
  assert.equal(details?.context?.code, 4001);
  const reconnect = events.of('RECONNECT');
  assert.equal(reconnect.length, 1);
  assert.equal(reconnect[0].reason, 'shutdown');
  assert.equal(typeof reconnect[0].after_ms, 'number');
  await exited;
});
