use super::*;
use crate::event::{Ack, ChatMessage};
use crate::op::{JoinRoom, Op};

fn req(frame: &str) -> Request {
    match decode_text(frame) {
        Ok(Inbound::Request(r)) => r,
        other => panic!("{frame}: {other:?}"),
    }
}

#[test]
fn engine_io_control_packets() {
    assert_eq!(decode_text("3").unwrap(), Inbound::Pong);
    assert_eq!(decode_text("2").unwrap(), Inbound::Ping { probe: false });
    assert_eq!(
        decode_text("2probe").unwrap(),
        Inbound::Ping { probe: true }
    );
    assert_eq!(decode_text("1").unwrap(), Inbound::Close);
    assert_eq!(decode_text("5").unwrap(), Inbound::Upgrade);
    assert_eq!(decode_text("41").unwrap(), Inbound::Disconnect);
    assert!(decode_text("").is_err());
    assert!(decode_text("9").is_err());
}

#[test]
fn connect_carries_the_auth_object() {
    match decode_text(r#"40{"token":"abc"}"#).unwrap() {
        Inbound::Connect { nsp, auth } => {
            assert_eq!(nsp, "/");
            assert_eq!(auth.unwrap()["token"], "abc");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        decode_text("40").unwrap(),
        Inbound::Connect {
            nsp: "/".into(),
            auth: None
        }
    );
    match decode_text("40/admin,").unwrap() {
        Inbound::Connect { nsp, .. } => assert_eq!(nsp, "/admin"),
        other => panic!("{other:?}"),
    }
    assert!(
        decode_text(r#"40"token""#).is_err(),
        "auth must be an object"
    );
}

#[test]
fn events_become_ops_with_the_ack_id_as_ref() {
    let r = req(r#"4212["join_room","session:S1"]"#);
    assert_eq!(r.r#ref, Some(12));
    assert_eq!(
        r.op,
        Op::JoinRoom(JoinRoom {
            room: "session:S1".parse().unwrap(),
            history: 0,
            recover: None
        })
    );
    let r = req(r#"42["join_room",{"room":"session:S1","history":5}]"#);
    assert_eq!(r.r#ref, None);
    assert!(matches!(r.op, Op::JoinRoom(ref j) if j.history == 5));
    let r = req(r#"427["send_message",{"room":"session:S1","text":"hi","ref":99}]"#);
    assert_eq!(r.r#ref, Some(7), "the ack id wins over a ref in the fields");
    let r = req(r#"42["send_message",{"room":"session:S1","text":"hi","ref":99}]"#);
    assert_eq!(
        r.r#ref, None,
        "no ack callback, no ref: the reply is an EVENT"
    );
    assert!(matches!(
        req(r#"42["upvote_question","q1"]"#).op,
        Op::UpvoteQuestion(_)
    ));
    assert!(matches!(
        req(r#"42["accept_offer","o1"]"#).op,
        Op::AcceptOffer(_)
    ));
    assert!(matches!(req(r#"42["ping"]"#).op, Op::Ping(_)));
}

#[test]
fn bad_events_are_refused_with_their_ack_id() {
    for (frame, id) in [
        (r#"423["no_such_op",{}]"#, Some(3)),
        (r#"424["send_message","hi"]"#, Some(4)),
        (r#"425["join_room","nowhere"]"#, Some(5)),
        (r#"42["join_room",7]"#, None),
        (r#"42{"a":1}"#, None),
        (r#"426/admin,["join_room","session:S1"]"#, Some(6)),
    ] {
        let e = decode_text(frame).expect_err(frame);
        assert_eq!(e.r#ref, id, "{frame}: {e}");
    }
    assert!(decode_text(r#"451-["send_message",{"_placeholder":true,"num":0}]"#).is_err());
    assert!(decode_text("42[").is_err());
}

fn message() -> Event {
    Event::MessageReceived(ChatMessage {
        room: "session:S1".into(),
        offset: 3,
        id: "m3".into(),
        user: "u1".into(),
        text: "hi".into(),
        ts: 1,
    })
}

#[test]
fn events_go_out_as_events_and_replies_as_acks() {
    let Payload::Text(t) = encode_event(Parser::Json, &message()) else {
        panic!("text")
    };
    assert!(
        t.starts_with(r#"42["MESSAGE_RECEIVED",{"ev":"MESSAGE_RECEIVED""#),
        "{t}"
    );
    let v: Value = serde_json::from_str(&t[2..]).unwrap();
    assert_eq!(v[1]["text"], "hi");
    let ack = Event::Ack(Ack {
        r#ref: Some(9),
        offset: Some(4),
        ..Ack::default()
    });
    let Payload::Text(t) = encode_event(Parser::Json, &ack) else {
        panic!("text")
    };
    assert!(t.starts_with(r#"439[{"ev":"ACK""#), "{t}");
    let no_ref = Event::Ack(Ack::default());
    let Payload::Text(t) = encode_event(Parser::Json, &no_ref) else {
        panic!("text")
    };
    assert!(t.starts_with(r#"42["ACK","#), "{t}");
}

#[test]
fn handshake_packets() {
    let open = open_packet(&Handshake {
        sid: "abc",
        upgrades: &[],
        ping_interval: 25_000,
        ping_timeout: 20_000,
        max_payload: 65_536,
    });
    assert_eq!(
        open,
        r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":65536}"#
    );
    assert_eq!(
        connect_ok(Parser::Json, "s1", "p1"),
        Payload::Text(r#"40{"pid":"p1","sid":"s1"}"#.into())
    );
    assert_eq!(
        connect_error(Parser::Json, "/", "bad token"),
        Payload::Text(r#"44{"message":"bad token"}"#.into())
    );
    assert_eq!(
        connect_error(Parser::Json, "/x", "no"),
        Payload::Text(r#"44/x,{"message":"no"}"#.into())
    );
}

#[test]
fn msgpack_packets_round_trip_the_same_mapping() {
    #[derive(Serialize)]
    struct Out<'a> {
        r#type: u8,
        nsp: &'a str,
        data: Value,
        id: Option<i64>,
    }
    let frame = rmp_serde::to_vec_named(&Out {
        r#type: 2,
        nsp: "/",
        data: serde_json::json!(["join_room", "session:S1"]),
        id: Some(4),
    })
    .unwrap();
    match decode_msgpack(&frame).unwrap() {
        Inbound::Request(r) => {
            assert_eq!(r.r#ref, Some(4));
            assert!(matches!(r.op, Op::JoinRoom(_)));
        }
        other => panic!("{other:?}"),
    }
    let Payload::Binary(b) = encode_event(Parser::MsgPack, &message()) else {
        panic!("binary")
    };
    let back: MsgPackPacket<Value> = rmp_serde::from_slice(&b).unwrap();
    assert_eq!(back.r#type, 2);
    assert_eq!(back.nsp, "/");
    assert_eq!(back.data.unwrap()[0], "MESSAGE_RECEIVED");
    assert!(decode_msgpack(b"\xc1").is_err());
}

#[test]
fn chat_carries_its_position_as_the_last_argument() {
    let Payload::Text(t) = encode_event_at(Parser::Json, &message(), Some("Ep0ch")) else {
        panic!("text")
    };
    let v: Value = serde_json::from_str(&t[2..]).unwrap();
    assert_eq!(v[0], "MESSAGE_RECEIVED");
    assert_eq!(v[1]["offset"], 3);
    assert_eq!(v[2], "Ep0ch:3:session:S1");
    let (room, pos) = parse_position(v[2].as_str().unwrap()).unwrap();
    assert_eq!(room.to_string(), "session:S1");
    assert_eq!((pos.epoch.as_str(), pos.offset), ("Ep0ch", 3));
    for bad in ["", "e", "e:x:session:S1", "e:1:nowhere", ":1:session:S1"] {
        assert!(parse_position(bad).is_none(), "{bad}");
    }
    let Payload::Binary(b) = encode_event_at(Parser::MsgPack, &message(), Some("Ep0ch")) else {
        panic!("binary")
    };
    let back: MsgPackPacket<Value> = rmp_serde::from_slice(&b).unwrap();
    assert_eq!(back.data.unwrap()[2], "Ep0ch:3:session:S1");
}

#[test]
fn disconnect_in_both_parsers() {
    assert_eq!(disconnect(Parser::Json), Payload::Text("41".into()));
    let Payload::Binary(b) = disconnect(Parser::MsgPack) else {
        panic!("binary")
    };
    assert_eq!(decode_msgpack(&b).unwrap(), Inbound::Disconnect);
}
