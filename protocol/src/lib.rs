//! The evd realtime wire protocol, version 1: the contract between the engine and every client.
//!
//! This crate is pure data: types, codecs and validation. It does no I/O and needs no runtime,
//! so browsers' test doubles, the load harness and the engine all share one definition.
//!
//! # The contract in brief
//! - **Transport.** One WebSocket at `GET /ws`, authenticated by a JWT ([`auth::Claims`]) from
//!   `Authorization: Bearer` or `?token=`. A bad token is refused with HTTP 401 before the upgrade.
//! - **Subprotocols** ([`Codec`]): `evd.v1.json` (text frames, the default) and
//!   `evd.v1.msgpack` (binary frames, MessagePack maps with named fields, never positional
//!   arrays). A frame of the wrong type answers `ERROR bad_request`.
//! - **Client frames** are one object with `op` and an optional integer `ref`
//!   ([`op::Request`]). The reply to an op echoes its `ref`.
//! - **Server frames** are one object with `ev` ([`event::Event`]) or an array of them: the
//!   server batches events queued together, and clients must accept both forms
//!   ([`Codec::decode_events`] does).
//! - **Rooms** ([`room::RoomName`]): `event:<id>`, `session:<id>`, `user:<id>`. Inside the engine a
//!   room is keyed by the token's org and its name, so equal names in two orgs are two rooms.
//! - **Ordering.** Each room has an `epoch` (changes when history is lost) and an `offset` per chat
//!   message, strictly increasing from 1. `join_room` with `recover:{epoch, offset}` replays
//!   exactly the missed messages or answers `recovered:false`.
//! - **Token lifetime.** `TOKEN_EXPIRING` comes before the token's `exp`; `refresh` hands a live
//!   connection a new token of the same user and org ([`op::Refresh`]); a token left to expire
//!   closes the connection with 4501.
//! - **Errors** ([`error::ErrorCode`]) never close the connection by themselves; repeated abuse
//!   does. **Close codes** ([`close::CloseCode`]) below 4500 mean "reconnect with backoff",
//!   from 4500 up "do not reconnect until something changes".
//!
//! Changing or removing anything here is a breaking change and needs a new subprotocol version
//! (`evd.v2.*`). Adding ops, events and optional fields is not. The full text is
//! `docs/protocol.md` in the repository.
//!
//! Between engine nodes, [`bus::Envelope`] carries room traffic over the broker.

#![forbid(unsafe_code)]

pub mod auth;
pub mod bus;
pub mod close;
pub mod codec;
pub mod error;
pub mod event;
pub mod limits;
pub mod op;
pub mod room;
pub mod socketio;

pub use close::CloseCode;
pub use codec::{Codec, DecodeError, EncodeError};
pub use error::ErrorCode;
pub use event::Event;
pub use limits::{
    DEFAULT_HEARTBEAT_MS, MAX_HISTORY_REQUEST, MAX_MSGPACK_DEPTH, MAX_PRESENCE_SNAPSHOT,
    MAX_SESSIONS_PER_EVENT,
};
pub use op::{Op, Ref, Request};
pub use room::{RoomKind, RoomName};
