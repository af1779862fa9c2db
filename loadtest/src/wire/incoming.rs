//! Reading what the servers send: a lean view of each evd event (only the fields the harness
//! uses, borrowed from the frame where it can), evd's batched array frames in either codec, the
//! Engine.IO/Socket.IO text packets, and the uWS peer's single JSON events.

use super::{JOIN_REF, Target, Wire};
use evd_protocol::Codec;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// What one incoming event means to a scenario.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming<'a> {
    /// A chat message (evd `MESSAGE_RECEIVED`, Socket.IO `MESSAGE_RECEIVED`).
    Message {
        offset: Option<u64>,
        text: Cow<'a, str>,
    },
    /// The join was confirmed. `history` is `(offset, text)`, oldest first.
    Joined {
        epoch: Option<String>,
        offset: Option<u64>,
        recovered: bool,
        history: Vec<(u64, Cow<'a, str>)>,
    },
    /// An `ACK` and the `ref` it answers.
    Ack { r#ref: Option<i64> },
    /// An `ERROR` event with the `ref` it answers, if any, its code, and for `rate_limited`
    /// how long to wait before a retry.
    Error {
        r#ref: Option<i64>,
        code: Cow<'a, str>,
        retry_after_ms: Option<u64>,
    },
    /// A poll's running tally (`POLL_RESULTS`): all votes so far.
    PollResults { poll: Cow<'a, str>, total: u64 },
    /// Engine.IO open packet: answer [`Wire::sio_connect`].
    SioOpen,
    /// Socket.IO namespace connected: the client may emit.
    SioConnected,
    /// Engine.IO ping: answer [`Wire::sio_pong`].
    SioPing,
    /// Socket.IO namespace connect refused or disconnect.
    SioGone,
    /// Anything else (HELLO, ACK, PONG, PRESENCE_UPDATE, …).
    Other,
}

#[derive(Deserialize)]
struct Hist<'a> {
    offset: u64,
    #[serde(borrow)]
    text: Cow<'a, str>,
}

/// A `poll` field: the poll id in `POLL_RESULTS` and `POLL_CLOSED`, a whole poll object in
/// `POLL_CREATED` (skipped).
struct PollField<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for PollField<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdOrAnything<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for IdOrAnything<'a> {
            type Value = PollField<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a poll id or a poll")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(PollField(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(PollField(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(PollField(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(PollField(None))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(PollField(None))
            }
        }
        d.deserialize_any(IdOrAnything(std::marker::PhantomData))
    }
}

/// The fields of an evd event the harness reads; the rest is skipped unparsed.
#[derive(Deserialize)]
struct Lite<'a> {
    #[serde(borrow)]
    ev: Cow<'a, str>,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default, borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    epoch: Option<Cow<'a, str>>,
    #[serde(default)]
    recovered: Option<bool>,
    #[serde(default, borrow)]
    history: Option<Vec<Hist<'a>>>,
    #[serde(default, borrow)]
    code: Option<Cow<'a, str>>,
    #[serde(rename = "ref", default)]
    r#ref: Option<i64>,
    #[serde(default, borrow)]
    poll: Option<PollField<'a>>,
    #[serde(default)]
    total: Option<u64>,
    #[serde(default)]
    retry_after_ms: Option<u64>,
}

impl<'a> Lite<'a> {
    fn into_incoming(self) -> Incoming<'a> {
        match &*self.ev {
            "MESSAGE_RECEIVED" => Incoming::Message {
                offset: self.offset,
                text: self.text.unwrap_or_default(),
            },
            "ROOM_JOINED" if self.r#ref == Some(JOIN_REF) => Incoming::Joined {
                epoch: self.epoch.map(Cow::into_owned),
                offset: self.offset,
                recovered: self.recovered.unwrap_or(false),
                history: self
                    .history
                    .unwrap_or_default()
                    .into_iter()
                    .map(|h| (h.offset, h.text))
                    .collect(),
            },
            "ACK" => Incoming::Ack { r#ref: self.r#ref },
            "ERROR" => Incoming::Error {
                r#ref: self.r#ref,
                code: self.code.unwrap_or(Cow::Borrowed("unknown")),
                retry_after_ms: self.retry_after_ms,
            },
            "POLL_RESULTS" => match self.poll.and_then(|p| p.0) {
                Some(poll) => Incoming::PollResults {
                    poll,
                    total: self.total.unwrap_or(0),
                },
                None => Incoming::Other,
            },
            _ => Incoming::Other,
        }
    }
}

#[derive(Deserialize)]
struct SioMessage<'a> {
    #[serde(default)]
    offset: Option<u64>,
    #[serde(borrow)]
    text: Cow<'a, str>,
}

/// A Socket.IO EVENT's arguments: its name, a message, and whatever follows (skipped).
struct SioEvent<'a>(Cow<'a, str>, SioMessage<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for SioEvent<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Args<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Args<'a> {
            type Value = SioEvent<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[name, message, …]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                use serde::de::Error;
                let name = s
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let msg = s
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(1, &self))?;
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(SioEvent(name, msg))
            }
        }
        d.deserialize_seq(Args(std::marker::PhantomData))
    }
}

/// A frame could not be read.
#[derive(Debug)]
pub(crate) struct BadFrame;

impl Wire {
    /// Reads one frame, calling `f` for every event in it.
    pub(crate) fn parse<'a>(
        &self,
        frame: &'a [u8],
        binary: bool,
        mut f: impl FnMut(Incoming<'a>),
    ) -> Result<(), BadFrame> {
        match self.target {
            Target::Evd => {
                let is_array = match (self.codec, binary) {
                    (Codec::Json, false) => {
                        frame.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[')
                    }
                    (Codec::MsgPack, true) => {
                        matches!(frame.first(), Some(0x90..=0x9f | 0xdc | 0xdd))
                    }
                    _ => return Err(BadFrame),
                };
                match (self.codec, is_array) {
                    (Codec::Json, true) => serde_json::from_slice::<Vec<Lite<'a>>>(frame)
                        .map_err(|_| BadFrame)?
                        .into_iter()
                        .for_each(|l| f(l.into_incoming())),
                    (Codec::Json, false) => f(serde_json::from_slice::<Lite<'a>>(frame)
                        .map_err(|_| BadFrame)?
                        .into_incoming()),
                    (Codec::MsgPack, true) => rmp_serde::from_slice::<Vec<Lite<'a>>>(frame)
                        .map_err(|_| BadFrame)?
                        .into_iter()
                        .for_each(|l| f(l.into_incoming())),
                    (Codec::MsgPack, false) => f(rmp_serde::from_slice::<Lite<'a>>(frame)
                        .map_err(|_| BadFrame)?
                        .into_incoming()),
                }
                Ok(())
            }
            Target::Socketio => {
                let s = std::str::from_utf8(frame).map_err(|_| BadFrame)?;
                f(parse_sio(s).ok_or(BadFrame)?);
                Ok(())
            }
            // The peer's events have evd's names and fields, one object per text frame.
            Target::Uws if !binary => {
                f(serde_json::from_slice::<Lite<'a>>(frame)
                    .map_err(|_| BadFrame)?
                    .into_incoming());
                Ok(())
            }
            Target::Uws => Err(BadFrame),
        }
    }
}

/// One Engine.IO/Socket.IO text packet.
fn parse_sio(s: &str) -> Option<Incoming<'_>> {
    let mut chars = s.chars();
    Some(match chars.next()? {
        '0' => Incoming::SioOpen,
        '2' => Incoming::SioPing,
        '1' => Incoming::SioGone,
        '4' => {
            let rest = &s[1..];
            match rest.as_bytes().first()? {
                b'0' => Incoming::SioConnected,
                b'1' | b'4' => Incoming::SioGone,
                b'2' => {
                    let body = &rest[1..];
                    let start = body.find('[')?;
                    // The peers emit only MESSAGE_RECEIVED; read it without building a tree.
                    // evd's endpoint adds the message's recovery position as a third argument.
                    match serde_json::from_str::<SioEvent<'_>>(&body[start..]) {
                        Ok(SioEvent(name, m)) if name == "MESSAGE_RECEIVED" => Incoming::Message {
                            offset: m.offset,
                            text: m.text,
                        },
                        _ => Incoming::Other,
                    }
                }
                b'3' => {
                    let body = &rest[1..];
                    let start = body.find('[')?;
                    if &body[..start] == "0" {
                        Incoming::Joined {
                            epoch: None,
                            offset: None,
                            recovered: false,
                            history: Vec::new(),
                        }
                    } else {
                        Incoming::Other
                    }
                }
                _ => Incoming::Other,
            }
        }
        _ => Incoming::Other,
    })
}
