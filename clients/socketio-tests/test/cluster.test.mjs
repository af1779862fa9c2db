// Two engine nodes over the Redis Cluster named by EVD_TEST_REDIS_CLUSTER: a message reaches
// Socket.IO clients on both, whichever transport each uses. Without the variable the test is
// skipped, unless EVD_REQUIRE_SERVICES=1, when that is a failure.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { call, closeAll, connected, record, sio } from './support/clients.mjs';
import { EvdServer } from '../../test-support/server.mjs';
import { mintToken } from '../../test-support/tokens.mjs';
import { waitFor } from '../../test-support/wait.mjs';

const broker = process.env.EVD_TEST_REDIS_CLUSTER;
const required = process.env.EVD_REQUIRE_SERVICES === '1';
const nodes = [];

after(async () => {
  closeAll();
  for (const n of nodes) await n.stop();
});

test(
  'two nodes on the Redis Cluster: messages reach Socket.IO clients on both',
  { skip: !broker && !required ? 'EVD_TEST_REDIS_CLUSTER is not set' : false },
  async () => {
    assert.ok(broker, 'EVD_REQUIRE_SERVICES=1 but EVD_TEST_REDIS_CLUSTER is not set');
    for (let i = 0; i < 2; i++) nodes.push(await EvdServer.start({ env: { EVD_BROKER_URL: broker } }));
    // An org of this run's own: the cluster keeps rooms' history between runs.
    const org = `sio-${randomUUID().slice(0, 8)}`;
    const room = 'session:both-nodes';
    const a = sio(nodes[0], { transports: ['websocket'], auth: { token: mintToken('ann', { org }) } });
    const b = sio(nodes[1], { auth: { token: mintToken('ben', { org }) } });
    const ea = record(a);
    const eb = record(b);
    await Promise.all([connected(a, 'connect to node 1'), connected(b, 'connect to node 2')]);
    await call(a, 'join_room', room);
    await call(b, 'join_room', room);
    await waitFor(() => ea.of('PRESENCE_UPDATE').some((p) => p.count === 2), 'node 1 client sees both present');
    await waitFor(() => eb.of('PRESENCE_UPDATE').some((p) => p.count === 2), 'node 2 client sees both present');

    const fromA = await call(a, 'send_message', { room, text: 'from node 1' });
    const fromB = await call(b, 'send_message', { room, text: 'from node 2' });
    assert.equal(fromA.ev, 'ACK');
    assert.equal(fromB.ev, 'ACK');
    for (const e of [ea, eb]) {
      await waitFor(() => e.of('MESSAGE_RECEIVED').length === 2, 'both messages on each node');
      assert.deepEqual(
        e.of('MESSAGE_RECEIVED').map((m) => `${m.offset}:${m.user}:${m.text}`),
        [`${fromA.offset}:ann:from node 1`, `${fromB.offset}:ben:from node 2`],
      );
    }
  },
);

test(
  'a client that drops on one node recovers on the other, with nothing missed',
  { skip: !broker && !required ? 'EVD_TEST_REDIS_CLUSTER is not set' : false },
  async () => {
    assert.ok(broker, 'EVD_REQUIRE_SERVICES=1 but EVD_TEST_REDIS_CLUSTER is not set');
    while (nodes.length < 2) nodes.push(await EvdServer.start({ env: { EVD_BROKER_URL: broker } }));
    const org = `sio-${randomUUID().slice(0, 8)}`;
    const room = 'session:move';
    const a = sio(nodes[0], { transports: ['websocket'], auth: { token: mintToken('mover', { org }) } });
    const b = sio(nodes[1], { transports: ['websocket'], auth: { token: mintToken('talker', { org }) } });
    const got = [];
    a.on('MESSAGE_RECEIVED', (m) => got.push(m));
    await Promise.all([connected(a), connected(b)]);
    await call(a, 'join_room', room);
    await call(b, 'join_room', room);
    await call(b, 'send_message', { room, text: 'm1' });
    await waitFor(() => got.length === 1, 'the first message');

    a.io.reconnection(false);
    const gone = new Promise((resolve) => a.once('disconnect', resolve));
    a.io.engine.transport.ws._socket.destroy();
    await gone;
    for (const text of ['m2', 'm3']) await call(b, 'send_message', { room, text });
    // As a load balancer would, the reconnect lands on the other node.
    a.io.uri = nodes[1].httpUrl;
    a.connect();
    await connected(a, 'reconnect to node 2');
    assert.equal(a.recovered, true);
    await call(b, 'send_message', { room, text: 'm4' });
    await waitFor(() => got.length >= 4, 'the gap and the next message');
    assert.deepEqual(got.map((m) => m.text), ['m1', 'm2', 'm3', 'm4']);
  },
);
