-- Tenant isolation. The application runs as `evd_app`: not the owner of any table, not a
-- superuser, no BYPASSRLS. The migrating user (the owner) connects and the pool switches to
-- `evd_app` with `set role` on every connection. Every transaction names its org with
-- `select set_config('app.current_org_id', $1, true)`; with no org set, nothing is visible.

do $$
begin
    create role evd_app nologin nosuperuser nobypassrls;
exception when duplicate_object or unique_violation then
    null;
end
$$;

-- A non-superuser owner must be a member of evd_app to `set role` to it.
do $$
begin
    if not (select rolsuper from pg_roles where rolname = current_user) then
        execute format('grant evd_app to %I', current_user);
    end if;
end
$$;

grant usage on schema public to evd_app;
grant select, insert, update, delete on all tables in schema public to evd_app;
grant usage, select on all sequences in schema public to evd_app;
revoke all on _sqlx_migrations from evd_app;
alter default privileges in schema public grant select, insert, update, delete on tables to evd_app;
alter default privileges in schema public grant usage, select on sequences to evd_app;

alter table orgs enable row level security;
alter table orgs force row level security;
create policy tenant on orgs
    using (id = current_setting('app.current_org_id', true))
    with check (id = current_setting('app.current_org_id', true));

do $$
declare
    t text;
begin
    foreach t in array array[
        'members', 'events', 'sessions', 'tickets', 'waitlist_entries', 'waitlist_offers',
        'polls', 'poll_options', 'poll_votes', 'questions', 'question_upvotes',
        'chat_messages', 'outbox', 'idempotency_keys'
    ] loop
        execute format('alter table %I enable row level security', t);
        execute format('alter table %I force row level security', t);
        execute format(
            'create policy tenant on %I'
            ' using (org_id = current_setting(''app.current_org_id'', true))'
            ' with check (org_id = current_setting(''app.current_org_id'', true))', t);
    end loop;
end
$$;

-- Two background tasks work across orgs, each behind a flag that only its store method sets,
-- local to its transaction. The outbox relay reads and marks rows of every org.
create policy relay_read on outbox for select
    using (current_setting('app.outbox_relay', true) = 'on');
create policy relay_mark on outbox for update
    using (current_setting('app.outbox_relay', true) = 'on')
    with check (current_setting('app.outbox_relay', true) = 'on');

-- The sweeper finds lapsed offers and due polls (then handles each as its own org), and
-- drops old idempotency keys.
create policy sweep_read on waitlist_offers for select
    using (current_setting('app.sweep', true) = 'on');
create policy sweep_read on polls for select
    using (current_setting('app.sweep', true) = 'on');
create policy sweep_read on idempotency_keys for select
    using (current_setting('app.sweep', true) = 'on');
create policy sweep_delete on idempotency_keys for delete
    using (current_setting('app.sweep', true) = 'on');
