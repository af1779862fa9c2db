// Who is in a room, kept the way phoenix.js keeps it: a snapshot from ROOM_JOINED.presence, then
// PRESENCE_UPDATE diffs applied idempotently (a join of someone present or a leave of someone
// absent changes nothing). `count` is always the server's; the list is exact only while the
// server sends diffs and the snapshot was whole (it is cut at 100 members).

import { Emitter } from './emitter.js';
import type { Member, PresenceUpdateEvent } from './types.js';

interface PresenceEvents {
  join: Member;
  leave: Member;
  sync: { members: Member[]; count: number };
}

export class Presence {
  private members = new Map<string, Member>();
  private total = 0;
  private partial = false;
  private events = new Emitter<PresenceEvents>();

  /** Distinct users in the room, as the server counts them. */
  get count(): number {
    return this.total;
  }

  /**
   * False when list() may be partial: the snapshot was cut (more members than it carried), or the
   * room went over the server's full-room limit (count-only updates). Stays false until the next
   * snapshot, i.e. the next (re)join.
   */
  get exact(): boolean {
    return !this.partial;
  }

  /** The members known, in the order they became known. */
  list(): Member[] {
    return Array.from(this.members.values());
  }

  /** Someone became present (not called again for someone already present). */
  onJoin(fn: (member: Member) => void): () => void {
    return this.events.on('join', fn);
  }

  /** Someone's last connection left. */
  onLeave(fn: (member: Member) => void): () => void {
    return this.events.on('leave', fn);
  }

  /** After each snapshot or update: the members and the count. */
  onSync(fn: (members: Member[], count: number) => void): () => void {
    return this.events.on('sync', (s) => fn(s.members, s.count));
  }

  /** @internal ROOM_JOINED's presence: replaces the list; joins and leaves for the difference. */
  _snapshot(snap: { count: number; members: Member[] }): void {
    const next = new Map<string, Member>();
    for (const m of snap.members || []) next.set(m.user, m);
    const before = this.members;
    this.members = next;
    this.total = snap.count;
    this.partial = next.size < snap.count;
    for (const [user, m] of before) if (!next.has(user)) this.events.emit('leave', m);
    for (const [user, m] of next) if (!before.has(user)) this.events.emit('join', m);
    this.sync();
  }

  /** @internal PRESENCE_UPDATE: joins and leaves applied idempotently; absent lists mean count only. */
  _update(u: Pick<PresenceUpdateEvent, 'count' | 'joins' | 'leaves'>): void {
    this.total = u.count;
    if (!u.joins && !u.leaves) this.partial = true;
    for (const m of u.leaves || []) {
      const had = this.members.get(m.user);
      if (had && this.members.delete(m.user)) this.events.emit('leave', had);
    }
    for (const m of u.joins || []) {
      if (!this.members.has(m.user)) {
        this.members.set(m.user, m);
        this.events.emit('join', m);
      }
    }
    this.sync();
  }

  /** @internal The room was left: nobody is known to be present. */
  _clear(): void {
    this.members.clear();
    this.total = 0;
    this.partial = false;
    this.sync();
  }

  private sync(): void {
    this.events.emit('sync', { members: this.list(), count: this.total });
  }
}
