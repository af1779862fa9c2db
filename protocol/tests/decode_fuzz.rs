//! A bounded fuzz run of every decoder under `cargo test` (cargo-fuzz needs a nightly toolchain):
//! client frames ([`Codec::decode_request`], the engine's whole op decode path) and server frames
//! ([`Codec::decode_events`]) in both codecs, Socket.IO packets in both of its parsers and its
//! recovery positions, broker envelopes, and tokens.
//!
//! Inputs are arbitrary bytes; valid encodings with bytes flipped, inserted, removed or cut; and
//! JSON or MessagePack built from the protocol's own keys and values. Whatever comes in, a decoder
//! answers a value or its typed error and never panics; an op it accepts passes the protocol's own
//! checks. Then the corpus (`tests/corpus/`) is replayed: tricky inputs kept for good, each with
//! the outcome its name promises.

mod strategies;

use evd_protocol::auth::{Claims, KeySpec, Role, Signer, Verifier, VerifyOptions};
use evd_protocol::bus::Envelope;
use evd_protocol::codec::DecodeErrorKind;
use evd_protocol::socketio::{self, Inbound};
use evd_protocol::{Codec, DecodeError, Event};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::path::{Path, PathBuf};
use strategies::*;

/// Cases per property. Fixed, so the run is bounded; each run draws new ones.
const CASES: u32 = 2_000;

fn config() -> Config {
    Config {
        cases: CASES,
        // A failure prints its shrunk input; keep it by adding it to tests/corpus.
        failure_persistence: None,
        ..Config::default()
    }
}

/// Keys and values of the protocol, and JSON's sharp edges, for inputs that get past the parser.
const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    " ",
    "\"",
    "\\",
    "\"op\"",
    "\"ref\"",
    "\"ev\"",
    "\"room\"",
    "\"text\"",
    "\"token\"",
    "\"history\"",
    "\"recover\"",
    "\"epoch\"",
    "\"offset\"",
    "\"client_id\"",
    "\"poll\"",
    "\"option\"",
    "\"question\"",
    "\"offer\"",
    "\"join_room\"",
    "\"leave_room\"",
    "\"send_message\"",
    "\"submit_poll_response\"",
    "\"ask_question\"",
    "\"upvote_question\"",
    "\"accept_offer\"",
    "\"decline_offer\"",
    "\"ping\"",
    "\"refresh\"",
    "\"HELLO\"",
    "\"ERROR\"",
    "\"ROOM_JOINED\"",
    "\"code\"",
    "\"message\"",
    "\"session:S1\"",
    "\"event:{x}\"",
    "\"user:\"",
    "\"\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "0",
    "1",
    "-1",
    "100",
    "101",
    "1e999",
    "0.5",
    "-0",
    "18446744073709551616",
    "9223372036854775808",
    "-9223372036854775809",
    "null",
    "true",
    "false",
    "\u{feff}",
];

/// One case's byte edit: what to do, where, and with which byte.
type Edit = (u8, proptest::sample::Index, u8);

/// Applies edits: flip bits, insert, remove, cut, or put a byte that means something to a parser.
fn mutate(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    const SHARP: &[u8] = b"\x00\xff\xc1\xdd\xdf\x91\x81\"\\{[:,";
    for (kind, at, byte) in edits {
        if bytes.is_empty() {
            bytes.push(*byte);
            continue;
        }
        let i = at.index(bytes.len());
        match kind % 5 {
            0 => bytes[i] ^= byte | 1,
            1 => bytes.insert(i, *byte),
            2 => {
                bytes.remove(i);
            }
            3 => bytes.truncate(i),
            _ => bytes[i] = SHARP[usize::from(*byte) % SHARP.len()],
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    vec(any::<Edit>(), 1..6)
}

/// Engine.IO and Socket.IO packet heads: type digits, ack ids, namespaces, and junk after them.
const SOCKETIO_HEADS: &[&str] = &[
    "",
    "0",
    "1",
    "2",
    "2probe",
    "3",
    "4",
    "40",
    "40/",
    "40/admin,",
    "41",
    "42",
    "421",
    "4299",
    "42/,",
    "42/x,7",
    "43",
    "431",
    "44",
    "45",
    "451-",
    "46",
    "5",
    "6",
    "7",
    "4a",
    "42-1",
    "4218446744073709551616",
];

/// JSON-ish text from [`JSON_TOKENS`], mostly near-valid and often not.
fn json_soup() -> impl Strategy<Value = Vec<u8>> {
    vec(proptest::sample::select(JSON_TOKENS), 0..40).prop_map(|t| t.concat().into_bytes())
}

/// Any JSON value whose keys and strings are the protocol's, in both codecs' encodings.
fn structured() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let word = proptest::sample::select(&JSON_TOKENS[9..45]).prop_map(|t| t.trim_matches('"'));
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        word.clone().prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((word.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.into(), v)).collect())),
        ]
    })
}

/// Encodes a structured value with `codec`.
fn encode_value(codec: Codec, v: &serde_json::Value) -> Vec<u8> {
    codec.encode(v).unwrap().to_vec()
}

/// Decodes `frame` as a client op and checks the outcome is a valid op or a typed error.
fn check_request(codec: Codec, frame: &[u8]) -> Result<(), TestCaseError> {
    match codec.decode_request(frame) {
        Ok(req) => {
            prop_assert!(req.op.validate().is_ok(), "accepted an invalid op: {req:?}");
            let again = codec.encode(&req).unwrap();
            prop_assert_eq!(codec.decode_request(&again).unwrap(), req);
        }
        Err(e) => {
            prop_assert!(!e.message.is_empty());
            prop_assert_ne!(e.kind, DecodeErrorKind::WrongFrameType);
        }
    }
    Ok(())
}

/// Decodes `frame` as a server frame: events, or a `Malformed` error.
fn check_events(codec: Codec, frame: &[u8]) -> Result<(), TestCaseError> {
    if let Err(e) = codec.decode_events(frame) {
        prop_assert_eq!(e.kind, DecodeErrorKind::Malformed);
    }
    Ok(())
}

/// Checks a decoded Socket.IO packet: an op it carries passes the protocol's own checks, and a
/// refusal says why.
fn check_socketio(decoded: Result<Inbound, DecodeError>) -> Result<(), TestCaseError> {
    match decoded {
        Ok(Inbound::Request(req)) => {
            prop_assert!(req.op.validate().is_ok(), "accepted an invalid op: {req:?}")
        }
        Ok(_) => {}
        Err(e) => prop_assert!(!e.message.is_empty()),
    }
    Ok(())
}

/// Socket.IO's decoders on one input: the JSON parser's text frames, the msgpack parser's binary
/// ones, and a recovery position.
fn check_socketio_all(frame: &[u8]) -> Result<(), TestCaseError> {
    check_socketio(socketio::decode_msgpack(frame))?;
    if let Ok(text) = std::str::from_utf8(frame) {
        check_socketio(socketio::decode_text(text))?;
        let _ = socketio::parse_position(text);
    }
    Ok(())
}

/// Every decoder on one input.
fn check_all(frame: &[u8]) -> Result<(), TestCaseError> {
    for codec in Codec::ALL {
        check_request(codec, frame)?;
        check_events(codec, frame)?;
    }
    check_socketio_all(frame)?;
    let _ = Envelope::decode(frame);
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(frame in vec(any::<u8>(), 0..256)) {
        check_all(&frame)?;
    }

    #[test]
    fn mutated_ops_decode_or_give_a_typed_error(req in request(), edits in edits()) {
        for codec in Codec::ALL {
            let frame = mutate(codec.encode(&req).unwrap().to_vec(), &edits);
            check_request(codec, &frame)?;
        }
    }

    #[test]
    fn mutated_events_and_envelopes_decode_or_give_a_typed_error(
        ev in event(), env in envelope(), edits in edits(),
    ) {
        for codec in Codec::ALL {
            check_events(codec, &mutate(codec.encode(&ev).unwrap().to_vec(), &edits))?;
        }
        let _ = Envelope::decode(&mutate(env.encode().unwrap().to_vec(), &edits));
    }

    #[test]
    fn protocol_shaped_json_decodes_or_gives_a_typed_error(frame in json_soup()) {
        check_all(&frame)?;
    }

    #[test]
    fn socketio_shaped_packets_decode_or_give_a_typed_error(
        head in proptest::sample::select(SOCKETIO_HEADS), body in json_soup(), v in structured(),
    ) {
        let mut text = head.as_bytes().to_vec();
        text.extend_from_slice(&body);
        check_socketio_all(&text)?;
        // The event as an array of protocol-shaped arguments, and the msgpack parser's packet.
        let args = serde_json::Value::Array(vec!["send_message".into(), v.clone()]);
        check_socketio_all(format!("{head}{args}").as_bytes())?;
        let packet = serde_json::json!({"type": 2, "nsp": "/", "data": args, "id": 1});
        check_socketio_all(&rmp_serde::to_vec_named(&packet).unwrap())?;
    }

    #[test]
    fn protocol_shaped_values_decode_or_give_a_typed_error(v in structured()) {
        for codec in Codec::ALL {
            let frame = encode_value(codec, &v);
            check_request(codec, &frame)?;
            check_events(codec, &frame)?;
        }
    }

    #[test]
    fn a_tampered_token_is_refused_or_means_the_same(edits in edits(), junk in vec(any::<u8>(), 0..64)) {
        let (verifier, token, claims) = token_setup();
        let tampered = String::from_utf8_lossy(&mutate(token.into_bytes(), &edits)).into_owned();
        if let Ok(c) = verifier.verify(&tampered) {
            prop_assert_eq!(c, claims);
        }
        prop_assert!(verifier.verify(&String::from_utf8_lossy(&junk)).is_err());
    }
}

fn token_setup() -> (Verifier, String, Claims) {
    const SECRET: &[u8] = b"fuzz-secret-fuzz-secret-fuzz-secret!";
    let verifier = Verifier::new(KeySpec::Hs256(SECRET), &VerifyOptions::default()).unwrap();
    let claims = Claims::new("u1", "o1", Role::Attendee, 1_700_000_000, 1 << 33);
    let token = Signer::new(KeySpec::Hs256(SECRET))
        .unwrap()
        .sign(&claims)
        .unwrap();
    (verifier, token, claims)
}

// ---- the corpus ----

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("corpus")
}

/// A corpus file's bytes: `.json` as is; `.hex` as hex digits, with `#` comments and spaces.
fn read_input(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    if path.extension().is_some_and(|e| e == "hex") {
        let text = String::from_utf8(raw).unwrap();
        let digits: String = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
            .collect();
        (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap())
            .collect()
    } else {
        raw
    }
}

/// Every file of one corpus folder (`json/` and `msgpack/` inside it), with its codec, sorted.
fn files(dir: &str) -> Vec<(Codec, PathBuf)> {
    let mut v = Vec::new();
    for (codec, sub) in [(Codec::Json, "json"), (Codec::MsgPack, "msgpack")] {
        for entry in std::fs::read_dir(corpus().join(dir).join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json" || e == "hex") {
                v.push((codec, path));
            }
        }
    }
    v.sort_by(|a, b| a.1.cmp(&b.1));
    assert!(v.len() >= 2, "corpus/{dir} is missing its files");
    v
}

/// `corpus/ops`: client frames. `ok-*` decode; `invalid-*` and `malformed-*` are refused with that
/// kind; every one goes through all the decoders without a panic.
#[test]
fn the_op_corpus_decodes_as_each_file_says() {
    for (codec, path) in files("ops") {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let name = format!("{codec} {file}");
        let frame = read_input(&path);
        let got = codec.decode_request(&frame);
        match file.split('-').next().unwrap() {
            "ok" => assert!(got.is_ok(), "{name}: {got:?}"),
            "invalid" => assert_eq!(
                got.as_ref().map_err(|e| e.kind),
                Err(DecodeErrorKind::Invalid),
                "{name}"
            ),
            "malformed" => assert_eq!(
                got.as_ref().map_err(|e| e.kind),
                Err(DecodeErrorKind::Malformed),
                "{name}"
            ),
            other => panic!("{name}: unknown prefix {other}"),
        }
        check_all(&frame).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// `corpus/events`: server frames. `ok-*` decode to events; `malformed-*` are refused.
#[test]
fn the_event_corpus_decodes_as_each_file_says() {
    for (codec, path) in files("events") {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let name = format!("{codec} {file}");
        let frame = read_input(&path);
        let got: Result<Vec<Event>, _> = codec.decode_events(&frame);
        if file.starts_with("ok-") {
            assert!(got.is_ok_and(|e| !e.is_empty()), "{name}");
        } else {
            assert!(file.starts_with("malformed-"), "{name}: unknown prefix");
            assert_eq!(
                got.map_err(|e| e.kind),
                Err(DecodeErrorKind::Malformed),
                "{name}"
            );
        }
        check_all(&frame).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// Nesting as deep as a 64 KiB frame allows, built here rather than kept as files: the decoders'
/// depth limits refuse it with an error instead of overflowing the stack (a test thread's stack
/// is as small as an engine worker's).
#[test]
fn frames_nested_as_deep_as_the_frame_limit_are_refused() {
    const FRAME: usize = 64 * 1024;
    let cases: [(Codec, Vec<u8>); 5] = [
        (Codec::Json, "[".repeat(FRAME).into_bytes()),
        (Codec::Json, "{\"op\":".repeat(FRAME / 6).into_bytes()),
        (Codec::MsgPack, vec![0x91; FRAME]),
        (Codec::MsgPack, [0x81, 0xa2, b'o', b'p'].repeat(FRAME / 4)),
        (
            Codec::MsgPack,
            [0x81, 0xa3, b'r', b'e', b'f'].repeat(FRAME / 5),
        ),
    ];
    for (codec, frame) in cases {
        assert!(codec.decode_request(&frame).is_err(), "{codec}");
        assert!(codec.decode_events(&frame).is_err(), "{codec}");
    }
    assert!(Envelope::decode(&vec![0x91; FRAME]).is_err());
}
