//! Property tests: every op, event and broker envelope comes back unchanged from encode and
//! decode, in both codecs, events alone and batched into one frame. A fixed number of cases per
//! property keeps the run bounded under `cargo test`.

mod strategies;

use evd_protocol::Codec;
use evd_protocol::bus::Envelope;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use std::collections::BTreeSet;
use strategies::*;

/// Cases per property: enough to meet every kind many times over, quick in a debug build.
const CASES: u32 = 512;

fn config() -> Config {
    Config {
        cases: CASES,
        // A failure prints its shrunk input; a case worth keeping goes into tests/corpus by hand.
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_op_round_trips_in_both_codecs(req in request()) {
        for codec in Codec::ALL {
            let bytes = codec.encode(&req).unwrap();
            prop_assert_eq!(codec.decode_request(&bytes).unwrap(), req.clone(), "{}", codec);
        }
    }

    #[test]
    fn every_event_round_trips_alone_and_batched(events in proptest::collection::vec(event(), 1..5)) {
        for codec in Codec::ALL {
            let encoded: Vec<_> = events.iter().map(|e| codec.encode(e).unwrap()).collect();
            for (bytes, e) in encoded.iter().zip(&events) {
                prop_assert_eq!(codec.decode_events(bytes).unwrap(), vec![e.clone()], "{}", codec);
            }
            prop_assert_eq!(codec.decode_events(&codec.batch(&encoded)).unwrap(), events.clone());
        }
    }

    #[test]
    fn every_envelope_round_trips(env in envelope()) {
        prop_assert_eq!(Envelope::decode(&env.encode().unwrap()).unwrap(), env);
    }
}

/// The strategies reach every kind: a property that never meets a kind proves nothing about it.
#[test]
fn the_strategies_cover_every_op_and_event_kind() {
    let mut runner = TestRunner::deterministic();
    let (mut ops, mut events) = (BTreeSet::new(), BTreeSet::new());
    for _ in 0..2_000 {
        let req = request().new_tree(&mut runner).unwrap().current();
        ops.insert(kind_of(Ok(&req.op)));
        let ev = event().new_tree(&mut runner).unwrap().current();
        events.insert(kind_of(Err(&ev)));
    }
    assert_eq!(ops, evd_protocol::Op::NAMES.into_iter().collect());
    assert_eq!(events.len(), EVENT_KINDS, "{events:?}");
}
