//! One suite, two backends: every test runs on SQLite, and on PostgreSQL when
//! `EVD_TEST_DATABASE_URL` is set (each test in a database of its own).

mod common;
mod cors;
mod live;
mod rls;
mod routes;
mod server;
mod tickets;
mod waitlist;
