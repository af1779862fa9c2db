-- An organizer's disconnect may ban the user from the org until `until` (unix ms): the engine
-- refuses their new connections to it meanwhile. One row per user and org; a later ban
-- replaces the earlier one.
create table bans (
    org_id text not null references orgs (id),
    user_id text not null,
    until bigint not null,
    reason text,
    created_by text not null,
    created_at bigint not null,
    primary key (org_id, user_id)
);

grant select, insert, update, delete on bans to evd_app;
alter table bans enable row level security;
alter table bans force row level security;
create policy tenant on bans
    using (org_id = current_setting('app.current_org_id', true))
    with check (org_id = current_setting('app.current_org_id', true));
