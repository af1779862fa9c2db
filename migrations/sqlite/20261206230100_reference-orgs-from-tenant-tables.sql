-- no-transaction
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
--
-- SQLite cannot add a constraint to a table, so each of these is rebuilt (the documented
-- "make other kinds of table schema changes" procedure: foreign keys off, outside sqlx's
-- transaction, then the work in a transaction of its own).
pragma foreign_keys = off;
begin;

-- Orgs that tenant rows name but that never got a row (the development sign-in used to write
-- events for an org it never created): each gets one, named after its id.
insert into orgs (id, name, created_at)
    select distinct org_id, org_id, 0 from (
        select org_id from events
        union select org_id from outbox
        union select org_id from idempotency_keys
    ) where org_id not in (select id from orgs);

create table events_new (
    seq integer primary key,
    id text not null unique,
    org_id text not null references orgs (id),
    name text not null,
    description text not null default '',
    status text not null check (status in ('draft', 'published', 'cancelled')),
    starts_at bigint not null,
    ends_at bigint not null,
    created_at bigint not null,
    updated_at bigint not null,
    deleted_at bigint,
    unique (org_id, id)
);
insert into events_new (seq, id, org_id, name, description, status, starts_at, ends_at,
                        created_at, updated_at, deleted_at)
    select seq, id, org_id, name, description, status, starts_at, ends_at,
           created_at, updated_at, deleted_at from events;
drop table events;
alter table events_new rename to events;
create index events_by_start on events (org_id, starts_at, id) where deleted_at is null;
create index events_by_status on events (org_id, status, starts_at, id) where deleted_at is null;
-- The full-text index keeps its rows (the same seq); its triggers went with the old table.
create trigger events_fts_insert after insert on events begin
    insert into events_fts (rowid, name, description) values (new.seq, new.name, new.description);
end;
create trigger events_fts_update after update of name, description on events begin
    insert into events_fts (events_fts, rowid, name, description)
        values ('delete', old.seq, old.name, old.description);
    insert into events_fts (rowid, name, description) values (new.seq, new.name, new.description);
end;
create trigger events_fts_delete after delete on events begin
    insert into events_fts (events_fts, rowid, name, description)
        values ('delete', old.seq, old.name, old.description);
end;

create table poll_votes_new (
    org_id text not null,
    poll_id text not null,
    user_id text not null,
    option_id text not null,
    created_at bigint not null,
    primary key (poll_id, user_id),
    foreign key (poll_id, option_id) references poll_options (poll_id, id),
    foreign key (org_id, poll_id) references polls (org_id, id)
);
insert into poll_votes_new select org_id, poll_id, user_id, option_id, created_at from poll_votes;
drop table poll_votes;
alter table poll_votes_new rename to poll_votes;
create index poll_votes_by_option on poll_votes (poll_id, option_id);

-- Outbox ids keep increasing across the rebuild (nodes drop ids they have seen).
create temp table outbox_seq as
    select coalesce(max(seq), 0) as seq from sqlite_sequence where name = 'outbox';
create table outbox_new (
    id integer primary key autoincrement,
    org_id text not null references orgs (id),
    room text not null,
    kind text not null,
    payload text not null,
    created_at bigint not null,
    claimed_until bigint,
    sent_at bigint
);
insert into outbox_new select id, org_id, room, kind, payload, created_at, claimed_until, sent_at
    from outbox;
drop table outbox;
alter table outbox_new rename to outbox;
create index outbox_pending on outbox (id) where sent_at is null;
delete from sqlite_sequence where name = 'outbox';
insert into sqlite_sequence (name, seq)
    select 'outbox', max((select seq from temp.outbox_seq), coalesce((select max(id) from outbox), 0));
drop table temp.outbox_seq;

create table idempotency_keys_new (
    org_id text not null references orgs (id),
    user_id text not null,
    scope text not null,
    key text not null,
    request text not null,
    resource_id text not null,
    created_at bigint not null,
    primary key (org_id, user_id, scope, key)
);
insert into idempotency_keys_new select org_id, user_id, scope, key, request, resource_id, created_at
    from idempotency_keys;
drop table idempotency_keys;
alter table idempotency_keys_new rename to idempotency_keys;
create index idempotency_keys_by_age on idempotency_keys (created_at);

commit;
pragma foreign_keys = on;
