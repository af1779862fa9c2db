// Problems that belong to no single form (a refused room, a dropped op, a refused token), shown
// plainly at the top of the page until dismissed. Repeats of the same text are not stacked.

import { h } from './dom.ts';

let region: HTMLElement | null = null;

export function mountNotices(el: HTMLElement): void {
  region = el;
}

export function notify(text: string, kind: 'error' | 'info' = 'error'): void {
  if (!region) return console.error(text);
  for (const n of Array.from(region.children)) if (n.getAttribute('data-text') === text) n.remove();
  const item = h(
    'div',
    { class: 'notice ' + kind, role: kind === 'error' ? 'alert' : 'status', testid: 'notice', 'data-text': text },
    h('span', null, text),
    h('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss', onclick: () => item.remove() }, '×'),
  );
  region.appendChild(item);
  while (region.children.length > 4) region.firstElementChild!.remove();
}

export function clearNotices(): void {
  region?.replaceChildren();
}
