// Live polls: the session's polls (REST) kept current by POLL_CREATED, POLL_RESULTS and
// POLL_CLOSED, with a bar per option that moves as tallies arrive. Everyone votes over the
// socket; organizers also open and close polls (REST).

import type { Poll, PollTally, Room } from '../../js/src/index.ts';
import { describe } from './api.ts';
import type { Ctx } from './ctx.ts';
import { busy, errorLine, field, fill, h, plural } from './dom.ts';
import type { Scope } from './scope.ts';
import type { PollRec, PollResultsRec } from './types.ts';

interface PollState {
  id: string;
  question: string;
  options: Array<{ id: string; text: string }>;
  counts: Record<string, number>;
  total: number;
  open: boolean;
  el: HTMLElement;
  body: HTMLElement;
  error: HTMLElement;
}

/** Polls shown with their results when the view opens (the newest). */
const RECENT_POLLS = 5;

export function pollsPanel(ctx: Ctx, room: Room, sessionId: string, scope: Scope): HTMLElement {
  const polls = new Map<string, PollState>();
  const list = h('div', { class: 'polls', testid: 'polls' });
  const empty = h('p', { class: 'muted', testid: 'polls-empty' }, ctx.staff ? 'No polls yet: open one below.' : 'No poll yet. When the organizer opens one it shows up here.');
  const votedKey = 'evd.voted.' + ctx.me.user;
  const voted: Record<string, string> = JSON.parse(sessionStorage.getItem(votedKey) || '{}');

  const upsert = (p: { id: string; question: string; options: Array<{ id: string; text: string }> }, open: boolean) => {
    let st = polls.get(p.id);
    if (!st) {
      const body = h('div');
      const error = errorLine('poll-error');
      const el = h('article', { class: 'poll', testid: 'poll', 'data-poll-id': p.id }, body, error);
      st = { id: p.id, question: p.question, options: p.options, counts: {}, total: 0, open, el, body, error };
      polls.set(p.id, st);
      list.prepend(st.el);
      empty.remove();
    }
    return st;
  };

  const tally = (st: PollState, counts: Record<string, number>, total: number, closed: boolean) => {
    // Tallies are absolute and only grow: an older answer (a slow REST read) never wins.
    if (total >= st.total) {
      st.counts = counts;
      st.total = total;
    }
    if (closed) st.open = false;
    render(st);
  };

  const render = (st: PollState) => {
    const mine = voted[st.id];
    st.el.dataset.state = st.open ? 'open' : 'closed';
    fill(
      st.body,
      h('h3', { class: 'question' }, st.question, st.open ? h('span', { class: 'tag live' }, 'live') : h('span', { class: 'tag' }, 'closed')),
      h(
        'ul',
        { class: 'options plain' },
        st.options.map((o) => {
          const n = st.counts[o.id] ?? 0;
          const pct = st.total ? Math.round((100 * n) / st.total) : 0;
          return h(
            'li',
            { class: 'option' + (mine === o.id ? ' chosen' : ''), testid: 'poll-option', 'data-option': o.text },
            h('div', { class: 'option-head' }, h('span', { class: 'option-text' }, o.text), h('span', { class: 'option-count', testid: 'poll-count' }, `${plural(n, 'vote')} · ${pct}%`)),
            h('div', { class: 'bar', 'aria-hidden': 'true' }, h('span', { class: 'fill', style: `width:${pct}%` })),
            st.open && !mine
              ? h(
                  'button',
                  {
                    type: 'button',
                    class: 'vote',
                    testid: 'poll-vote',
                    'aria-label': `Vote for ${o.text}`,
                    onclick: (ev: Event) => vote(st, o.id, ev.currentTarget as HTMLButtonElement),
                  },
                  'Vote',
                )
              : null,
          );
        }),
      ),
      h(
        'p',
        { class: 'muted small' },
        h('span', { testid: 'poll-total' }, plural(st.total, 'vote')),
        mine ? ' · you voted for ' + (st.options.find((o) => o.id === mine)?.text ?? 'an option') : '',
        st.open ? '' : ' · final results',
      ),
      ctx.staff && st.open
        ? h('div', { class: 'actions' }, h('button', { type: 'button', testid: 'poll-close', onclick: (ev: Event) => close(st, ev.currentTarget as HTMLButtonElement) }, 'Close poll'))
        : null,
    );
  };

  const vote = async (st: PollState, option: string, button: HTMLButtonElement) => {
    st.error.textContent = '';
    try {
      await busy(button, 'Voting…', () => ctx.client.vote(st.id, option));
      remember(st.id, option);
    } catch (e: any) {
      const already = e?.code === 'conflict' && /already/i.test(e.message);
      if (already) remember(st.id, voted[st.id] ?? '?');
      else if (e?.code === 'conflict') st.open = false;
      st.error.textContent = already ? 'You have already voted in this poll.' : e?.code === 'conflict' ? 'This poll is closed.' : 'Vote not counted: ' + describe(e);
    }
    render(st);
  };

  const remember = (poll: string, option: string) => {
    voted[poll] = option;
    sessionStorage.setItem(votedKey, JSON.stringify(voted));
  };

  const close = async (st: PollState, button: HTMLButtonElement) => {
    st.error.textContent = '';
    try {
      const res = await busy(button, 'Closing…', () => ctx.api.post<PollResultsRec>(`/polls/${encodeURIComponent(st.id)}/close`));
      tally(st, countsOf(res), res.total, true);
    } catch (e) {
      st.error.textContent = describe(e);
    }
  };

  scope.add(room.on('poll', (p: Poll) => render(upsert(p, true))));
  scope.add(room.on('poll_results', (t: PollTally) => { const st = polls.get(t.poll); if (st) tally(st, t.counts, t.total, false); }));
  scope.add(room.on('poll_closed', (t: PollTally) => { const st = polls.get(t.poll); if (st) tally(st, t.counts, t.total, true); }));

  (async () => {
    try {
      const recs = await ctx.api.get<PollRec[]>(`/sessions/${encodeURIComponent(sessionId)}/polls`);
      const recent = recs.slice(-RECENT_POLLS);
      const results = await Promise.all(
        recent.map((p) => ctx.api.get<PollResultsRec>(`/polls/${encodeURIComponent(p.id)}/results`).catch(() => null)),
      );
      if (scope.disposed) return;
      recent.forEach((p, i) => {
        const st = upsert(p, p.status === 'open');
        const r = results[i];
        if (r) tally(st, countsOf(r), r.total, r.status === 'closed');
        else render(st);
      });
    } catch (e) {
      list.append(h('p', { class: 'form-error', role: 'alert' }, 'Cannot load the polls: ' + describe(e)));
    }
  })();

  return h(
    'section',
    { class: 'card', 'aria-labelledby': 'polls-title' },
    h('h2', { id: 'polls-title' }, 'Poll'),
    empty,
    list,
    ctx.staff ? newPollForm(ctx, sessionId) : null,
  );
}

function countsOf(r: PollResultsRec): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of r.options) counts[o.id] = o.votes;
  return counts;
}

function newPollForm(ctx: Ctx, sessionId: string): HTMLElement {
  const question = h('input', { name: 'question', testid: 'poll-question', required: true, maxlength: 500, placeholder: 'Which talk next?' });
  const options = h('textarea', { name: 'options', testid: 'poll-options', required: true, rows: 3, placeholder: 'One option per line' });
  const submit = h('button', { type: 'submit', class: 'primary', testid: 'poll-create' }, 'Open poll');
  const error = errorLine('poll-create-error');
  return h(
    'form',
    {
      class: 'new-poll',
      'aria-label': 'New poll',
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        const opts = options.value.split('\n').map((s) => s.trim()).filter(Boolean);
        if (opts.length < 2) {
          error.textContent = 'Give at least two options, one per line.';
          return;
        }
        error.textContent = '';
        try {
          // The poll itself shows up through POLL_CREATED, as it does for everyone in the room.
          await busy(submit, 'Opening…', () => ctx.api.post(`/sessions/${encodeURIComponent(sessionId)}/polls`, { question: question.value.trim(), options: opts }));
          question.value = '';
          options.value = '';
        } catch (e) {
          error.textContent = describe(e);
        }
      },
    },
    h('h3', null, 'New poll'),
    field('Question', question),
    field('Options (one per line)', options),
    error,
    h('div', { class: 'actions' }, submit),
  );
}
