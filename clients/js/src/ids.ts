// Idempotency keys for send_message: crypto.randomUUID when the platform has it, otherwise a
// time + counter + Math.random key (React Native without a crypto polyfill). At most 36 chars,
// well under the server's `limits.max_client_id_bytes` (64 by default).

let counter = 0;

export function newClientId(): string {
  const c = (globalThis as any).crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  counter = (counter + 1) % 1_679_616; // 36^4
  return (
    'c' +
    Date.now().toString(36) +
    counter.toString(36).padStart(4, '0') +
    Math.random().toString(36).slice(2, 12) +
    Math.random().toString(36).slice(2, 12)
  );
}
