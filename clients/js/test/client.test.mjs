// Unit: the client against a scripted socket, for what a real server will not do on demand:
// batched frames, live messages before ROOM_JOINED, outbox duplicates, queue bounds, in-flight
// ops over a drop, RECONNECT hints, fatal close codes, a fixed token refused, the heartbeat.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, EvdError, MAX_QUEUED_OPS } from '../dist/index.js';
import { FakeSocketFactory, closeFromServer, hello, push, sentOps } from './support/fake-socket.mjs';
import { nextEvent, waitFor } from '../../test-support/wait.mjs';

const FAST = { initialDelayMs: 10, maxDelayMs: 20 };
const noFetch = async () => {
  throw new Error('no network in unit tests');
};

function setup(opts = {}) {
  const f = new FakeSocketFactory();
  const client = new Client({ url: 'ws://x/ws', token: 't', WebSocket: f.WebSocket, reconnect: FAST, fetch: noFetch, ...opts });
  return { f, client };
}

const msg = (offset, text = 'm' + offset) => ({ room: 'session:S1', offset, id: 'id' + offset, user: 'u2', text, ts: 1 });

test('refs resolve replies from batched frames; ERROR rejects with code and retry_after_ms', async () => {
  const { f, client } = setup();
  client.connect();
  await waitFor(() => f.last, 'a socket');
  assert.deepEqual(f.last.protocols, ['evd.v1.json']);
  assert.equal(f.last.url, 'ws://x/ws?token=t');
  hello(f.last);
  assert.equal(client.state, 'connected');
  assert.equal(client.user, 'u1');
  const a = client.request({ op: 'ping' });
  const b = client.vote('p1', 'o1');
  const [pa, pb] = f.last.sent.filter((x) => x.ref != null);
  push(f.last, [
    { ev: 'PONG', ref: pa.ref },
    { ev: 'ERROR', ref: pb.ref, code: 'rate_limited', message: 'slow down', retry_after_ms: 250 },
  ]);
  assert.deepEqual(await a, { ev: 'PONG', ref: pa.ref });
  await assert.rejects(b, (e) => e instanceof EvdError && e.code === 'rate_limited' && e.retryAfterMs === 250);
  client.close();
});

test('live messages before ROOM_JOINED are held, merged with history in order, never twice', async () => {
  const { f, client } = setup();
  const room = client.room('session:S1', { history: 5 });
  const got = [];
  room.on('message', (m) => got.push(m.offset));
  client.connect();
  await waitFor(() => f.last, 'a socket');
  hello(f.last);
  const [join] = sentOps(f.last, 'join_room');
  assert.deepEqual(join, { op: 'join_room', room: 'session:S1', history: 5, ref: join.ref });
  push(f.last, { ev: 'MESSAGE_RECEIVED', ...msg(4) });
  push(f.last, { ev: 'MESSAGE_RECEIVED', ...msg(3) });
  assert.deepEqual(got, [], 'held until ROOM_JOINED');
  push(f.last, [
    { ev: 'ROOM_JOINED', ref: join.ref, room: 'session:S1', epoch: 'E', offset: 3, recovered: false,
      presence: { count: 1, members: [{ user: 'u1' }] }, history: [msg(1), msg(2), msg(3)] },
    { ev: 'PRESENCE_UPDATE', room: 'session:S1', count: 2, joins: [{ user: 'u2' }], leaves: [] },
    { ev: 'MESSAGE_RECEIVED', ...msg(4) },
    { ev: 'MESSAGE_RECEIVED', ...msg(5) },
  ]);
  assert.deepEqual(got, [1, 2, 3, 4, 5]);
  assert.equal(room.offset, 5);
  assert.equal(room.epoch, 'E');
  assert.equal(room.presence.count, 2, 'the update in the same frame as ROOM_JOINED applies');
  push(f.last, { ev: 'MESSAGE_RECEIVED', ...msg(5) });
  assert.deepEqual(got, [1, 2, 3, 4, 5]);

  // A drop: the rejoin asks to recover from offset 5.
  closeFromServer(f.last, 1006);
  await waitFor(() => f.sockets.length === 2, 'a reconnect');
  hello(f.last);
  const [rejoin] = sentOps(f.last, 'join_room');
  assert.deepEqual(rejoin.recover, { epoch: 'E', offset: 5 });
  const failed = [];
  room.on('recovery_failed', (x) => failed.push(x));
  push(f.last, { ev: 'ROOM_JOINED', ref: rejoin.ref, room: 'session:S1', epoch: 'E', offset: 7, recovered: true,
    presence: { count: 2, members: [{ user: 'u1' }, { user: 'u2' }] }, history: [msg(6), msg(7)] });
  assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(failed, []);
  client.close();
});

test('recovered:false is surfaced as recovery_failed', async () => {
  const { f, client } = setup();
  const room = client.room('session:S1');
  client.connect();
  await waitFor(() => f.last, 'a socket');
  hello(f.last);
  let [join] = sentOps(f.last, 'join_room');
  push(f.last, { ev: 'ROOM_JOINED', ref: join.ref, room: 'session:S1', epoch: 'E', offset: 2, recovered: false,
    presence: { count: 1, members: [{ user: 'u1' }] }, history: [] });
  closeFromServer(f.last, 4008);
  await waitFor(() => f.sockets.length === 2, 'a reconnect');
  hello(f.last);
  [join] = sentOps(f.last, 'join_room');
  const failed = nextEvent(room, 'recovery_failed');
  push(f.last, { ev: 'ROOM_JOINED', ref: join.ref, room: 'session:S1', epoch: 'F', offset: 9, recovered: false,
    presence: { count: 1, members: [{ user: 'u1' }] }, history: [] });
  assert.deepEqual(await failed, { epoch: 'F', offset: 9, previous: { epoch: 'E', offset: 2 } });
  assert.equal(room.offset, 9);
  client.close();
});

test('outbox duplicates are dropped; offers come with accept/decline; the user room is never joined', async () => {
  const { f, client } = setup();
  const offers = [];
  client.on('offer', (o) => offers.push(o));
  client.room('user:u1');
  client.connect();
  await waitFor(() => f.last, 'a socket');
  hello(f.last);
  assert.deepEqual(sentOps(f.last, 'join_room'), []);
  const offer = { ev: 'WAITLIST_OFFER', offer: 'of1', session: 'S1', expires_at: 123, outbox_id: 77 };
  push(f.last, [offer, offer]);
  push(f.last, offer);
  assert.equal(offers.length, 1);
  assert.equal(offers[0].id, 'of1');
  assert.equal(offers[0].expiresAt, 123);
  const accepted = offers[0].accept();
  const [acc] = sentOps(f.last, 'accept_offer');
  assert.equal(acc.offer, 'of1');
  push(f.last, { ev: 'ACK', ref: acc.ref, ticket: 'T1' });
  assert.deepEqual(await accepted, { ticket: 'T1' });
  client.close();
});

test('ops queue while disconnected, bounded; in flight over a drop: send resent with its client_id, vote rejected', async () => {
  const { f, client } = setup();
  const room = client.room('session:S1');
  const queued = Array.from({ length: MAX_QUEUED_OPS }, (_, i) => room.send('q' + i).catch((e) => e));
  await assert.rejects(room.send('one too many'), (e) => e.code === 'queue_full');
  client.close();
  for (const r of await Promise.all(queued)) assert.equal(r.code, 'closed');

  const s = setup();
  s.client.connect();
  await waitFor(() => s.f.last, 'a socket');
  hello(s.f.last);
  const r = s.client.room('session:S1');
  const sending = r.send('hello', { clientId: 'cid-1' });
  const voting = s.client.vote('p', 'o');
  closeFromServer(s.f.last, 1006);
  await assert.rejects(voting, (e) => e.code === 'disconnected');
  await waitFor(() => s.f.sockets.length === 2, 'a reconnect');
  hello(s.f.last);
  const ops = s.f.last.sent.map((x) => x.op);
  assert.deepEqual(ops, ['join_room', 'send_message'], 'rejoin first, then the resend');
  const [resend] = sentOps(s.f.last, 'send_message');
  assert.equal(resend.client_id, 'cid-1');
  push(s.f.last, { ev: 'ACK', ref: resend.ref, offset: 42 });
  assert.deepEqual(await sending, { offset: 42 });
  s.client.close();
});

test('RECONNECT after_ms sets the next delay; codes from 4500 stop with an error', async () => {
  const { f, client } = setup();
  client.connect();
  await waitFor(() => f.last, 'a socket');
  hello(f.last);
  const disc = nextEvent(client, 'disconnected');
  push(f.last, { ev: 'RECONNECT', after_ms: 300, reason: 'shutdown' });
  closeFromServer(f.last, 4001, 'shutting down');
  const d = await disc;
  assert.equal(d.code, 4001);
  assert.ok(d.reconnectInMs >= 300 && d.reconnectInMs <= 300 + FAST.initialDelayMs, `delay ${d.reconnectInMs}`);
  await waitFor(() => f.sockets.length === 2, 'the reconnect');
  hello(f.last);
  const err = nextEvent(client, 'error');
  closeFromServer(f.last, 4503, 'forbidden');
  assert.equal((await err).closeCode, 4503);
  assert.equal(client.state, 'closed');
  assert.equal(f.sockets.length, 2, 'no reconnect after 4503');
});

test('a fixed token closed with 4501 stops with an unauthorized error', async () => {
  const { f, client } = setup();
  client.connect();
  await waitFor(() => f.last, 'a socket');
  hello(f.last);
  const err = nextEvent(client, 'error');
  closeFromServer(f.last, 4501, 'token expired');
  assert.equal((await err).code, 'unauthorized');
  assert.equal(client.state, 'closed');
});

test('heartbeat: pings every heartbeat_ms/2; silence for heartbeat_ms drops the socket and reconnects', async () => {
  const { f, client } = setup();
  client.connect();
  await waitFor(() => f.last, 'a socket');
  const first = f.last;
  hello(first, { heartbeat_ms: 200 });
  await waitFor(() => sentOps(first, 'ping').length >= 1, 'a ping');
  assert.equal(sentOps(first, 'ping')[0].ref, undefined);
  push(first, { ev: 'PONG' });
  const disc = await nextEvent(client, 'disconnected', () => true, 2000);
  assert.match(disc.reason, /nothing received/);
  assert.equal(first.closed, 1000, 'the dead socket was closed');
  await waitFor(() => f.sockets.length === 2, 'a new socket');
  client.close();
});
