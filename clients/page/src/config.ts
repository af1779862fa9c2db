// What the server tells the page about itself: GET /config.json.

export interface PageConfig {
  /** Development mode: `POST /dev/token` mints demo tokens. */
  dev_mode: boolean;
  /** The REST API's base path, e.g. `/api/v1`. */
  api: string;
  /** The WebSocket path, e.g. `/ws`. */
  ws: string;
  /** Rooms above this size send presence counts only. */
  presence_full_room_limit?: number;
  /** The admin view's data, e.g. `/admin/stats`. */
  admin_stats?: string;
  /** How often the admin view polls it (the nodes' snapshot period), ms. */
  admin_poll_ms?: number;
}

const FALLBACK: PageConfig = { dev_mode: false, api: '/api/v1', ws: '/ws' };

export async function loadConfig(): Promise<PageConfig> {
  try {
    const res = await fetch('/config.json', { cache: 'no-store' });
    if (!res.ok) return FALLBACK;
    return { ...FALLBACK, ...(await res.json()) };
  } catch {
    return FALLBACK;
  }
}

/** The absolute ws:// or wss:// URL of the engine for this page's origin. */
export function wsUrl(config: PageConfig): string {
  const url = new URL(config.ws, location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.toString();
}
