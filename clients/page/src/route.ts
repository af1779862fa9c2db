// The URL hash names what is on screen, so a link can be shared: `#session=<id>` opens a
// session, an empty hash the list of events.

export interface Route {
  session?: string;
}

export function currentRoute(): Route {
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
