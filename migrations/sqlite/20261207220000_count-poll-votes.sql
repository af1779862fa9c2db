-- Vote counts per poll option, kept by the transaction that stores the votes, so a tally read
-- costs a poll's options rather than its votes. Each writer (one store per process, a random id
-- per start) adds to rows of its own; a count is the sum over writers. See the PostgreSQL
-- migration of the same name.
create table poll_counts (
    org_id text not null,
    poll_id text not null,
    option_id text not null,
    writer text not null,
    votes integer not null,
    primary key (poll_id, option_id, writer),
    foreign key (poll_id, option_id) references poll_options (poll_id, id),
    foreign key (org_id, poll_id) references polls (org_id, id)
);

insert into poll_counts (org_id, poll_id, option_id, writer, votes)
    select org_id, poll_id, option_id, '', count(*) from poll_votes
    group by org_id, poll_id, option_id;
