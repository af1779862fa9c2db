// The REST resources the page reads (crud-api/src/model.rs, as JSON). Times are RFC 3339 strings.

export type Role = 'attendee' | 'organizer' | 'owner';

export interface Page<T> {
  items: T[];
  next_cursor?: string | null;
}

export interface EventRec {
  id: string;
  name: string;
  description: string;
  status: 'draft' | 'published' | 'cancelled';
  starts_at: string;
  ends_at: string;
}

export interface SessionRec {
  id: string;
  event_id: string;
  title: string;
  capacity: number;
  issued: number;
  held: number;
  available: number;
  starts_at: string;
  ends_at: string;
}

export interface TicketRec {
  id: string;
  session_id: string;
  event_id: string;
  user_id: string;
  tier: string;
  status: 'active' | 'cancelled';
  offer_id?: string | null;
  created_at: string;
}

export interface WaitlistEntryRec {
  id: string;
  session_id: string;
  user_id: string;
  status: string;
  position?: number | null;
}

export interface OfferRec {
  id: string;
  session_id: string;
  status: string;
  expires_at: string;
  ticket_id?: string | null;
}

export interface PollRec {
  id: string;
  session_id: string;
  question: string;
  status: 'open' | 'closed';
  closes_at?: string | null;
  options: Array<{ id: string; text: string }>;
}

export interface PollResultsRec {
  poll_id: string;
  status: 'open' | 'closed';
  options: Array<{ id: string; text: string; votes: number }>;
  total: number;
}

export interface QuestionRec {
  id: string;
  session_id: string;
  user_id: string;
  text: string;
  votes: number;
  hidden: boolean;
}

export interface ArchivedMessage {
  id: string;
  room: string;
  user_id: string;
  text: string;
  offset: number;
  ts: number;
}

/** `GET /admin/stats` (engine/src/stats/overview.rs). */
export interface AdminOverview {
  org: string;
  snapshot_every_ms: number;
  nodes: AdminNode[];
  totals: {
    nodes: number;
    connections: number;
    deliveries_per_sec: number;
    org_connections: number;
    org_rooms: number;
  };
  rooms: AdminRoom[];
  top_traffic: AdminRoom[];
  partial: boolean;
}

export interface AdminNode {
  node: string;
  at_ms: number;
  connections: number;
  rooms: number;
  deliveries_per_sec: number;
  org_connections: number;
  org_rooms: number;
}

export interface AdminRoom {
  room: string;
  members: number;
  nodes: number;
  deliveries_per_sec: number;
}
