// The organizer's controls for a session: seats and capacity, its tickets (list, issue, cancel: a
// cancelled seat is offered to the waitlist at once), offering free seats to the waitlist, and
// how many people are in the session and event rooms.

import type { Room } from '../../js/src/index.ts';
import { all, ApiError, describe } from './api.ts';
import type { Ctx } from './ctx.ts';
import { busy, errorLine, field, fill, h, plural } from './dom.ts';
import type { Scope } from './scope.ts';
import type { SessionRec, TicketRec } from './types.ts';

export interface ManagePanel {
  el: HTMLElement;
  /** The session as last read (after SESSION_UPDATED, a change made here, or a periodic read). */
  update(s: SessionRec): void;
}

export function managePanel(
  ctx: Ctx,
  scope: Scope,
  initial: SessionRec,
  rooms: { session: Room; event: Room },
  refreshSession: () => Promise<SessionRec>,
): ManagePanel {
  const id = initial.id;
  const base = `/sessions/${encodeURIComponent(id)}`;
  const seats = h('p', { testid: 'manage-seats' });
  const counts = h('p', { testid: 'presence-counts', class: 'muted small' });

  // Capacity.
  const capacity = h('input', { name: 'capacity', type: 'number', min: 0, max: 1000000, testid: 'capacity-input', value: initial.capacity, required: true });
  const saveCap = h('button', { type: 'submit', testid: 'capacity-save' }, 'Save');
  const capError = errorLine('capacity-error');
  const capForm = h(
    'form',
    {
      class: 'inline-form',
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        capError.textContent = '';
        try {
          const s = await busy(saveCap, 'Saving…', () => ctx.api.patch<SessionRec>(base, { capacity: Number.isFinite(capacity.valueAsNumber) ? capacity.valueAsNumber : -1 }));
          update(s);
        } catch (e) {
          capError.textContent = describe(e);
        }
      },
    },
    field('Capacity', capacity),
    saveCap,
  );

  // Tickets: the session's list, every holder's (the first 1,000).
  const tickets = h('ul', { class: 'tickets plain', testid: 'tickets-list', 'aria-label': 'Tickets' });
  const ticketNote = h('p', { class: 'muted small', testid: 'tickets-note' });
  const ticketError = errorLine('ticket-error');
  const listMax = 1000;

  // Loads can overlap (the panel's first one, a change of `issued`, a cancel): only the latest
  // started may render, so a slow older answer never paints over a newer list.
  let loads = 0;
  const loadTickets = async () => {
    const mine = ++loads;
    const list = await all<TicketRec>(ctx.api, `${base}/tickets`, listMax);
    if (scope.disposed || mine !== loads) return;
    ticketError.textContent = '';
    ticketNote.textContent = list.length >= listMax ? `Showing the first ${listMax} tickets.` : '';
    renderTickets(list);
  };

  const renderTickets = (list: TicketRec[]) => {
    const active = list.filter((t) => t.status === 'active');
    fill(
      tickets,
      active.length ? null : h('li', { class: 'muted' }, 'No active tickets.'),
      active.map((t) =>
        h(
          'li',
          { testid: 'ticket-row', 'data-user': t.user_id, 'data-ticket-id': t.id },
          h('span', null, t.user_id, ' ', h('code', { class: 'muted small' }, t.id.slice(-8))),
          h(
            'button',
            {
              type: 'button',
              class: 'danger',
              testid: 'ticket-cancel',
              'aria-label': `Cancel the ticket of ${t.user_id}`,
              onclick: async (ev: Event) => {
                ticketError.textContent = '';
                try {
                  await busy(ev.currentTarget as HTMLButtonElement, 'Cancelling…', () => ctx.api.post<TicketRec>(`/tickets/${encodeURIComponent(t.id)}/cancel`));
                  await Promise.all([loadTickets(), refreshSession()]);
                } catch (e) {
                  ticketError.textContent = describe(e);
                }
              },
            },
            'Cancel',
          ),
        ),
      ),
    );
  };

  const holder = h('input', { name: 'user', testid: 'ticket-user', required: true, maxlength: 128, placeholder: 'user name', spellcheck: 'false' });
  const issue = h('button', { type: 'submit', testid: 'ticket-issue' }, 'Issue ticket');
  const issueForm = h(
    'form',
    {
      class: 'inline-form',
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        ticketError.textContent = '';
        try {
          await busy(issue, 'Issuing…', () => ctx.api.post<TicketRec>(`${base}/tickets`, { user_id: holder.value.trim() }));
          holder.value = '';
          await Promise.all([loadTickets(), refreshSession()]);
        } catch (e) {
          ticketError.textContent = describe(e);
        }
      },
    },
    field('Give a seat to', holder),
    issue,
  );

  const offerError = errorLine('offer-seats-error');
  const offerBtn = h('button', { type: 'button', testid: 'offer-seats' }, 'Offer free seats to the waitlist');
  offerBtn.onclick = async () => {
    offerError.textContent = '';
    try {
      const s = await refreshSession();
      const offers = await busy(offerBtn, 'Offering…', () => ctx.api.post<unknown[]>(`${base}/waitlist/offers`, { count: Math.min(100, Math.max(1, s.available)) }));
      offerError.textContent = offers.length ? `Offered ${plural(offers.length, 'seat')}.` : 'Nobody is waiting.';
      await refreshSession();
    } catch (e) {
      offerError.textContent = e instanceof ApiError && e.code === 'sold_out' ? 'No seat is free: raise the capacity or cancel a ticket first.' : describe(e);
    }
  };

  const renderCounts = () => {
    counts.textContent = `In the room: ${plural(rooms.session.presence.count, 'person', 'people')} in this session, ${plural(rooms.event.presence.count, 'person', 'people')} following the event.`;
  };
  scope.add(rooms.session.presence.onSync(renderCounts));
  scope.add(rooms.event.presence.onSync(renderCounts));
  renderCounts();

  let issued = initial.issued;
  const update = (s: SessionRec) => {
    // Someone took or gave back a seat: the ticket list changed too.
    if (s.issued !== issued) void loadTickets().catch((e) => (ticketError.textContent = 'Cannot load the tickets: ' + describe(e)));
    issued = s.issued;
    seats.textContent = `${s.issued} of ${s.capacity} seats taken, ${s.held} held for waitlist offers, ${s.available} free.`;
    if (document.activeElement !== capacity) capacity.value = String(s.capacity);
  };
  update(initial);
  void loadTickets().catch((e) => (ticketError.textContent = 'Cannot load the tickets: ' + describe(e)));

  const el = h(
    'section',
    { class: 'card manage', testid: 'manage', 'aria-labelledby': 'manage-title' },
    h('h2', { id: 'manage-title' }, 'Organizer'),
    seats,
    counts,
    capForm,
    capError,
    h('h3', null, 'Tickets'),
    tickets,
    ticketNote,
    issueForm,
    ticketError,
    h('h3', null, 'Waitlist'),
    h('p', { class: 'muted small' }, 'A cancelled ticket’s seat goes to the next person in line by itself. After raising the capacity, offer the new seats:'),
    h('div', { class: 'actions' }, offerBtn),
    offerError,
  );
  return { el, update };
}
