//! [`Tallies`]: a poll's committed counts announced after its votes commit, off the votes' path.
//!
//! The vote writer only marks the polls a batch touched; one task reads the marked polls'
//! counts from the store, one read for all marked polls of an org, and broadcasts them on the
//! broker ([`Body::PollTally`]). A vote's `ACK` so waits for its own commit only, not for a
//! read per poll the batch touched, and a poll marked again while its read is pending is read
//! once: under load the reads coalesce by themselves. Every mark is read after it was made, so
//! the last committed count of every poll is always announced. The set of marks holds each
//! poll at most once.

use crate::broker::Broker;
use crate::room_key::RoomKey;
use crate::shutdown::Shutdown;
use evd_api::store::Store;
use evd_protocol::bus::Body;
use evd_protocol::{RoomKind, RoomName};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How long after a failed read or broadcast a poll's count is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How long the task gathers marks after the first before it reads: the counts go out on the
/// rooms' tick (`tick_ms`, 200 ms or more), so reading more often than this only costs store
/// round trips. Without it a node read the tallies once per vote batch, one or two votes each at
/// 100 votes a second: as many reads as commits.
const GATHER: Duration = Duration::from_millis(50);

/// A poll whose committed counts changed: its org, id and session.
pub type PollRef = (String, String, String);

/// The polls waiting for their counts to be announced; cheap to clone.
#[derive(Clone, Default)]
pub struct Tallies {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    dirty: Mutex<BTreeSet<PollRef>>,
    wake: Notify,
}

impl std::fmt::Debug for Tallies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tallies")
            .field("pending", &self.inner.dirty.lock().len())
            .finish()
    }
}

impl Tallies {
    /// Starts the task that announces marked polls' counts, on `shutdown`; it announces what is
    /// still marked before it ends.
    pub fn spawn(store: Arc<dyn Store>, broker: Arc<dyn Broker>, shutdown: &Shutdown) -> Tallies {
        let tallies = Tallies::default();
        let inner = Arc::clone(&tallies.inner);
        let stopped = shutdown.stopped();
        shutdown.spawn(async move {
            tokio::pin!(stopped);
            loop {
                let stopping = tokio::select! {
                    _ = &mut stopped => true,
                    _ = inner.wake.notified() => false,
                };
                let stopping = stopping
                    || tokio::select! {
                        _ = &mut stopped => true,
                        () = tokio::time::sleep(GATHER) => false,
                    };
                let marked = std::mem::take(&mut *inner.dirty.lock());
                let mut failed = Vec::new();
                for (org, polls) in by_org(&marked) {
                    for (poll, session) in publish(&*store, &*broker, org, &polls).await {
                        failed.push((org.to_owned(), poll.to_owned(), session.to_owned()));
                    }
                }
                if stopping {
                    return;
                }
                // A count that could not be read or sent is tried again, so the last one is
                // never left unannounced; the wait keeps a failing store from being hammered.
                if !failed.is_empty() {
                    tokio::select! {
                        _ = &mut stopped => return,
                        _ = tokio::time::sleep(RETRY_AFTER) => {}
                    }
                    let mut dirty = inner.dirty.lock();
                    dirty.extend(failed);
                    inner.wake.notify_one();
                }
            }
        });
        tallies
    }

    /// Marks polls whose counts changed; their counts are read and announced soon after.
    pub fn mark(&self, polls: impl IntoIterator<Item = PollRef>) {
        let mut dirty = self.inner.dirty.lock();
        let before = dirty.len();
        dirty.extend(polls);
        let grew = dirty.len() > before;
        drop(dirty);
        if grew {
            self.inner.wake.notify_one();
        }
    }
}

/// The marked polls grouped by org: each poll's id and session.
fn by_org(marked: &BTreeSet<PollRef>) -> BTreeMap<&str, Vec<(&str, &str)>> {
    let mut out: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (org, poll, session) in marked {
        out.entry(org.as_str())
            .or_default()
            .push((poll.as_str(), session.as_str()));
    }
    out
}

/// Reads the committed counts of an org's polls in one go and broadcasts each poll's to its
/// session room; returns the polls whose counts could not be read or sent.
async fn publish<'a>(
    store: &dyn Store,
    broker: &dyn Broker,
    org: &str,
    polls: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let ids: Vec<String> = polls.iter().map(|(poll, _)| (*poll).to_owned()).collect();
    let mut tallies = match store.poll_tallies(org, &ids).await {
        Ok(tallies) => tallies,
        Err(e) => {
            tracing::warn!(error = %e, org, polls = ids.len(), "poll tallies read failed; retrying");
            return polls.to_vec();
        }
    };
    let mut failed = Vec::new();
    for (poll, session) in polls {
        let Some(counts) = tallies.remove(*poll) else {
            continue;
        };
        let Some(room) = RoomName::new(RoomKind::Session, session)
            .ok()
            .map(|r| RoomKey::new(org, r))
        else {
            continue;
        };
        let body = Body::PollTally {
            poll: (*poll).to_owned(),
            counts,
        };
        if let Err(e) = broker.broadcast(&room, body).await {
            tracing::warn!(error = %e, "poll tally broadcast failed; retrying");
            failed.push((*poll, *session));
        }
    }
    failed
}
