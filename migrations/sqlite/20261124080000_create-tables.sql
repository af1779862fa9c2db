-- The system of record. Times are unix milliseconds (bigint) on both backends, as on the wire.
-- Every tenant table carries org_id, and the store scopes every query by it; child tables
-- reference their parent by (org_id, id), so a row can never point into another org.

create table orgs (
    id text primary key,
    name text not null,
    created_at bigint not null
);

create table members (
    org_id text not null references orgs (id),
    user_id text not null,
    role text not null check (role in ('owner', 'organizer', 'attendee')),
    created_at bigint not null,
    updated_at bigint not null,
    primary key (org_id, user_id)
);

create table events (
    -- an integer key for the full-text index (rowids of other tables may change on vacuum)
    seq integer primary key,
    id text not null unique,
    org_id text not null,
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
create index events_by_start on events (org_id, starts_at, id) where deleted_at is null;
create index events_by_status on events (org_id, status, starts_at, id) where deleted_at is null;

create virtual table events_fts using fts5 (
    name, description, content = 'events', content_rowid = 'seq'
);
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

create table sessions (
    id text primary key,
    org_id text not null,
    event_id text not null,
    title text not null,
    capacity bigint not null check (capacity >= 0),
    -- seats taken by active tickets and seats held by open waitlist offers
    issued bigint not null default 0 check (issued >= 0),
    held bigint not null default 0 check (held >= 0),
    -- hands out waitlist join order (first come, first served)
    waitlist_seq bigint not null default 0,
    starts_at bigint not null,
    ends_at bigint not null,
    created_at bigint not null,
    updated_at bigint not null,
    deleted_at bigint,
    unique (org_id, id),
    foreign key (org_id, event_id) references events (org_id, id),
    -- the last line of defence against overselling
    check (issued + held <= capacity)
);
create index sessions_agenda on sessions (org_id, event_id, starts_at, id) where deleted_at is null;

create table tickets (
    id text primary key,
    org_id text not null,
    session_id text not null,
    event_id text not null,
    user_id text not null,
    tier text not null check (tier in ('vip', 'standard')),
    status text not null check (status in ('active', 'cancelled')),
    offer_id text,
    created_at bigint not null,
    cancelled_at bigint,
    unique (org_id, id),
    foreign key (org_id, session_id) references sessions (org_id, id),
    foreign key (org_id, event_id) references events (org_id, id)
);
create unique index tickets_one_active on tickets (session_id, user_id) where status = 'active';
create index tickets_by_user on tickets (org_id, user_id, id);
create index tickets_by_event on tickets (org_id, user_id, event_id) where status = 'active';

create table waitlist_entries (
    id text primary key,
    org_id text not null,
    session_id text not null,
    user_id text not null,
    tier text not null check (tier in ('vip', 'standard')),
    -- 0 for vip, 1 for standard: the line is ordered by (priority, seq)
    priority bigint not null,
    seq bigint not null,
    status text not null
        check (status in ('waiting', 'offered', 'accepted', 'declined', 'expired', 'left')),
    created_at bigint not null,
    updated_at bigint not null,
    unique (org_id, id),
    foreign key (org_id, session_id) references sessions (org_id, id)
);
create unique index waitlist_one_open on waitlist_entries (session_id, user_id)
    where status in ('waiting', 'offered');
create index waitlist_line on waitlist_entries (org_id, session_id, priority, seq)
    where status = 'waiting';
create index waitlist_by_user on waitlist_entries (org_id, session_id, user_id, seq);

create table waitlist_offers (
    id text primary key,
    org_id text not null,
    session_id text not null,
    entry_id text not null,
    user_id text not null,
    status text not null check (status in ('open', 'accepted', 'declined', 'expired')),
    expires_at bigint not null,
    created_at bigint not null,
    answered_at bigint,
    ticket_id text,
    unique (org_id, id),
    foreign key (org_id, session_id) references sessions (org_id, id),
    foreign key (org_id, entry_id) references waitlist_entries (org_id, id)
);
create index waitlist_offers_due on waitlist_offers (expires_at) where status = 'open';
create index waitlist_offers_by_user on waitlist_offers (org_id, user_id, status, created_at);
create index waitlist_offers_by_entry on waitlist_offers (org_id, entry_id) where status = 'open';

create table polls (
    id text primary key,
    org_id text not null,
    session_id text not null,
    question text not null,
    status text not null check (status in ('open', 'closed')),
    closes_at bigint,
    created_by text not null,
    created_at bigint not null,
    closed_at bigint,
    unique (org_id, id),
    foreign key (org_id, session_id) references sessions (org_id, id)
);
create index polls_by_session on polls (org_id, session_id, created_at, id);
create index polls_due on polls (closes_at) where status = 'open' and closes_at is not null;

create table poll_options (
    id text primary key,
    org_id text not null,
    poll_id text not null,
    position bigint not null,
    text text not null,
    unique (poll_id, position),
    unique (poll_id, id),
    foreign key (org_id, poll_id) references polls (org_id, id)
);

create table poll_votes (
    org_id text not null,
    poll_id text not null,
    user_id text not null,
    option_id text not null,
    created_at bigint not null,
    primary key (poll_id, user_id),
    foreign key (poll_id, option_id) references poll_options (poll_id, id)
);
create index poll_votes_by_option on poll_votes (poll_id, option_id);

create table questions (
    id text primary key,
    org_id text not null,
    session_id text not null,
    user_id text not null,
    text text not null,
    votes bigint not null default 0,
    hidden boolean not null default false,
    created_at bigint not null,
    unique (org_id, id),
    foreign key (org_id, session_id) references sessions (org_id, id)
);
create index questions_by_session on questions (org_id, session_id, votes desc, created_at, id);

create table question_upvotes (
    org_id text not null,
    question_id text not null,
    user_id text not null,
    created_at bigint not null,
    primary key (question_id, user_id),
    foreign key (org_id, question_id) references questions (org_id, id)
);

create table chat_messages (
    seq integer primary key autoincrement,
    org_id text not null,
    room text not null,
    id text not null,
    user_id text not null,
    text text not null,
    room_offset bigint not null,
    ts bigint not null,
    unique (org_id, room, id)
);
create index chat_messages_by_room on chat_messages (org_id, room, seq);

create table outbox (
    id integer primary key autoincrement,
    org_id text not null,
    room text not null,
    kind text not null,
    payload text not null,
    created_at bigint not null,
    claimed_until bigint,
    sent_at bigint
);
create index outbox_pending on outbox (id) where sent_at is null;

create table idempotency_keys (
    org_id text not null,
    user_id text not null,
    scope text not null,
    key text not null,
    request text not null,
    resource_id text not null,
    created_at bigint not null,
    primary key (org_id, user_id, scope, key)
);
create index idempotency_keys_by_age on idempotency_keys (created_at);
