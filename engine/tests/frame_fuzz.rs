//! The engine's frame path without a socket: a session's read loop
//! (`session::reader::read_loop`, the loop every connection runs) fed frames from a stream, in
//! both codecs and both frame types: arbitrary bytes, and valid ops with bytes flipped, inserted,
//! removed or cut. Whatever arrives, the loop never panics; each frame it cannot decode is
//! answered `ERROR bad_request`; everything it queues decodes on the client; and the only close
//! a stream of such frames earns is 4500 (too many malformed frames). A fixed case count keeps
//! the run bounded.

mod common;

use axum::extract::ws::Message;
use bytes::Bytes;
use common::{PATIENCE, now, settings};
use evd_engine::conn::Wire;
use evd_engine::conn::queue::Payload;
use evd_engine::session::Session;
use evd_engine::session::reader::read_loop;
use evd_engine::{Node, Shutdown};
use evd_protocol::auth::{Claims, Role};
use evd_protocol::op::{JoinRoom, LeaveRoom, Op, Ping, Refresh, SendMessage};
use evd_protocol::{Codec, ErrorCode, Event, Request, RoomName};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::sync::Arc;

/// Connections fuzzed, each with up to [`MAX_FRAMES`] frames.
const CASES: u32 = 300;
/// Frames per connection: above the default `limits.bad_frame_strikes` (20), so some cases end
/// in 4500 and others do not.
const MAX_FRAMES: usize = 40;

/// Valid ops to mutate, in the shape a client sends them.
fn seeds() -> Vec<Request> {
    let room = RoomName::parse("event:E1").unwrap();
    vec![
        Request::with_ref(1, Op::Ping(Ping {})),
        Request::with_ref(
            2,
            Op::JoinRoom(JoinRoom {
                room: room.clone(),
                history: 5,
                recover: None,
            }),
        ),
        Request::with_ref(
            3,
            Op::SendMessage(SendMessage {
                room: room.clone(),
                text: "hi".into(),
                client_id: Some("c1".into()),
            }),
        ),
        Request::with_ref(4, Op::LeaveRoom(LeaveRoom { room })),
        Request::with_ref(
            5,
            Op::Refresh(Refresh {
                token: "a.b.c".into(),
            }),
        ),
    ]
}

/// One frame as a strategy: `(text frame?, bytes)`.
fn frame(codec: Codec) -> impl Strategy<Value = (bool, Vec<u8>)> {
    let seeds: Vec<Vec<u8>> = seeds()
        .iter()
        .map(|r| codec.encode(r).unwrap().to_vec())
        .collect();
    let mutated = (
        proptest::sample::select(seeds),
        vec(
            (0u8..4, any::<proptest::sample::Index>(), any::<u8>()),
            0..4,
        ),
    )
        .prop_map(|(mut bytes, edits)| {
            for (kind, at, byte) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] ^= byte | 1,
                    1 => bytes.insert(i, byte),
                    2 => {
                        bytes.remove(i);
                    }
                    _ => bytes.truncate(i),
                }
            }
            bytes
        });
    // Mostly the codec's own frame type, so most frames reach the decoder.
    let text = prop_oneof![4 => Just(codec == Codec::Json), 1 => Just(codec != Codec::Json)];
    (text, prop_oneof![vec(any::<u8>(), 0..128), mutated])
}

fn message((text, bytes): &(bool, Vec<u8>)) -> Message {
    if *text {
        Message::Text(String::from_utf8_lossy(bytes).into_owned().into())
    } else {
        Message::Binary(Bytes::from(bytes.clone()))
    }
}

/// Whether the engine's decode path refuses this frame.
fn refused(codec: Codec, m: &Message) -> bool {
    match (m, codec) {
        (Message::Text(t), Codec::Json) => codec.decode_request(t.as_bytes()).is_err(),
        (Message::Binary(b), Codec::MsgPack) => codec.decode_request(b).is_err(),
        _ => true,
    }
}

/// Runs one connection's read loop over `frames` and checks what it queued.
async fn one_connection(
    node: &Arc<Node>,
    codec: Codec,
    frames: Vec<Message>,
) -> Result<(), TestCaseError> {
    let claims = Claims::new("u1", "o1", Role::Organizer, now(), 3_600);
    let conn = node
        .open_conn(&claims, Wire::Evd, codec, None)
        .await
        .unwrap();
    let session = Box::new(Session::new(Arc::clone(node), Arc::clone(&conn), claims));
    let expected_refusals = frames.iter().filter(|m| refused(codec, m)).count();
    let stream = futures_util::stream::iter(frames.into_iter().map(Ok));
    let why = tokio::time::timeout(PATIENCE, read_loop(stream, session))
        .await
        .expect("the read loop ends when its stream does");
    node.close_conn(&conn).await;
    let queued = conn.queue.take(usize::MAX, &node.stats);
    let mut bad_requests = 0;
    for out in &queued.items {
        let events = match (&out.payload, codec) {
            (Payload::Text(t), Codec::Json) => codec.decode_events(t.as_bytes()),
            (Payload::Binary(b), Codec::MsgPack) => codec.decode_events(b),
            (p, _) => return Err(TestCaseError::fail(format!("{p:?} on {codec}"))),
        };
        let events = events.map_err(|e| TestCaseError::fail(format!("undecodable: {e}")))?;
        bad_requests += events
            .iter()
            .filter(|e| matches!(e, Event::Error(err) if err.code == ErrorCode::BadRequest))
            .count();
    }
    match conn.queue.closing() {
        None => {
            prop_assert_eq!(why, "client_gone");
            prop_assert_eq!(
                bad_requests,
                expected_refusals,
                "one ERROR per refused frame"
            );
        }
        Some(code) => {
            // Strikes ran out: the frames after the close are not read.
            prop_assert_eq!(code.code(), 4500, "{}", why);
            prop_assert!(bad_requests <= expected_refusals);
        }
    }
    Ok(())
}

#[test]
fn arbitrary_frames_never_break_a_connections_read_loop() {
    // A multi-threaded runtime, as the engine runs, with its default 2 MiB worker stacks; the
    // cases run on this test thread (as small) through `block_on`.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = rt.block_on(async { Node::new(settings(), Shutdown::new()).unwrap() });
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let cases = proptest::sample::select(Codec::ALL.to_vec())
        .prop_flat_map(|codec| (Just(codec), vec(frame(codec), 1..=MAX_FRAMES)));
    runner
        .run(&cases, |(codec, frames)| {
            let frames = frames.iter().map(message).collect();
            rt.block_on(one_connection(&node, codec, frames))
        })
        .unwrap();
}
