// Waitlist offers, wherever the user is on the page: a prompt per open offer (pushed over the
// socket, or listed over REST when the page opens) with a countdown, Accept and Decline. An
// accepted offer's ticket is announced to the views (ctx.granted).

import type { Offer } from '../../js/src/index.ts';
import { describe } from './api.ts';
import type { Ctx } from './ctx.ts';
import { busy, errorLine, fill, h } from './dom.ts';
import { findTicket } from './mytickets.ts';
import { currentRoute, sessionHref } from './route.ts';
import type { OfferRec, SessionRec } from './types.ts';

interface Shown {
  el: HTMLElement;
  session: string;
  timer?: ReturnType<typeof setInterval>;
}

export function mountOffers(ctx: Ctx, region: HTMLElement): void {
  const shown = new Map<string, Shown>();

  const show = (id: string, session: string, expiresAt: number | string, accept: () => Promise<{ ticket?: string }>, decline: () => Promise<void>) => {
    if (shown.has(id)) return;
    const expires = typeof expiresAt === 'number' ? expiresAt : Date.parse(expiresAt);
    const title = h('strong', null, 'a session');
    const left = h('span', { class: 'countdown', testid: 'offer-countdown' });
    const error = errorLine('offer-error');
    const acceptBtn = h('button', { type: 'button', class: 'primary', testid: 'offer-accept' }, 'Accept');
    const declineBtn = h('button', { type: 'button', testid: 'offer-decline' }, 'Decline');
    const body = h('div', { class: 'offer-body' }, h('p', null, 'A seat is free in ', title, '! It is held for you: ', left), h('div', { class: 'actions' }, acceptBtn, declineBtn));
    const el = h('section', { class: 'offer card', testid: 'offer', 'data-offer-id': id, 'data-session-id': session, role: 'alertdialog', 'aria-label': 'Waitlist offer' }, body, error);
    const entry: Shown = { el, session };
    shown.set(id, entry);
    region.appendChild(el);

    const tick = () => {
      const ms = expires - Date.now();
      if (!(ms > 0)) {
        left.textContent = 'the offer has lapsed.';
        acceptBtn.disabled = true;
        clearInterval(entry.timer);
        return;
      }
      const s = Math.ceil(ms / 1000);
      left.textContent = `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')} left.`;
    };
    if (Number.isFinite(expires)) {
      tick();
      entry.timer = setInterval(tick, 1000);
    }
    ctx.api
      .get<SessionRec>(`/sessions/${encodeURIComponent(session)}`)
      .then((s) => (title.textContent = s.title))
      .catch(() => {});

    acceptBtn.onclick = async () => {
      error.textContent = '';
      try {
        const res = await busy(acceptBtn, 'Accepting…', accept);
        clearInterval(entry.timer);
        const ticket = res.ticket ?? (await findTicket(ctx, session)) ?? '';
        fill(
          body,
          h('p', { testid: 'offer-accepted' }, 'Seat taken in ', h('strong', null, title.textContent), '. Your ticket: ', h('code', null, ticket), ' '),
          h(
            'div',
            { class: 'actions' },
            currentRoute().session === session ? null : h('a', { href: sessionHref(session), class: 'button' }, 'Open the session'),
            h('button', { type: 'button', onclick: () => forget(id) }, 'Dismiss'),
          ),
        );
        ctx.granted({ session, ticket });
      } catch (e) {
        error.textContent = 'Not accepted: ' + describe(e);
      }
    };
    declineBtn.onclick = async () => {
      error.textContent = '';
      try {
        await busy(declineBtn, 'Declining…', decline);
        forget(id);
      } catch (e) {
        error.textContent = 'Not declined: ' + describe(e);
      }
    };
  };

  const forget = (id: string) => {
    const entry = shown.get(id);
    if (!entry) return;
    clearInterval(entry.timer);
    entry.el.remove();
    shown.delete(id);
  };

  ctx.client.on('offer', (o: Offer) => show(o.id, o.session, o.expiresAt, o.accept, o.decline));
  // An offer answered elsewhere (another tab) or lapsed: its prompt goes, unless it shows a ticket.
  ctx.client.on('waitlist', (u) => {
    if (u.status === 'offered' || u.status === 'accepted') return;
    for (const [id, entry] of shown) if (entry.session === u.session) forget(id);
  });
  ctx.api
    .get<OfferRec[]>('/offers')
    .then((offers) => {
      for (const o of offers) {
        if (o.status !== 'open') continue;
        show(o.id, o.session_id, o.expires_at, () => ctx.client.acceptOffer(o.id), () => ctx.client.declineOffer(o.id));
      }
    })
    .catch(() => {});
}
