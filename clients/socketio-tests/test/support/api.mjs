// The REST API of the same `evd serve`: an org, an event and a session to hold polls and
// questions, and a poll, as an organizer would create them.
import { mintToken } from '../../../test-support/tokens.mjs';

async function post(server, token, path, body) {
  const res = await fetch(`${server.httpUrl}/api/v1${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await res.json().catch(() => ({}));
  if (res.status >= 300) throw new Error(`POST ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

let orgMade = false;

/** Creates org `o1` once, its owner the `owner` user. */
async function ensureOrg(server, owner) {
  if (!orgMade) {
    await post(server, owner, '/orgs', { id: 'o1', name: 'o1' });
    orgMade = true;
  }
}

/**
 * Makes `user` a member of `o1` with `role`: once the org exists, a token's role is capped by
 * its user's membership, so a test user acting as an organizer must be one.
 */
export async function member(server, user, role = 'organizer') {
  const owner = mintToken('owner', { role: 'owner' });
  await ensureOrg(server, owner);
  await post(server, owner, '/orgs/o1/members', { user_id: user, role });
}

/** A new session of org `o1` (the org is created once); its id. */
export async function newSession(server) {
  const owner = mintToken('owner', { role: 'owner' });
  await ensureOrg(server, owner);
  const event = await post(server, owner, '/events', {
    name: 'E',
    description: '',
    status: 'published',
    starts_at: '2026-12-01T09:00:00Z',
    ends_at: '2026-12-03T18:00:00Z',
  });
  const session = await post(server, owner, `/events/${event.id}/sessions`, {
    title: 'S',
    capacity: 10,
    starts_at: '2026-12-01T09:00:00Z',
    ends_at: '2026-12-01T10:00:00Z',
  });
  return session.id;
}

/** Opens a poll in `session`; the created poll. */
export function newPoll(server, session, options = ['yes', 'no']) {
  return post(server, mintToken('owner', { role: 'owner' }), `/sessions/${session}/polls`, {
    question: 'Q?',
    options,
  });
}
