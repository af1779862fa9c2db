//! The evd realtime engine.
//!
//! A WebSocket server for live events: attendees join rooms, see presence, chat with ordered
//! delivery and recovery after a reconnect. The pieces, each in its own module:
//!
//! - [`server`]: HTTP routes and the accept loop; [`run`] is the whole server.
//! - [`conn`]: one connection: [`conn::session`] (reader, ops, heartbeat, limits),
//!   [`conn::writer`] (batched writes), [`conn::queue`] (outbound queue bounded in bytes).
//! - [`ops`]: one file per client op.
//! - [`node`]: the node's parts and the room orchestration ops share.
//! - [`hub`]: local room membership and encode-once fanout.
//! - [`broker`] and [`presence`]: traits with in-memory implementations for a single node and
//!   Redis (Cluster) implementations for many.
//! - [`auth`]: tokens at the upgrade, and the room [`auth::Authorizer`].
//! - [`settings`], [`metrics`], [`shutdown`].
//!
//! The wire contract is the `evd-protocol` crate.

#![forbid(unsafe_code)]

pub mod access;
pub mod auth;
pub mod broker;
pub mod clock;
pub mod conn;
pub mod group_commit;
pub mod hub;
pub mod live;
pub mod metrics;
pub mod node;
pub mod ops;
pub mod presence;
pub mod relay;
pub mod room_key;
pub mod server;
pub mod settings;
pub mod shutdown;

pub use node::Node;
pub use server::{app, run, run_engine, serve, serve_with, with_broker};
pub use settings::Settings;
pub use shutdown::Shutdown;
