//! Acting on an org's access changes on every node: a member removed or demoted
//! (`MEMBERSHIP_CHANGED`) and an organizer's disconnect (`DISCONNECTED`).
//!
//! Both are outbox rows for the user's `user:` room, so the relay publishes them through the
//! broker and every node with a connection of that user receives them, like any event for the
//! room. [`ControlTap`] sits between the broker and the hub: it hands every envelope to the hub
//! (so the user's connections get the event itself), and queues these two for [`run`], a node
//! task, since a broker handler must not block.
//!
//! - `MEMBERSHIP_CHANGED`: the node forgets the user's cached membership, then re-checks every
//!   room of each of their staff connections here against the authorizer (which caps the token's
//!   role by the fresh membership). Each room they may no longer join is left, with
//!   `ROOM_LEFT {room, reason: "revoked"}`.
//! - `DISCONNECTED`: the node records the ban (if any) in [`Bans`](super::bans::Bans) and closes
//!   each of the user's connections here with 4504, after the event already queued.

use super::Node;
use crate::auth::AuthzError;
use crate::broker::BrokerHandler;
use crate::hub::Hub;
use crate::room_key::RoomKey;
use evd_protocol::bus::{Body, Envelope};
use evd_protocol::event::{Event, RoomLeft};
use evd_protocol::{CloseCode, RoomKind, RoomName};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Access changes waiting for the node task. A change is one per REST call, so this many waiting
/// means the task is stuck; further ones are dropped (logged) rather than block the broker.
pub const CONTROL_QUEUE: usize = 4096;

/// Why the `reason` of an unasked `ROOM_LEFT` is what it is.
pub const REVOKED: &str = "revoked";

/// An access change for one user of one org.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Their membership changed: re-check their rooms.
    Membership {
        /// The org.
        org: String,
        /// The user.
        user: String,
    },
    /// An organizer disconnected them.
    Disconnect {
        /// The org.
        org: String,
        /// The user.
        user: String,
        /// The end of their ban, unix ms.
        banned_until: Option<i64>,
    },
}

/// The broker's handler: the hub, plus access changes queued for [`run`].
#[derive(Debug)]
pub struct ControlTap {
    hub: Arc<Hub>,
    queue: mpsc::Sender<Control>,
}

impl ControlTap {
    /// Hands everything to `hub`, and access changes to the returned receiver.
    pub fn new(hub: Arc<Hub>) -> (ControlTap, mpsc::Receiver<Control>) {
        let (queue, rx) = mpsc::channel(CONTROL_QUEUE);
        (ControlTap { hub, queue }, rx)
    }
}

/// The access change an envelope for `room` carries, if any. Only a user's own room carries
/// them, for that user.
pub fn control_of(room: &RoomKey, envelope: &Envelope) -> Option<Control> {
    let Body::Event { event, .. } = &envelope.body else {
        return None;
    };
    let name = room.room();
    if name.kind() != RoomKind::User {
        return None;
    }
    let (org, user) = (room.org().to_owned(), name.id().to_owned());
    match event {
        Event::MembershipChanged(e) if e.user == user => Some(Control::Membership { org, user }),
        Event::Disconnected(e) if e.user == user => Some(Control::Disconnect {
            org,
            user,
            banned_until: e.banned_until,
        }),
        _ => None,
    }
}

impl BrokerHandler for ControlTap {
    fn handle(&self, room: &RoomKey, envelope: &Envelope) {
        self.hub.handle(room, envelope);
        if let Some(control) = control_of(room, envelope)
            && let Err(e) = self.queue.try_send(control)
        {
            tracing::error!(error = %e, "access change dropped: its queue is full");
        }
    }

    fn lost(&self, room: &RoomKey) {
        self.hub.lost(room);
    }
}

/// Runs access changes until the node stops.
pub async fn run(node: Arc<Node>, mut changes: mpsc::Receiver<Control>) {
    let stopped = node.shutdown.stopped();
    tokio::pin!(stopped);
    loop {
        let change = tokio::select! {
            _ = &mut stopped => return,
            c = changes.recv() => match c {
                Some(c) => c,
                None => return,
            },
        };
        match change {
            Control::Membership { org, user } => revoke(&node, &org, &user).await,
            Control::Disconnect {
                org,
                user,
                banned_until,
            } => disconnect(&node, &org, &user, banned_until).await,
        }
    }
}

/// Takes `user`'s staff connections here out of the rooms they may no longer join.
pub async fn revoke(node: &Node, org: &str, user: &str) {
    if let Some(membership) = &node.membership {
        membership.forget(org, user).await;
    }
    let Ok(own) = RoomName::user(user) else {
        return;
    };
    for conn in node.hub.local_conns(&RoomKey::new(org, own)) {
        let Some(claims) = node.staff.claims(conn.id) else {
            continue;
        };
        for room in conn.rooms() {
            if room.room().kind() == RoomKind::User {
                continue;
            }
            match node.authorizer.can_join(&claims, room.room()).await {
                Err(AuthzError::Forbidden(_)) => {
                    if node.exit(&conn, &room).await {
                        node.send(
                            &conn,
                            &Event::RoomLeft(RoomLeft {
                                r#ref: None,
                                room: room.room().to_string(),
                                reason: Some(REVOKED.to_owned()),
                            }),
                        );
                    }
                }
                Err(AuthzError::Unavailable(e)) => {
                    tracing::warn!(error = %e, ?room, "membership re-check failed; room kept");
                }
                Ok(()) => {}
            }
        }
    }
}

/// Records `user`'s ban and closes their connections here with 4504.
pub async fn disconnect(node: &Node, org: &str, user: &str, banned_until: Option<i64>) {
    if let (Some(bans), Some(until)) = (&node.bans, banned_until) {
        bans.note(org, user, until).await;
    }
    let Ok(own) = RoomName::user(user) else {
        return;
    };
    for conn in node.hub.local_conns(&RoomKey::new(org, own)) {
        tracing::info!(conn = conn.id, %user, %org, "disconnected by an organizer (4504)");
        node.close_with(&conn, CloseCode::Disconnected, true);
    }
}
