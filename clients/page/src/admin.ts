// The admin view at `/admin`, for the org's owners: the nodes, connections, the org's rooms with
// their members, and its busiest rooms, from `GET /admin/stats` (every node's snapshot, summed).
// Live by polling: once per `admin_poll_ms` (the nodes publish at that period, so polling faster
// would show nothing new). Anyone else gets the server's refusal, and no polling.

import { type Api, ApiError, describe } from './api.ts';
import type { Ctx } from './ctx.ts';
import { fill, h } from './dom.ts';
import type { Scope } from './scope.ts';
import type { AdminOverview, AdminRoom } from './types.ts';

/** Longest the view waits between polls, whatever the server says (a bad config). */
const POLL_MAX_MS = 60_000;

/** `engine` calls the engine's own endpoints (with the tab's token), not the REST API's. */
export function adminView(ctx: Ctx, scope: Scope, engine: Api): HTMLElement {
  const status = h('p', { class: 'muted small', testid: 'admin-status', role: 'status' }, 'Loading…');
  const body = h('div', { testid: 'admin-body', 'aria-busy': 'true' });
  const root = h(
    'div',
    { class: 'admin', testid: 'admin' },
    h(
      'div',
      { class: 'session-head' },
      h('a', { class: 'back', href: '/' }, '← All events'),
      h('h2', null, 'Admin', h('span', { class: 'tag live', testid: 'admin-live' }, 'live')),
      status,
    ),
    body,
  );
  const every = Math.min(Math.max(ctx.config.admin_poll_ms ?? 2000, 250), POLL_MAX_MS);
  let timer: ReturnType<typeof setTimeout> | undefined;
  let polls = 0;
  scope.add(() => clearTimeout(timer));

  async function poll() {
    try {
      const view = await engine.get<AdminOverview>(ctx.config.admin_stats ?? '/admin/stats');
      if (scope.disposed) return;
      polls += 1;
      body.removeAttribute('aria-busy');
      body.dataset.polls = String(polls);
      fill(body, render(view));
      status.textContent = `Updated ${new Date().toLocaleTimeString()} · every ${every / 1000} s`;
    } catch (e) {
      if (scope.disposed) return;
      if (e instanceof ApiError && (e.status === 403 || e.status === 401)) {
        body.removeAttribute('aria-busy');
        status.textContent = '';
        fill(body, refused(ctx, e));
        root.querySelector('[data-testid=admin-live]')?.remove();
        return;
      }
      status.textContent = 'Cannot update: ' + describe(e) + ' (retrying)';
    }
    timer = setTimeout(poll, every);
  }
  void poll();
  return root;
}

function refused(ctx: Ctx, e: ApiError): HTMLElement {
  return h(
    'section',
    { class: 'card', testid: 'admin-refused', role: 'alert' },
    h('h2', null, 'Not for you'),
    h('p', null, `The admin view is for the owners of an org. You are signed in as ${ctx.me.user}, ${ctx.me.role} of ${ctx.me.org}.`),
    h('p', { class: 'muted small' }, `The server said: ${e.message} (${e.status})`),
  );
}

function render(v: AdminOverview): HTMLElement[] {
  const t = v.totals;
  const tiles = h(
    'div',
    { class: 'tiles' },
    tile('Nodes', t.nodes, 'admin-total-nodes'),
    tile('Connections', t.org_connections, 'admin-total-connections', `${t.connections} on the nodes, all orgs`),
    tile('Rooms', t.org_rooms, 'admin-total-rooms', v.partial ? 'at least' : undefined),
    tile('Deliveries/s', rate(t.deliveries_per_sec), 'admin-total-rate', 'all orgs'),
  );
  const nodes = table(
    'admin-nodes',
    ['Node', `${v.org} connections`, 'All connections', 'Rooms', 'Deliveries/s', 'Snapshot'],
    v.nodes.map((n) =>
      h(
        'tr',
        { testid: 'admin-node', 'data-node': n.node },
        h('td', null, h('code', null, n.node)),
        num(n.org_connections, 'connections'),
        num(n.connections),
        num(n.rooms),
        num(rate(n.deliveries_per_sec)),
        h('td', { class: 'muted' }, `${Math.max(0, Math.round((Date.now() - n.at_ms) / 1000))} s ago`),
      ),
    ),
    'No node has published a snapshot yet.',
  );
  const rooms = roomTable('admin-rooms', v.rooms, 'No rooms with members.');
  const busy = roomTable('admin-traffic', v.top_traffic, 'No room had traffic in the last window.');
  return [
    tiles,
    h('section', { class: 'card' }, h('h2', null, 'Nodes', h('span', { class: 'count' }, v.nodes.length)), nodes),
    h(
      'div',
      { class: 'admin-grid' },
      h('section', { class: 'card' }, h('h2', null, `Rooms of ${v.org}`, h('span', { class: 'muted small' }, 'largest first')), rooms),
      h('section', { class: 'card' }, h('h2', null, 'Top rooms by traffic', h('span', { class: 'muted small' }, 'deliveries per second')), busy),
    ),
    v.partial ? h('p', { class: 'muted small', testid: 'admin-partial' }, 'Some node has more rooms than its snapshot carries: the lists show the largest and the busiest.') : null,
  ].filter((x): x is HTMLElement => x != null);
}

function roomTable(testid: string, rooms: AdminRoom[], empty: string): HTMLElement {
  return table(
    testid,
    ['Room', 'Members', 'Nodes', 'Deliveries/s'],
    rooms.map((r) =>
      h(
        'tr',
        { testid: 'admin-room', 'data-room': r.room },
        h('td', null, h('code', null, r.room)),
        num(r.members, 'members'),
        num(r.nodes),
        num(rate(r.deliveries_per_sec), 'rate'),
      ),
    ),
    empty,
  );
}

function tile(label: string, value: number | string, testid: string, note?: string): HTMLElement {
  return h('div', { class: 'card tile' }, h('div', { class: 'muted small' }, label), h('div', { class: 'tile-value', testid }, value), note ? h('div', { class: 'muted small' }, note) : null);
}

function table(testid: string, heads: string[], rows: HTMLElement[], empty: string): HTMLElement {
  if (!rows.length) return h('p', { class: 'muted', testid: testid + '-empty' }, empty);
  return h(
    'table',
    { class: 'stats', testid },
    h('thead', null, h('tr', null, heads.map((x, i) => h('th', i ? { class: 'n' } : null, x)))),
    h('tbody', null, rows),
  );
}

function num(n: number | string, field?: string): HTMLElement {
  return h('td', { class: 'n', 'data-field': field }, n);
}

function rate(x: number): string {
  return x >= 100 ? String(Math.round(x)) : x.toFixed(1);
}
