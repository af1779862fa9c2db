//! Which rooms this node listens to at Redis: the first member's subscribe, the last one's
//! delayed unsubscribe, and resubscribing (then recovering) rooms whose subscription may be gone.

use super::conn::unavailable;
use super::keys::{owner_at, owner_in, slot_of};
use super::{Inner, RoomSub};
use crate::broker::{BrokerError, HistoryRequest};
use crate::room_key::RoomKey;
use fred::prelude::*;
use fred::types::cluster::ClusterRouting;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Stripes of the per-room subscription lock: orders `SSUBSCRIBE`/`SUNSUBSCRIBE` of one room.
const SUB_LOCK_STRIPES: usize = 64;

/// A room that followed its moved slot is subscribed once more this long after. A slot moves in
/// steps (importing, migrating, then each primary told the new owner), and a resubscribe made
/// while the primaries still disagree can reach the old owner, which drops the subscription
/// when the move completes, with every slot map already showing the new one: nothing else
/// would notice (a member then silently missed every later message, in CI under load).
const SLOT_RECHECK: Duration = Duration::from_secs(2);

/// Rooms resubscribed at once after a reconnect or a failed probe.
const RESUBSCRIBE_CONCURRENCY: usize = 32;

/// The striped per-room subscription locks (`Inner::sub_locks`).
pub(super) fn sub_locks() -> Box<[tokio::sync::Mutex<()>]> {
    (0..SUB_LOCK_STRIPES)
        .map(|_| tokio::sync::Mutex::new(()))
        .collect()
}

impl RoomSub {
    /// The room has no local members and its delayed unsubscribe is due at `now`.
    fn unsubscribe_due(&self, now: Instant) -> bool {
        !self.wanted && self.unsubscribe_at.is_some_and(|at| at <= now)
    }
}

impl Inner {
    fn sub_lock(&self, room: &RoomKey) -> &tokio::sync::Mutex<()> {
        &self.sub_locks[(room.shard_hash() as usize) % self.sub_locks.len()]
    }

    /// The primary the pub/sub client routes `channel`'s `SSUBSCRIBE` to: where the
    /// subscription lives. It is read from the subscriber's own slot map, not the command
    /// client's: during a migration the two can disagree, and recording the command client's view
    /// would hide a subscription made at the old owner (which drops it when the slot moves), so
    /// [`Inner::follow_slot_map`] would never resubscribe it.
    fn owner_of(&self, channel: &str) -> Option<Server> {
        owner_in(self.conn.sub.cached_cluster_state().as_ref(), channel)
    }

    /// Records where `channel`'s `SSUBSCRIBE` went: `routed_to`, the owner in the subscriber's
    /// slot map just before it was sent. If that map changed while the command was in flight
    /// (a migration under way), nobody knows which primary holds the subscription: the owner is
    /// recorded as unknown, which differs from every slot map, so the next probe round
    /// resubscribes. (Recording the map as read *after* the command once hid a subscription
    /// made at the old owner, which drops it when the slot moves: a member then silently missed
    /// every later message.)
    fn settle_owner(&self, channel: &str, routed_to: Option<Server>) {
        let now = self.owner_of(channel);
        if let Some(r) = self.rooms.lock().get_mut(channel) {
            r.owner = if now == routed_to { routed_to } else { None };
        }
    }

    /// This node has its first member in `room`: subscribes, and notes the room's position.
    pub(super) async fn subscribe(&self, room: &RoomKey) -> Result<(), BrokerError> {
        let channel = room.channel();
        let _order = self.sub_lock(room).lock().await;
        if let Some(r) = self.rooms.lock().get_mut(&channel) {
            // Still subscribed: the delayed unsubscribe had not run yet.
            r.wanted = true;
            r.unsubscribe_at = None;
            return Ok(());
        }
        self.rooms.lock().insert(
            channel.clone(),
            RoomSub {
                key: room.clone(),
                wanted: true,
                unsubscribe_at: None,
                last: None,
                recovering: None,
                slot: slot_of(&channel),
                owner: self.owner_of(&channel),
                recheck_at: None,
            },
        );
        let routed_to = self.owner_of(&channel);
        if let Err(e) = self.conn.sub.ssubscribe(channel.clone()).await {
            self.rooms.lock().remove(&channel);
            return Err(unavailable(e));
        }
        self.settle_owner(&channel, routed_to);
        // The position once subscribed: later messages arrive here. Earlier ones are the
        // joiner's history (read after this returns), so they are not delivered live.
        let pos = match self.read_history(room, &HistoryRequest::Latest(0)).await {
            Ok(pos) => pos,
            Err(e) => {
                self.rooms.lock().remove(&channel);
                let _ = self.conn.sub.sunsubscribe(channel).await;
                return Err(e);
            }
        };
        if let Some(r) = self.rooms.lock().get_mut(&channel) {
            match &r.last {
                Some((epoch, offset)) if *epoch == pos.epoch && *offset >= pos.offset => {}
                _ => r.last = Some((pos.epoch, pos.offset)),
            }
        }
        self.count_subscriptions();
        Ok(())
    }

    /// This node's last member left `room`: the unsubscribe is due after
    /// `broker.unsubscribe_delay_ms` (see [`Inner::reap_unsubscribes`]).
    pub(super) fn unsubscribe(&self, room: &RoomKey) {
        let delay = Duration::from_millis(self.settings.unsubscribe_delay_ms);
        if let Some(r) = self.rooms.lock().get_mut(&room.channel()) {
            r.wanted = false;
            r.unsubscribe_at = Some(Instant::now() + delay);
        }
    }

    /// (Re)subscribes `channels` and recovers each one's gap.
    pub(super) async fn resubscribe(self: &Arc<Self>, channels: Vec<String>, reason: &'static str) {
        if channels.is_empty() {
            return;
        }
        tracing::info!(rooms = channels.len(), reason, "resubscribing");
        futures_util::stream::iter(channels)
            .for_each_concurrent(RESUBSCRIBE_CONCURRENCY, |channel| async move {
                let key = match self.rooms.lock().get(&channel) {
                    Some(r) => r.key.clone(),
                    None => return,
                };
                let _order = self.sub_lock(&key).lock().await;
                if !self.rooms.lock().contains_key(&channel) {
                    return;
                }
                let routed_to = self.owner_of(&channel);
                if let Err(e) = self.conn.sub.ssubscribe(channel.clone()).await {
                    self.metrics.errors("resubscribe");
                    tracing::warn!(room = ?key, error = %e, "resubscribe failed");
                    return;
                }
                self.metrics.resubscribe(reason);
                self.settle_owner(&channel, routed_to);
                let start = {
                    let mut rooms = self.rooms.lock();
                    let Some(room) = rooms.get_mut(&channel) else {
                        return;
                    };
                    room.recheck_at =
                        (reason == "slot_moved").then(|| Instant::now() + SLOT_RECHECK);
                    if room.recovering.is_none() {
                        room.recovering = Some(Vec::new());
                        true
                    } else {
                        false
                    }
                };
                if start {
                    Arc::clone(self).recover(channel).await;
                }
            })
            .await;
    }

    /// The channels of the subscribed rooms that `pick` selects.
    pub(super) fn channels_where(&self, pick: impl Fn(&str, &RoomSub) -> bool) -> Vec<String> {
        let rooms = self.rooms.lock();
        rooms
            .iter()
            .filter(|(ch, r)| pick(ch, r))
            .map(|(ch, _)| ch.clone())
            .collect()
    }

    pub(super) fn all_channels(&self) -> Vec<String> {
        self.rooms.lock().keys().cloned().collect()
    }

    /// One pass over the subscribed rooms (every probe round, so every room's slot is kept, not
    /// hashed again): the channels whose owner in `state` is not where their subscription went
    /// (moved), and of the others those whose recheck after a move is due at `now`.
    fn slot_walk(
        &self,
        state: Option<&ClusterRouting>,
        now: Instant,
    ) -> (Vec<String>, Vec<String>) {
        let rooms = self.rooms.lock();
        let (mut moved, mut recheck) = (Vec::new(), Vec::new());
        for (channel, r) in rooms.iter() {
            if owner_at(state, r.slot) != r.owner.as_ref() {
                moved.push(channel.clone());
            } else if r.recheck_at.is_some_and(|at| at <= now) {
                recheck.push(channel.clone());
            }
        }
        (moved, recheck)
    }

    /// Follows the slot map: rooms whose slot moved must subscribe at the new owner.
    pub(super) async fn follow_slot_map(self: &Arc<Self>) {
        if let Err(e) = self.conn.client.sync_cluster().await {
            tracing::debug!(error = %e, "cluster sync failed");
        }
        let state = self.conn.client.cached_cluster_state();
        let (moved, recheck) = self.slot_walk(state.as_ref(), Instant::now());
        if !moved.is_empty() || !recheck.is_empty() {
            let _ = self.conn.sub.sync_cluster().await;
        }
        self.resubscribe(moved, "slot_moved").await;
        self.resubscribe(recheck, "slot_recheck").await;
    }

    /// Unsubscribes the rooms whose delayed unsubscribe is due.
    pub(super) async fn reap_unsubscribes(&self) {
        let now = Instant::now();
        let due: Vec<(String, RoomKey)> = {
            let rooms = self.rooms.lock();
            rooms
                .iter()
                .filter(|(_, r)| r.unsubscribe_due(now))
                .map(|(ch, r)| (ch.clone(), r.key.clone()))
                .collect()
        };
        for (channel, key) in due {
            let _order = self.sub_lock(&key).lock().await;
            let gone = {
                let mut rooms = self.rooms.lock();
                match rooms.get(&channel) {
                    Some(r) if r.unsubscribe_due(now) => {
                        rooms.remove(&channel);
                        true
                    }
                    _ => false,
                }
            };
            if gone && let Err(e) = self.conn.sub.sunsubscribe(channel).await {
                tracing::debug!(room = ?key, error = %e, "sunsubscribe failed");
            }
        }
        self.count_subscriptions();
    }

    fn count_subscriptions(&self) {
        self.metrics
            .subscriptions
            .set(self.rooms.lock().len() as f64);
    }
}
