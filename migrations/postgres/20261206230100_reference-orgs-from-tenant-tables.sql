-- Every tenant row refers to an existing org. `members` (and now `bans`) already did; this adds
-- the rest. A table whose rows already refer to a parent by (org_id, id) needs nothing more:
-- sessions → events, tickets / waitlist_entries / waitlist_offers / polls / questions →
-- sessions, poll_options → polls, question_upvotes → questions. So a direct reference is added
-- where the chain starts or was missing:
--   events            org_id → orgs
--   poll_votes        (org_id, poll_id) → polls: a vote's org is its poll's org
--   outbox            org_id → orgs
--   idempotency_keys  org_id → orgs
-- chat_messages keeps none: it is the chat archive, written by the engine's group commit on
-- the hot path of every `send_message` (a batch of messages per insert). It is append-only,
-- read by room, and a message names the org of the token that sent it; a per-row parent
-- lookup there buys nothing the token check has not already settled.

-- Orgs that tenant rows name but that never got a row (the development sign-in used to write
-- events for an org it never created) each get one, named after its id. Row-level security is
-- lifted for the owner while this looks across orgs (a superuser is not bound by it anyway).
alter table orgs no force row level security;
alter table events no force row level security;
alter table outbox no force row level security;
alter table idempotency_keys no force row level security;

insert into orgs (id, name, created_at)
    select distinct org_id, org_id, 0 from (
        select org_id from events
        union select org_id from outbox
        union select org_id from idempotency_keys
    ) t where not exists (select 1 from orgs o where o.id = t.org_id);

alter table events add constraint events_org_fkey foreign key (org_id) references orgs (id);
alter table poll_votes add constraint poll_votes_poll_fkey
    foreign key (org_id, poll_id) references polls (org_id, id);
alter table outbox add constraint outbox_org_fkey foreign key (org_id) references orgs (id);
alter table idempotency_keys add constraint idempotency_keys_org_fkey
    foreign key (org_id) references orgs (id);

alter table orgs force row level security;
alter table events force row level security;
alter table outbox force row level security;
alter table idempotency_keys force row level security;
