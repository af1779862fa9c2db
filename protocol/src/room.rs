//! Room names and the identifiers inside them.
//!
//! A room name is `<kind>:<id>` with kind `event`, `session` or `user`. The id is 1 to
//! [`MAX_ID_LEN`] printable ASCII characters other than `{` and `}`: the engine builds broker keys
//! from org and room with a Redis hash tag (`{…}`), so braces would split a room over slots.
//! The same rule applies to the org and user ids of a token.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Longest id accepted in a room name, an org or a user id.
pub const MAX_ID_LEN: usize = 128;

/// What a room is for, and so who may join it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomKind {
    /// `event:<event_id>`: the whole-event channel.
    Event,
    /// `session:<session_id>`: one agenda session (chat, polls, Q&A).
    Session,
    /// `user:<user_id>`: a user's private channel, joined on connect.
    User,
}

impl RoomKind {
    /// The prefix before the colon.
    pub const fn prefix(self) -> &'static str {
        match self {
            RoomKind::Event => "event",
            RoomKind::Session => "session",
            RoomKind::User => "user",
        }
    }
}

/// A validated room name such as `session:S3`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RoomName {
    name: Box<str>,
    kind: RoomKind,
}

/// Why a room name or id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    /// No `kind:` prefix, or an unknown kind.
    #[error("room must be `event:<id>`, `session:<id>` or `user:<id>`")]
    BadKind,
    /// The id is empty, too long or has a forbidden character.
    #[error("invalid id: {0}")]
    BadId(IdError),
}

/// Why an id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Zero characters.
    #[error("it is empty")]
    Empty,
    /// More than [`MAX_ID_LEN`] bytes.
    #[error("it is longer than {MAX_ID_LEN} characters")]
    TooLong,
    /// Whitespace, a control character, non-ASCII, `{` or `}`.
    #[error("only printable ASCII other than `{{` and `}}` is allowed")]
    BadChar,
}

/// Checks an id (a room's id, an org, a user) against the rule in the module docs.
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
    {
        return Err(IdError::BadChar);
    }
    Ok(())
}

impl RoomName {
    /// Parses and validates `kind:id`.
    pub fn parse(s: &str) -> Result<RoomName, RoomNameError> {
        let (prefix, id) = s.split_once(':').ok_or(RoomNameError::BadKind)?;
        let kind = match prefix {
            "event" => RoomKind::Event,
            "session" => RoomKind::Session,
            "user" => RoomKind::User,
            _ => return Err(RoomNameError::BadKind),
        };
        validate_id(id).map_err(RoomNameError::BadId)?;
        Ok(RoomName {
            name: s.into(),
            kind,
        })
    }

    /// Builds a room name from a kind and an already valid id.
    pub fn new(kind: RoomKind, id: &str) -> Result<RoomName, RoomNameError> {
        validate_id(id).map_err(RoomNameError::BadId)?;
        Ok(RoomName {
            name: format!("{}:{id}", kind.prefix()).into(),
            kind,
        })
    }

    /// The private room of a user.
    pub fn user(user_id: &str) -> Result<RoomName, RoomNameError> {
        RoomName::new(RoomKind::User, user_id)
    }

    /// The room's kind.
    pub fn kind(&self) -> RoomKind {
        self.kind
    }

    /// The id after the colon.
    pub fn id(&self) -> &str {
        &self.name[self.kind.prefix().len() + 1..]
    }

    /// The whole name, `kind:id`.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl FromStr for RoomName {
    type Err = RoomNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RoomName::parse(s)
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl fmt::Debug for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.name, f)
    }
}

impl AsRef<str> for RoomName {
    fn as_ref(&self) -> &str {
        &self.name
    }
}

impl Serialize for RoomName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for RoomName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        RoomName::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds() {
        let r = RoomName::parse("session:S3").unwrap();
        assert_eq!(r.kind(), RoomKind::Session);
        assert_eq!(r.id(), "S3");
        assert_eq!(r.as_str(), "session:S3");
        assert_eq!(RoomName::parse("event:E1").unwrap().kind(), RoomKind::Event);
        let u = RoomName::user("auth0|42").unwrap();
        assert_eq!(u.as_str(), "user:auth0|42");
        assert_eq!(u.id(), "auth0|42");
        // An id may itself hold a colon; only the first one separates the kind.
        assert_eq!(RoomName::parse("user:urn:x").unwrap().id(), "urn:x");
    }

    #[test]
    fn refuses_bad_names() {
        for bad in [
            "",
            "session",
            "session:",
            "lobby:1",
            "session:a b",
            "session:{x}",
            "event:é",
        ] {
            assert!(RoomName::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long = format!("event:{}", "a".repeat(MAX_ID_LEN + 1));
        assert_eq!(
            RoomName::parse(&long),
            Err(RoomNameError::BadId(IdError::TooLong))
        );
        assert!(RoomName::parse(&format!("event:{}", "a".repeat(MAX_ID_LEN))).is_ok());
    }
}
