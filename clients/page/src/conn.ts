// The connection indicator: connecting, connected, reconnecting in N s (counting down), or
// stopped. `data-state` carries the SDK's state for tests and styling.

import type { Client } from '../../js/src/index.ts';
import { Scope } from './scope.ts';

export function showConnection(el: HTMLElement, client: Client, scope: Scope): void {
  let retryAt: number | null = null;
  let tick: ReturnType<typeof setInterval> | undefined;

  const render = () => {
    const state = client.state;
    el.dataset.state = state;
    let text: string;
    if (state === 'connected') text = 'Connected';
    else if (state === 'connecting') text = retryAt != null ? 'Reconnecting…' : 'Connecting…';
    else if (state === 'disconnected')
      text = retryAt != null ? `Reconnecting in ${Math.max(0, Math.ceil((retryAt - Date.now()) / 1000))} s` : 'Disconnected';
    else if (state === 'closed') text = 'Not connected';
    else text = 'Not connected';
    el.textContent = text;
    el.title = text;
  };

  scope.add(
    client.on('disconnected', (d) => {
      retryAt = d.reconnectInMs != null ? Date.now() + d.reconnectInMs : null;
      render();
    }),
  );
  scope.add(
    client.on('state', (s) => {
      if (s === 'connected' || s === 'closed') retryAt = null;
      render();
    }),
  );
  tick = setInterval(() => client.state === 'disconnected' && retryAt != null && render(), 500);
  scope.add(() => clearInterval(tick));
  render();
}
