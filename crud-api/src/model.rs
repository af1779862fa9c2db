//! The resources, as the store returns them and the API shows them.
//!
//! Times are unix milliseconds inside ([`Millis`]) and RFC 3339 strings on the REST wire.
//!
//! Long (about 500 lines) because it is the flat list of every resource's shapes, each a few
//! lines; split per resource they would be read together anyway.

use crate::clock::Millis;
use evd_protocol::auth::{Role, Tier};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A text column decoded into one of the enums below.
#[derive(Debug, sqlx::Type)]
#[sqlx(transparent)]
pub(crate) struct Text(pub(crate) String);

/// A stored value that names no known variant.
#[derive(Debug, thiserror::Error)]
#[error("unknown {0} `{1}` in the database")]
pub(crate) struct UnknownVariant(&'static str, String);

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// The stored and wire name.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl TryFrom<Text> for $name {
            type Error = UnknownVariant;
            fn try_from(t: Text) -> Result<Self, UnknownVariant> {
                match t.0.as_str() {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownVariant(stringify!($name), t.0)),
                }
            }
        }
    };
}

text_enum!(
    /// Who sees an event: attendees see published ones only.
    EventStatus {
        /// Being prepared; staff only.
        Draft = "draft",
        /// Visible to attendees.
        Published = "published",
        /// Called off; staff only.
        Cancelled = "cancelled",
    }
);

text_enum!(
    /// Whether a ticket still holds its seat.
    TicketStatus {
        /// Holds a seat.
        Active = "active",
        /// Gave its seat back.
        Cancelled = "cancelled",
    }
);

text_enum!(
    /// Where a user stands on a session's waitlist.
    EntryStatus {
        /// In line.
        Waiting = "waiting",
        /// Holding an offer.
        Offered = "offered",
        /// Took the offer; holds a ticket.
        Accepted = "accepted",
        /// Turned the offer down.
        Declined = "declined",
        /// Let the offer lapse.
        Expired = "expired",
        /// Left the line.
        Left = "left",
    }
);

text_enum!(
    /// The state of a waitlist offer.
    OfferStatus {
        /// Holds a seat until `expires_at`.
        Open = "open",
        /// Turned into a ticket.
        Accepted = "accepted",
        /// Turned down.
        Declined = "declined",
        /// Lapsed.
        Expired = "expired",
    }
);

text_enum!(
    /// Whether a poll takes votes.
    PollStatus {
        /// Takes votes.
        Open = "open",
        /// Final.
        Closed = "closed",
    }
);

impl TryFrom<Text> for Role {
    type Error = UnknownVariant;
    fn try_from(t: Text) -> Result<Role, UnknownVariant> {
        Role::parse(&t.0).ok_or(UnknownVariant("role", t.0))
    }
}

impl TryFrom<Text> for Tier {
    type Error = UnknownVariant;
    fn try_from(t: Text) -> Result<Tier, UnknownVariant> {
        Tier::parse(&t.0).ok_or(UnknownVariant("tier", t.0))
    }
}

/// The OpenAPI shape of [`Role`].
#[derive(ToSchema)]
#[schema(as = Role)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum RoleSchema {
    Attendee,
    Organizer,
    Owner,
}

/// The OpenAPI shape of [`Tier`].
#[derive(ToSchema)]
#[schema(as = Tier)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub(crate) enum TierSchema {
    Vip,
    Standard,
}

/// RFC 3339 on the wire, unix milliseconds inside.
pub(crate) mod rfc3339 {
    use crate::clock::Millis;
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(crate) fn format(ms: Millis) -> String {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub(crate) fn parse(s: &str) -> Result<Millis, String> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|e| format!("not an RFC 3339 date-time ({e})"))
    }

    pub(crate) fn serialize<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*ms))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        parse(&String::deserialize(d)?).map_err(D::Error::custom)
    }

    pub(crate) mod option {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            ms: &Option<Millis>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match ms {
                Some(ms) => s.serialize_str(&format(*ms)),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Millis>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| parse(&s).map_err(D::Error::custom))
                .transpose()
        }
    }
}

/// An organization: the tenant everything else belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Org {
    /// The id tokens carry in their `org` claim.
    pub id: String,
    /// Display name.
    pub name: String,
    /// When it was created.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
}

/// A user's role in an org.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Member {
    /// The org.
    pub org_id: String,
    /// The user id (a token's `sub`).
    pub user_id: String,
    /// Their role.
    #[sqlx(try_from = "Text")]
    #[schema(value_type = RoleSchema)]
    pub role: Role,
    /// When they were added.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    /// When their role last changed.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
}

/// A live event: a conference, a webinar, a concert.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Event {
    /// The event id; its room is `event:<id>`.
    pub id: String,
    /// The org.
    pub org_id: String,
    /// Name, searchable.
    pub name: String,
    /// Description, searchable.
    pub description: String,
    /// Who sees it.
    #[sqlx(try_from = "Text")]
    pub status: EventStatus,
    /// Start.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Millis,
    /// End.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: Millis,
    /// Created.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    /// Last changed.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
}

/// One agenda session of an event, with its seats.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Session {
    /// The session id; its room is `session:<id>`.
    pub id: String,
    /// The org.
    pub org_id: String,
    /// The event it belongs to.
    pub event_id: String,
    /// Title.
    pub title: String,
    /// Seats.
    pub capacity: i64,
    /// Seats taken by active tickets.
    pub issued: i64,
    /// Seats held by open waitlist offers.
    pub held: i64,
    /// Seats anyone may take now.
    pub available: i64,
    /// Start.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Millis,
    /// End.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: Millis,
    /// Created.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    /// Last changed.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Millis,
}

/// A seat in a session.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Ticket {
    /// The ticket id.
    pub id: String,
    /// The org.
    pub org_id: String,
    /// The session.
    pub session_id: String,
    /// The session's event.
    pub event_id: String,
    /// The holder.
    pub user_id: String,
    /// VIP or standard.
    #[sqlx(try_from = "Text")]
    #[schema(value_type = TierSchema)]
    pub tier: Tier,
    /// Active or cancelled.
    #[sqlx(try_from = "Text")]
    pub status: TicketStatus,
    /// The waitlist offer it was issued for, if any.
    pub offer_id: Option<String>,
    /// Issued.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    /// Cancelled.
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub cancelled_at: Option<Millis>,
}

/// A user's place on a session's waitlist.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct WaitlistEntry {
    /// The entry id.
    pub id: String,
    /// The session.
    pub session_id: String,
    /// The user.
    pub user_id: String,
    /// VIP entries are served before standard ones.
    #[sqlx(try_from = "Text")]
    #[schema(value_type = TierSchema)]
    pub tier: Tier,
    /// Where they stand.
    #[sqlx(try_from = "Text")]
    pub status: EntryStatus,
    /// 1-based place in line while waiting.
    pub position: Option<i64>,
    /// Joined.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
}

/// A seat offered to the next person on a waitlist, held for them until it expires.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Offer {
    /// The offer id.
    pub id: String,
    /// The session.
    pub session_id: String,
    /// Who may take it.
    pub user_id: String,
    /// Its state.
    #[sqlx(try_from = "Text")]
    pub status: OfferStatus,
    /// When it lapses.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Millis,
    /// Made.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    /// Accepted, declined or expired.
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub answered_at: Option<Millis>,
    /// The ticket an accept issued.
    pub ticket_id: Option<String>,
}

/// A live poll in a session.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Poll {
    /// The poll id.
    pub id: String,
    /// The session; its room receives the poll's events.
    pub session_id: String,
    /// The question.
    pub question: String,
    /// Open or closed.
    #[sqlx(try_from = "Text")]
    pub status: PollStatus,
    /// When voting ends by itself, if ever.
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closes_at: Option<Millis>,
    /// The organizer who made it.
    pub created_by: String,
    /// Made.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    /// Closed.
    #[serde(with = "rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub closed_at: Option<Millis>,
    /// The options, in display order.
    #[sqlx(skip)]
    pub options: Vec<PollOption>,
}

/// One option of a poll.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct PollOption {
    /// The option id, voted for over WebSocket.
    pub id: String,
    /// Its text.
    pub text: String,
}

/// A poll's counts.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PollResults {
    /// The poll id.
    pub poll_id: String,
    /// Open or closed.
    pub status: PollStatus,
    /// Votes per option, in display order.
    pub options: Vec<OptionCount>,
    /// All votes.
    pub total: i64,
}

/// Votes for one option.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct OptionCount {
    /// The option id.
    pub id: String,
    /// Its text.
    pub text: String,
    /// Votes.
    pub votes: i64,
}

/// A question asked in a session.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Question {
    /// The question id.
    pub id: String,
    /// The session.
    pub session_id: String,
    /// Who asked.
    pub user_id: String,
    /// The text.
    pub text: String,
    /// Upvotes.
    pub votes: i64,
    /// Hidden by an organizer; attendees no longer see it.
    pub hidden: bool,
    /// Asked.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
}

/// A chat message from a room's archive.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct ChatMessage {
    /// The server-generated id.
    pub id: String,
    /// The room.
    pub room: String,
    /// The author.
    pub user_id: String,
    /// The text.
    pub text: String,
    /// Its offset in the room when it was published.
    #[sqlx(rename = "room_offset")]
    pub offset: i64,
    /// When the engine accepted it, unix ms.
    pub ts: Millis,
    /// Archive order; pages are cut on it.
    #[serde(skip)]
    pub seq: i64,
}

/// One page of a list, and the cursor of the next.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}
