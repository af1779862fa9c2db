// The REST API (`/api/v1`) with the tab's bearer token. Failures become ApiError with the
// problem document's `code` and `detail` (RFC 9457) and any field errors, ready to show.

export interface FieldProblem {
  field: string;
  message: string;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fields: FieldProblem[] = [],
    readonly retryAfterSecs?: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export class Api {
  constructor(
    private base: string,
    /** The current token. */
    private token: () => string,
    /** Called once after a 401: a new token, or null when there is none to be had. */
    private renew: () => Promise<string | null>,
  ) {}

  get<T>(path: string): Promise<T> {
    return this.call<T>('GET', path);
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.call<T>('POST', path, body ?? {});
  }

  patch<T>(path: string, body: unknown): Promise<T> {
    return this.call<T>('PATCH', path, body);
  }

  del(path: string): Promise<void> {
    return this.call<void>('DELETE', path);
  }

  private async call<T>(method: string, path: string, body?: unknown, retried = false): Promise<T> {
    let res: Response;
    try {
      res = await fetch(this.base + path, {
        method,
        headers: {
          authorization: 'Bearer ' + this.token(),
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
      });
    } catch (e) {
      throw new ApiError(0, 'network', 'The server cannot be reached: ' + (e instanceof Error ? e.message : String(e)));
    }
    if (res.status === 401 && !retried && (await this.renew()) != null) return this.call<T>(method, path, body, true);
    if (res.ok) {
      if (res.status === 204) return undefined as T;
      return (await res.json()) as T;
    }
    let problem: any = {};
    try {
      problem = await res.json();
    } catch {
      // an empty or non-JSON body (405 from the router, a proxy's page)
    }
    const fields: FieldProblem[] = Array.isArray(problem.errors) ? problem.errors : [];
    let message: string = problem.detail || problem.message || `${method} ${path} failed with ${res.status}`;
    if (fields.length) message = fields.map((f) => `${f.field}: ${f.message}`).join('; ');
    const after = Number(res.headers.get('retry-after'));
    throw new ApiError(res.status, problem.code || String(res.status), message, fields, after > 0 ? after : undefined);
  }
}

/** Every item of a paged list (`{items, next_cursor}`), up to `max`. */
export async function all<T>(api: Api, path: string, max = 1000): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null | undefined;
  do {
    const sep = path.includes('?') ? '&' : '?';
    const page = await api.get<{ items: T[]; next_cursor?: string | null }>(
      path + sep + 'limit=200' + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''),
    );
    out.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && out.length < max);
  return out;
}

/** A readable sentence for any failure (REST, socket op, or other). */
export function describe(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  const err = e as { code?: string; message?: string; retryAfterMs?: number };
  if (err && err.code === 'rate_limited') {
    const s = err.retryAfterMs ? Math.ceil(err.retryAfterMs / 1000) : 1;
    return `Too fast: try again in ${s} s.`;
  }
  if (err && err.code === 'disconnected') return 'The connection dropped before the server answered; it may not have been applied. Try again.';
  if (err && err.code === 'timeout') return 'The server did not answer in time. Try again.';
  if (err && err.message) return err.message;
  return String(e);
}
