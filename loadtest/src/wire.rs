//! The two wire protocols the harness speaks: evd v1 (JSON or MessagePack, batched array
//! frames) and Socket.IO v4 over Engine.IO v4 WebSocket, reduced to what a scenario needs.
//!
//! Incoming frames are read with a lean view of the events (only the fields the harness uses),
//! because at saturation the harness decodes as many events per second as the server sends.

use evd_protocol::op::{
    JoinRoom, LeaveRoom, Ping, SendMessage, StreamPosition, SubmitPollResponse,
};
use evd_protocol::{Codec, Op, Request, RoomName};
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;
use tokio_tungstenite::tungstenite::Message;

/// Which server the harness drives.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Target {
    /// The evd engine at `/ws`, authenticated with minted tokens.
    Evd,
    /// A Socket.IO v4 server at `/socket.io/` (Engine.IO v4 over WebSocket).
    Socketio,
}

/// The `ref` of a client's join, so its `ROOM_JOINED` (or Socket.IO ack) is recognized.
const JOIN_REF: i64 = 1;
/// The `ref` of a client's vote, so its `ACK` or `ERROR` is recognized. A client votes once.
pub(crate) const VOTE_REF: i64 = 2;

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
    /// An `ERROR` event with the `ref` it answers, if any, and its code.
    Error {
        r#ref: Option<i64>,
        code: Cow<'a, str>,
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

/// A client's wire: the target and, for evd, the codec.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wire {
    pub(crate) target: Target,
    pub(crate) codec: Codec,
}

/// A frame could not be read.
#[derive(Debug)]
pub(crate) struct BadFrame;

impl Wire {
    /// The URL to open for `base` (`ws://host:port` or `http://host:port`).
    pub(crate) fn url(&self, base: &str) -> String {
        let base = base.trim_end_matches('/');
        let base = if let Some(rest) = base.strip_prefix("http") {
            format!("ws{rest}")
        } else {
            base.to_owned()
        };
        match self.target {
            Target::Evd => format!("{base}/ws"),
            Target::Socketio => format!("{base}/socket.io/?EIO=4&transport=websocket"),
        }
    }

    fn evd(&self, op: Op, r#ref: Option<i64>) -> Message {
        let req = Request { r#ref, op };
        let bytes = self
            .codec
            .encode(&req)
            .expect("protocol types always encode");
        match self.codec {
            Codec::Json => Message::Text(
                String::from_utf8(bytes.to_vec())
                    .expect("JSON is UTF-8")
                    .into(),
            ),
            Codec::MsgPack => Message::Binary(bytes),
        }
    }

    /// Join `room`, recovering from `recover` when given.
    pub(crate) fn join(&self, room: &str, recover: Option<(String, u64)>) -> Message {
        match self.target {
            Target::Evd => self.evd(
                Op::JoinRoom(JoinRoom {
                    room: RoomName::parse(room).expect("the harness makes valid room names"),
                    history: 0,
                    recover: recover.map(|(epoch, offset)| StreamPosition { epoch, offset }),
                }),
                Some(JOIN_REF),
            ),
            // Ack id 0 marks the join; the peer calls the ack after joining.
            Target::Socketio => Message::Text(
                format!("420[\"join_room\",{}]", serde_json::json!({ "room": room })).into(),
            ),
        }
    }

    /// Leave `room`.
    pub(crate) fn leave(&self, room: &str) -> Message {
        match self.target {
            Target::Evd => self.evd(
                Op::LeaveRoom(LeaveRoom {
                    room: RoomName::parse(room).expect("the harness makes valid room names"),
                }),
                None,
            ),
            Target::Socketio => Message::Text(
                format!("42[\"leave_room\",{}]", serde_json::json!({ "room": room })).into(),
            ),
        }
    }

    /// Publish `text` to `room`.
    pub(crate) fn send(&self, room: &str, text: String) -> Message {
        match self.target {
            Target::Evd => self.evd(
                Op::SendMessage(SendMessage {
                    room: RoomName::parse(room).expect("the harness makes valid room names"),
                    text,
                    client_id: None,
                }),
                None,
            ),
            Target::Socketio => Message::Text(
                format!(
                    "42[\"send_message\",{}]",
                    serde_json::json!({ "room": room, "text": text })
                )
                .into(),
            ),
        }
    }

    /// Vote for `option` in `poll` (evd only), with [`VOTE_REF`].
    pub(crate) fn vote(&self, poll: &str, option: &str) -> Message {
        self.evd(
            Op::SubmitPollResponse(SubmitPollResponse {
                poll: poll.to_owned(),
                option: option.to_owned(),
            }),
            Some(VOTE_REF),
        )
    }

    /// The application heartbeat (evd); Socket.IO clients answer the server's pings instead.
    pub(crate) fn ping(&self) -> Option<Message> {
        match self.target {
            Target::Evd => Some(self.evd(Op::Ping(Ping {}), None)),
            Target::Socketio => None,
        }
    }

    /// Socket.IO namespace connect, sent after the Engine.IO open packet.
    pub(crate) fn sio_connect() -> Message {
        Message::Text("40".into())
    }

    /// Engine.IO pong.
    pub(crate) fn sio_pong() -> Message {
        Message::Text("3".into())
    }

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
                    match serde_json::from_str::<(Cow<'_, str>, SioMessage<'_>)>(&body[start..]) {
                        Ok((name, m)) if name == "MESSAGE_RECEIVED" => Incoming::Message {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn all(wire: Wire, frame: &[u8], binary: bool) -> Vec<Incoming<'_>> {
        let mut out = Vec::new();
        wire.parse(frame, binary, |i| out.push(i)).unwrap();
        out
    }

    const JSON: Wire = Wire {
        target: Target::Evd,
        codec: Codec::Json,
    };

    #[test]
    fn evd_batched_json_frames_yield_every_event() {
        let frame = br#"[{"ev":"MESSAGE_RECEIVED","room":"session:r0","offset":3,"id":"a","user":"u","text":"1:2:x","ts":1},{"ev":"PRESENCE_UPDATE","room":"session:r0","count":2},{"ev":"MESSAGE_RECEIVED","room":"session:r0","offset":4,"id":"b","user":"u","text":"2:3:x","ts":1}]"#;
        let got = all(JSON, frame, false);
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0],
            Incoming::Message {
                offset: Some(3),
                text: "1:2:x".into()
            }
        );
        assert_eq!(got[1], Incoming::Other);
    }

    #[test]
    fn evd_join_reply_carries_epoch_offset_and_history() {
        let frame = br#"{"ev":"ROOM_JOINED","ref":1,"room":"session:r0","epoch":"e1","offset":9,"recovered":true,"presence":{"count":1,"members":[]},"history":[{"room":"session:r0","offset":8,"id":"x","user":"u","text":"5:6:","ts":1},{"room":"session:r0","offset":9,"id":"y","user":"u","text":"6:7:","ts":1}]}"#;
        match &all(JSON, frame, false)[0] {
            Incoming::Joined {
                epoch,
                offset,
                recovered,
                history,
            } => {
                assert_eq!(epoch.as_deref(), Some("e1"));
                assert_eq!(*offset, Some(9));
                assert!(*recovered);
                assert_eq!(history.len(), 2);
                assert_eq!(history[0].0, 8);
            }
            other => panic!("not a join: {other:?}"),
        }
    }

    #[test]
    fn evd_msgpack_frames_read_like_json_ones() {
        use evd_protocol::Event;
        use evd_protocol::event::ChatMessage;
        let ev = Event::MessageReceived(ChatMessage {
            room: "session:r1".into(),
            offset: 5,
            id: "i".into(),
            user: "u".into(),
            text: "1:2:xx".into(),
            ts: 1,
        });
        let one = Codec::MsgPack.encode(&ev).unwrap();
        let frame = Codec::MsgPack.batch(&[one.clone(), one]);
        let wire = Wire {
            target: Target::Evd,
            codec: Codec::MsgPack,
        };
        let got = all(wire, &frame, true);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            Incoming::Message {
                offset: Some(5),
                text: "1:2:xx".into()
            }
        );
    }

    #[test]
    fn evd_poll_results_acks_and_errors_carry_what_votes_need() {
        let frame = br#"[{"ev":"POLL_CREATED","room":"session:s1","poll":{"id":"p1","question":"q","options":[{"id":"o1","text":"a"}],"closes_at":null}},{"ev":"POLL_RESULTS","room":"session:s1","poll":"p1","counts":{"o1":3,"o2":1},"total":4},{"ev":"ACK","ref":2},{"ev":"ERROR","ref":2,"code":"conflict","message":"you have already voted"},{"ev":"ERROR","code":"rate_limited","message":"slow down"},{"ev":"POLL_CLOSED","room":"session:s1","poll":"p1","counts":{},"total":4}]"#;
        let got = all(JSON, frame, false);
        assert_eq!(
            got,
            vec![
                Incoming::Other,
                Incoming::PollResults {
                    poll: "p1".into(),
                    total: 4
                },
                Incoming::Ack { r#ref: Some(2) },
                Incoming::Error {
                    r#ref: Some(VOTE_REF),
                    code: "conflict".into()
                },
                Incoming::Error {
                    r#ref: None,
                    code: "rate_limited".into()
                },
                Incoming::Other,
            ]
        );
    }

    #[test]
    fn evd_msgpack_poll_results_and_the_vote_op() {
        use evd_protocol::Event;
        use evd_protocol::event::{Poll, PollCreated, PollResults};
        let created = Event::PollCreated(PollCreated {
            room: "session:s1".into(),
            poll: Poll {
                id: "p1".into(),
                question: "q".into(),
                options: Vec::new(),
                closes_at: None,
            },
            outbox_id: None,
        });
        let results = Event::PollResults(PollResults {
            room: "session:s1".into(),
            poll: "p1".into(),
            counts: [("o1".to_owned(), 7)].into(),
            total: 7,
        });
        let frame = Codec::MsgPack.batch(&[
            Codec::MsgPack.encode(&created).unwrap(),
            Codec::MsgPack.encode(&results).unwrap(),
        ]);
        let wire = Wire {
            target: Target::Evd,
            codec: Codec::MsgPack,
        };
        assert_eq!(
            all(wire, &frame, true),
            vec![
                Incoming::Other,
                Incoming::PollResults {
                    poll: "p1".into(),
                    total: 7
                }
            ]
        );
        let Message::Text(vote) = JSON.vote("p1", "o2") else {
            panic!("JSON ops are text")
        };
        let vote: serde_json::Value = serde_json::from_str(vote.as_str()).unwrap();
        assert_eq!(
            vote,
            serde_json::json!({"op": "submit_poll_response", "ref": VOTE_REF, "poll": "p1", "option": "o2"})
        );
    }

    #[test]
    fn socketio_packets() {
        let wire = Wire {
            target: Target::Socketio,
            codec: Codec::Json,
        };
        assert_eq!(
            all(wire, br#"0{"sid":"a","pingInterval":25000}"#, false)[0],
            Incoming::SioOpen
        );
        assert_eq!(all(wire, b"2", false)[0], Incoming::SioPing);
        assert_eq!(
            all(wire, br#"40{"sid":"b"}"#, false)[0],
            Incoming::SioConnected
        );
        assert!(matches!(
            all(wire, br#"430[{"room":"r"}]"#, false)[0],
            Incoming::Joined { .. }
        ));
        assert_eq!(
            all(wire, br#"42["MESSAGE_RECEIVED",{"room":"r","offset":7,"user":"u","text":"1:2:x","ts":3}]"#, false)[0],
            Incoming::Message {
                offset: Some(7),
                text: "1:2:x".into()
            }
        );
        assert_eq!(
            wire.url("http://127.0.0.1:3000/"),
            "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(JSON.url("ws://127.0.0.1:8080"), "ws://127.0.0.1:8080/ws");
    }
}
