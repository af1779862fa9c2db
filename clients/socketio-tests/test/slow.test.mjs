// A Socket.IO client that stops reading is closed as on the native protocol (4008, its queue
// bounded in bytes), while a client beside it in the room gets every message, in order.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { call, closeAll, connected, record, sio } from './support/clients.mjs';
import { EvdServer } from '../../test-support/server.mjs';
import { mintToken } from '../../test-support/tokens.mjs';
import { waitFor, within } from '../../test-support/wait.mjs';

const QUEUE_MAX_BYTES = 256 * 1024;

let server;
before(async () => {
  server = await EvdServer.start({
    env: {
      EVD_LIMITS_QUEUE_MAX_BYTES: String(QUEUE_MAX_BYTES),
      EVD_LIMITS_FRAME_BATCH_BYTES: String(16 * 1024),
      EVD_LIMITS_OPS_PER_SEC: '100000',
      EVD_LIMITS_OPS_BURST: '100000',
      EVD_LIMITS_MAX_TEXT_BYTES: String(8 * 1024),
      // Let the 4008 close frame wait for the stalled reader.
      EVD_DRAIN_CLOSE_TIMEOUT_MS: '60000',
    },
  });
});
after(async () => {
  closeAll();
  await server?.stop();
});

function metric(text, name, label) {
  return text
    .split('\n')
    .filter((l) => l.startsWith(name) && l.includes(label))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

test('a client that stops reading is closed with 4008 and the others get everything', async () => {
  const room = 'event:slow';
  const ws = { transports: ['websocket'] };
  const stalled = sio(server, { ...ws, auth: { token: mintToken('stalled') } });
  const fast = sio(server, { ...ws, auth: { token: mintToken('fast') } });
  const publisher = sio(server, { ...ws, auth: { token: mintToken('publisher') } });
  const got = record(stalled);
  const fastGot = record(fast);
  await Promise.all([connected(stalled), connected(fast), connected(publisher)]);
  await call(stalled, 'join_room', room);
  await call(fast, 'join_room', room);
  const closed = new Promise((resolve) => stalled.once('disconnect', (reason, details) => resolve({ reason, details })));

  // The stalled client's TCP socket stops being read: its kernel buffers fill, then its queue.
  stalled.io.engine.transport.ws._socket.pause();

  // ~12 MB in total: far more than the stalled client's socket buffers plus its queue.
  const N = 3000;
  const text = 'x'.repeat(4000);
  for (let i = 0; i < N; i++) {
    // Waiting for each ack paces the publisher to the server, as a real client would.
    const ack = await call(publisher, 'send_message', { room, text });
    assert.equal(ack.ev, 'ACK');
  }
  await waitFor(() => fastGot.of('MESSAGE_RECEIVED').length === N, 'the fast member has every message', 60_000);
  const offsets = fastGot.of('MESSAGE_RECEIVED').map((m) => m.offset);
  assert.ok(offsets.every((o, i) => i === 0 || o === offsets[i - 1] + 1), 'in order, no gap');

  // Resuming, the stalled client reads a gapless prefix, then the close with 4008.
  stalled.io.engine.transport.ws._socket.resume();
  const { reason, details } = await within(closed, 'the stalled client is closed', 60_000);
  assert.equal(reason, 'transport close');
  assert.equal(details?.context?.code, 4008, `close code: ${details?.context?.code}`);
  const prefix = got.of('MESSAGE_RECEIVED').map((m) => m.offset);
  assert.ok(prefix.length < N, 'it cannot have received everything');
  assert.ok(prefix.every((o, i) => i === 0 || o === prefix[i - 1] + 1), 'a gapless prefix');

  const m = await (await fetch(`${server.httpUrl}/metrics`)).text();
  assert.ok(metric(m, 'evd_slow_consumer_closes_total', '') >= 1, 'slow consumer counted');
  assert.ok(
    metric(m, 'evd_connections_closed_total', 'protocol="socketio",reason="slow_consumer"') +
      metric(m, 'evd_connections_closed_total', 'reason="slow_consumer",protocol="socketio"') >=
      1,
    'closed as a slow consumer, with the protocol label',
  );
  assert.equal(fast.connected, true, 'the fast member is still connected');
});
