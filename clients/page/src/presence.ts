// Who is in the room: the count and the list, kept by the SDK's Presence and redrawn on each sync.

import type { Room } from '../../js/src/index.ts';
import { h, fill, plural } from './dom.ts';
import type { Scope } from './scope.ts';

export function presencePanel(room: Room, me: string, scope: Scope): HTMLElement {
  const count = h('span', { class: 'count', testid: 'presence-count' }, '0');
  const list = h('ul', { class: 'people plain', testid: 'presence-list', 'aria-label': 'People here' });
  const note = h('p', { class: 'muted small' });
  const render = () => {
    const members = room.presence.list();
    const n = room.presence.count;
    count.textContent = String(n);
    count.setAttribute('aria-label', plural(n, 'person', 'people') + ' here');
    fill(
      list,
      members.map((m) =>
        h(
          'li',
          { testid: 'presence-member', 'data-user': m.user },
          h('span', { class: 'avatar', 'aria-hidden': 'true' }, m.user.slice(0, 1).toUpperCase()),
          m.user,
          m.user === me ? h('span', { class: 'muted' }, ' (you)') : null,
        ),
      ),
    );
    note.textContent = room.presence.exact ? '' : `A big room: showing ${members.length} of ${n}.`;
  };
  scope.add(room.presence.onSync(render));
  render();
  return h(
    'section',
    { class: 'card presence', 'aria-labelledby': 'presence-title', testid: 'presence' },
    h('h2', { id: 'presence-title' }, 'Here now ', count),
    list,
    note,
  );
}
