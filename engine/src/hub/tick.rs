//! Tick coalescing, in one place: presence changes, poll tallies and question votes are not
//! sent when they arrive. They accumulate per room ([`Changes`]), [`Hub::take_tick`] hands each
//! changed room's net state over once per tick, and [`TickWork::events`] turns it into one
//! `PRESENCE_UPDATE`, `POLL_RESULTS` or `QUESTION_UPDATED` per room and item. Tallies are
//! absolute counts merged by maximum, so the order and number of copies in which they arrive
//! from other nodes do not matter.

use super::{Hub, Room, Shard};
use crate::room_key::{RoomKey, RoomPhase};
use evd_protocol::Event;
use evd_protocol::event::{PollResults, PresenceMember, PresenceUpdate, QuestionUpdated};
use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Default)]
pub(super) struct Changes {
    /// Net presence change per user since the last tick: +1 joined, -1 left.
    presence_diff: HashMap<String, i32>,
    /// Latest known counts per poll, kept while the room has local members so a late or
    /// duplicate tally can never make them go back.
    polls: HashMap<String, BTreeMap<String, u64>>,
    /// Polls whose counts changed since the last tick.
    polls_dirty: HashSet<String>,
    /// Latest known upvotes per question.
    questions: HashMap<String, u64>,
    /// Questions whose votes changed since the last tick.
    questions_dirty: HashSet<String>,
}

/// One room's coalesced changes since the last tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickWork {
    /// The room.
    pub room: RoomKey,
    /// Users who joined.
    pub joins: Vec<PresenceMember>,
    /// Users who left.
    pub leaves: Vec<PresenceMember>,
    /// Polls whose counts changed, with their counts.
    pub polls: Vec<(String, BTreeMap<String, u64>)>,
    /// Questions whose votes changed, with their votes.
    pub questions: Vec<(String, u64)>,
}

impl TickWork {
    /// True when presence changed.
    pub fn presence_changed(&self) -> bool {
        !self.joins.is_empty() || !self.leaves.is_empty()
    }

    /// The events this room gets on this tick. `presence_count` is the room's member count,
    /// read by the caller when [`TickWork::presence_changed`] (`None`: the count could not be
    /// read, so no `PRESENCE_UPDATE` this tick); above `full_room_limit` the update carries the
    /// count only.
    pub fn events(self, presence_count: Option<u64>, full_room_limit: u64) -> Vec<Event> {
        let room = self.room.room().to_string();
        let mut out = Vec::with_capacity(1 + self.polls.len() + self.questions.len());
        if let Some(count) = presence_count.filter(|_| self.presence_changed()) {
            let full = count <= full_room_limit;
            out.push(Event::PresenceUpdate(PresenceUpdate {
                room: room.clone(),
                count,
                joins: full.then_some(self.joins),
                leaves: full.then_some(self.leaves),
            }));
        }
        for (poll, counts) in self.polls {
            let total = counts.values().sum();
            out.push(Event::PollResults(PollResults {
                room: room.clone(),
                poll,
                counts,
                total,
            }));
        }
        for (question, votes) in self.questions {
            out.push(Event::QuestionUpdated(QuestionUpdated {
                outbox_id: None,
                room: room.clone(),
                question,
                votes,
                hidden: None,
            }));
        }
        out
    }
}

impl Hub {
    /// Records presence changes from the broker, to be sent on the next tick.
    pub(super) fn record_presence(
        &self,
        room: &RoomKey,
        joins: &[PresenceMember],
        leaves: &[PresenceMember],
    ) {
        self.with_room(room, |r| {
            let r = r.changes();
            for m in joins {
                *r.presence_diff.entry(m.user.clone()).or_default() += 1;
            }
            for m in leaves {
                *r.presence_diff.entry(m.user.clone()).or_default() -= 1;
            }
            true
        });
    }

    /// Merges a poll tally (per option, the larger count wins).
    pub(super) fn record_poll(&self, room: &RoomKey, poll: &str, counts: &BTreeMap<String, u64>) {
        self.with_room(room, |r| {
            let r = r.changes();
            let known = r.polls.entry(poll.to_owned()).or_default();
            let mut changed = false;
            for (option, &n) in counts {
                let slot = known.entry(option.clone()).or_default();
                if n > *slot {
                    *slot = n;
                    changed = true;
                }
            }
            if changed {
                r.polls_dirty.insert(poll.to_owned());
            }
            changed
        });
    }

    /// Merges a question's upvotes (the larger count wins).
    pub(super) fn record_question(&self, room: &RoomKey, question: &str, votes: u64) {
        self.with_room(room, |r| {
            let r = r.changes();
            let slot = r.questions.entry(question.to_owned()).or_default();
            if votes > *slot {
                *slot = votes;
                r.questions_dirty.insert(question.to_owned());
                return true;
            }
            false
        });
    }

    /// Runs `f` on `room` if it has local members; marks it for the next tick when `f` says it
    /// changed something.
    fn with_room(&self, room: &RoomKey, f: impl FnOnce(&mut Room) -> bool) {
        let mut shard = self.shard(room).lock();
        let Some(r) = shard.rooms.get_mut(room) else {
            return;
        };
        if f(r) {
            shard.dirty.insert(room.clone());
        }
    }

    /// Takes the coalesced changes since their last take of every changed room `phase` takes.
    /// Presence changes that cancel out (a quick leave and rejoin) are dropped.
    pub fn take_tick(&self, phase: RoomPhase) -> Vec<TickWork> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let Shard { rooms, dirty } = &mut *shard;
            for room in dirty.extract_if(|room| phase.takes(room)) {
                let Some(r) = rooms.get_mut(&room).and_then(|r| r.changes.as_deref_mut()) else {
                    continue;
                };
                let mut work = TickWork {
                    room,
                    joins: Vec::new(),
                    leaves: Vec::new(),
                    polls: Vec::new(),
                    questions: Vec::new(),
                };
                for (user, n) in r.presence_diff.drain() {
                    match n {
                        1.. => work.joins.push(PresenceMember { user }),
                        ..0 => work.leaves.push(PresenceMember { user }),
                        0 => {}
                    }
                }
                work.joins.sort();
                work.leaves.sort();
                for poll in r.polls_dirty.drain() {
                    if let Some(counts) = r.polls.get(&poll) {
                        work.polls.push((poll, counts.clone()));
                    }
                }
                for q in r.questions_dirty.drain() {
                    if let Some(&votes) = r.questions.get(&q) {
                        work.questions.push((q, votes));
                    }
                }
                if work.presence_changed() || !work.polls.is_empty() || !work.questions.is_empty() {
                    out.push(work);
                }
            }
        }
        out
    }
}
