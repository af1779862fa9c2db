// The shapes the SDK deals in: the wire events of docs/protocol.md (v1) as they reach the app,
// the connection states, and the client's options. Types only; nothing here runs.

/** Where the client is: `idle` before connect(), `closed` after close() or a fatal refusal. */
export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'disconnected' | 'closed';

/** Options of the reconnect backoff (exponential, full jitter). */
export interface ReconnectOptions {
  /** The first retry waits up to this long. */
  initialDelayMs?: number;
  /** No retry waits longer than this. */
  maxDelayMs?: number;
  /** Each failed attempt multiplies the ceiling by this. */
  factor?: number;
}

/** Encodes ops and decodes server frames for one subprotocol. */
export interface Codec {
  /** The WebSocket subprotocol, e.g. `evd.v1.json`. */
  readonly subprotocol: string;
  /** One op as a frame: a string goes out as a text frame, bytes as a binary frame. */
  encode(op: Record<string, unknown>): string | Uint8Array;
  /** One frame (text, or bytes as an ArrayBuffer or a view) into an event or an array of events. */
  decode(data: string | ArrayBuffer | ArrayBufferView): unknown;
}

export interface ClientOptions {
  /** `ws://host:port/ws` or `wss://…`; the token is added as `?token=`. */
  url: string;
  /** A fixed token. When it is refused the client stops (state `closed`, an `unauthorized` error). */
  token?: string;
  /** Called for the first token and whenever a new one is needed (refused or expired token). */
  getToken?: () => Promise<string>;
  /**
   * `json` (default, `evd.v1.json`) or `msgpack` (`evd.v1.msgpack`, loads `@msgpack/msgpack` on
   * first connect), or a codec object such as `msgpack` from `@evd/client/msgpack`.
   */
  codec?: 'json' | 'msgpack' | Codec;
  /** A WebSocket constructor; default `globalThis.WebSocket`. Node 20: pass `WebSocket` from `ws`. */
  WebSocket?: any;
  /** Reconnect backoff bounds. */
  reconnect?: ReconnectOptions;
  /** How long an op written to the socket waits for its reply before it rejects with `timeout`. */
  opTimeoutMs?: number;
  /** The `fetch` used to ask the server why a connection failed; default `globalThis.fetch`. */
  fetch?: (url: string, init?: any) => Promise<{ status: number; headers?: { get(name: string): string | null } }>;
}

/** `HELLO`, the server's first frame. */
export interface Hello {
  conn: string;
  node: string;
  user: string;
  heartbeat_ms: number;
  server_time: number;
}

/** `MESSAGE_RECEIVED` without `ev`, and each item of `ROOM_JOINED.history`. */
export interface ChatMessage {
  room: string;
  offset: number;
  id: string;
  user: string;
  text: string;
  ts: number;
}

/** A present user. The server sends `{user}`; more fields may come. */
export interface Member {
  user: string;
  [k: string]: unknown;
}

/** `ROOM_JOINED`. */
export interface RoomJoinedEvent {
  ev: 'ROOM_JOINED';
  ref?: number;
  room: string;
  epoch: string;
  offset: number;
  recovered: boolean;
  presence: { count: number; members: Member[] };
  history: ChatMessage[];
}

/** `PRESENCE_UPDATE`; without `joins` and `leaves` in count-only mode (big rooms). */
export interface PresenceUpdateEvent {
  room: string;
  count: number;
  joins?: Member[];
  leaves?: Member[];
}

/** A poll as `POLL_CREATED` carries it. */
export interface Poll {
  id: string;
  question: string;
  options: Array<{ id: string; text: string }>;
  closes_at: number | null;
}

/** `POLL_RESULTS` and `POLL_CLOSED`, as the room's `poll_results` / `poll_closed` events. */
export interface PollTally {
  poll: string;
  counts: Record<string, number>;
  total: number;
}

/** A question as `QUESTION_ASKED` carries it. */
export interface Question {
  id: string;
  user: string;
  text: string;
  votes: number;
}

/** `QUESTION_UPDATED`, as the room's `question_updated` event. */
export interface QuestionUpdate {
  question: string;
  votes: number;
  hidden?: boolean;
}

/** `WAITLIST_UPDATE`, as the client's `waitlist` event. */
export interface WaitlistUpdate {
  session: string;
  status: 'waiting' | 'offered' | 'accepted' | 'declined' | 'expired' | 'left' | string;
  position?: number;
}

/** `SESSION_UPDATED`, as the event room's `session_updated` event. */
export interface SessionUpdate {
  room: string;
  session: string;
  title: string;
  capacity: number;
  available: number;
  starts_at: number;
  ends_at: number;
  deleted: boolean;
  outbox_id?: number;
}

/** A waitlist offer (`WAITLIST_OFFER`), with its answers bound. */
export interface Offer {
  id: string;
  session: string;
  /** When it lapses: unix ms as the server sends it. */
  expiresAt: number | string;
  accept(): Promise<{ ticket?: string }>;
  decline(): Promise<void>;
}

/** Any server event, raw (`ev` plus its fields). */
export interface ServerEvent {
  ev: string;
  [k: string]: any;
}

/** The `disconnected` event. */
export interface DisconnectInfo {
  /** The close code (1006 when the socket just died or the client gave up on it). */
  code: number;
  reason: string;
  /** When the next attempt starts, or null when none is planned (waiting for a token, closed). */
  reconnectInMs: number | null;
}
