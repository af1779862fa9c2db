// socket.io-client with `socket.io-msgpack-parser`: the same calls and events in MessagePack
// binary frames, beside a client of the default parser in the same room.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import msgpackParser from 'socket.io-msgpack-parser';
import { call, closeAll, connected, record, sio } from './support/clients.mjs';
import { EvdServer } from '../../test-support/server.mjs';
import { mintToken } from '../../test-support/tokens.mjs';
import { waitFor } from '../../test-support/wait.mjs';

let server;
before(async () => {
  server = await EvdServer.start();
});
after(async () => {
  closeAll();
  await server?.stop();
});

test('the msgpack parser: acks, events, and binary frames', async () => {
  const room = 'session:mp';
  const m = sio(server, { transports: ['websocket'], parser: msgpackParser, auth: { token: mintToken('packer') } });
  const j = sio(server, { transports: ['websocket'], auth: { token: mintToken('jsoner') } });
  const frames = [];
  m.io.on('open', () => m.io.engine.on('packet', (p) => p.type === 'message' && frames.push(p.data)));
  const em = record(m);
  const ej = record(j);
  await connected(m, 'msgpack client connect');
  await connected(j, 'json client connect');

  const joined = await call(m, 'join_room', room);
  assert.equal(joined.ev, 'ROOM_JOINED');
  assert.equal(joined.room, room);
  await call(j, 'join_room', room);
  const bad = await call(m, 'join_room', 'nowhere');
  assert.equal(bad.ev, 'ERROR');
  assert.equal(bad.code, 'bad_request');

  const ack = await call(m, 'send_message', { room, text: 'packed' });
  assert.equal(ack.ev, 'ACK');
  j.emit('send_message', { room, text: 'plain' });
  await waitFor(() => em.of('MESSAGE_RECEIVED').length === 2, 'msgpack client has both');
  await waitFor(() => ej.of('MESSAGE_RECEIVED').length === 2, 'json client has both');
  const texts = (e) => e.of('MESSAGE_RECEIVED').map((x) => x.text).sort();
  assert.deepEqual(texts(em), ['packed', 'plain']);
  assert.deepEqual(texts(ej), ['packed', 'plain']);
  assert.ok(em.of('MESSAGE_RECEIVED').some((x) => x.offset === ack.offset && x.user === 'packer'));
  await waitFor(() => em.of('PRESENCE_UPDATE').some((p) => p.count === 2), 'presence in msgpack');

  assert.ok(frames.length > 0);
  assert.ok(
    frames.every((d) => typeof d !== 'string'),
    `every Socket.IO packet came in a binary frame: ${frames.map((d) => typeof d)}`,
  );
});
