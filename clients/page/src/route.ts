// The URL hash names what is on screen, so a link can be shared: `#session=<id>` opens a
// session, an empty hash the list of events. The admin view has a path of its own, `/admin`.

/** Where the admin view is (served by evd as the same page). */
export const ADMIN_PATH = '/admin';

export interface Route {
  session?: string;
  admin?: boolean;
}

export function currentRoute(): Route {
  if (location.pathname === ADMIN_PATH) return { admin: true };
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  const session = params.get('session');
  return session ? { session } : {};
}

export function sessionHref(id: string): string {
  return '#session=' + encodeURIComponent(id);
}

export function onRouteChange(fn: () => void): () => void {
  window.addEventListener('hashchange', fn);
  return () => window.removeEventListener('hashchange', fn);
}
