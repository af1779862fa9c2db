//! Client-to-server frames: one object with `op` and an optional integer `ref`.
//!
//! ```json
//! {"op":"join_room","ref":1,"room":"session:S3","history":20}
//! {"op":"send_message","ref":2,"room":"session:S3","text":"hi","client_id":"c-17"}
//! ```
//!
//! Decoding ([`crate::Codec::decode_request`]) checks the shape and the protocol's own ranges
//! (room names, `history` ≤ 100, non-empty text). Limits that are configuration, such as the
//! longest chat text, are the engine's to check.

use crate::limits::MAX_HISTORY_REQUEST;
use crate::room::RoomName;
use serde::{Deserialize, Serialize};

/// The correlation id a client puts on an op; the reply echoes it.
pub type Ref = i64;

/// One client frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Echoed in the reply (`ROOM_JOINED`, `ACK`, `ERROR`, ...).
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<Ref>,
    /// What the client asks for.
    #[serde(flatten)]
    pub op: Op,
}

impl Request {
    /// A request without `ref`.
    pub fn new(op: Op) -> Request {
        Request { r#ref: None, op }
    }

    /// A request with `ref`.
    pub fn with_ref(r#ref: Ref, op: Op) -> Request {
        Request {
            r#ref: Some(r#ref),
            op,
        }
    }
}

/// Every v1 op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Join a room; reply `ROOM_JOINED`.
    JoinRoom(JoinRoom),
    /// Leave a room; reply `ROOM_LEFT`.
    LeaveRoom(LeaveRoom),
    /// Publish a chat message; reply `ACK {offset}`.
    SendMessage(SendMessage),
    /// Vote in a poll; reply `ACK` after the vote is durable.
    SubmitPollResponse(SubmitPollResponse),
    /// Ask a question in a session room; reply `ACK {question}`.
    AskQuestion(AskQuestion),
    /// Upvote a question, once per user; reply `ACK`.
    UpvoteQuestion(UpvoteQuestion),
    /// Accept a waitlist offer; reply `ACK {ticket}`.
    AcceptOffer(OfferAnswer),
    /// Decline a waitlist offer; reply `ACK`.
    DeclineOffer(OfferAnswer),
    /// Heartbeat; reply `PONG`.
    Ping(Ping),
    /// A new token for this connection (same user and org); reply `TOKEN_REFRESHED`.
    Refresh(Refresh),
}

impl Op {
    /// The wire name, also a metrics label.
    pub const fn name(&self) -> &'static str {
        match self {
            Op::JoinRoom(_) => "join_room",
            Op::LeaveRoom(_) => "leave_room",
            Op::SendMessage(_) => "send_message",
            Op::SubmitPollResponse(_) => "submit_poll_response",
            Op::AskQuestion(_) => "ask_question",
            Op::UpvoteQuestion(_) => "upvote_question",
            Op::AcceptOffer(_) => "accept_offer",
            Op::DeclineOffer(_) => "decline_offer",
            Op::Ping(_) => "ping",
            Op::Refresh(_) => "refresh",
        }
    }

    /// Every op name, for docs and metrics.
    pub const NAMES: [&'static str; 10] = [
        "join_room",
        "leave_room",
        "send_message",
        "submit_poll_response",
        "ask_question",
        "upvote_question",
        "accept_offer",
        "decline_offer",
        "ping",
        "refresh",
    ];

    /// Checks the ranges the protocol itself sets; the decoder calls this.
    pub fn validate(&self) -> Result<(), String> {
        fn non_empty(field: &str, v: &str) -> Result<(), String> {
            if v.is_empty() {
                Err(format!("`{field}` must not be empty"))
            } else {
                Ok(())
            }
        }
        match self {
            Op::JoinRoom(j) => {
                if j.history > MAX_HISTORY_REQUEST {
                    return Err(format!("`history` must be 0 to {}", MAX_HISTORY_REQUEST));
                }
                if let Some(r) = &j.recover {
                    non_empty("recover.epoch", &r.epoch)?;
                }
                Ok(())
            }
            Op::LeaveRoom(_) | Op::Ping(_) => Ok(()),
            Op::SendMessage(m) => {
                non_empty("text", &m.text)?;
                match &m.client_id {
                    Some(id) => non_empty("client_id", id),
                    None => Ok(()),
                }
            }
            Op::SubmitPollResponse(v) => {
                non_empty("poll", &v.poll)?;
                non_empty("option", &v.option)
            }
            Op::AskQuestion(q) => non_empty("text", &q.text),
            Op::UpvoteQuestion(u) => non_empty("question", &u.question),
            Op::AcceptOffer(o) | Op::DeclineOffer(o) => non_empty("offer", &o.offer),
            Op::Refresh(r) => non_empty("token", &r.token),
        }
    }
}

/// `join_room`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JoinRoom {
    /// The room to join.
    pub room: RoomName,
    /// How many of the latest messages to return in `history` (0 to 100).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub history: u32,
    /// The last position the client received, to replay what it missed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recover: Option<StreamPosition>,
}

/// A position in a room's message stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StreamPosition {
    /// Changes whenever the room's history is lost.
    pub epoch: String,
    /// The offset of a message; 0 means "nothing yet".
    pub offset: u64,
}

/// `leave_room`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaveRoom {
    /// The room to leave.
    pub room: RoomName,
}

/// `send_message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendMessage {
    /// The room to publish to; membership is not needed, the right to join is.
    pub room: RoomName,
    /// The message text.
    pub text: String,
    /// Idempotency key, unique per room and user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// `submit_poll_response`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitPollResponse {
    /// The poll id.
    pub poll: String,
    /// The chosen option id.
    pub option: String,
}

/// `ask_question`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AskQuestion {
    /// The session room the question belongs to.
    pub room: RoomName,
    /// The question text.
    pub text: String,
}

/// `upvote_question`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpvoteQuestion {
    /// The question id.
    pub question: String,
}

/// `accept_offer` and `decline_offer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferAnswer {
    /// The offer id from `WAITLIST_OFFER`.
    pub offer: String,
}

/// `refresh`: a new token for a live connection. It must name the same `sub` and `org` as the
/// connection's token; its claims then apply to every later op, and its `exp` sets when the
/// connection is warned (`TOKEN_EXPIRING`) and closed (4501).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Refresh {
    /// The new JWT.
    pub token: String,
}

impl std::fmt::Debug for Refresh {
    // A token is a credential: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Refresh { token: <redacted> }")
    }
}

/// `ping`: no fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ping {}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
