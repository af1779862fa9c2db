-- Vote counts per poll option, kept by the transaction that stores the votes, so a tally read
-- costs a poll's options rather than its votes (a tally was counted row by row from
-- `poll_votes` on every read, 1 µs or so per vote: 100 ms per read of a keynote poll of
-- 100,000). Each writer (one store per process, a random id per start) adds to rows of its own,
-- so nodes storing votes for the same poll never wait on each other's row locks; a count is
-- the sum over writers.
create table poll_counts (
    org_id text not null,
    poll_id text not null,
    option_id text not null,
    writer text not null,
    votes bigint not null,
    primary key (poll_id, option_id, writer),
    foreign key (poll_id, option_id) references poll_options (poll_id, id),
    foreign key (org_id, poll_id) references polls (org_id, id)
);

-- The votes already stored, counted once under the writer ''. Row-level security is lifted for
-- the owner while this reads across orgs (a superuser is not bound by it anyway).
alter table poll_votes no force row level security;
insert into poll_counts (org_id, poll_id, option_id, writer, votes)
    select org_id, poll_id, option_id, '', count(*) from poll_votes
    group by org_id, poll_id, option_id;
alter table poll_votes force row level security;

grant select, insert, update, delete on poll_counts to evd_app;
alter table poll_counts enable row level security;
alter table poll_counts force row level security;
create policy tenant on poll_counts
    using (org_id = current_setting('app.current_org_id', true))
    with check (org_id = current_setting('app.current_org_id', true));
