use super::*;
use crate::ErrorCode;
use crate::event::*;
use crate::op::*;
use crate::room::RoomName;

fn every_op() -> Vec<Request> {
    let room = RoomName::parse("session:S1").unwrap();
    vec![
        Request::with_ref(
            1,
            Op::JoinRoom(JoinRoom {
                room: room.clone(),
                history: 20,
                recover: Some(StreamPosition {
                    epoch: "e".into(),
                    offset: 3,
                }),
            }),
        ),
        Request::with_ref(2, Op::LeaveRoom(LeaveRoom { room: room.clone() })),
        Request::with_ref(
            3,
            Op::SendMessage(SendMessage {
                room: room.clone(),
                text: "hi".into(),
                client_id: Some("c1".into()),
            }),
        ),
        Request::with_ref(
            4,
            Op::SubmitPollResponse(SubmitPollResponse {
                poll: "p".into(),
                option: "o".into(),
            }),
        ),
        Request::with_ref(
            5,
            Op::AskQuestion(AskQuestion {
                room: room.clone(),
                text: "why?".into(),
            }),
        ),
        Request::with_ref(
            6,
            Op::UpvoteQuestion(UpvoteQuestion {
                question: "q".into(),
            }),
        ),
        Request::with_ref(7, Op::AcceptOffer(OfferAnswer { offer: "f".into() })),
        Request::with_ref(8, Op::DeclineOffer(OfferAnswer { offer: "f".into() })),
        Request::new(Op::Ping(Ping {})),
        Request::with_ref(
            9,
            Op::Refresh(Refresh {
                token: "a.b.c".into(),
            }),
        ),
    ]
}

#[test]
fn every_op_round_trips_in_both_codecs() {
    for codec in Codec::ALL {
        for req in every_op() {
            let bytes = codec.encode(&req).unwrap();
            assert_eq!(codec.decode_request(&bytes).unwrap(), req, "{codec}");
        }
    }
}

#[test]
fn json_ops_match_the_documented_shape() {
    let r = Codec::Json
        .decode_request(br#"{"op":"join_room","ref":1,"room":"session:S3","history":20}"#)
        .unwrap();
    assert_eq!(r.r#ref, Some(1));
    let Op::JoinRoom(j) = r.op else {
        panic!("not a join")
    };
    assert_eq!(
        (j.room.as_str(), j.history, j.recover),
        ("session:S3", 20, None)
    );
    let r = Codec::Json
        .decode_request(br#"{"op":"refresh","ref":2,"token":"a.b.c"}"#)
        .unwrap();
    assert_eq!(
        (r.r#ref, r.op),
        (
            Some(2),
            Op::Refresh(Refresh {
                token: "a.b.c".into()
            })
        )
    );
    let e = Codec::Json
        .decode_request(br#"{"op":"refresh","ref":3,"token":""}"#)
        .unwrap_err();
    assert_eq!((e.kind, e.r#ref), (DecodeErrorKind::Invalid, Some(3)));
    let ping = Codec::Json
        .encode(&Request::new(Op::Ping(Ping {})))
        .unwrap();
    assert_eq!(&ping[..], br#"{"op":"ping"}"#);
}

#[test]
fn msgpack_uses_named_maps_not_arrays() {
    let bytes = Codec::MsgPack.encode(&every_op()[0]).unwrap();
    assert!(
        matches!(bytes[0], 0x80..=0x8f | 0xde | 0xdf),
        "first byte {:#x}",
        bytes[0]
    );
    let ev = Event::Pong(Pong { r#ref: Some(1) });
    let bytes = Codec::MsgPack.encode(&ev).unwrap();
    #[derive(serde::Deserialize)]
    struct Tagged {
        ev: String,
        #[serde(rename = "ref")]
        r: i64,
    }
    let v: Tagged = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!((v.ev.as_str(), v.r), ("PONG", 1));
}

fn err(codec: Codec, frame: &[u8]) -> DecodeError {
    codec.decode_request(frame).expect_err("should not decode")
}

#[test]
fn bad_frames_give_typed_errors_with_the_ref_when_readable() {
    let e = err(Codec::Json, b"{not json");
    assert_eq!((e.kind, e.r#ref), (DecodeErrorKind::Malformed, None));
    let e = err(Codec::Json, br#"{"op":"fly","ref":9}"#);
    assert_eq!((e.kind, e.r#ref), (DecodeErrorKind::Invalid, Some(9)));
    assert!(e.message.contains("fly"), "{}", e.message);
    let e = err(Codec::Json, br#"{"op":"join_room","ref":4}"#);
    assert_eq!((e.kind, e.r#ref), (DecodeErrorKind::Invalid, Some(4)));
    assert!(e.message.contains("room"), "{}", e.message);
    let e = err(Codec::Json, br#"{"op":"join_room","ref":5,"room":42}"#);
    assert_eq!((e.kind, e.r#ref), (DecodeErrorKind::Invalid, Some(5)));
    let e = err(
        Codec::Json,
        br#"{"op":"join_room","ref":6,"room":"lobby:1"}"#,
    );
    assert_eq!((e.kind, e.r#ref), (DecodeErrorKind::Invalid, Some(6)));
    let e = err(
        Codec::Json,
        br#"{"op":"join_room","ref":7,"room":"event:E","history":101}"#,
    );
    assert_eq!((e.kind, e.r#ref), (DecodeErrorKind::Invalid, Some(7)));
    let e = err(
        Codec::Json,
        br#"{"op":"send_message","ref":8,"room":"event:E","text":""}"#,
    );
    assert_eq!((e.kind, e.r#ref), (DecodeErrorKind::Invalid, Some(8)));
    let e = err(Codec::Json, br#"[1,2]"#);
    assert_eq!(e.kind, DecodeErrorKind::Invalid);
    let e = err(Codec::MsgPack, &[0xc1, 0x00]);
    assert_eq!(e.kind, DecodeErrorKind::Malformed);
    // A mistyped field in MessagePack still echoes the ref.
    let mut frame = Vec::new();
    rmp::encode::write_map_len(&mut frame, 3).unwrap();
    rmp::encode::write_str(&mut frame, "op").unwrap();
    rmp::encode::write_str(&mut frame, "join_room").unwrap();
    rmp::encode::write_str(&mut frame, "ref").unwrap();
    rmp::encode::write_uint(&mut frame, 11).unwrap();
    rmp::encode::write_str(&mut frame, "room").unwrap();
    rmp::encode::write_bool(&mut frame, true).unwrap();
    let e = err(Codec::MsgPack, &frame);
    assert_eq!((e.kind, e.r#ref), (DecodeErrorKind::Invalid, Some(11)));
    assert_eq!(
        DecodeError::wrong_frame_type(Codec::Json).kind,
        DecodeErrorKind::WrongFrameType
    );
}

fn sample_events() -> Vec<Event> {
    vec![
        Event::Hello(Hello {
            conn: "c1".into(),
            node: "n1".into(),
            user: "u1".into(),
            heartbeat_ms: 25_000,
            server_time: 1,
        }),
        Event::MessageReceived(ChatMessage {
            room: "session:S1".into(),
            offset: 1,
            id: "m1".into(),
            user: "u1".into(),
            text: "hi".into(),
            ts: 2,
        }),
        Event::PresenceUpdate(PresenceUpdate {
            room: "session:S1".into(),
            count: 1,
            joins: Some(vec![PresenceMember { user: "u1".into() }]),
            leaves: Some(vec![]),
        }),
        Event::error(Some(3), ErrorCode::RateLimited, "slow down"),
        Event::TokenRefreshed(TokenRefreshed {
            r#ref: Some(4),
            expires_at: 1_800_000_000_000,
        }),
        Event::TokenExpiring(TokenExpiring {
            expires_at: 1_800_000_000_000,
        }),
        Event::RoomLeft(RoomLeft {
            r#ref: None,
            room: "session:S1".into(),
            reason: Some("revoked".into()),
        }),
        Event::MembershipChanged(MembershipChanged {
            user: "u1".into(),
            role: None,
            outbox_id: Some(7),
        }),
        Event::Disconnected(Disconnected {
            user: "u1".into(),
            reason: Some("spam".into()),
            banned_until: Some(1_800_000_000_000),
            outbox_id: Some(8),
        }),
    ]
}

#[test]
fn events_have_the_documented_json_shape() {
    let hello = Codec::Json.encode(&sample_events()[0]).unwrap();
    assert_eq!(
        std::str::from_utf8(&hello).unwrap(),
        r#"{"ev":"HELLO","conn":"c1","node":"n1","user":"u1","heartbeat_ms":25000,"server_time":1}"#
    );
    let e = Codec::Json.encode(&sample_events()[3]).unwrap();
    assert_eq!(
        std::str::from_utf8(&e).unwrap(),
        r#"{"ev":"ERROR","ref":3,"code":"rate_limited","message":"slow down"}"#
    );
    let refreshed = Codec::Json.encode(&sample_events()[4]).unwrap();
    assert_eq!(
        std::str::from_utf8(&refreshed).unwrap(),
        r#"{"ev":"TOKEN_REFRESHED","ref":4,"expires_at":1800000000000}"#
    );
    let expiring = Codec::Json.encode(&sample_events()[5]).unwrap();
    assert_eq!(
        std::str::from_utf8(&expiring).unwrap(),
        r#"{"ev":"TOKEN_EXPIRING","expires_at":1800000000000}"#
    );
    let count_only = Event::PresenceUpdate(PresenceUpdate {
        room: "event:E".into(),
        count: 5000,
        joins: None,
        leaves: None,
    });
    assert_eq!(
        std::str::from_utf8(&Codec::Json.encode(&count_only).unwrap()).unwrap(),
        r#"{"ev":"PRESENCE_UPDATE","room":"event:E","count":5000}"#
    );
}

#[test]
fn batches_decode_as_arrays_in_both_codecs() {
    for codec in Codec::ALL {
        let events = sample_events();
        let encoded: Vec<Bytes> = events.iter().map(|e| codec.encode(e).unwrap()).collect();
        let one = codec.batch(&encoded[..1]);
        assert_eq!(one, encoded[0], "a single event is sent as is");
        assert_eq!(codec.decode_events(&one).unwrap(), events[..1].to_vec());
        let frame = codec.batch(&encoded);
        assert_eq!(codec.decode_events(&frame).unwrap(), events, "{codec}");
    }
    assert!(Codec::Json.batch(&[]).is_empty());
}

#[test]
fn subprotocol_names() {
    assert_eq!(Codec::from_subprotocol("evd.v1.json"), Some(Codec::Json));
    assert_eq!(
        Codec::from_subprotocol(" evd.v1.msgpack"),
        Some(Codec::MsgPack)
    );
    assert_eq!(Codec::from_subprotocol("evd.v2.json"), None);
    assert!(Codec::MsgPack.is_binary() && !Codec::Json.is_binary());
}

#[test]
fn relayed_events_carry_their_outbox_id() {
    let mut ev = Event::WaitlistOffer(WaitlistOffer {
        offer: "of1".into(),
        session: "S1".into(),
        expires_at: 5,
        outbox_id: None,
    });
    let plain = Codec::Json.encode(&ev).unwrap();
    assert_eq!(
        std::str::from_utf8(&plain).unwrap(),
        r#"{"ev":"WAITLIST_OFFER","offer":"of1","session":"S1","expires_at":5}"#
    );
    ev.set_outbox_id(42);
    let stamped = Codec::Json.encode(&ev).unwrap();
    assert!(
        std::str::from_utf8(&stamped)
            .unwrap()
            .ends_with(r#""outbox_id":42}"#)
    );
    let mut pong = Event::Pong(Pong { r#ref: None });
    pong.set_outbox_id(1);
    assert_eq!(
        pong,
        Event::Pong(Pong { r#ref: None }),
        "only relayed kinds take an id"
    );
    let session = r#"{"ev":"SESSION_UPDATED","room":"event:E1","session":"S1","title":"Keynote","capacity":100,"available":3,"starts_at":1,"ends_at":2,"deleted":false}"#;
    let decoded = Codec::Json.decode_events(session.as_bytes()).unwrap();
    assert!(matches!(&decoded[0], Event::SessionUpdated(s) if s.available == 3 && !s.deleted));
}
