// Refreshing in place. Unit, against a scripted socket: the client refreshes from the token's own
// `exp` when the server sends no warning, on TOKEN_EXPIRING, and never sends a token that is not
// newer. Against a real `evd serve` with tokens of a few seconds: a connection lives through
// several token lifetimes on `refresh` alone, without a reconnect.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client, REFRESH_RETRY_MS, tokenExpiresAt } from '../dist/index.js';
import { closeClients, makeClient } from './support/clients.mjs';
import { FakeSocketFactory, hello, push, sentOps } from './support/fake-socket.mjs';
import { EvdServer } from '../../test-support/server.mjs';
import { mintToken } from '../../test-support/tokens.mjs';
import { nextEvent, waitFor } from '../../test-support/wait.mjs';

/** A JWT-shaped token (unsigned: the scripted server does not check) expiring in `secs`. */
function fakeToken(secs, tag = '') {
  const claims = { sub: 'u1', org: 'o1', exp: Math.floor(Date.now() / 1000) + secs, tag };
  return 'e30.' + Buffer.from(JSON.stringify(claims)).toString('base64url') + '.sig';
}

function scripted(first, tokens) {
  const f = new FakeSocketFactory();
  const calls = [];
  const getToken = async () => {
    calls.push(Date.now());
    return tokens.shift() ?? first;
  };
  const client = new Client({ url: 'ws://x/ws', token: first, getToken, WebSocket: f.WebSocket, fetch: async () => null });
  return { f, client, calls };
}

test('without a warning, the token is refreshed from its own exp; the reply keeps the connection', async () => {
  const next = fakeToken(3600, 'next');
  const { f, client } = scripted(fakeToken(2), [next]);
  client.connect();
  await waitFor(() => f.last, 'a socket');
  hello(f.last);
  const [op] = await waitFor(() => sentOps(f.last, 'refresh').length && sentOps(f.last, 'refresh'), 'a refresh before exp', 5_000);
  assert.equal(op.token, next);
  push(f.last, { ev: 'TOKEN_REFRESHED', ref: op.ref, expires_at: tokenExpiresAt(next) });
  await new Promise((r) => setImmediate(r));
  assert.equal(f.sockets.length, 1, 'no reconnect');
  assert.equal(client.state, 'connected');
  client.close();
});

test('TOKEN_EXPIRING refreshes at once; a token that is not newer is never sent, a newer one is', async () => {
  const first = fakeToken(3600);
  const newer = fakeToken(7200, 'newer');
  // getToken first returns the token in use (a cache), then an older one, then a newer one.
  const { f, client, calls } = scripted(first, [first, fakeToken(60), newer]);
  client.connect();
  await waitFor(() => f.last, 'a socket');
  hello(f.last);
  push(f.last, { ev: 'TOKEN_EXPIRING', expires_at: tokenExpiresAt(first) });
  const [op] = await waitFor(() => sentOps(f.last, 'refresh').length && sentOps(f.last, 'refresh'), 'a refresh', 3 * REFRESH_RETRY_MS + 2_000);
  assert.equal(op.token, newer);
  assert.equal(calls.length, 3, 'one getToken per try');
  for (let i = 1; i < calls.length; i++) assert.ok(calls[i] - calls[i - 1] >= REFRESH_RETRY_MS - 5, 'tries spaced');
  assert.equal(sentOps(f.last, 'refresh').length, 1);
  client.close();
});

let server;
before(async () => {
  // Tokens of 3 s, warned of 1 s ahead; 1 s of leeway.
  server = await EvdServer.start({ env: { EVD_TOKEN_EXPIRY_WARNING_SECS: '1', EVD_JWT_LEEWAY_SECS: '1' } });
});
after(async () => {
  closeClients();
  await server?.stop();
});

test('against evd: a connection outlives several token lifetimes by refreshing, with no reconnect', async () => {
  const TTL_MS = 3_000;
  const minted = [];
  const getToken = async () => {
    const t = mintToken('refresher', { ttl: '3s' });
    minted.push(t);
    return t;
  };
  const c = makeClient({ url: server.wsUrl, getToken });
  const connecting = [];
  const disconnected = [];
  const refreshed = [];
  c.on('connecting', (a) => connecting.push(a));
  c.on('disconnected', (d) => disconnected.push(d));
  c.on('event', (ev) => ev.ev === 'TOKEN_REFRESHED' && refreshed.push(ev));
  const room = c.room('event:E1');
  const connected = nextEvent(c, 'connected', () => true, 15_000);
  c.connect();
  await connected;
  const firstExp = tokenExpiresAt(minted[0]);
  await waitFor(
    () => refreshed.length >= 3 && Date.now() > firstExp + 2 * TTL_MS,
    'three refreshes, and the first token two lifetimes past its exp',
    30_000,
  );
  assert.deepEqual(disconnected, [], 'never disconnected');
  assert.equal(connecting.length, 1, 'one connection attempt');
  assert.equal(refreshed.at(-1).expires_at, tokenExpiresAt(minted.at(-1)));
  const { offset } = await room.send('still here');
  assert.ok(offset >= 1);
});
