// One session on screen. Organizers go straight into the live room; attendees first need a seat
// (access.ts). The live room is the session room (chat, presence, polls, Q&A) plus the event
// room (SESSION_UPDATED: seats and capacity as they change).

import { describe } from './api.ts';
import { accessPanel } from './access.ts';
import { chatPanel } from './chat.ts';
import type { Ctx } from './ctx.ts';
import { fill, h } from './dom.ts';
import { seatsText } from './home.ts';
import { managePanel, type ManagePanel } from './manage.ts';
import { pollsPanel } from './polls.ts';
import { presencePanel } from './presence.ts';
import { questionsPanel } from './questions.ts';
import type { Scope } from './scope.ts';
import type { EventRec, SessionRec } from './types.ts';

/** How often the seats on screen are read again while the live room is open. */
const SEATS_REFRESH_MS = 15_000;

export function sessionView(ctx: Ctx, scope: Scope, sessionId: string): HTMLElement {
  const root = h('div', { class: 'session-view' }, h('p', { class: 'muted' }, 'Loading the session…'));
  void (async () => {
    let session: SessionRec;
    let event: EventRec | null;
    try {
      session = await ctx.api.get<SessionRec>(`/sessions/${encodeURIComponent(sessionId)}`);
      event = await ctx.api.get<EventRec>(`/events/${encodeURIComponent(session.event_id)}`).catch(() => null);
    } catch (e) {
      if (!scope.disposed)
        fill(root, h('section', { class: 'card' }, h('h2', null, 'Session not available'), h('p', { role: 'alert' }, describe(e)), h('a', { href: '#' }, '← All events')));
      return;
    }
    if (scope.disposed) return;
    mount(ctx, scope, root, session, event);
  })();
  return root;
}

function mount(ctx: Ctx, scope: Scope, root: HTMLElement, initial: SessionRec, event: EventRec | null): void {
  let session = initial;
  const seats = h('span', { testid: 'session-seats' });
  const copied = h('span', { class: 'muted small', role: 'status' });
  const side = h('div', { class: 'col side' });
  const center = h('div', { class: 'col center' });
  const live = h('div', { class: 'col live' });
  let manage: ManagePanel | null = null;

  const show = (s: SessionRec) => {
    session = s;
    seats.textContent = seatsText(s);
    manage?.update(s);
  };
  const refreshSession = async () => {
    const s = await ctx.api.get<SessionRec>(`/sessions/${encodeURIComponent(session.id)}`);
    if (!scope.disposed) show(s);
    return s;
  };

  fill(
    root,
    h(
      'header',
      { class: 'session-head' },
      h('a', { href: '#', class: 'back' }, '← All events'),
      h('h2', { testid: 'session-title' }, session.title),
      h(
        'p',
        { class: 'muted' },
        event ? event.name + ' · ' : '',
        seats,
        ' · ',
        h(
          'button',
          {
            type: 'button',
            class: 'link',
            testid: 'copy-link',
            onclick: async () => {
              try {
                await navigator.clipboard.writeText(location.href);
                copied.textContent = ' Link copied.';
              } catch {
                copied.textContent = ' Copy this page’s address to share it.';
              }
            },
          },
          'Copy link',
        ),
        copied,
      ),
    ),
    h('div', { class: 'session-grid' }, side, center, live),
  );
  show(session);

  let entered = false;
  const enter = () => {
    if (entered || scope.disposed) return;
    entered = true;
    const room = ctx.client.room('session:' + session.id, { history: 50 });
    const eventRoom = ctx.client.room('event:' + session.event_id);
    scope.add(() => void room.leave().catch(() => {}));
    scope.add(() => void eventRoom.leave().catch(() => {}));
    scope.add(eventRoom.on('session_updated', (u) => u.session === session.id && void refreshSession().catch(() => {})));
    // Seats also change when someone takes a ticket, which no room event announces: refresh when
    // someone arrives and now and then.
    let pending: ReturnType<typeof setTimeout> | undefined;
    const soon = () => {
      clearTimeout(pending);
      pending = setTimeout(() => void refreshSession().catch(() => {}), 500);
    };
    scope.add(room.presence.onJoin(soon));
    const every = setInterval(soon, SEATS_REFRESH_MS);
    scope.add(() => (clearInterval(every), clearTimeout(pending)));
    side.append(presencePanel(room, ctx.me.user, scope));
    if (ctx.staff) {
      manage = managePanel(ctx, scope, session, { session: room, event: eventRoom }, refreshSession);
      side.append(manage.el);
    }
    fill(center, chatPanel(ctx, room, scope));
    fill(live, pollsPanel(ctx, room, session.id, scope), questionsPanel(ctx, room, session.id, scope));
  };

  if (ctx.staff) enter();
  else {
    side.append(
      accessPanel(ctx, scope, session.id, refreshSession, () => {
        enter();
        void refreshSession().catch(() => {});
      }),
    );
    center.append(
      h('section', { class: 'card placeholder' }, h('h2', null, 'Chat, polls and Q&A'), h('p', { class: 'muted' }, 'They open here as soon as you hold a ticket for this session.')),
    );
  }
}
