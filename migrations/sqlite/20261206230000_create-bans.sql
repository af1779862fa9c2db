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
