// @evd/client: the public API. Client (connection, ops, reconnect), Room (ordered chat, recovery,
// live events), Presence, EvdError, the JSON codec and the helpers an app may want.

export {
  Client,
  DEFAULT_OP_TIMEOUT_MS,
  MAX_QUEUED_OPS,
  CONNECT_TIMEOUT_MS,
  STABLE_CONNECTION_MS,
  TOKEN_RETRY_MIN_DELAY_MS,
  DEFAULT_HEARTBEAT_MS,
} from './client.js';
export { PINGS_PER_HEARTBEAT, SILENCE_FACTOR } from './heartbeat.js';
export { OUTBOX_MEMORY } from './dedupe.js';
export { REFRESH_BEFORE_EXP_MS, REFRESH_RETRY_MS } from './refresh.js';
export type { ClientEvents } from './client.js';
export { Room, JOIN_BUFFER_LIMIT, DEFAULT_HISTORY } from './room.js';
export type { RoomEvents } from './room.js';
export { Presence } from './presence.js';
export { EvdError, CLIENT_ERROR_CODES } from './errors.js';
export { Backoff, DEFAULT_INITIAL_DELAY_MS, DEFAULT_MAX_DELAY_MS, DEFAULT_FACTOR } from './backoff.js';
export { jsonCodec, makeMsgpackCodec, JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL } from './codec.js';
export { tokenExpiresAt, isTokenExpired, withToken, checkToken, TOKEN_CHECK_TIMEOUT_MS } from './token.js';
export type { TokenVerdict } from './token.js';
export type * from './types.js';
