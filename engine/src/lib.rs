//! The evd realtime engine.
//!
//! A WebSocket server for live events: attendees join rooms, see presence, chat with ordered
//! delivery and recovery after a reconnect. The pieces, each in its own module:
//!
//! - [`server`]: HTTP routes and the accept loop; [`run`] is the whole server. Beside it:
//!   [`page`] (the browser page and `/config.json`), [`dev_token`] (development sign-in),
//!   [`socketio_http`] (`/socket.io/`: Engine.IO's WebSocket and polling transports),
//!   [`upgrade`] (what every WebSocket route shares), [`origin`] (the upgrade's `Origin`
//!   check) and [`admin`] (`GET /admin/stats`, the admin view's data, for org owners).
//! - [`session`]: one connection's ops: [`session::reader`] (read loop, heartbeat, limits, close),
//!   [`session::ops`] (one file per op), [`session::error`].
//! - [`node`]: the node's parts, admission, and the room orchestration ops share.
//! - [`hub`]: local room membership, encode-once fanout, tick coalescing.
//! - [`live`], [`relay`], [`access`]: the store-backed features, the outbox relay, ticket checks.
//! - [`broker`] and [`presence`]: traits with in-memory implementations for a single node and
//!   Redis (Cluster) implementations for many.
//! - [`conn`]: the transport of one connection: [`conn::queue`] (outbound, bounded in bytes)
//!   and [`conn::writer`] (batched writes).
//! - [`auth`]: tokens at the upgrade, and the room [`auth::Authorizer`].
//! - [`stats`]: node snapshots for the admin view, and the board nodes publish them on
//!   (in memory, or in Redis beside the broker).
//! - [`clock`], [`settings`], [`metrics`], [`shutdown`]: the bottom layer.
//!
//! Layers import only downward: `server` → `session` → `node` → `hub` / `presence` / `live` /
//! `relay` → `conn` / `broker` / `stats` → `clock`, `settings`, `metrics`.
//!
//! The wire contract is the `evd-protocol` crate.

#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod auth;
pub mod broker;
pub mod clock;
pub mod conn;
pub mod dev_token;
pub mod group_commit;
pub mod handshake;
pub mod hub;
pub mod live;
pub mod metrics;
pub mod node;
pub mod origin;
pub mod page;
pub mod presence;
pub mod relay;
pub mod room_key;
pub mod server;
pub mod session;
pub mod settings;
pub mod shutdown;
pub mod socketio_http;
pub mod stats;
pub mod tallies;
pub mod upgrade;

pub use node::Node;
pub use server::{app, run, run_engine, serve, serve_with, with_broker};
pub use settings::Settings;
pub use shutdown::Shutdown;
