// Connection-state recovery as socket.io-client 4.6+ asks for it: the `pid` from CONNECT and
// the offset of the last event come back on reconnect, and evd maps them onto the room's epoch
// and offset. The client gets exactly what it missed and `socket.recovered === true`; when the
// room cannot serve the offset, `recovered` is false.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { call, closeAll, connected, record, sio } from './support/clients.mjs';
import { EvdServer } from '../../test-support/server.mjs';
import { mintToken } from '../../test-support/tokens.mjs';
import { waitFor, within } from '../../test-support/wait.mjs';

let server;
before(async () => {
  server = await EvdServer.start();
});
after(async () => {
  closeAll();
  await server?.stop();
});

/** Kills the client's TCP connection (no close frame) and resolves once it noticed. */
async function drop(socket) {
  socket.io.reconnection(false); // reconnect by hand, after the others have talked
  const gone = within(new Promise((resolve) => socket.once('disconnect', resolve)), 'disconnect');
  socket.io.engine.transport.ws._socket.destroy();
  return gone;
}

test('a dropped connection recovers with socket.recovered and nothing missed', async () => {
  const room = 'session:recover';
  const ws = { transports: ['websocket'] };
  const a = sio(server, { ...ws, auth: { token: mintToken('rita') } });
  const b = sio(server, { ...ws, auth: { token: mintToken('bo') } });
  const got = [];
  a.on('MESSAGE_RECEIVED', (m, offset) => got.push({ m, offset }));
  await Promise.all([connected(a), connected(b)]);
  assert.equal(a.recovered, false, 'a first connect recovers nothing');
  await call(a, 'join_room', room);
  await call(b, 'join_room', room);
  for (let i = 0; i < 3; i++) await call(b, 'send_message', { room, text: `before${i}` });
  await waitFor(() => got.length === 3, 'the first three');
  assert.equal(typeof got[2].offset, 'string', 'each message carries its position');

  await drop(a);
  for (let i = 0; i < 3; i++) await call(b, 'send_message', { room, text: `during${i}` });
  a.connect();
  await connected(a, 'reconnect');
  assert.equal(a.recovered, true);
  await call(b, 'send_message', { room, text: 'after' });
  await waitFor(() => got.length >= 7, 'the missed three and the next one');
  assert.deepEqual(
    got.map((g) => g.m.text),
    ['before0', 'before1', 'before2', 'during0', 'during1', 'during2', 'after'],
  );
  const offsets = got.map((g) => g.m.offset);
  assert.deepEqual(offsets, [...offsets].sort((x, y) => x - y), 'in order');
  assert.equal(new Set(offsets).size, 7, 'each once');
  // Still a member without rejoining: a send to the room reaches it live.
  const joined = await call(a, 'send_message', { room, text: 'mine' });
  assert.equal(joined.ev, 'ACK');
  await waitFor(() => got.some((g) => g.m.text === 'mine'), 'own message after recovery');
});

test('an offset the room cannot serve reconnects with recovered false', async () => {
  const room = 'session:norecover';
  const a = sio(server, { transports: ['websocket'], auth: { token: mintToken('nora') } });
  const events = record(a);
  await connected(a);
  await call(a, 'join_room', room);
  await call(a, 'send_message', { room, text: 'one' });
  await waitFor(() => events.of('MESSAGE_RECEIVED').length === 1, 'own message');
  await drop(a);
  // The position of an epoch the room never had (as after its history was lost).
  a._lastOffset = `gone0000:1:${room}`;
  a.connect();
  await connected(a, 'reconnect');
  assert.equal(a.recovered, false);
});
