//! Envelopes carried over the broker between engine nodes, encoded as MessagePack maps.
//!
//! Every node subscribed to a room receives the room's envelopes in publish order and turns
//! them into client events itself, encoding each once per codec. Nodes ignore body kinds they
//! do not know, so a rolling upgrade can add kinds.

use crate::event::{ChatMessage, Event, PresenceMember};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One broker message for one room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The node that published it.
    pub node: String,
    /// What happened.
    pub body: Body,
}

/// What an envelope carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Body {
    /// A chat message kept in the room's history, with its position.
    Chat {
        /// The room's epoch when it was published.
        epoch: String,
        /// The message, with its offset.
        message: ChatMessage,
    },
    /// Presence changes seen by one node; every node coalesces them per tick.
    Presence {
        /// Users who became present in the room.
        joins: Vec<PresenceMember>,
        /// Users whose last connection left the room.
        leaves: Vec<PresenceMember>,
    },
    /// A server event relayed to the room's members as it is (e.g. `POLL_CREATED`).
    Event {
        /// The event.
        event: Event,
        /// The outbox row it came from, when relayed from the store: nodes drop a row they have
        /// already delivered, since the relay is at-least-once.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outbox_id: Option<i64>,
    },
    /// A poll's counts right after a vote batch committed. Counts only grow, so nodes merge
    /// tallies by taking each option's maximum: duplicates and reordering cannot regress them.
    PollTally {
        /// The poll id.
        poll: String,
        /// Votes per option id, as committed.
        counts: BTreeMap<String, u64>,
    },
    /// A question's upvotes right after an upvote batch committed; merged by maximum.
    QuestionVotes {
        /// The question id.
        question: String,
        /// Upvotes as committed.
        votes: u64,
    },
}

impl Envelope {
    /// Encodes for the broker.
    pub fn encode(&self) -> Result<Bytes, rmp_serde::encode::Error> {
        rmp_serde::to_vec_named(self).map(Bytes::from)
    }

    /// Decodes a broker payload, nested at most [`crate::limits::MAX_MSGPACK_DEPTH`] deep.
    pub fn decode(bytes: &[u8]) -> Result<Envelope, rmp_serde::decode::Error> {
        crate::codec::msgpack_from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips() {
        let env = Envelope {
            node: "n1".into(),
            body: Body::Chat {
                epoch: "e1".into(),
                message: ChatMessage {
                    room: "session:S1".into(),
                    offset: 7,
                    id: "m7".into(),
                    user: "u1".into(),
                    text: "hello".into(),
                    ts: 1_700_000_000_000,
                },
            },
        };
        let bytes = env.encode().unwrap();
        assert_eq!(Envelope::decode(&bytes).unwrap(), env);
        let p = Envelope {
            node: "n2".into(),
            body: Body::Presence {
                joins: vec![PresenceMember { user: "u1".into() }],
                leaves: vec![],
            },
        };
        assert_eq!(Envelope::decode(&p.encode().unwrap()).unwrap(), p);
    }
}
