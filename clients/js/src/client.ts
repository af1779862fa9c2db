// The client: one WebSocket to an evd engine, kept up until close(). It numbers ops with refs and
// settles each by its reply, queues ops while disconnected, reconnects with backoff (or when the
// server says, RECONNECT), rejoins every room with `recover`, resends in-flight chat messages with
// their client_id, pings, notices a dead socket, and finds out whether a failed connection was a
// refused token (a browser only sees 1006) so it asks getToken for a new one instead of looping.
// With getToken it also refreshes the live connection's token before it expires (refresh.ts).

import { Backoff } from './backoff.js';
import { resolveCodec } from './codec.js';
import { SeenIds } from './dedupe.js';
import { Emitter } from './emitter.js';
import { CLIENT_ERROR_CODES as E, EvdError } from './errors.js';
import { Heartbeat } from './heartbeat.js';
import { TokenRefresher } from './refresh.js';
import { type OnLost, Room, type RoomHost } from './room.js';
import { checkToken, isTokenExpired, tokenExpiresAt, withToken } from './token.js';
import type {
  ClientOptions,
  Codec,
  ConnectionState,
  DisconnectInfo,
  Hello,
  Offer,
  RoomJoinedEvent,
  ServerEvent,
  WaitlistUpdate,
} from './types.js';

/** How long an op written to the socket waits for its reply. */
export const DEFAULT_OP_TIMEOUT_MS = 15_000;
/** Ops held while disconnected; one more rejects with `queue_full`. */
export const MAX_QUEUED_OPS = 1_000;
/** From opening a socket to HELLO; longer and the attempt is given up. */
export const CONNECT_TIMEOUT_MS = 15_000;
/** A connection that lived this long resets the backoff when it drops. */
export const STABLE_CONNECTION_MS = 10_000;
/** Least wait between two getToken calls after a refused token (the first call is at once). */
export const TOKEN_RETRY_MIN_DELAY_MS = 1_000;
/** Used when HELLO lacks heartbeat_ms. */
export const DEFAULT_HEARTBEAT_MS = 25_000;
/** Close codes from here up mean "do not reconnect until something changes". */
export const NO_RECONNECT_FROM = 4500;
/** End of the application close-code range (4000–4999). */
export const APP_CLOSE_CODES_END = 5000;
/** The token expired or was revoked. */
export const CLOSE_TOKEN_EXPIRED = 4501;
/** The code the client closes its own sockets with. */
export const CLIENT_CLOSE_CODE = 1000;
/** The code reported for a socket that died without a close frame (or that the client gave up on). */
export const ABNORMAL_CLOSE_CODE = 1006;

export interface ClientEvents {
  state: ConnectionState;
  connecting: { attempt: number };
  connected: Hello;
  disconnected: DisconnectInfo;
  offer: Offer;
  waitlist: WaitlistUpdate;
  error: EvdError;
  event: ServerEvent;
}

interface Pending {
  ref: number;
  op: Record<string, unknown>;
  onLost: OnLost;
  sent: boolean;
  timer?: ReturnType<typeof setTimeout>;
  ok: (ev: any) => void;
  fail: (err: EvdError) => void;
}

/** Ops safe to write again on a new connection when the old one dropped before the reply. */
function defaultOnLost(op: Record<string, unknown>): OnLost {
  if (op.op === 'send_message' && op.client_id != null) return 'resend';
  if (op.op === 'leave_room' || op.op === 'join_room' || op.op === 'accept_offer') return 'resend';
  return 'reject';
}

const noop = () => {};

export class Client {
  private readonly opts: ClientOptions;
  private readonly emitter = new Emitter<ClientEvents>();
  private readonly backoff: Backoff;
  private readonly tokenBackoff: Backoff;
  private readonly heartbeat = new Heartbeat();
  private readonly refresher = new TokenRefresher(
    () => this.refreshToken(),
    () => this.now(),
  );
  private readonly rooms = new Map<string, Room>();
  private readonly pending = new Map<number, Pending>();
  private readonly seen = new SeenIds();
  private readonly host: RoomHost;
  private _state: ConnectionState = 'idle';
  private _user: string | null = null;
  private codec: Codec | null = null;
  private ws: any = null;
  /** Bumped by each new socket and by close(): callbacks of an older generation are ignored. */
  private gen = 0;
  private stopped = true;
  private hello = false;
  private helloAt = 0;
  private nextRef = 1;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private reconnectHintMs: number | null = null;
  private clockSkewMs = 0;
  private token: string | undefined;
  private refusedToken: string | undefined;
  private tokenFailures = 0;

  constructor(options: ClientOptions) {
    this.opts = options;
    this.token = options.token;
    this.backoff = new Backoff(options.reconnect);
    this.tokenBackoff = new Backoff(options.reconnect);
    this.host = {
      request: (op, onLost) => this.enqueue(op, onLost),
      isConnected: () => this.connected,
    };
  }

  get state(): ConnectionState {
    return this._state;
  }

  /** The user id from the last HELLO. */
  get user(): string | null {
    return this._user;
  }

  on<K extends keyof ClientEvents>(event: K, fn: (arg: ClientEvents[K]) => void): () => void {
    return this.emitter.on(event, fn);
  }

  /** Connects, and keeps reconnecting until close(). Does nothing while already started. */
  connect(): void {
    if (this._state !== 'idle' && this._state !== 'closed') return;
    this.stopped = false;
    this.attempt = 0;
    this.tokenFailures = 0;
    this.backoff.reset();
    this.tokenBackoff.reset();
    void this.open();
  }

  /** Stops for good (until connect()); pending and queued ops reject with `closed`. */
  close(): void {
    const wasConnected = this.connected;
    this.halt();
    if (wasConnected) this.emitDisconnected(CLIENT_CLOSE_CODE, 'client closed', null);
    this.setState('closed');
    this.rejectAll(new EvdError(E.closed, 'the client was closed'));
  }

  /** The room's handle (the same one per name). It is joined now, or as soon as the client is connected. */
  room(name: string, opts: { history?: number } = {}): Room {
    let room = this.rooms.get(name);
    if (room) {
      if (room._active) return room;
      room._activate();
    } else {
      room = new Room(name, opts, this.host);
      this.rooms.set(name, room);
    }
    if (this.connected) this.join(room);
    return room;
  }

  /** submit_poll_response. Not resent after a drop: rejects `disconnected` if the reply was lost. */
  vote(poll: string, option: string): Promise<void> {
    return this.enqueue({ op: 'submit_poll_response', poll, option }, 'reject').then(noop);
  }

  /** upvote_question. Not resent after a drop. */
  upvote(question: string): Promise<void> {
    return this.enqueue({ op: 'upvote_question', question }, 'reject').then(noop);
  }

  /** accept_offer: resent after a drop (accepting twice returns the same ticket). */
  acceptOffer(offer: string): Promise<{ ticket?: string }> {
    return this.enqueue({ op: 'accept_offer', offer }, 'resend').then((ack) =>
      ack.ticket != null ? { ticket: ack.ticket } : {},
    );
  }

  /** decline_offer. Not resent after a drop. */
  declineOffer(offer: string): Promise<void> {
    return this.enqueue({ op: 'decline_offer', offer }, 'reject').then(noop);
  }

  /**
   * Any op (`ref` is added): resolves with the reply event, rejects with EvdError. After a drop
   * before the reply, send_message with a client_id, join_room, leave_room and accept_offer are
   * resent; other ops reject with `disconnected`.
   */
  request(op: Record<string, unknown>): Promise<any> {
    return this.enqueue(op, defaultOnLost(op));
  }

  private get connected(): boolean {
    return this.hello && this.ws != null;
  }

  private now(): number {
    return Date.now() + this.clockSkewMs;
  }

  private setState(s: ConnectionState): void {
    if (this._state === s) return;
    this._state = s;
    this.emitter.emit('state', s);
  }

  private emitDisconnected(code: number, reason: string, reconnectInMs: number | null): void {
    this.emitter.emit('disconnected', { code, reason, reconnectInMs });
  }

  // ---- connection lifecycle ----

  private async open(): Promise<void> {
    const gen = ++this.gen;
    clearTimeout(this.timer);
    this.setState('connecting');
    this.emitter.emit('connecting', { attempt: ++this.attempt });
    if (!this.codec) {
      try {
        this.codec = await resolveCodec(this.opts.codec);
      } catch (e) {
        if (gen !== this.gen) return;
        const err = new EvdError(E.refused, 'cannot load the codec (is @msgpack/msgpack installed?): ' + errorText(e));
        return this.fail(err, ABNORMAL_CLOSE_CODE, '');
      }
      if (gen !== this.gen) return;
    }
    const getToken = this.opts.getToken;
    if (getToken && (this.token == null || isTokenExpired(this.token, this.now()))) {
      try {
        const t = await getToken();
        if (gen !== this.gen) return;
        this.token = t;
      } catch (e) {
        if (gen !== this.gen) return;
        this.emitter.emit('error', new EvdError(E.tokenError, 'getToken failed: ' + errorText(e)));
        return this.retryIn(this.backoff.next(), ABNORMAL_CLOSE_CODE, 'no token');
      }
    }
    const WS = this.opts.WebSocket ?? (globalThis as any).WebSocket;
    if (typeof WS !== 'function') {
      return this.fail(new EvdError(E.refused, 'no WebSocket: pass options.WebSocket'), ABNORMAL_CLOSE_CODE, '');
    }
    let ws: any;
    try {
      ws = new WS(withToken(this.opts.url, this.token), [this.codec!.subprotocol]);
    } catch (e) {
      return this.fail(new EvdError(E.refused, 'cannot open ' + this.opts.url + ': ' + errorText(e)), ABNORMAL_CLOSE_CODE, '');
    }
    this.ws = ws;
    this.hello = false;
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (e: { data: any }) => gen === this.gen && this.onFrame(e.data, gen);
    ws.onclose = (e: { code?: number; reason?: string }) =>
      gen === this.gen && this.onClosed(e.code || ABNORMAL_CLOSE_CODE, e.reason || '');
    ws.onerror = noop;
    this.connectTimer = setTimeout(
      () => gen === this.gen && this.abandon('no HELLO within ' + CONNECT_TIMEOUT_MS + ' ms'),
      CONNECT_TIMEOUT_MS,
    );
  }

  /** Stops everything time- or socket-driven and drops the socket; callbacks of it are ignored. */
  private halt(): void {
    this.stopped = true;
    this.gen++;
    clearTimeout(this.timer);
    this.dropSocket();
  }

  private dropSocket(): void {
    clearTimeout(this.connectTimer);
    this.heartbeat.stop();
    this.refresher.stop();
    const ws = this.ws;
    this.ws = null;
    this.hello = false;
    for (const room of this.rooms.values()) room._unjoin();
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = noop;
      try {
        ws.close(CLIENT_CLOSE_CODE);
      } catch {
        // already closed
      }
    }
  }

  /** The client gives up on a socket (no HELLO in time, silent too long) and handles it as closed. */
  private abandon(reason: string): void {
    this.onClosed(ABNORMAL_CLOSE_CODE, reason);
  }

  private onClosed(code: number, reason: string): void {
    const hadHello = this.hello;
    this.gen++;
    this.dropSocket();
    this.settleInFlight();
    if (this.stopped) return;
    if (hadHello && Date.now() - this.helloAt >= STABLE_CONNECTION_MS) this.backoff.reset();
    this.setState('disconnected');
    if (code === CLOSE_TOKEN_EXPIRED) return this.tokenRefused(code, reason);
    if (code >= NO_RECONNECT_FROM && code < APP_CLOSE_CODES_END) {
      const err = new EvdError(E.refused, `the server closed with ${code}${reason ? ' (' + reason + ')' : ''}; not reconnecting`);
      err.closeCode = code;
      return this.fail(err, code, reason);
    }
    if (!hadHello) {
      void this.diagnose(code, reason);
      return;
    }
    const hint = this.reconnectHintMs;
    this.reconnectHintMs = null;
    this.retryIn(hint != null ? hint + this.backoff.jitter() : this.backoff.next(), code, reason);
  }

  /** A connection failed before HELLO: a refused token, or anything else (network, 429, 503)? */
  private async diagnose(code: number, reason: string): Promise<void> {
    const gen = this.gen;
    let refused = this.token != null && isTokenExpired(this.token, this.now());
    let retryAfterMs = 0;
    if (!refused) {
      const verdict = await checkToken(this.opts.url, this.token, this.opts.fetch ?? (globalThis as any).fetch);
      if (gen !== this.gen) return;
      refused = !!verdict?.refused;
      retryAfterMs = verdict?.retryAfterMs ?? 0;
    }
    if (refused) return this.tokenRefused(code, reason);
    this.retryIn(Math.max(this.backoff.next(), retryAfterMs), code, reason);
  }

  private retryIn(delayMs: number, code: number, reason: string): void {
    this.setState('disconnected');
    this.emitDisconnected(code, reason, delayMs);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.open(), delayMs);
  }

  /** The token was refused or has expired: a new one from getToken, or stop. */
  private tokenRefused(code: number, reason: string): void {
    const err = new EvdError(E.unauthorized, 'the token was refused or has expired');
    err.closeCode = code;
    if (!this.opts.getToken) return this.fail(err, code, reason);
    this.emitter.emit('error', err);
    this.emitDisconnected(code, reason, null);
    this.refusedToken = this.token;
    this.scheduleTokenFetch();
  }

  /** Calls getToken: at once after the first refusal, then no more often than the backoff allows. */
  private scheduleTokenFetch(): void {
    const delay = this.tokenFailures++ === 0 ? 0 : Math.max(TOKEN_RETRY_MIN_DELAY_MS, this.tokenBackoff.next());
    const gen = this.gen;
    clearTimeout(this.timer);
    this.timer = setTimeout(async () => {
      let t: string | undefined;
      try {
        t = await this.opts.getToken!();
      } catch (e) {
        if (gen === this.gen) this.emitter.emit('error', new EvdError(E.tokenError, 'getToken failed: ' + errorText(e)));
      }
      if (gen !== this.gen) return;
      if (t == null || t === this.refusedToken || isTokenExpired(t, this.now())) return this.scheduleTokenFetch();
      this.token = t;
      void this.open();
    }, delay);
  }

  /** Stops with state `closed` and an `error` (a close code ≥ 4500, or a refused fixed token). */
  private fail(err: EvdError, code: number, reason: string): void {
    this.halt();
    this.emitDisconnected(code, reason, null);
    this.emitter.emit('error', err);
    this.setState('closed');
    this.rejectAll(new EvdError(E.closed, 'the client stopped: ' + err.message));
  }

  // ---- frames in ----

  private onFrame(data: any, gen: number): void {
    this.heartbeat.touch();
    let decoded: any;
    try {
      decoded = this.codec!.decode(data);
    } catch (e) {
      this.emitter.emit('error', new EvdError('bad_frame', 'undecodable frame: ' + errorText(e)));
      return;
    }
    for (const ev of Array.isArray(decoded) ? decoded : [decoded]) {
      if (gen !== this.gen) return; // a listener closed the client or the socket
      if (ev && typeof ev === 'object' && typeof ev.ev === 'string') this.dispatch(ev);
    }
  }

  private dispatch(ev: ServerEvent): void {
    if (ev.outbox_id != null && !this.seen.add(ev.outbox_id)) return;
    this.emitter.emit('event', ev);
    const p = ev.ref != null ? this.pending.get(ev.ref) : undefined;
    switch (ev.ev) {
      case 'HELLO':
        return this.onHello(ev as unknown as Hello);
      case 'RECONNECT':
        this.reconnectHintMs = Math.max(0, Number(ev.after_ms) || 0);
        return;
      case 'TOKEN_EXPIRING':
        if (this.opts.getToken) void this.refresher.fire();
        return;
      case 'ERROR': {
        const err = new EvdError(ev.code, ev.message, ev.retry_after_ms);
        if (p) this.settle(p, err);
        else this.emitter.emit('error', err);
        return;
      }
      case 'WAITLIST_OFFER':
        return this.emitter.emit('offer', {
          id: ev.offer,
          session: ev.session,
          expiresAt: ev.expires_at,
          accept: () => this.acceptOffer(ev.offer),
          decline: () => this.declineOffer(ev.offer),
        });
      case 'WAITLIST_UPDATE': {
        const u: WaitlistUpdate = { session: ev.session, status: ev.status };
        if (ev.position != null) u.position = ev.position;
        return this.emitter.emit('waitlist', u);
      }
    }
    if (p) return this.settle(p, null, ev);
    if (typeof ev.room === 'string') this.rooms.get(ev.room)?._onEvent(ev);
  }

  private onHello(h: Hello): void {
    clearTimeout(this.connectTimer);
    this.hello = true;
    this.helloAt = Date.now();
    this._user = h.user;
    if (typeof h.server_time === 'number') this.clockSkewMs = h.server_time - Date.now();
    this.attempt = 0;
    this.tokenFailures = 0;
    this.tokenBackoff.reset();
    this.refusedToken = undefined;
    this.reconnectHintMs = null;
    const gen = this.gen;
    this.heartbeat.start(
      h.heartbeat_ms > 0 ? h.heartbeat_ms : DEFAULT_HEARTBEAT_MS,
      () => this.write({ op: 'ping' }),
      (silent) => gen === this.gen && this.abandon('nothing received for ' + silent + ' ms'),
    );
    if (this.opts.getToken) this.refresher.schedule(this.token);
    this.setState('connected');
    this.emitter.emit('connected', h);
    if (gen !== this.gen || !this.connected) return;
    // Rooms first, then whatever was queued or in flight: the server runs ops in order.
    for (const room of this.rooms.values()) if (room._active) this.join(room);
    for (const p of this.pending.values()) if (!p.sent) this.transmit(p);
  }

  /**
   * Gets a new token and sends `refresh` on the live connection. True when done (taken, refused by
   * the server, or the socket is gone: a refused token ends the connection with 4501 at its
   * expiry, and the reconnect path asks getToken again); false to try again shortly.
   */
  private async refreshToken(): Promise<boolean> {
    const gen = this.gen;
    let t: string;
    try {
      t = await this.opts.getToken!();
    } catch (e) {
      if (gen === this.gen) this.emitter.emit('error', new EvdError(E.tokenError, 'getToken failed: ' + errorText(e)));
      return gen !== this.gen;
    }
    if (gen !== this.gen || !this.connected) return true;
    // Not a newer token (a cached one): sending it would only be warned of again at once.
    const oldExp = this.token == null ? null : tokenExpiresAt(this.token);
    const newExp = tokenExpiresAt(t);
    if (t === this.token || (oldExp != null && newExp != null && newExp <= oldExp)) return false;
    try {
      await this.enqueue({ op: 'refresh', token: t }, 'drop');
    } catch (e) {
      if (gen !== this.gen) return true;
      this.emitter.emit('error', e as EvdError);
      return (e as EvdError).code !== E.timeout;
    }
    if (gen !== this.gen) return true;
    this.token = t;
    this.refresher.schedule(t);
    return true;
  }

  // ---- ops out ----

  private join(room: Room): void {
    if (room._auto) return;
    const op = room._joinOp();
    const recovering = op.recover != null;
    room._unjoin();
    // ROOM_JOINED is applied as it is dispatched, not a microtask later, so the events after it in
    // the same frame (a PRESENCE_UPDATE, a message) find the room joined.
    this.enqueue(op, 'drop', (ev: RoomJoinedEvent) => room._onJoined(ev, recovering)).catch((err: EvdError) => {
      if (err.code === E.closed) return;
      room._onJoinError(err);
      this.emitter.emit('error', err);
    });
  }

  private enqueue(op: Record<string, unknown>, onLost: OnLost, onReply?: (ev: any) => void): Promise<any> {
    return new Promise((resolve, reject) => {
      if (this._state === 'closed') return reject(new EvdError(E.closed, 'the client is closed'));
      if (!this.connected) {
        let queued = 0;
        for (const p of this.pending.values()) if (!p.sent) queued++;
        if (queued >= MAX_QUEUED_OPS) return reject(new EvdError(E.queueFull, `more than ${MAX_QUEUED_OPS} ops queued while disconnected`));
      }
      const ok = onReply ? (ev: any) => (onReply(ev), resolve(ev)) : resolve;
      const p: Pending = { ref: this.nextRef++, op, onLost, sent: false, ok, fail: reject };
      this.pending.set(p.ref, p);
      if (this.connected) this.transmit(p);
    });
  }

  private transmit(p: Pending): void {
    this.write(Object.assign({}, p.op, { ref: p.ref }));
    p.sent = true;
    clearTimeout(p.timer);
    const timeout = this.opts.opTimeoutMs ?? DEFAULT_OP_TIMEOUT_MS;
    p.timer = setTimeout(() => {
      if (this.pending.get(p.ref) === p) this.settle(p, new EvdError(E.timeout, `no reply to ${p.op.op} within ${timeout} ms`));
    }, timeout);
  }

  private write(op: Record<string, unknown>): void {
    try {
      this.ws?.send(this.codec!.encode(op));
    } catch {
      // The socket is going away; its close event resends or rejects what was in flight.
    }
  }

  private settle(p: Pending, err: EvdError | null, ev?: ServerEvent): void {
    this.pending.delete(p.ref);
    clearTimeout(p.timer);
    if (err) p.fail(err);
    else p.ok(ev);
  }

  /** The connection dropped: ops written to it are resent, rejected, resolved or dropped by kind. */
  private settleInFlight(): void {
    for (const p of [...this.pending.values()]) {
      if (!p.sent) continue;
      clearTimeout(p.timer);
      if (p.onLost === 'resend') p.sent = false;
      else {
        this.pending.delete(p.ref);
        if (p.onLost === 'reject') p.fail(new EvdError(E.disconnected, `the connection dropped before the reply to ${p.op.op}; it may or may not have been applied`));
        else if (p.onLost === 'resolve') p.ok(undefined);
        else p.fail(new EvdError(E.closed, 'superseded by the next connection'));
      }
    }
  }

  private rejectAll(err: EvdError): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) {
      clearTimeout(p.timer);
      p.fail(err);
    }
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
