// Against a real `evd serve`: chat both ways between two clients, each seeing every message in
// offset order exactly once, in both codecs (the msgpack one loaded by `codec: 'msgpack'` and
// passed as an object from '@evd/client/msgpack'); presence shows both users.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { msgpack } from '../dist/msgpack.js';
import { closeClients, makeClient, recordMessages, strictlyIncreasing } from './support/clients.mjs';
import { EvdServer } from '../../test-support/server.mjs';
import { mintToken } from '../../test-support/tokens.mjs';
import { nextEvent, waitFor } from '../../test-support/wait.mjs';

let server;
before(async () => {
  server = await EvdServer.start();
});
after(async () => {
  closeClients();
  await server?.stop();
});

for (const [name, codec] of [['json', 'json'], ['msgpack', 'msgpack'], ['msgpack codec object', msgpack]]) {
  test(`chat both ways, in offset order, codec ${name}`, async () => {
    const roomName = `session:chat-${name.replace(/ /g, '-')}`;
    const alice = makeClient({ url: server.wsUrl, token: mintToken('alice'), codec });
    const bob = makeClient({ url: server.wsUrl, token: mintToken('bob'), codec });
    const ra = alice.room(roomName);
    const rb = bob.room(roomName);
    const ga = recordMessages(ra);
    const gb = recordMessages(rb);
    const joinedA = nextEvent(ra, 'joined');
    const joinedB = nextEvent(rb, 'joined');
    alice.connect();
    bob.connect();
    await Promise.all([joinedA, joinedB]);
    assert.equal(alice.user, 'alice');
    await waitFor(() => ra.presence.count === 2 && rb.presence.count === 2, 'both present');
    assert.deepEqual(ra.presence.list().map((m) => m.user).sort(), ['alice', 'bob']);

    const sent = [];
    for (let i = 0; i < 5; i++) {
      sent.push(ra.send(`a${i}`), rb.send(`b${i}`));
    }
    const acks = await Promise.all(sent);
    const want = 10;
    await waitFor(() => ga.got.length >= want && gb.got.length >= want, 'all 10 messages on both sides');
    for (const g of [ga, gb]) {
      assert.equal(g.got.length, want, 'no duplicate');
      assert.ok(strictlyIncreasing(g.offsets()), `offset order: ${g.offsets()}`);
      assert.deepEqual(g.texts().filter((t) => t.startsWith('a')), ['a0', 'a1', 'a2', 'a3', 'a4']);
      assert.deepEqual(g.texts().filter((t) => t.startsWith('b')), ['b0', 'b1', 'b2', 'b3', 'b4']);
    }
    assert.deepEqual(ga.offsets(), gb.offsets(), 'both saw the same sequence');
    assert.deepEqual(acks.map((a) => a.offset).sort((x, y) => x - y), ga.offsets(), 'ACK offsets are the delivered ones');
    const byOffset = new Map(ga.got.map((m) => [m.offset, m]));
    assert.equal(byOffset.get(acks[0].offset).text, 'a0');
    assert.equal(byOffset.get(acks[0].offset).user, 'alice');
    alice.close();
    bob.close();
  });
}

test('the msgpack codec really speaks evd.v1.msgpack (binary frames)', async () => {
  const { default: WebSocket } = await import('ws');
  const seen = [];
  class Spy extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      this.on('message', (data, isBinary) => seen.push({ isBinary, protocol: this.protocol }));
    }
  }
  const c = makeClient({ url: server.wsUrl, token: mintToken('carol'), codec: 'msgpack', WebSocket: Spy });
  const r = c.room('session:mp-check');
  const joined = nextEvent(r, 'joined');
  c.connect();
  await joined;
  assert.ok(seen.length >= 2);
  assert.ok(seen.every((s) => s.isBinary && s.protocol === 'evd.v1.msgpack'), JSON.stringify(seen));
  c.close();
});
