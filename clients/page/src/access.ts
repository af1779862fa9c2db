// An attendee's way into a session: their ticket, or a button to take a free seat, or, when the
// session is full, its waitlist (place in line, live) until an offer comes (see offers.ts).
// Once they hold a ticket, `onTicket` opens the live room.

import { ApiError, describe } from './api.ts';
import type { Ctx } from './ctx.ts';
import { busy, errorLine, fill, h } from './dom.ts';
import { findTicket } from './mytickets.ts';
import type { Scope } from './scope.ts';
import type { SessionRec, TicketRec, WaitlistEntryRec } from './types.ts';

type State =
  | { kind: 'checking' }
  | { kind: 'ticket'; ticket: string }
  | { kind: 'open' }
  | { kind: 'full'; note?: string }
  | { kind: 'waiting'; position?: number | null }
  | { kind: 'offered' };

export function accessPanel(
  ctx: Ctx,
  scope: Scope,
  sessionId: string,
  refreshSession: () => Promise<SessionRec>,
  onTicket: (ticket: string) => void,
): HTMLElement {
  const body = h('div', { class: 'access-body' });
  const error = errorLine('access-error');
  const panel = h('section', { class: 'card access', testid: 'access', 'aria-labelledby': 'access-title' }, h('h2', { id: 'access-title' }, 'Your seat'), body, error);
  const base = `/sessions/${encodeURIComponent(sessionId)}`;
  let state: State = { kind: 'checking' };

  const set = (next: State) => {
    state = next;
    panel.dataset.state = next.kind;
    render();
    if (next.kind === 'ticket') onTicket(next.ticket);
  };

  const act = (label: string, pending: string, testid: string, work: () => Promise<void>, cls = 'primary') => {
    const b = h('button', { type: 'button', class: cls, testid }, label);
    b.onclick = async () => {
      error.textContent = '';
      try {
        await busy(b, pending, work);
      } catch (e) {
        error.textContent = describe(e);
      }
    };
    return b;
  };

  const render = () => {
    switch (state.kind) {
      case 'checking':
        return fill(body, h('p', { class: 'muted' }, 'Checking your ticket…'));
      case 'ticket':
        return fill(body, h('p', { testid: 'my-ticket', 'data-ticket-id': state.ticket }, 'Your ticket: ', h('code', null, state.ticket)));
      case 'open':
        return fill(
          body,
          h('p', null, 'Seats are free. Take one to join the chat, polls and Q&A.'),
          h('div', { class: 'actions' }, act('Get a ticket', 'Getting a ticket…', 'get-ticket', register)),
        );
      case 'full':
        return fill(
          body,
          h('p', { testid: 'session-full' }, state.note ?? 'This session is full.', ' Join the waitlist: when a seat frees up it is offered to you here.'),
          h('div', { class: 'actions' }, act('Join the waitlist', 'Joining…', 'join-waitlist', joinWaitlist)),
        );
      case 'waiting':
        return fill(
          body,
          h('p', { testid: 'waitlist-status', 'data-position': state.position ?? '' }, 'You are on the waitlist', state.position ? `: number ${state.position} in line.` : '.', ' Keep this page open; an offer shows up at the top.'),
          h('div', { class: 'actions' }, act('Leave the waitlist', 'Leaving…', 'leave-waitlist', leaveWaitlist, '')),
        );
      case 'offered':
        return fill(body, h('p', { testid: 'waitlist-status' }, 'A seat is held for you: accept the offer at the top of the page.'));
    }
  };

  const register = async () => {
    try {
      const t = await ctx.api.post<TicketRec>(`${base}/tickets`, {});
      set({ kind: 'ticket', ticket: t.id });
    } catch (e) {
      if (e instanceof ApiError && e.code === 'sold_out') return set({ kind: 'full', note: 'The last seat was just taken.' });
      if (e instanceof ApiError && (e.code === 'duplicate' || e.code === 'holds_offer')) return check();
      throw e;
    }
  };

  const joinWaitlist = async () => {
    const entry = await ctx.api.post<WaitlistEntryRec>(`${base}/waitlist`);
    if (!fromEntry(entry)) set({ kind: 'waiting', position: entry.position });
  };

  const leaveWaitlist = async () => {
    await ctx.api.del(`${base}/waitlist/me`);
    await check();
  };

  /** The state a waitlist entry puts us in, or null when it says nothing (left, declined…). */
  const fromEntry = (entry: WaitlistEntryRec): true | null => {
    if (entry.status === 'waiting') set({ kind: 'waiting', position: entry.position });
    else if (entry.status === 'offered') set({ kind: 'offered' });
    else return null;
    return true;
  };

  const check = async () => {
    try {
      const ticket = await findTicket(ctx, sessionId);
      if (scope.disposed) return;
      if (ticket) return set({ kind: 'ticket', ticket });
      const entry = await ctx.api.get<WaitlistEntryRec>(`${base}/waitlist/me`).catch((e) => {
        if (e instanceof ApiError && e.status === 404) return null;
        throw e;
      });
      if (scope.disposed) return;
      if (entry && fromEntry(entry)) return;
      const session = await refreshSession();
      if (!scope.disposed) set(session.available > 0 ? { kind: 'open' } : { kind: 'full' });
    } catch (e) {
      error.textContent = 'Cannot check your ticket: ' + describe(e);
    }
  };

  scope.add(
    ctx.client.on('waitlist', (u) => {
      if (u.session !== sessionId || state.kind === 'ticket') return;
      if (u.status === 'waiting') set({ kind: 'waiting', position: u.position });
      else if (u.status === 'offered') set({ kind: 'offered' });
      else void check();
    }),
  );
  scope.add(
    ctx.onGranted((g) => {
      if (g.session === sessionId && state.kind !== 'ticket') set({ kind: 'ticket', ticket: g.ticket });
    }),
  );
  render();
  void check();
  return panel;
}
