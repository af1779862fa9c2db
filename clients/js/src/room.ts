// One room as the app sees it: its messages delivered in offset order and never twice, its
// position (epoch, offset) for recovery on every rejoin, its presence, and its live events
// (polls, Q&A, session updates). The client owns the socket; a room builds its join op and
// digests what the client routes to it.

import { Emitter } from './emitter.js';
import { newClientId } from './ids.js';
import { Presence } from './presence.js';
import type {
  ChatMessage,
  Poll,
  PollTally,
  Question,
  QuestionUpdate,
  RoomJoinedEvent,
  ServerEvent,
  SessionUpdate,
} from './types.js';
import type { EvdError } from './errors.js';

/** Live MESSAGE_RECEIVED held while a join is in flight; beyond this the oldest are dropped (recovery refills them). */
export const JOIN_BUFFER_LIMIT = 1000;
/** Messages asked for on the first join when room(name) gives no `history` (the server's default too). */
export const DEFAULT_HISTORY = 0;

/** What happens to an op in flight when its connection drops. */
export type OnLost = 'resend' | 'reject' | 'resolve' | 'drop';

/** @internal What a room needs from its client. */
export interface RoomHost {
  request(op: Record<string, unknown>, onLost: OnLost): Promise<any>;
  isConnected(): boolean;
}

export interface RoomEvents {
  /** A chat message, in offset order, never twice. */
  message: ChatMessage;
  /** A (re)join completed. `offset` is the room's latest offset then. */
  joined: { recovered: boolean; epoch: string; offset: number };
  /** A rejoin with `recover` came back `recovered:false`: messages may be missing, refetch. */
  recovery_failed: { epoch: string; offset: number; previous: { epoch: string | null; offset: number } };
  poll: Poll;
  poll_results: PollTally;
  poll_closed: PollTally;
  question: Question;
  question_updated: QuestionUpdate;
  session_updated: SessionUpdate;
  /** The join was refused (e.g. `forbidden`); the client tries again on its next connection. */
  error: EvdError;
  /** Every raw event routed to this room. */
  event: ServerEvent;
}

export class Room {
  readonly name: string;
  readonly presence = new Presence();
  /** @internal True while the app wants the room joined (from room() until leave()). */
  _active = true;
  /** @internal The server joins `user:` rooms by itself: no join or leave op is ever sent. */
  readonly _auto: boolean;
  private _epoch: string | null = null;
  private _offset = 0;
  private _joined = false;
  private history: number;
  private buffer: ChatMessage[] = [];
  private events = new Emitter<RoomEvents>();

  /** @internal Use client.room(name). */
  constructor(
    name: string,
    opts: { history?: number },
    private host: RoomHost,
  ) {
    this.name = name;
    this.history = opts.history ?? DEFAULT_HISTORY;
    this._auto = name.startsWith('user:');
  }

  /** The room's epoch as of the last join, null before the first. */
  get epoch(): string | null {
    return this._epoch;
  }

  /** The last offset delivered (or the room's offset at join time): what a rejoin recovers from. */
  get offset(): number {
    return this._offset;
  }

  get joined(): boolean {
    return this._auto ? this.host.isConnected() : this._joined;
  }

  on<K extends keyof RoomEvents>(event: K, fn: (arg: RoomEvents[K]) => void): () => void {
    return this.events.on(event, fn);
  }

  /**
   * Publishes a chat message. The client_id makes it idempotent: if the connection drops before
   * the ACK, it is resent on the next connection with the same client_id and lands once.
   */
  send(text: string, opts: { clientId?: string } = {}): Promise<{ offset: number }> {
    const op = { op: 'send_message', room: this.name, text, client_id: opts.clientId ?? newClientId() };
    return this.host.request(op, 'resend').then((ack) => ({ offset: ack.offset }));
  }

  /** Asks a question in this (session) room. Not resent after a drop (it would ask twice): rejects `disconnected`. */
  ask(text: string): Promise<{ question: string }> {
    return this.host
      .request({ op: 'ask_question', room: this.name, text }, 'reject')
      .then((ack) => ({ question: ack.question }));
  }

  /** Leaves the room; it is no longer rejoined. client.room(name) joins it again (recovering from where it was). */
  leave(): Promise<void> {
    if (!this._active) return Promise.resolve();
    this._active = false;
    this._joined = false;
    this.buffer = [];
    this.presence._clear();
    if (this._auto || !this.host.isConnected()) return Promise.resolve();
    return this.host.request({ op: 'leave_room', room: this.name }, 'resolve').then(() => undefined);
  }

  /** @internal client.room(name) on a room that was left. */
  _activate(): void {
    this._active = true;
  }

  /** @internal The join_room op for the next join: `recover` once the room has a position. */
  _joinOp(): Record<string, unknown> {
    const op: Record<string, unknown> = { op: 'join_room', room: this.name };
    if (this.history > 0) op.history = this.history;
    if (this._epoch != null) op.recover = { epoch: this._epoch, offset: this._offset };
    return op;
  }

  /** @internal The connection dropped (or a rejoin starts): buffer live messages until ROOM_JOINED. */
  _unjoin(): void {
    this._joined = false;
  }

  /** @internal ROOM_JOINED for our join_room (`recovering` when it carried `recover`). */
  _onJoined(ev: RoomJoinedEvent, recovering: boolean): void {
    if (!this._active) return;
    const previous = { epoch: this._epoch, offset: this._offset };
    const sameEpoch = this._epoch === ev.epoch;
    const after = sameEpoch ? this._offset : 0;
    const byOffset = new Map<number, ChatMessage>();
    for (const m of [...(ev.history || []), ...this.buffer]) {
      if (m.offset > after && !byOffset.has(m.offset)) byOffset.set(m.offset, strip(m));
    }
    this.buffer = [];
    this._epoch = ev.epoch;
    this._offset = after;
    this._joined = true;
    this.presence._snapshot(ev.presence || { count: 0, members: [] });
    this.events.emit('joined', { recovered: !!ev.recovered, epoch: ev.epoch, offset: ev.offset });
    if (recovering && !ev.recovered) {
      this.events.emit('recovery_failed', { epoch: ev.epoch, offset: ev.offset, previous });
    }
    for (const m of [...byOffset.values()].sort((a, b) => a.offset - b.offset)) this.deliver(m);
    // Nothing between our position and the room's offset at join time is owed to us now.
    if (ev.offset > this._offset) this._offset = ev.offset;
  }

  /** @internal An event whose `room` is this room's name. */
  _onEvent(ev: ServerEvent): void {
    this.events.emit('event', ev);
    switch (ev.ev) {
      case 'MESSAGE_RECEIVED':
        if (!this._active) return;
        if (!this.joined) {
          this.buffer.push(ev as unknown as ChatMessage);
          if (this.buffer.length > JOIN_BUFFER_LIMIT) this.buffer.shift();
        } else this.deliver(strip(ev as unknown as ChatMessage));
        return;
      case 'PRESENCE_UPDATE':
        // Before the snapshot an update cannot be placed; the snapshot supersedes it.
        if (this.joined) this.presence._update(ev as any);
        return;
      case 'POLL_CREATED':
        return this.events.emit('poll', ev.poll);
      case 'POLL_RESULTS':
        return this.events.emit('poll_results', { poll: ev.poll, counts: ev.counts, total: ev.total });
      case 'POLL_CLOSED':
        return this.events.emit('poll_closed', { poll: ev.poll, counts: ev.counts, total: ev.total });
      case 'QUESTION_ASKED':
        return this.events.emit('question', ev.question);
      case 'QUESTION_UPDATED': {
        const u: QuestionUpdate = { question: ev.question, votes: ev.votes };
        if (ev.hidden != null) u.hidden = ev.hidden;
        return this.events.emit('question_updated', u);
      }
      case 'SESSION_UPDATED':
        return this.events.emit('session_updated', ev as unknown as SessionUpdate);
    }
  }

  /** @internal The join was refused. */
  _onJoinError(err: EvdError): void {
    this.events.emit('error', err);
  }

  private deliver(m: ChatMessage): void {
    if (m.offset <= this._offset) return;
    this._offset = m.offset;
    this.events.emit('message', m);
  }
}

function strip(m: ChatMessage): ChatMessage {
  return { room: m.room, offset: m.offset, id: m.id, user: m.user, text: m.text, ts: m.ts };
}
