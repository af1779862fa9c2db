//! The wire's tests: frames of both targets and codecs read back, and the ops as sent.

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
    let frame = br#"[{"ev":"POLL_CREATED","room":"session:s1","poll":{"id":"p1","question":"q","options":[{"id":"o1","text":"a"}],"closes_at":null}},{"ev":"POLL_RESULTS","room":"session:s1","poll":"p1","counts":{"o1":3,"o2":1},"total":4},{"ev":"ACK","ref":2},{"ev":"ERROR","ref":2,"code":"conflict","message":"you have already voted"},{"ev":"ERROR","code":"rate_limited","message":"slow down","retry_after_ms":250},{"ev":"POLL_CLOSED","room":"session:s1","poll":"p1","counts":{},"total":4}]"#;
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
                code: "conflict".into(),
                retry_after_ms: None,
            },
            Incoming::Error {
                r#ref: None,
                code: "rate_limited".into(),
                retry_after_ms: Some(250),
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
        all(
            wire,
            br#"42["MESSAGE_RECEIVED",{"room":"r","offset":7,"user":"u","text":"1:2:x","ts":3}]"#,
            false
        )[0],
        Incoming::Message {
            offset: Some(7),
            text: "1:2:x".into()
        }
    );
    // evd's Socket.IO endpoint adds the recovery position as a third argument.
    assert_eq!(
        all(
            wire,
            br#"42["MESSAGE_RECEIVED",{"room":"r","offset":8,"text":"1:2:y"},"e1:8:session:S1"]"#,
            false
        )[0],
        Incoming::Message {
            offset: Some(8),
            text: "1:2:y".into()
        }
    );
    assert_eq!(
        wire.url("http://127.0.0.1:3000/"),
        "ws://127.0.0.1:3000/socket.io/?EIO=4&transport=websocket"
    );
    assert_eq!(JSON.url("ws://127.0.0.1:8080"), "ws://127.0.0.1:8080/ws");
}

#[test]
fn uws_ops_and_events() {
    let wire = Wire {
        target: Target::Uws,
        codec: Codec::Json,
    };
    assert_eq!(wire.url("ws://127.0.0.1:3302"), "ws://127.0.0.1:3302/ws");
    let text =
        |m: Message| serde_json::from_str::<serde_json::Value>(m.to_text().unwrap()).unwrap();
    assert_eq!(
        text(wire.join("r1", None)),
        serde_json::json!({"op": "join_room", "room": "r1", "ref": JOIN_REF})
    );
    assert_eq!(
        text(wire.send("r1", "1:2:x".into())),
        serde_json::json!({"op": "send_message", "room": "r1", "text": "1:2:x"})
    );
    assert_eq!(wire.ping(), None);
    assert!(matches!(
        all(wire, br#"{"ev":"ROOM_JOINED","ref":1}"#, false)[0],
        Incoming::Joined { .. }
    ));
    assert_eq!(
        all(
            wire,
            br#"{"ev":"MESSAGE_RECEIVED","room":"r1","text":"1:2:x"}"#,
            false
        )[0],
        Incoming::Message {
            offset: None,
            text: "1:2:x".into()
        }
    );
    assert!(wire.parse(b"\x81", true, |_| {}).is_err());
}
