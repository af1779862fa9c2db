// The page evd serves at `/`: sign in, pick an event's session, and take part live (chat,
// presence, polls, Q&A, waitlist offers) through the @evd/client SDK; organizers also manage the
// session over the REST API. Plain DOM, no framework; everything it needs is in this bundle.

import { Client, type EvdError } from '../../js/src/index.ts';
import { adminView } from './admin.ts';
import { Api, describe } from './api.ts';
import { type PageConfig, loadConfig, wsUrl } from './config.ts';
import { showConnection } from './conn.ts';
import type { Ctx, Granted } from './ctx.ts';
import { fill, h } from './dom.ts';
import { homeView } from './home.ts';
import { type Identity, clearIdentity, expired, isStaff, loadIdentity, mintDevToken, saveIdentity } from './identity.ts';
import { mountNotices, notify } from './notices.ts';
import { mountOffers } from './offers.ts';
import { ADMIN_PATH, currentRoute, onRouteChange } from './route.ts';
import { Scope } from './scope.ts';
import { sessionView } from './session.ts';
import { signInView } from './signin.ts';

const $ = (id: string) => document.getElementById(id)!;

async function boot(): Promise<void> {
  mountNotices($('notices'));
  const config = await loadConfig();
  document.body.dataset.devMode = String(config.dev_mode);
  const saved = loadIdentity();
  if (saved && (!expired(saved.token) || saved.dev)) return start(config, saved);
  if (saved) clearIdentity();
  showSignIn(config, saved ? 'Your token has expired: sign in again.' : undefined);
}

function showSignIn(config: PageConfig, reason?: string): void {
  document.body.dataset.view = 'signin';
  fill(
    $('app'),
    signInView(
      config,
      (id) => {
        saveIdentity(id);
        void start(config, id);
      },
      reason,
    ),
  );
}

async function start(config: PageConfig, first: Identity): Promise<void> {
  let me = first;
  const renew = async (): Promise<string | null> => {
    if (!me.dev) return null;
    me = await mintDevToken(me.user, me.role, me.org);
    saveIdentity(me);
    return me.token;
  };
  if (me.dev && expired(me.token)) await renew();

  const api = new Api(config.api, () => me.token, () => renew().catch(() => null));
  // The engine's own endpoints (the admin view's stats) sit beside the REST API, not under it.
  const engine = new Api('', () => me.token, () => renew().catch(() => null));
  const client = new Client({
    url: wsUrl(config),
    token: me.token,
    // Development tokens are minted again when one expires; a pasted token is final.
    getToken: me.dev ? async () => (await renew())! : undefined,
  });
  const grantees = new Set<(g: Granted) => void>();
  const ctx: Ctx = {
    config,
    api,
    client,
    me,
    staff: isStaff(me.role),
    granted: (g) => grantees.forEach((fn) => fn(g)),
    onGranted: (fn) => (grantees.add(fn), () => grantees.delete(fn)),
  };

  // The header: who, the connection, sign out.
  const who = $('whoami');
  fill(who, h('strong', null, me.user), ' · ', me.role, ' · ', h('span', { class: 'muted' }, 'org ', me.org));
  who.hidden = false;
  if (me.role === 'owner') {
    const link = $('admin-link') as HTMLAnchorElement;
    link.href = ADMIN_PATH;
    link.hidden = false;
  }
  const signOut = $('signout') as HTMLButtonElement;
  signOut.hidden = false;
  signOut.onclick = () => {
    client.close();
    clearIdentity();
    location.reload();
  };
  const conn = $('conn');
  conn.hidden = false;
  showConnection(conn, client, new Scope());

  client.on('error', (e: EvdError) => {
    if (e.code === 'unauthorized' && !me.dev) notify('The server refused your token (expired or revoked). Sign out and sign in with a new one.');
    else if (e.code === 'forbidden') notify('You may not join that room: ' + e.message);
    else notify(describe(e));
  });
  mountOffers(ctx, $('offers'));
  client.connect();

  let scope = new Scope();
  const route = () => {
    scope.dispose();
    scope = new Scope();
    const r = currentRoute();
    document.body.dataset.view = r.admin ? 'admin' : r.session ? 'session' : 'home';
    fill($('app'), r.admin ? adminView(ctx, scope, engine) : r.session ? sessionView(ctx, scope, r.session) : homeView(ctx, scope));
    window.scrollTo(0, 0);
  };
  onRouteChange(route);
  route();
}

boot().catch((e) => notify('The page failed to start: ' + describe(e)));
