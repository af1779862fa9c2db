// Unit: the JWT `exp` read locally (base64url JSON, unverified), expiry against a clock, the
// token put into the URL, and the server check reading 401 as "refused" and anything else not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkToken, isTokenExpired, tokenExpiresAt, withToken } from '../dist/index.js';

const b64url = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
const jwt = (claims) => `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims)}.c2ln`;

test('exp decodes from a base64url payload (with - and _ characters)', () => {
  // A `sub` chosen so the payload's base64url has '-' and '_' in it.
  const t = jwt({ sub: '>>>???~~~', org: 'o', exp: 1_900_000_000 });
  assert.match(t.split('.')[1], /[-_]/);
  assert.equal(tokenExpiresAt(t), 1_900_000_000_000);
});

test('expired against the given clock; missing or unreadable exp is not known to be expired', () => {
  const t = jwt({ sub: 'u', exp: 1000 });
  assert.equal(isTokenExpired(t, 999_999), false);
  assert.equal(isTokenExpired(t, 1_000_000), true);
  assert.equal(tokenExpiresAt(jwt({ sub: 'u' })), null);
  assert.equal(tokenExpiresAt('not-a-jwt'), null);
  assert.equal(tokenExpiresAt('a.%%%.c'), null);
  assert.equal(isTokenExpired('opaque-token', Date.now()), false);
});

test('the token goes into ?token=, replacing one already there', () => {
  assert.equal(withToken('ws://h:1/ws', 'a.b+c'), 'ws://h:1/ws?token=a.b%2Bc');
  assert.equal(withToken('ws://h/ws?x=1&token=old', 't'), 'ws://h/ws?x=1&token=t');
  assert.equal(withToken('ws://h/ws', undefined), 'ws://h/ws');
});

test('the server check: GET over http(s), 401 is refused, other answers are not, no answer is null', async () => {
  const asked = [];
  const answer = (status, headers = {}) => async (url) => {
    asked.push(url);
    return { status, headers: { get: (k) => headers[k] ?? null } };
  };
  assert.deepEqual(await checkToken('wss://h/ws', 't', answer(401)), { refused: true });
  assert.equal(asked.at(-1), 'https://h/ws?token=t');
  assert.deepEqual(await checkToken('ws://h/ws', 't', answer(400)), { refused: false });
  assert.equal(asked.at(-1), 'http://h/ws?token=t');
  assert.deepEqual(await checkToken('ws://h/ws', 't', answer(429, { 'retry-after': '3' })), {
    refused: false,
    retryAfterMs: 3000,
  });
  assert.equal(await checkToken('ws://h/ws', 't', async () => { throw new TypeError('network'); }), null);
  assert.equal(await checkToken('ws://h/ws', 't', undefined), null);
});
