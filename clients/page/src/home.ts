// The start view: the org's events and their sessions. Organizers see every event and can create
// a demo event with a session, or add a session to an event; attendees see published events.

import { all, describe } from './api.ts';
import type { Ctx } from './ctx.ts';
import { busy, errorLine, field, fill, h, plural } from './dom.ts';
import { sessionHref } from './route.ts';
import type { Scope } from './scope.ts';
import type { EventRec, SessionRec } from './types.ts';

const HOUR = 3600_000;

export function homeView(ctx: Ctx, scope: Scope): HTMLElement {
  const list = h('div', { class: 'events', testid: 'events', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading events…'));
  const root = h(
    'div',
    { class: 'home' },
    ctx.staff ? createDemoForm(ctx) : null,
    h('section', { class: 'card', 'aria-labelledby': 'events-title' }, h('h2', { id: 'events-title' }, 'Events'), list),
  );

  async function load() {
    try {
      const events = await all<EventRec>(ctx.api, '/events', 200);
      const sessions = await Promise.all(events.map((e) => ctx.api.get<SessionRec[]>(`/events/${encodeURIComponent(e.id)}/sessions`)));
      if (scope.disposed) return;
      list.removeAttribute('aria-busy');
      if (!events.length) {
        fill(list, h('p', { class: 'muted', testid: 'no-events' }, ctx.staff ? 'No events yet: create a demo event above.' : 'No published events yet. Ask an organizer to create one.'));
        return;
      }
      fill(list, h('ul', { class: 'plain' }, events.map((e, i) => eventCard(ctx, e, sessions[i], load))));
    } catch (e) {
      list.removeAttribute('aria-busy');
      fill(list, h('p', { class: 'form-error', role: 'alert' }, 'Cannot load the events: ' + describe(e)));
    }
  }
  void load();
  return root;
}

function eventCard(ctx: Ctx, event: EventRec, sessions: SessionRec[], reload: () => void): HTMLElement {
  return h(
    'li',
    { class: 'event', testid: 'event', 'data-event-id': event.id },
    h('h3', null, event.name, event.status !== 'published' ? h('span', { class: 'tag' }, event.status) : null),
    sessions.length
      ? h(
          'ul',
          { class: 'sessions plain' },
          sessions.map((s) =>
            h(
              'li',
              { class: 'session-row' },
              h('a', { href: sessionHref(s.id), testid: 'session-link', 'data-session-id': s.id }, s.title),
              h('span', { class: 'muted seats' }, seatsText(s)),
            ),
          ),
        )
      : h('p', { class: 'muted' }, 'No sessions.'),
    ctx.staff ? addSessionForm(ctx, event, reload) : null,
  );
}

export function seatsText(s: SessionRec): string {
  if (s.available > 0) return `${s.available} of ${s.capacity} seats free`;
  return s.capacity === 0 ? 'no seats' : `full (${plural(s.capacity, 'seat')})`;
}

function createDemoForm(ctx: Ctx): HTMLElement {
  const name = h('input', { name: 'event', testid: 'demo-event-name', required: true, maxlength: 200, value: 'Demo Day' });
  const title = h('input', { name: 'session', testid: 'demo-session-title', required: true, maxlength: 200, value: 'Keynote' });
  const capacity = h('input', { name: 'capacity', type: 'number', min: 0, max: 1000000, testid: 'demo-capacity', required: true, value: 50 });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'demo-create' }, 'Create event and session');
  const error = errorLine('demo-error');
  return h(
    'form',
    {
      class: 'card',
      'aria-labelledby': 'demo-title',
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        error.textContent = '';
        try {
          const session = await busy(submit, 'Creating…', async () => {
            const now = Date.now();
            const event = await ctx.api.post<EventRec>('/events', {
              name: name.value.trim(),
              status: 'published',
              starts_at: new Date(now).toISOString(),
              ends_at: new Date(now + 8 * HOUR).toISOString(),
            });
            return createSession(ctx, event.id, title.value.trim(), capacity.valueAsNumber);
          });
          location.hash = sessionHref(session.id);
        } catch (e) {
          error.textContent = describe(e);
        }
      },
    },
    h('h2', { id: 'demo-title' }, 'Create a demo event'),
    h('p', { class: 'muted' }, 'A published event starting now, with one session. Attendees need a ticket to join the session; a full session has a waitlist.'),
    h('div', { class: 'row' }, field('Event name', name), field('Session name', title), field('Capacity (seats)', capacity)),
    error,
    h('div', { class: 'actions' }, submit),
  );
}

function addSessionForm(ctx: Ctx, event: EventRec, reload: () => void): HTMLElement {
  const title = h('input', { name: 'title', testid: 'add-session-title', required: true, maxlength: 200, value: 'Workshop' });
  const capacity = h('input', { name: 'capacity', type: 'number', min: 0, max: 1000000, testid: 'add-session-capacity', required: true, value: 1 });
  const submit = h('button', { type: 'submit', testid: 'add-session-submit' }, 'Add session');
  const error = errorLine('add-session-error');
  return h(
    'details',
    { class: 'add-session' },
    h('summary', null, 'Add a session'),
    h(
      'form',
      {
        onsubmit: async (ev: Event) => {
          ev.preventDefault();
          error.textContent = '';
          try {
            await busy(submit, 'Adding…', () => createSession(ctx, event.id, title.value.trim(), capacity.valueAsNumber));
            reload();
          } catch (e) {
            error.textContent = describe(e);
          }
        },
      },
      h('div', { class: 'row' }, field('Session name', title), field('Capacity (seats)', capacity)),
      error,
      h('div', { class: 'actions' }, submit),
    ),
  );
}

function createSession(ctx: Ctx, eventId: string, title: string, capacity: number): Promise<SessionRec> {
  const now = Date.now();
  return ctx.api.post<SessionRec>(`/events/${encodeURIComponent(eventId)}/sessions`, {
    title,
    capacity: Number.isFinite(capacity) ? capacity : -1,
    starts_at: new Date(now).toISOString(),
    ends_at: new Date(now + 2 * HOUR).toISOString(),
  });
}
