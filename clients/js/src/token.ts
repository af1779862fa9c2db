// Token trouble, seen from a client that cannot read why an upgrade failed (a browser sees 1006):
// the JWT's `exp` read locally (base64url JSON, not verified), and a plain GET of the /ws URL,
// which the engine answers 401 when it refuses the token (it checks the token before the upgrade).

/** How long the server is given to answer the token check. */
export const TOKEN_CHECK_TIMEOUT_MS = 5_000;

/** The JWT's `exp` in unix ms, or null when the token is not a JWT or has no numeric `exp`. */
export function tokenExpiresAt(token: string): number | null {
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const claims = JSON.parse(base64UrlDecode(part));
    return typeof claims?.exp === 'number' ? claims.exp * 1000 : null;
  } catch {
    return null;
  }
}

/** True when the token's `exp` has passed at `nowMs` (a token without `exp` is not known to be expired). */
export function isTokenExpired(token: string, nowMs: number): boolean {
  const exp = tokenExpiresAt(token);
  return exp != null && exp <= nowMs;
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** base64url (or base64) to a binary string: one char per byte. Enough for JSON.parse of ASCII claims. */
export function base64UrlDecode(s: string): string {
  let out = '';
  let bits = 0;
  let acc = 0;
  for (const ch of s.replace(/=+$/, '')) {
    const v = ALPHABET.indexOf(ch === '+' ? '-' : ch === '/' ? '_' : ch);
    if (v < 0) throw new Error('not base64url');
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += String.fromCharCode((acc >> bits) & 0xff);
    }
  }
  return out;
}

/** The /ws URL with the token set as `?token=` (replacing one already there). */
export function withToken(url: string, token: string | undefined): string {
  if (token == null) return url;
  const [base, hash] = url.split('#', 2);
  const [path, query = ''] = base.split('?', 2);
  const params = query.split('&').filter((p) => p && !p.startsWith('token='));
  params.push('token=' + encodeURIComponent(token));
  return path + '?' + params.join('&') + (hash != null ? '#' + hash : '');
}

/** What the server said about a token. */
export interface TokenVerdict {
  /** True when the server answered 401: the token is refused. */
  refused: boolean;
  /** A `Retry-After` the server gave (e.g. 429), in ms. */
  retryAfterMs?: number;
}

/**
 * Asks the server whether it refuses `token`: a GET of the same URL over http(s). 401 means
 * refused; any other answer (a 4xx upgrade error for a good token, 429, 503) means the token is
 * fine. Null when there is no answer (no fetch, network error, CORS, timeout).
 */
export async function checkToken(
  wsUrl: string,
  token: string | undefined,
  fetchFn: ((url: string, init?: any) => Promise<any>) | undefined,
): Promise<TokenVerdict | null> {
  if (typeof fetchFn !== 'function') return null;
  const url = withToken(wsUrl, token).replace(/^ws(s?):/i, 'http$1:');
  const abort = typeof AbortController === 'function' ? new AbortController() : null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const res = await Promise.race([
      fetchFn(url, { method: 'GET', signal: abort?.signal, cache: 'no-store' }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          abort?.abort();
          reject(new Error('token check timed out'));
        }, TOKEN_CHECK_TIMEOUT_MS);
      }),
    ]);
    // The body is not needed; let the connection go.
    res.body?.cancel?.().catch?.(() => {});
    if (res.status === 401) return { refused: true };
    const after = Number(res.headers?.get?.('retry-after'));
    return after > 0 ? { refused: false, retryAfterMs: after * 1000 } : { refused: false };
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}
