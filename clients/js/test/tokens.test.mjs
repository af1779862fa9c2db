// Against a real `evd serve`: a refused or expired token makes the client ask getToken again,
// never loop. Counted: getToken calls, WebSocket constructions, and the spacing of the calls
// (after the first retry, at least TOKEN_RETRY_MIN_DELAY_MS apart). A fixed token that is refused
// stops the client with an `unauthorized` error.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { TOKEN_RETRY_MIN_DELAY_MS, isTokenExpired } from '../dist/index.js';
import { closeClients, makeClient } from './support/clients.mjs';
import { EvdServer } from '../../test-support/server.mjs';
import { forgedToken, mintToken } from '../../test-support/tokens.mjs';
import { nextEvent, waitFor } from '../../test-support/wait.mjs';

/** Timers fire no earlier than asked, but allow clock rounding. */
const TIMER_SLACK_MS = 5;

let server;
let expired;
before(async () => {
  // No leeway, so a token is refused the moment it expires.
  server = await EvdServer.start({ env: { EVD_JWT_LEEWAY_SECS: '0' } });
  expired = mintToken('exp-user', { ttl: '1s' });
  await waitFor(() => isTokenExpired(expired, Date.now() - 1000), 'the 1 s token to expire (setup)', 5000);
});
after(async () => {
  closeClients();
  await server?.stop();
});

/** A WebSocket constructor that counts its instances. */
function counting() {
  const box = { count: 0 };
  box.WebSocket = class extends WebSocket {
    constructor(...args) {
      super(...args);
      box.count++;
    }
  };
  return box;
}

function assertSpaced(times, from) {
  for (let i = from; i < times.length; i++) {
    const gap = times[i] - times[i - 1];
    assert.ok(gap >= TOKEN_RETRY_MIN_DELAY_MS - TIMER_SLACK_MS, `getToken calls ${i - 1}→${i} only ${gap} ms apart`);
  }
}

test('an expired token: getToken is called again, and the client connects once it gets a good one', async () => {
  const sockets = counting();
  const calls = [];
  const good = mintToken('exp-user');
  const getToken = async () => {
    calls.push(Date.now());
    return calls.length <= 3 ? expired : good;
  };
  const errors = [];
  const c = makeClient({ url: server.wsUrl, getToken, WebSocket: sockets.WebSocket });
  c.on('error', (e) => errors.push(e.code));
  const connected = nextEvent(c, 'connected', () => true, 15_000);
  c.connect();
  const hello = await connected;
  assert.equal(hello.user, 'exp-user');
  assert.equal(calls.length, 4, 'first token, then one call per refusal until a new token');
  assert.equal(sockets.count, 2, 'one attempt with the expired token, one with the good one');
  assertSpaced(calls, 2);
  assert.ok(errors.includes('unauthorized'));
});

test('a getToken that keeps returning a refused token (new each time) backs off, no tight loop', async () => {
  const sockets = counting();
  const calls = [];
  let fixed = false;
  const getToken = async () => {
    calls.push(Date.now());
    // A bad signature (refused with 401) that still looks valid locally, different every call.
    return fixed ? mintToken('forged') : forgedToken('forged') + 'x'.repeat(calls.length);
  };
  const c = makeClient({ url: server.wsUrl, getToken, WebSocket: sockets.WebSocket });
  c.connect();
  await waitFor(() => calls.length >= 4, 'four getToken calls', 15_000);
  assert.ok(sockets.count <= calls.length, `${sockets.count} attempts for ${calls.length} tokens: one per new token at most`);
  assertSpaced(calls, 2);
  assert.notEqual(c.state, 'connected');
  fixed = true;
  await waitFor(() => c.state === 'connected', 'connected once the token is good', 10_000);
});

test('a getToken that returns the same refused token again: no new connection attempt', async () => {
  const sockets = counting();
  const calls = [];
  const bad = forgedToken('same');
  let good = null;
  const getToken = async () => {
    calls.push(Date.now());
    return good ?? bad;
  };
  const c = makeClient({ url: server.wsUrl, getToken, WebSocket: sockets.WebSocket });
  c.connect();
  await waitFor(() => calls.length >= 4, 'four getToken calls', 15_000);
  assert.equal(sockets.count, 1, 'only the first attempt: the same token is never retried');
  assertSpaced(calls, 2);
  good = mintToken('same');
  await waitFor(() => c.state === 'connected', 'connected with the new token', 10_000);
  assert.equal(sockets.count, 2);
});

test('a fixed token that is refused stops the client: state closed, error unauthorized', async () => {
  const sockets = counting();
  const c = makeClient({ url: server.wsUrl, token: forgedToken('fixed'), WebSocket: sockets.WebSocket });
  const err = nextEvent(c, 'error');
  const pending = c.request({ op: 'ping' });
  c.connect();
  assert.equal((await err).code, 'unauthorized');
  assert.equal(c.state, 'closed');
  await assert.rejects(pending, (e) => e.code === 'closed');
  assert.equal(sockets.count, 1);
});

test('a fixed expired token is known expired without asking the server', async () => {
  let fetched = 0;
  const c = makeClient({
    url: server.wsUrl,
    token: expired,
    fetch: async (...a) => {
      fetched++;
      return fetch(...a);
    },
  });
  const err = nextEvent(c, 'error');
  c.connect();
  assert.equal((await err).code, 'unauthorized');
  assert.equal(c.state, 'closed');
  assert.equal(fetched, 0);
});

test('a network failure is not a token problem: the server check says so and the client keeps retrying', async () => {
  const { freePort } = await import('../../test-support/ports.mjs');
  const port = await freePort(); // nothing listens there
  let getTokenCalls = 0;
  const c = makeClient({ url: `ws://127.0.0.1:${port}/ws`, getToken: async () => (getTokenCalls++, mintToken('net')) });
  const attempts = [];
  c.on('connecting', (a) => attempts.push(a.attempt));
  c.connect();
  await waitFor(() => attempts.length >= 3, 'three attempts', 10_000);
  assert.equal(getTokenCalls, 1, 'the token was not blamed');
  assert.deepEqual(attempts.slice(0, 3), [1, 2, 3]);
  c.close();
});
