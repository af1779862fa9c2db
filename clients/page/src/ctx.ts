// What every view is given: the config, the REST API, the one SDK client, and who is signed in.

import type { Client } from '../../js/src/index.ts';
import type { Api } from './api.ts';
import type { PageConfig } from './config.ts';
import type { Identity } from './identity.ts';

/** A ticket the user just got (an accepted offer, a registration). */
export interface Granted {
  session: string;
  ticket: string;
}

export interface Ctx {
  config: PageConfig;
  api: Api;
  client: Client;
  me: Identity;
  /** Organizer or owner. */
  staff: boolean;
  /** Tells the views about a ticket obtained anywhere on the page. */
  granted(g: Granted): void;
  onGranted(fn: (g: Granted) => void): () => void;
}
