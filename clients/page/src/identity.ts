// Who is signed in, per browser tab (sessionStorage, so two windows can be two users): the token
// and what it says (user, org, role). In development mode the server mints tokens
// (`POST /dev/token`); otherwise the user pastes one.

import { isTokenExpired } from '../../js/src/index.ts';
import type { Role } from './types.ts';

const KEY = 'evd.identity';

export interface Identity {
  token: string;
  user: string;
  org: string;
  role: Role;
  /** Minted by /dev/token: a new one can be minted with the same user and role. */
  dev: boolean;
}

/** The signed-in identity of this tab, if any. */
export function loadIdentity(): Identity | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Identity) : null;
  } catch {
    return null;
  }
}

export function saveIdentity(id: Identity): void {
  sessionStorage.setItem(KEY, JSON.stringify(id));
}

export function clearIdentity(): void {
  sessionStorage.removeItem(KEY);
}

export function isStaff(role: Role): boolean {
  return role === 'organizer' || role === 'owner';
}

export function expired(token: string): boolean {
  return isTokenExpired(token, Date.now());
}

/** User ids (a token's `sub`): 1 to 128 printable ASCII characters, no spaces, `{` or `}`. */
export const USER_ID_PATTERN = /^[\x21-\x7a\x7c\x7e]{1,128}$/;

/** Asks the server for a development token. */
export async function mintDevToken(user: string, role: Role, org = 'demo'): Promise<Identity> {
  const res = await fetch('/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user, role, org }),
  });
  if (!res.ok) {
    let detail = `the server answered ${res.status}`;
    try {
      const body = await res.json();
      detail = body.detail || body.message || detail;
    } catch {
      // not JSON
    }
    if (res.status === 404) detail = 'this server does not mint demo tokens (not in development mode)';
    throw new Error(detail);
  }
  const body = await res.json();
  return { token: body.token, user: body.user ?? user, org: body.org ?? org, role: (body.role ?? role) as Role, dev: true };
}

/** What a pasted JWT says about its holder (read, not verified: the server verifies it). */
export function identityFromToken(token: string): Identity {
  const part = token.split('.')[1];
  if (!part) throw new Error('this is not a JWT (three dot-separated parts)');
  let claims: any;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    claims = JSON.parse(atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4)));
  } catch {
    throw new Error('the token’s claims cannot be read');
  }
  if (typeof claims.sub !== 'string' || typeof claims.org !== 'string') throw new Error('the token has no `sub` or `org` claim');
  if (expired(token)) throw new Error('the token has expired');
  const role: Role = claims.role === 'organizer' || claims.role === 'owner' ? claims.role : 'attendee';
  return { token, user: claims.sub, org: claims.org, role, dev: false };
}
