// socket.io-client with its default options: HTTP long-polling first, then the upgrade to a
// WebSocket. The calls work before and after the upgrade, and nothing is lost across it.
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

test('default options: polling, then the upgrade to websocket, with every message once', async () => {
  const room = 'session:poll';
  const a = sio(server, { auth: { token: mintToken('poller') } });
  const b = sio(server, { transports: ['websocket'], auth: { token: mintToken('watcher') } });
  const ea = record(a);
  const eb = record(b);
  const upgraded = within(
    new Promise((resolve) => a.io.on('open', () => a.io.engine.once('upgrade', (t) => resolve(t.name)))),
    'the upgrade to websocket',
  );
  await connected(a, 'polling connect');
  await connected(b);
  const joinedA = call(a, 'join_room', room);
  await call(b, 'join_room', room);
  assert.equal((await joinedA).ev, 'ROOM_JOINED');

  // Messages while the client polls, and while it upgrades.
  const sent = [];
  for (let i = 0; i < 5; i++) sent.push(call(a, 'send_message', { room, text: `a${i}` }));
  for (let i = 0; i < 5; i++) b.emit('send_message', { room, text: `b${i}` });
  assert.equal(await upgraded, 'websocket');
  assert.equal(a.io.engine.transport.name, 'websocket');
  for (let i = 5; i < 10; i++) sent.push(call(a, 'send_message', { room, text: `a${i}` }));
  for (let i = 5; i < 10; i++) b.emit('send_message', { room, text: `b${i}` });
  const acks = await Promise.all(sent);
  assert.ok(acks.every((x) => x.ev === 'ACK'), JSON.stringify(acks));

  await waitFor(() => ea.of('MESSAGE_RECEIVED').length >= 20, 'the poller has all 20');
  await waitFor(() => eb.of('MESSAGE_RECEIVED').length >= 20, 'the watcher has all 20');
  for (const e of [ea, eb]) {
    const offsets = e.of('MESSAGE_RECEIVED').map((m) => m.offset);
    assert.equal(offsets.length, 20, 'no duplicate');
    assert.deepEqual([...offsets].sort((x, y) => x - y), offsets, 'in offset order');
  }
  assert.deepEqual(
    ea.of('MESSAGE_RECEIVED').map((m) => m.offset),
    eb.of('MESSAGE_RECEIVED').map((m) => m.offset),
  );
});

test('polling only: connect, calls, and server pings answered over HTTP', async () => {
  const s = sio(server, { transports: ['polling'], auth: { token: mintToken('pollonly') } });
  const events = record(s);
  await connected(s, 'polling-only connect');
  assert.equal(s.io.engine.transport.name, 'polling');
  const joined = await call(s, 'join_room', 'session:pollonly');
  assert.equal(joined.ev, 'ROOM_JOINED');
  const ack = await call(s, 'send_message', { room: 'session:pollonly', text: 'over http' });
  assert.equal(ack.ev, 'ACK');
  await waitFor(() => events.of('MESSAGE_RECEIVED').length === 1, 'own message over polling');
  assert.equal(events.of('MESSAGE_RECEIVED')[0].text, 'over http');
});

test('a bad token over polling gives connect_error', async () => {
  const s = sio(server, { transports: ['polling'], auth: { token: 'nonsense' } });
  const err = await within(new Promise((resolve) => s.once('connect_error', resolve)), 'connect_error');
  assert.match(err.message, /unauthorized/);
});

test('an unknown sid is refused as engine.io refuses it', async () => {
  const res = await fetch(`${server.httpUrl}/socket.io/?EIO=4&transport=polling&sid=nope`);
  assert.equal(res.status, 400);
  assert.deepEqual(await res.json(), { code: 1, message: 'Session ID unknown' });
});

test('a page of a listed origin may poll; another origin is refused', async () => {
  const listed = 'http://app.example';
  const other = await EvdServer.start({ env: { EVD_CORS_ALLOWED_ORIGINS: listed } });
  try {
    const url = `${other.httpUrl}/socket.io/?EIO=4&transport=polling`;
    const ok = await fetch(url, { headers: { origin: listed } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('access-control-allow-origin'), listed);
    assert.match(await ok.text(), /^0\{"sid":/);
    const refused = await fetch(url, { headers: { origin: 'http://evil.example' } });
    assert.equal(refused.status, 403);
  } finally {
    await other.stop();
  }
});
