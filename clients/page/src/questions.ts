// Q&A: the session's questions, most upvoted first. Attendees ask and upvote over the socket;
// a question an organizer hides disappears for attendees (QUESTION_UPDATED hidden) and stays,
// marked hidden, for organizers.

import type { Question, QuestionUpdate, Room } from '../../js/src/index.ts';
import { describe } from './api.ts';
import type { Ctx } from './ctx.ts';
import { busy, errorLine, fill, h, plural } from './dom.ts';
import type { Scope } from './scope.ts';
import type { QuestionRec } from './types.ts';

interface QState {
  id: string;
  user: string;
  text: string;
  votes: number;
  hidden: boolean;
  order: number;
}

export function questionsPanel(ctx: Ctx, room: Room, sessionId: string, scope: Scope): HTMLElement {
  const questions = new Map<string, QState>();
  const upvoted = new Set<string>(JSON.parse(sessionStorage.getItem('evd.upvoted.' + ctx.me.user) || '[]'));
  const list = h('ol', { class: 'questions plain', testid: 'questions', 'aria-label': 'Questions' });
  const error = errorLine('question-error');
  let order = 0;

  const render = () => {
    const shown = [...questions.values()]
      .filter((q) => ctx.staff || !q.hidden)
      .sort((a, b) => b.votes - a.votes || a.order - b.order);
    fill(
      list,
      shown.length ? null : h('li', { class: 'muted' }, 'No questions yet.'),
      shown.map((q) =>
        h(
          'li',
          { class: 'q' + (q.hidden ? ' hidden-q' : ''), testid: 'question', 'data-question-id': q.id },
          h('p', { class: 'text' }, q.text),
          h(
            'div',
            { class: 'q-meta' },
            h('span', { class: 'muted small' }, q.user, q.hidden ? ' · hidden from attendees' : ''),
            h('span', { class: 'votes', testid: 'question-votes' }, plural(q.votes, 'vote')),
            h(
              'button',
              {
                type: 'button',
                testid: 'question-upvote',
                'aria-label': `Upvote: ${q.text}`,
                'aria-pressed': upvoted.has(q.id) ? 'true' : 'false',
                disabled: upvoted.has(q.id) || q.hidden,
                onclick: (ev: Event) => upvote(q, ev.currentTarget as HTMLButtonElement),
              },
              upvoted.has(q.id) ? '▲ Upvoted' : '▲ Upvote',
            ),
            ctx.staff && !q.hidden
              ? h('button', { type: 'button', class: 'danger', testid: 'question-hide', 'aria-label': `Hide: ${q.text}`, onclick: (ev: Event) => hide(q, ev.currentTarget as HTMLButtonElement) }, 'Hide')
              : null,
          ),
        ),
      ),
    );
  };

  const upsert = (q: { id: string; user: string; text: string; votes: number; hidden?: boolean }) => {
    const known = questions.get(q.id);
    if (known) {
      known.votes = Math.max(known.votes, q.votes);
      known.hidden ||= !!q.hidden;
    } else questions.set(q.id, { id: q.id, user: q.user, text: q.text, votes: q.votes, hidden: !!q.hidden, order: order++ });
    render();
  };

  const upvote = async (q: QState, button: HTMLButtonElement) => {
    error.textContent = '';
    try {
      await busy(button, 'Upvoting…', () => ctx.client.upvote(q.id));
    } catch (e: any) {
      if (e?.code !== 'conflict') {
        error.textContent = 'Upvote not counted: ' + describe(e);
        return;
      }
    }
    upvoted.add(q.id);
    sessionStorage.setItem('evd.upvoted.' + ctx.me.user, JSON.stringify([...upvoted]));
    render();
  };

  const hide = async (q: QState, button: HTMLButtonElement) => {
    error.textContent = '';
    try {
      await busy(button, 'Hiding…', () => ctx.api.post(`/questions/${encodeURIComponent(q.id)}/hide`));
      q.hidden = true;
      render();
    } catch (e) {
      error.textContent = describe(e);
    }
  };

  scope.add(room.on('question', (q: Question) => upsert(q)));
  scope.add(
    room.on('question_updated', (u: QuestionUpdate) => {
      const q = questions.get(u.question);
      if (!q) return;
      q.votes = Math.max(q.votes, u.votes ?? q.votes);
      if (u.hidden) q.hidden = true;
      render();
    }),
  );
  (async () => {
    try {
      const recs = await ctx.api.get<QuestionRec[]>(`/sessions/${encodeURIComponent(sessionId)}/questions?limit=50`);
      if (scope.disposed) return;
      for (const r of recs) upsert({ id: r.id, user: r.user_id, text: r.text, votes: r.votes, hidden: r.hidden });
      render();
    } catch (e) {
      error.textContent = 'Cannot load the questions: ' + describe(e);
    }
  })();
  render();

  const input = h('input', { name: 'question', testid: 'question-input', maxlength: 4000, autocomplete: 'off', placeholder: 'Ask the speaker…', 'aria-label': 'Your question' });
  const ask = h('button', { type: 'submit', testid: 'question-ask' }, 'Ask');
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
          await busy(ask, 'Asking…', () => room.ask(text));
          if (input.value === text) input.value = '';
        } catch (e) {
          error.textContent = 'Not asked: ' + describe(e);
        }
      },
    },
    input,
    ask,
  );
  return h('section', { class: 'card', 'aria-labelledby': 'qa-title' }, h('h2', { id: 'qa-title' }, 'Questions'), form, error, list);
}
