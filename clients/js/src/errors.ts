// EvdError: what every failed op rejects with and every `error` event carries. `code` is the
// server's ERROR code (`forbidden`, `rate_limited`, …) or one of the SDK's own (below).

/** Codes the SDK itself uses, besides the server's ERROR codes. */
export const CLIENT_ERROR_CODES = {
  /** close() was called, or the client stopped for good; the op was not (or not surely) applied. */
  closed: 'closed',
  /** No reply within `opTimeoutMs` of writing the op. */
  timeout: 'timeout',
  /** The connection dropped before the reply, and the op is not safe to resend. */
  disconnected: 'disconnected',
  /** Too many ops queued while disconnected. */
  queueFull: 'queue_full',
  /** The token was refused or has expired. */
  unauthorized: 'unauthorized',
  /** getToken() threw. */
  tokenError: 'token_error',
  /** The server closed with a code from 4500 up other than 4501 (do not reconnect). */
  refused: 'refused',
} as const;

export class EvdError extends Error {
  /** The server's ERROR code or one of CLIENT_ERROR_CODES. */
  code: string;
  /** With `rate_limited`: when a retry would be accepted. */
  retryAfterMs?: number;
  /** The WebSocket close code, when the error comes from a close. */
  closeCode?: number;

  constructor(code: string, message?: string, retryAfterMs?: number) {
    super(message || code);
    this.name = 'EvdError';
    this.code = code;
    if (retryAfterMs != null) this.retryAfterMs = retryAfterMs;
  }
}
