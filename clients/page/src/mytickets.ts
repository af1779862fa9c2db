// The signed-in user's own tickets (GET /tickets).

import { all } from './api.ts';
import type { Ctx } from './ctx.ts';
import type { TicketRec } from './types.ts';

/** The user's active ticket for a session, if any. */
export async function findTicket(ctx: Ctx, session: string): Promise<string | null> {
  const tickets = await all<TicketRec>(ctx.api, '/tickets');
  return tickets.find((t) => t.session_id === session && t.status === 'active')?.id ?? null;
}
