// socket.io-client with `transports: ['websocket']` against a real `evd serve`: the connect and
// its refusals, the original app's calls with and without ack callbacks, and a Socket.IO
// client beside a native one in the same room.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { call, closeAll, connected, native, record, sio } from './support/clients.mjs';
import { member, newPoll, newSession } from './support/api.mjs';
import { EvdServer } from '../../test-support/server.mjs';
import { forgedToken, mintToken } from '../../test-support/tokens.mjs';
import { waitFor, within } from '../../test-support/wait.mjs';

const ws = { transports: ['websocket'] };

let server;
before(async () => {
  server = await EvdServer.start();
});
after(async () => {
  closeAll();
  await server?.stop();
});

test('connects over the websocket transport with auth: { token }', async () => {
  const s = sio(server, { ...ws, auth: { token: mintToken('wsonly') } });
  const events = record(s);
  await connected(s);
  assert.equal(s.io.engine.transport.name, 'websocket');
  assert.ok(s.id, 'a Socket.IO session id');
  await waitFor(() => events.of('HELLO').length === 1, 'HELLO as an event');
  assert.equal(events.of('HELLO')[0].user, 'wsonly');
});

test('the token may come as a query parameter or a bearer header instead', async () => {
  const q = sio(server, { ...ws, query: { token: mintToken('byquery') } });
  await connected(q, 'connect with ?token=');
  const h = sio(server, { ...ws, extraHeaders: { Authorization: `Bearer ${mintToken('byheader')}` } });
  await connected(h, 'connect with a bearer header');
  const joined = await call(h, 'join_room', 'user:byheader');
  assert.equal(joined.ev, 'ROOM_JOINED');
});

test('a bad or missing token gives connect_error with a readable message', async () => {
  for (const opts of [{ auth: { token: forgedToken('mallory') } }, {}, { auth: { token: 'nonsense' } }]) {
    const s = sio(server, { ...ws, ...opts });
    const err = await within(
      new Promise((resolve) => s.once('connect_error', resolve)),
      `connect_error for ${JSON.stringify(opts)}`,
    );
    assert.match(err.message, /unauthorized/, err.message);
    assert.equal(s.connected, false);
  }
});

test('the original calls with ack callbacks get ACK or ERROR', async () => {
  await member(server, 'acker');
  const s = sio(server, { ...ws, auth: { token: mintToken('acker') } });
  const events = record(s);
  await connected(s);
  const session = await newSession(server);
  const room = `session:${session}`;

  const joined = await call(s, 'join_room', room);
  assert.equal(joined.ev, 'ROOM_JOINED');
  assert.equal(joined.room, room);
  assert.equal(joined.presence.count, 1);

  const ack = await call(s, 'send_message', { room, text: 'hello' });
  assert.equal(ack.ev, 'ACK');
  assert.ok(ack.offset >= 1);
  await waitFor(() => events.of('MESSAGE_RECEIVED').some((m) => m.offset === ack.offset), 'own message');
  const m = events.of('MESSAGE_RECEIVED').find((x) => x.offset === ack.offset);
  assert.equal(m.text, 'hello');
  assert.equal(m.user, 'acker');
  assert.equal(m.room, room);

  const asked = await call(s, 'ask_question', { room, text: 'why?' });
  assert.equal(asked.ev, 'ACK');
  assert.ok(asked.question, 'ACK carries the question id');
  await waitFor(() => events.of('QUESTION_ASKED').length === 1, 'QUESTION_ASKED');
  const upvoted = await call(s, 'upvote_question', asked.question);
  assert.equal(upvoted.ev, 'ACK', JSON.stringify(upvoted));
  const again = await call(s, 'upvote_question', { question: asked.question });
  assert.equal(again.ev, 'ERROR');
  assert.equal(again.code, 'conflict');

  const poll = await newPoll(server, session);
  await waitFor(() => events.of('POLL_CREATED').length === 1, 'POLL_CREATED');
  const created = events.of('POLL_CREATED')[0];
  assert.equal(created.poll.id, poll.id);
  const voted = await call(s, 'submit_poll_response', { poll: poll.id, option: created.poll.options[0].id });
  assert.equal(voted.ev, 'ACK', JSON.stringify(voted));
  await waitFor(() => events.of('POLL_RESULTS').some((r) => r.total === 1), 'POLL_RESULTS');

  for (const [ev, arg, code] of [
    ['submit_poll_response', { poll: poll.id, option: created.poll.options[1].id }, 'conflict'],
    ['submit_poll_response', { poll: 'no-such-poll', option: 'a' }, 'not_found'],
    ['accept_offer', 'no-such-offer', 'not_found'],
    ['decline_offer', { offer: 'no-such-offer' }, 'not_found'],
    ['join_room', 'not-a-room', 'bad_request'],
    ['no_such_op', {}, 'bad_request'],
  ]) {
    const err = await call(s, ev, arg);
    assert.equal(err.ev, 'ERROR', `${ev}: ${JSON.stringify(err)}`);
    assert.equal(err.code, code, `${ev}: ${JSON.stringify(err)}`);
  }

  const left = await call(s, 'leave_room', room);
  assert.equal(left.ev, 'ROOM_LEFT');
  // Acks are answers, not events: none of them arrived as an event too.
  assert.equal(events.of('ACK').length, 0);
  assert.equal(events.of('ERROR').length, 0);
  assert.equal(events.of('ROOM_JOINED').length, 0);
});

test('the original calls without ack callbacks get the replies as events', async () => {
  await member(server, 'noacks');
  const s = sio(server, { ...ws, auth: { token: mintToken('noacks') } });
  const events = record(s);
  await connected(s);
  const room = 'session:S2';
  s.emit('join_room', room);
  await waitFor(() => events.of('ROOM_JOINED').length === 1, 'ROOM_JOINED event');
  assert.equal(events.of('ROOM_JOINED')[0].room, room);
  s.emit('send_message', { room, text: 'no callback' });
  await waitFor(() => events.of('MESSAGE_RECEIVED').length === 1, 'MESSAGE_RECEIVED');
  await waitFor(() => events.of('ACK').length === 1, 'ACK event');
  assert.equal(events.of('ACK')[0].offset, events.of('MESSAGE_RECEIVED')[0].offset);
  s.emit('submit_poll_response', { poll: 'nope', option: 'x' });
  await waitFor(() => events.of('ERROR').length === 1, 'ERROR event');
  assert.equal(events.of('ERROR')[0].code, 'not_found');
});

test('a Socket.IO client and a native client in one room see each other', async () => {
  const room = 'session:mixed';
  await member(server, 'native-nina');
  await member(server, 'sio-sam');
  const n = await native(server, mintToken('native-nina'));
  const s = sio(server, { ...ws, auth: { token: mintToken('sio-sam') } });
  const events = record(s);
  await connected(s);

  n.send({ op: 'join_room', room });
  await waitFor(() => n.events.some((e) => e.ev === 'ROOM_JOINED'), 'native joined');
  await call(s, 'join_room', room);

  // Presence: each side learns of the other.
  await waitFor(
    () => events.of('PRESENCE_UPDATE').some((p) => p.count === 2),
    'Socket.IO client sees two present',
  );
  await waitFor(
    () => n.events.some((e) => e.ev === 'PRESENCE_UPDATE' && (e.joins ?? []).some((j) => j.user === 'sio-sam')),
    'native client sees the Socket.IO user join',
  );

  const ack = await call(s, 'send_message', { room, text: 'from socket.io' });
  n.send({ op: 'send_message', room, text: 'from native' });
  await waitFor(() => events.of('MESSAGE_RECEIVED').length === 2, 'Socket.IO client has both');
  await waitFor(() => n.events.filter((e) => e.ev === 'MESSAGE_RECEIVED').length === 2, 'native has both');
  const sioTexts = events.of('MESSAGE_RECEIVED').map((m) => `${m.user}:${m.text}`).sort();
  const nativeTexts = n.events.filter((e) => e.ev === 'MESSAGE_RECEIVED').map((m) => `${m.user}:${m.text}`).sort();
  assert.deepEqual(sioTexts, ['native-nina:from native', 'sio-sam:from socket.io']);
  assert.deepEqual(nativeTexts, sioTexts);
  assert.ok(n.events.some((e) => e.ev === 'MESSAGE_RECEIVED' && e.offset === ack.offset));

  s.disconnect();
  await waitFor(
    () => n.events.some((e) => e.ev === 'PRESENCE_UPDATE' && (e.leaves ?? []).some((l) => l.user === 'sio-sam')),
    'native client sees the Socket.IO user leave',
  );
});

test('a client closed for good (4500 and up) is told to stay disconnected', async () => {
  const s = sio(server, { ...ws, auth: { token: mintToken('garbler') } });
  await connected(s);
  const gone = within(
    new Promise((resolve) => s.once('disconnect', (reason) => resolve(reason))),
    'the disconnect',
  );
  // Malformed Socket.IO packets until the strikes run out: closed with 4500 (protocol violation).
  for (let i = 0; i < 100 && s.connected; i++) s.io.engine.write('9garbage');
  assert.equal(await gone, 'io server disconnect');
  assert.equal(s.active, false, 'it does not reconnect on its own');
});
