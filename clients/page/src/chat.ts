// The room's chat: the archive (REST) for what came before, then the SDK's messages in offset
// order, merged by id so nothing shows twice. A send that fails leaves its text in the box.

import type { ChatMessage, Room } from '../../js/src/index.ts';
import { describe } from './api.ts';
import type { Ctx } from './ctx.ts';
import { busy, errorLine, h, time } from './dom.ts';
import type { Scope } from './scope.ts';
import type { ArchivedMessage, Page } from './types.ts';

interface Line {
  id: string;
  user: string;
  text: string;
  ts: number;
  offset: number;
}

export function chatPanel(ctx: Ctx, room: Room, scope: Scope): HTMLElement {
  const log = h('ol', { class: 'chat-log plain', role: 'log', 'aria-live': 'polite', 'aria-label': 'Chat messages', testid: 'chat-log' });
  const empty = h('p', { class: 'muted empty' }, 'No messages yet. Say hello!');
  const seen = new Map<string, { line: Line; el: HTMLElement }>();

  const add = (m: Line) => {
    if (seen.has(m.id)) return;
    empty.remove();
    const mine = m.user === ctx.me.user;
    const el = h(
      'li',
      { class: 'msg' + (mine ? ' mine' : ''), testid: 'chat-message', 'data-user': m.user },
      h('span', { class: 'who' }, m.user),
      h('time', { class: 'when', datetime: new Date(m.ts).toISOString() }, time(m.ts)),
      h('p', { class: 'text' }, m.text),
    );
    const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    // Messages arrive in order; an archive page or a rejoin may fill in earlier ones.
    let after = log.lastElementChild;
    while (after && later(seen.get((after as HTMLElement).dataset.id!)!.line, m)) after = after.previousElementSibling;
    el.dataset.id = m.id;
    log.insertBefore(el, after ? after.nextSibling : log.firstChild);
    seen.set(m.id, { line: m, el });
    if (stick || mine) log.scrollTop = log.scrollHeight;
  };

  const fromSdk = (m: ChatMessage): Line => ({ id: m.id, user: m.user, text: m.text, ts: m.ts, offset: m.offset });
  const loadArchive = async () => {
    try {
      const page = await ctx.api.get<Page<ArchivedMessage>>(`/rooms/${encodeURIComponent(room.name)}/messages?limit=50`);
      if (scope.disposed) return;
      for (const m of page.items.reverse()) add({ id: m.id, user: m.user_id, text: m.text, ts: m.ts, offset: m.offset });
    } catch {
      // The live history still shows; the archive only adds older messages.
    }
  };
  scope.add(room.on('message', (m) => add(fromSdk(m))));
  scope.add(room.on('recovery_failed', () => void loadArchive()));
  void loadArchive();

  const input = h('input', {
    name: 'message',
    testid: 'chat-input',
    autocomplete: 'off',
    maxlength: 4000,
    placeholder: 'Write a message',
    'aria-label': 'Message',
  });
  const send = h('button', { type: 'submit', class: 'primary', testid: 'chat-send' }, 'Send');
  const error = errorLine('chat-error');
  const form = h(
    'form',
    {
      class: 'composer',
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        const text = input.value;
        if (!text.trim()) return;
        error.textContent = '';
        try {
          await busy(send, 'Sending…', () => room.send(text));
          if (input.value === text) input.value = '';
        } catch (e) {
          error.textContent = 'Not sent: ' + describe(e);
        } finally {
          input.focus();
        }
      },
    },
    input,
    send,
  );
  return h(
    'section',
    { class: 'card chat', 'aria-labelledby': 'chat-title', testid: 'chat' },
    h('h2', { id: 'chat-title' }, 'Chat'),
    empty,
    log,
    form,
    error,
  );
}

/** Whether `a` sorts after `b`: by time, then by offset within the room. */
function later(a: Line, b: Line): boolean {
  return a.ts > b.ts || (a.ts === b.ts && a.offset > b.offset);
}
