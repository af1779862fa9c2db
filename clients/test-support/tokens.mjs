// Tokens minted by `evd token` with the server's (development) secret.
import { execFileSync } from 'node:child_process';
import { evdBin } from './evd-bin.mjs';

export function mintToken(user, { org = 'o1', role = 'organizer', ttl = '1h', env = {} } = {}) {
  return execFileSync(evdBin(), ['token', '--user', user, '--org', org, '--role', role, '--ttl', ttl], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
  }).trim();
}

/** A token the server refuses (bad signature) whose `exp` still looks fine locally. */
export function forgedToken(user, opts) {
  const [h, p, s] = mintToken(user, opts).split('.');
  const flipped = (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
  return [h, p, flipped].join('.');
}
