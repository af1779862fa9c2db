//! Server-to-client events: one object with `ev`, or an array of them in one frame.
//!
//! Replies to an op (`ROOM_JOINED`, `ROOM_LEFT`, `ACK`, `PONG`, `ERROR`) carry the op's `ref`.
//! Broadcasts carry no `ref`. Times are unix milliseconds.

use crate::error::ErrorCode;
use crate::op::Ref;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every v1 event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "ev")]
pub enum Event {
    /// The first frame on every connection.
    #[serde(rename = "HELLO")]
    Hello(Hello),
    /// Reply to `join_room`.
    #[serde(rename = "ROOM_JOINED")]
    RoomJoined(RoomJoined),
    /// Reply to `leave_room`; also sent unasked (with `reason`) when the server takes the
    /// connection out of a room it may no longer join.
    #[serde(rename = "ROOM_LEFT")]
    RoomLeft(RoomLeft),
    /// Success reply to an op that has no richer reply.
    #[serde(rename = "ACK")]
    Ack(Ack),
    /// Reply to `ping`.
    #[serde(rename = "PONG")]
    Pong(Pong),
    /// A chat message published to a room.
    #[serde(rename = "MESSAGE_RECEIVED")]
    MessageReceived(ChatMessage),
    /// Who joined and left a room since the last tick.
    #[serde(rename = "PRESENCE_UPDATE")]
    PresenceUpdate(PresenceUpdate),
    /// Live poll counts, coalesced per tick.
    #[serde(rename = "POLL_RESULTS")]
    PollResults(PollResults),
    /// A poll opened in a session room.
    #[serde(rename = "POLL_CREATED")]
    PollCreated(PollCreated),
    /// A poll closed, with its final counts.
    #[serde(rename = "POLL_CLOSED")]
    PollClosed(PollClosed),
    /// A question was asked in a session room.
    #[serde(rename = "QUESTION_ASKED")]
    QuestionAsked(QuestionAsked),
    /// A question's votes changed, or it was hidden.
    #[serde(rename = "QUESTION_UPDATED")]
    QuestionUpdated(QuestionUpdated),
    /// A seat is offered to this user (sent to `user:<id>`).
    #[serde(rename = "WAITLIST_OFFER")]
    WaitlistOffer(WaitlistOffer),
    /// The user's waitlist status or position changed.
    #[serde(rename = "WAITLIST_UPDATE")]
    WaitlistUpdate(WaitlistUpdate),
    /// An op failed; the connection stays open.
    #[serde(rename = "ERROR")]
    Error(ErrorEvent),
    /// The server is about to close with 4001; reconnect after `after_ms`.
    #[serde(rename = "RECONNECT")]
    Reconnect(Reconnect),
    /// A session of the event was created, changed or deleted (sent to `event:<id>`).
    #[serde(rename = "SESSION_UPDATED")]
    SessionUpdated(SessionUpdated),
    /// Reply to `refresh`: the new token is in force.
    #[serde(rename = "TOKEN_REFRESHED")]
    TokenRefreshed(TokenRefreshed),
    /// The connection's token expires soon; send `refresh` before it does.
    #[serde(rename = "TOKEN_EXPIRING")]
    TokenExpiring(TokenExpiring),
    /// The user's role in the org changed, or they were removed (sent to `user:<id>`).
    #[serde(rename = "MEMBERSHIP_CHANGED")]
    MembershipChanged(MembershipChanged),
    /// An organizer disconnected this user; a close with 4504 follows (sent to `user:<id>`).
    #[serde(rename = "DISCONNECTED")]
    Disconnected(Disconnected),
}

impl Event {
    /// The wire name, also a metrics label.
    pub const fn name(&self) -> &'static str {
        match self {
            Event::Hello(_) => "HELLO",
            Event::RoomJoined(_) => "ROOM_JOINED",
            Event::RoomLeft(_) => "ROOM_LEFT",
            Event::Ack(_) => "ACK",
            Event::Pong(_) => "PONG",
            Event::MessageReceived(_) => "MESSAGE_RECEIVED",
            Event::PresenceUpdate(_) => "PRESENCE_UPDATE",
            Event::PollResults(_) => "POLL_RESULTS",
            Event::PollCreated(_) => "POLL_CREATED",
            Event::PollClosed(_) => "POLL_CLOSED",
            Event::QuestionAsked(_) => "QUESTION_ASKED",
            Event::QuestionUpdated(_) => "QUESTION_UPDATED",
            Event::WaitlistOffer(_) => "WAITLIST_OFFER",
            Event::WaitlistUpdate(_) => "WAITLIST_UPDATE",
            Event::Error(_) => "ERROR",
            Event::Reconnect(_) => "RECONNECT",
            Event::SessionUpdated(_) => "SESSION_UPDATED",
            Event::TokenRefreshed(_) => "TOKEN_REFRESHED",
            Event::TokenExpiring(_) => "TOKEN_EXPIRING",
            Event::MembershipChanged(_) => "MEMBERSHIP_CHANGED",
            Event::Disconnected(_) => "DISCONNECTED",
        }
    }

    /// Stamps an event relayed from the store's outbox with its row id, so clients can drop a
    /// copy they already have (the relay is at-least-once). Other events are left alone.
    pub fn set_outbox_id(&mut self, id: i64) {
        let slot = match self {
            Event::PollCreated(e) => &mut e.outbox_id,
            Event::PollClosed(e) => &mut e.outbox_id,
            Event::QuestionUpdated(e) => &mut e.outbox_id,
            Event::WaitlistOffer(e) => &mut e.outbox_id,
            Event::WaitlistUpdate(e) => &mut e.outbox_id,
            Event::SessionUpdated(e) => &mut e.outbox_id,
            Event::MembershipChanged(e) => &mut e.outbox_id,
            Event::Disconnected(e) => &mut e.outbox_id,
            _ => return,
        };
        *slot = Some(id);
    }

    /// An `ERROR` reply.
    pub fn error(r#ref: Option<Ref>, code: ErrorCode, message: impl Into<String>) -> Event {
        Event::Error(ErrorEvent {
            r#ref,
            code,
            message: message.into(),
            retry_after_ms: None,
        })
    }

    /// The `ref` this event echoes, if it is a reply.
    pub fn reply_ref(&self) -> Option<Ref> {
        match self {
            Event::RoomJoined(e) => e.r#ref,
            Event::RoomLeft(e) => e.r#ref,
            Event::Ack(e) => e.r#ref,
            Event::Pong(e) => e.r#ref,
            Event::Error(e) => e.r#ref,
            Event::TokenRefreshed(e) => e.r#ref,
            _ => None,
        }
    }
}

/// `HELLO`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// This connection's id.
    pub conn: String,
    /// The engine node serving it.
    pub node: String,
    /// The token's `sub`.
    pub user: String,
    /// Send `ping` (or a WebSocket ping) at least this often; silence for twice this closes 4012.
    pub heartbeat_ms: u64,
    /// The server's clock, unix ms.
    pub server_time: i64,
}

/// `ROOM_JOINED`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomJoined {
    /// The `join_room` op's `ref`.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<Ref>,
    /// The room joined.
    pub room: String,
    /// The room's current epoch.
    pub epoch: String,
    /// The room's latest offset (0 if it has no message yet).
    pub offset: u64,
    /// True when `recover` was given and every missed message is in `history`.
    pub recovered: bool,
    /// Who is in the room now.
    pub presence: PresenceSnapshot,
    /// Requested or recovered messages, oldest first.
    pub history: Vec<ChatMessage>,
}

/// The presence part of `ROOM_JOINED`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PresenceSnapshot {
    /// Distinct users in the room.
    pub count: u64,
    /// Up to 100 of them.
    pub members: Vec<PresenceMember>,
}

/// A present user. Several connections of one user are one member.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PresenceMember {
    /// The user id (`sub`).
    pub user: String,
}

/// `ROOM_LEFT`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomLeft {
    /// The `leave_room` op's `ref`.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<Ref>,
    /// The room left.
    pub room: String,
    /// Set only when the server took the connection out of the room unasked: `revoked` when
    /// the user may no longer join it (their role was lowered or they were removed from the
    /// org). Such a `ROOM_LEFT` has no `ref`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `ACK`. Which optional field is set depends on the op.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// The op's `ref`.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<Ref>,
    /// `send_message`: the message's offset (the original one for a resend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// `ask_question`: the new question's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<String>,
    /// `accept_offer`: the issued ticket's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// `PONG`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pong {
    /// The `ping` op's `ref`.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<Ref>,
}

/// `MESSAGE_RECEIVED`, and each item of `ROOM_JOINED.history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The room it was published to.
    pub room: String,
    /// Its offset in the room's current epoch.
    pub offset: u64,
    /// A server-generated id.
    pub id: String,
    /// The author's user id.
    pub user: String,
    /// The text.
    pub text: String,
    /// When the server accepted it, unix ms.
    pub ts: i64,
}

/// `PRESENCE_UPDATE`. Above the configured room size `joins` and `leaves` are absent and only
/// `count` is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceUpdate {
    /// The room.
    pub room: String,
    /// Distinct users in the room after these changes.
    pub count: u64,
    /// Users who became present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub joins: Option<Vec<PresenceMember>>,
    /// Users whose last connection left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaves: Option<Vec<PresenceMember>>,
}

/// `POLL_RESULTS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollResults {
    /// The session room.
    pub room: String,
    /// The poll id.
    pub poll: String,
    /// Votes per option id.
    pub counts: BTreeMap<String, u64>,
    /// All votes.
    pub total: u64,
}

/// `POLL_CREATED`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollCreated {
    /// The session room.
    pub room: String,
    /// The poll.
    pub poll: Poll,
    /// The outbox row this was relayed from; a client may drop an event whose id it has seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_id: Option<i64>,
}

/// A poll as shown to attendees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Poll {
    /// The poll id.
    pub id: String,
    /// The question.
    pub question: String,
    /// The options, in display order.
    pub options: Vec<PollOption>,
    /// When voting ends, unix ms; null if the organizer closes it by hand.
    pub closes_at: Option<i64>,
}

/// One option of a poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollOption {
    /// The option id, used in `submit_poll_response`.
    pub id: String,
    /// Its text.
    pub text: String,
}

/// `POLL_CLOSED`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PollClosed {
    /// The session room.
    pub room: String,
    /// The poll id.
    pub poll: String,
    /// Final votes per option id, equal to the durable counts.
    pub counts: BTreeMap<String, u64>,
    /// All votes.
    pub total: u64,
    /// The outbox row this was relayed from; a client may drop an event whose id it has seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_id: Option<i64>,
}

/// `QUESTION_ASKED`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionAsked {
    /// The session room.
    pub room: String,
    /// The question.
    pub question: Question,
}

/// A question as shown to attendees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// The question id.
    pub id: String,
    /// Who asked.
    pub user: String,
    /// The text.
    pub text: String,
    /// Upvotes so far.
    pub votes: u64,
}

/// `QUESTION_UPDATED`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionUpdated {
    /// The session room.
    pub room: String,
    /// The question id.
    pub question: String,
    /// Upvotes now.
    pub votes: u64,
    /// Present and true when an organizer hid the question.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden: Option<bool>,
    /// The outbox row this was relayed from; a client may drop an event whose id it has seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_id: Option<i64>,
}

/// `WAITLIST_OFFER`, sent to `user:<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitlistOffer {
    /// The offer id, used in `accept_offer` and `decline_offer`.
    pub offer: String,
    /// The session with a free seat.
    pub session: String,
    /// When the offer lapses, unix ms.
    pub expires_at: i64,
    /// The outbox row this was relayed from; a client may drop an event whose id it has seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_id: Option<i64>,
}

/// `WAITLIST_UPDATE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitlistUpdate {
    /// The session.
    pub session: String,
    /// The user's status on its waitlist.
    pub status: WaitlistStatus,
    /// 1-based place in line while waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// The outbox row this was relayed from; a client may drop an event whose id it has seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_id: Option<i64>,
}

/// A user's status on a session's waitlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitlistStatus {
    /// In line.
    Waiting,
    /// Holding an offer.
    Offered,
    /// Accepted an offer; holds a ticket.
    Accepted,
    /// Declined an offer.
    Declined,
    /// Let an offer lapse.
    Expired,
    /// Left the waitlist or was removed.
    Left,
}

/// `ERROR`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// The failed op's `ref`, when it could be read.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<Ref>,
    /// Why.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
    /// With `rate_limited`: when the op would be accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// `RECONNECT`: sent before a close with 4001.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reconnect {
    /// Wait at least this long (plus jitter) before reconnecting.
    pub after_ms: u64,
    /// Why, e.g. `shutdown`.
    pub reason: String,
}

/// `SESSION_UPDATED`, sent to `event:<event_id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionUpdated {
    /// The event room.
    pub room: String,
    /// The session id.
    pub session: String,
    /// Title.
    pub title: String,
    /// Seats.
    pub capacity: i64,
    /// Seats anyone may take now.
    pub available: i64,
    /// Start, unix ms.
    pub starts_at: i64,
    /// End, unix ms.
    pub ends_at: i64,
    /// True when the session was deleted.
    pub deleted: bool,
    /// The outbox row this was relayed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_id: Option<i64>,
}

/// `TOKEN_REFRESHED`: the reply to `refresh`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRefreshed {
    /// The `refresh` op's `ref`.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<Ref>,
    /// The new token's `exp`, unix ms.
    pub expires_at: i64,
}

/// `TOKEN_EXPIRING`: sent once per token, a configured time before its `exp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenExpiring {
    /// The token's `exp`, unix ms. Without a `refresh`, the connection is closed with 4501 once
    /// this is past by the server's allowed clock skew.
    pub expires_at: i64,
}

/// `MEMBERSHIP_CHANGED`: the user's membership of the org changed (sent to `user:<id>`). Rooms
/// the user may no longer join are left, each with a `ROOM_LEFT {reason: "revoked"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembershipChanged {
    /// The member's user id.
    pub user: String,
    /// Their role now; absent when they were removed from the org.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<crate::auth::Role>,
    /// The outbox row this was relayed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_id: Option<i64>,
}

/// `DISCONNECTED`: an organizer disconnected this user from the org; every connection of theirs
/// to it is closed with 4504 right after (sent to `user:<id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disconnected {
    /// The user id.
    pub user: String,
    /// The organizer's reason, if they gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Until when, unix ms, new connections of this user to the org are refused (403 `banned`);
    /// absent when there is no ban.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banned_until: Option<i64>,
    /// The outbox row this was relayed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox_id: Option<i64>,
}
