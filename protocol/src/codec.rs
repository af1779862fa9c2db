//! The two subprotocols, `evd.v1.json` and `evd.v1.msgpack`, as one [`Codec`].
//!
//! The engine encodes each broadcast once per codec and writes the same bytes to every member;
//! [`Codec::batch`] joins events queued together into one frame (a JSON array, or a MessagePack
//! array of maps) without re-encoding them.

use crate::event::Event;
use crate::limits::MAX_MSGPACK_DEPTH;
use crate::op::{Ref, Request};
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A wire encoding, chosen per connection by subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Codec {
    /// `evd.v1.json`: UTF-8 JSON in text frames. The default.
    #[default]
    Json,
    /// `evd.v1.msgpack`: MessagePack maps with named fields, in binary frames.
    MsgPack,
}

/// Why a client frame was refused. Every kind answers `ERROR bad_request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    /// The frame's `ref`, when it could still be read.
    pub r#ref: Option<Ref>,
    /// What went wrong.
    pub kind: DecodeErrorKind,
    /// A message for the client.
    pub message: String,
}

/// The class of a [`DecodeError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// Not JSON / not MessagePack at all.
    Malformed,
    /// Well-formed, but not a valid op: unknown op, missing or mistyped field, value out of range.
    Invalid,
    /// A binary frame on a JSON connection or a text frame on a MessagePack one.
    WrongFrameType,
}

impl DecodeError {
    pub(crate) fn new(
        r#ref: Option<Ref>,
        kind: DecodeErrorKind,
        message: impl Into<String>,
    ) -> Self {
        DecodeError {
            r#ref,
            kind,
            message: message.into(),
        }
    }

    /// The error for a frame of the wrong WebSocket type for `codec`.
    pub fn wrong_frame_type(codec: Codec) -> DecodeError {
        let msg = match codec {
            Codec::Json => "binary frame on an evd.v1.json connection; send text frames",
            Codec::MsgPack => "text frame on an evd.v1.msgpack connection; send binary frames",
        };
        DecodeError::new(None, DecodeErrorKind::WrongFrameType, msg)
    }
}

/// A value could not be encoded. With the protocol's own types this does not happen.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// JSON encoding failed.
    #[error("json encode: {0}")]
    Json(#[from] serde_json::Error),
    /// MessagePack encoding failed.
    #[error("msgpack encode: {0}")]
    MsgPack(#[from] rmp_serde::encode::Error),
}

impl Codec {
    /// Both codecs, JSON first.
    pub const ALL: [Codec; 2] = [Codec::Json, Codec::MsgPack];

    /// The subprotocol name for `Sec-WebSocket-Protocol`.
    pub const fn subprotocol(self) -> &'static str {
        match self {
            Codec::Json => "evd.v1.json",
            Codec::MsgPack => "evd.v1.msgpack",
        }
    }

    /// The codec for a subprotocol name, if the server speaks it.
    pub fn from_subprotocol(name: &str) -> Option<Codec> {
        Codec::ALL
            .into_iter()
            .find(|c| c.subprotocol() == name.trim())
    }

    /// True when frames are binary (MessagePack), false when text (JSON).
    pub const fn is_binary(self) -> bool {
        matches!(self, Codec::MsgPack)
    }

    /// A small index, for per-codec arrays.
    pub const fn index(self) -> usize {
        match self {
            Codec::Json => 0,
            Codec::MsgPack => 1,
        }
    }

    /// Encodes any serializable value (an [`Event`], a [`Request`]).
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Bytes, EncodeError> {
        Ok(match self {
            Codec::Json => Bytes::from(serde_json::to_vec(value)?),
            Codec::MsgPack => Bytes::from(rmp_serde::to_vec_named(value)?),
        })
    }

    /// Joins already-encoded events into one frame: one event is sent as is, several as an
    /// array. The result is what a client decodes with [`Codec::decode_events`].
    pub fn batch(self, items: &[Bytes]) -> Bytes {
        match items {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => {
                let payload: usize = many.iter().map(Bytes::len).sum();
                match self {
                    Codec::Json => {
                        let mut buf = BytesMut::with_capacity(payload + many.len() + 1);
                        buf.put_u8(b'[');
                        for (i, item) in many.iter().enumerate() {
                            if i > 0 {
                                buf.put_u8(b',');
                            }
                            buf.put_slice(item);
                        }
                        buf.put_u8(b']');
                        buf.freeze()
                    }
                    Codec::MsgPack => {
                        let mut buf = Vec::with_capacity(payload + 5);
                        let n = u32::try_from(many.len()).unwrap_or(u32::MAX);
                        // Writing to a Vec cannot fail.
                        let _ = rmp::encode::write_array_len(&mut buf, n);
                        for item in many.iter().take(n as usize) {
                            buf.extend_from_slice(item);
                        }
                        Bytes::from(buf)
                    }
                }
            }
        }
    }

    /// Decodes and validates one client frame.
    pub fn decode_request(self, frame: &[u8]) -> Result<Request, DecodeError> {
        let parsed = match self {
            Codec::Json => serde_json::from_slice::<Request>(frame).map_err(|e| {
                let kind = if e.is_syntax() || e.is_eof() {
                    DecodeErrorKind::Malformed
                } else {
                    DecodeErrorKind::Invalid
                };
                (kind, format!("invalid JSON op: {e}"))
            }),
            Codec::MsgPack => msgpack_from_slice::<Request>(frame).map_err(|e| {
                use rmp_serde::decode::Error as E;
                // A reserved marker is not MessagePack at all; other type mismatches are a
                // well-formed value of the wrong type.
                let kind = match e {
                    E::TypeMismatch(rmp::Marker::Reserved) => DecodeErrorKind::Malformed,
                    E::Syntax(_) | E::TypeMismatch(_) | E::OutOfRange | E::Uncategorized(_) => {
                        DecodeErrorKind::Invalid
                    }
                    _ => DecodeErrorKind::Malformed,
                };
                (kind, format!("invalid MessagePack op: {e}"))
            }),
        };
        match parsed {
            Ok(req) => match req.op.validate() {
                Ok(()) => Ok(req),
                Err(msg) => Err(DecodeError::new(req.r#ref, DecodeErrorKind::Invalid, msg)),
            },
            Err((kind, msg)) => Err(DecodeError::new(self.lenient_ref(frame), kind, msg)),
        }
    }

    /// Reads just `ref` from a frame that failed to decode, so the error can echo it.
    fn lenient_ref(self, frame: &[u8]) -> Option<Ref> {
        #[derive(Deserialize)]
        struct RefOnly {
            #[serde(rename = "ref", default)]
            r#ref: Option<Ref>,
        }
        match self {
            Codec::Json => serde_json::from_slice::<RefOnly>(frame).ok()?.r#ref,
            Codec::MsgPack => msgpack_from_slice::<RefOnly>(frame).ok()?.r#ref,
        }
    }

    /// Decodes a server frame (one event or an array of them). Clients and tests use this.
    pub fn decode_events(self, frame: &[u8]) -> Result<Vec<Event>, DecodeError> {
        let malformed = |e: &dyn fmt::Display| {
            DecodeError::new(
                None,
                DecodeErrorKind::Malformed,
                format!("invalid server frame: {e}"),
            )
        };
        match self {
            Codec::Json => {
                let first = frame.iter().find(|b| !b.is_ascii_whitespace());
                if first == Some(&b'[') {
                    serde_json::from_slice::<Vec<Event>>(frame).map_err(|e| malformed(&e))
                } else {
                    serde_json::from_slice::<Event>(frame)
                        .map(|e| vec![e])
                        .map_err(|e| malformed(&e))
                }
            }
            Codec::MsgPack => {
                let is_array = matches!(frame.first(), Some(0x90..=0x9f | 0xdc | 0xdd));
                if is_array {
                    msgpack_from_slice::<Vec<Event>>(frame).map_err(|e| malformed(&e))
                } else {
                    msgpack_from_slice::<Event>(frame)
                        .map(|e| vec![e])
                        .map_err(|e| malformed(&e))
                }
            }
        }
    }
}

/// `rmp_serde::from_slice` with the nesting bounded by [`MAX_MSGPACK_DEPTH`].
pub(crate) fn msgpack_from_slice<'a, T: Deserialize<'a>>(
    frame: &'a [u8],
) -> Result<T, rmp_serde::decode::Error> {
    let mut de = rmp_serde::Deserializer::from_read_ref(frame);
    de.set_max_depth(MAX_MSGPACK_DEPTH);
    T::deserialize(&mut de)
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.subprotocol())
    }
}

#[cfg(test)]
mod tests;
