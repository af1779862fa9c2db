//! Continuity of a room's chat: envelopes go to the hub in offset order, and a gap is read from
//! the room's history while later envelopes wait, or the room is declared lost.

use super::{Inner, RoomSub};
use crate::broker::{BrokerError, History, HistoryRequest};
use crate::room_key::RoomKey;
use evd_protocol::bus::{Body, Envelope};
use evd_protocol::op::StreamPosition;
use std::sync::Arc;
use std::time::Duration;

/// Envelopes held for one room while its gap is read from history. A room busier than this
/// during a recovery loses continuity instead (its members reconnect and recover).
const RECOVERY_BUFFER_MAX: usize = 10_000;

/// A failed recovery read is retried after this long.
const RECOVERY_RETRY: Duration = Duration::from_millis(250);

/// What a recovery read led to.
enum Recovery {
    Done,
    /// Envelopes that waited still have a gap: read again.
    Again,
    /// The read failed: wait and read again.
    Retry,
}

impl Inner {
    /// Delivers a chat envelope in order; true if a recovery must start.
    pub(super) fn accept_chat(
        &self,
        room: &mut RoomSub,
        epoch: String,
        offset: u64,
        env: Envelope,
    ) -> bool {
        if let Some(held) = &mut room.recovering {
            if held.len() >= RECOVERY_BUFFER_MAX {
                tracing::warn!(room = ?room.key, "recovery buffer full; room lost continuity");
                room.recovering = None;
                room.last = Some((epoch, offset));
                self.lost(&room.key);
            } else {
                held.push((epoch, offset, env));
            }
            return false;
        }
        match &mut room.last {
            Some((e, last)) if *e == epoch => {
                if offset <= *last {
                    // Already delivered (an overlap after a recovery).
                    false
                } else if offset == *last + 1 {
                    *last = offset;
                    self.handler.handle(&room.key, &env);
                    false
                } else {
                    room.recovering = Some(vec![(epoch, offset, env)]);
                    true
                }
            }
            Some(_) => {
                // A new epoch: the history this node's members saw is gone.
                room.last = Some((epoch, offset));
                self.lost(&room.key);
                false
            }
            None => {
                room.last = Some((epoch, offset));
                self.handler.handle(&room.key, &env);
                false
            }
        }
    }

    fn lost(&self, room: &RoomKey) {
        self.metrics.lost.increment(1);
        self.handler.lost(room);
    }

    pub(super) fn spawn_recovery(self: &Arc<Self>, channel: String) {
        let me = Arc::clone(self);
        tokio::spawn(async move { me.recover(channel).await });
    }

    /// Reads a room's gap from history and releases what waited meanwhile, in order.
    pub(super) async fn recover(self: Arc<Self>, channel: String) {
        loop {
            let (key, last) = {
                let rooms = self.rooms.lock();
                let Some(room) = rooms.get(&channel) else {
                    return;
                };
                if room.recovering.is_none() {
                    return;
                }
                (room.key.clone(), room.last.clone())
            };
            let Some((epoch, offset)) = last else {
                // Nothing delivered yet: there is no gap to fill, only order to keep.
                if let Some(room) = self.rooms.lock().get_mut(&channel) {
                    self.release(room, Vec::new());
                }
                return;
            };
            let pos = StreamPosition { epoch, offset };
            let read = self.read_history(&key, &HistoryRequest::Since(pos)).await;
            match self.finish_recovery(&channel, &key, offset, read) {
                Recovery::Done => return,
                Recovery::Again => continue,
                Recovery::Retry => tokio::time::sleep(RECOVERY_RETRY).await,
            }
        }
    }

    /// Applies a recovery read: fills the gap, or declares the room lost.
    fn finish_recovery(
        &self,
        channel: &str,
        key: &RoomKey,
        from: u64,
        read: Result<History, BrokerError>,
    ) -> Recovery {
        let mut rooms = self.rooms.lock();
        let Some(room) = rooms.get_mut(channel) else {
            return Recovery::Done;
        };
        let h = match read {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(room = ?key, error = %e, "recovery read failed; retrying");
                return Recovery::Retry;
            }
        };
        if h.complete {
            self.metrics.recoveries.increment(1);
            let envs = h
                .messages
                .into_iter()
                .map(|message| {
                    let offset = message.offset;
                    let env = Envelope {
                        node: self.node.clone(),
                        body: Body::Chat {
                            epoch: h.epoch.clone(),
                            message,
                        },
                    };
                    (h.epoch.clone(), offset, env)
                })
                .collect();
            return again_if(self.release(room, envs));
        }
        if from == 0 && h.offset == 0 {
            // A new epoch, but nothing was ever published in either: nothing to miss (a `user:`
            // room whose primary failed over, say).
            room.last = Some((h.epoch, 0));
            return again_if(self.release(room, Vec::new()));
        }
        tracing::info!(room = ?key, "gap no longer in history; room lost continuity");
        room.recovering = None;
        room.last = Some((h.epoch, h.offset));
        self.lost(key);
        Recovery::Done
    }

    /// Ends a recovery: delivers `from_history` then what waited, skipping what was already
    /// delivered. True if the waiting envelopes still have a gap (recover again).
    fn release(&self, room: &mut RoomSub, from_history: Vec<(String, u64, Envelope)>) -> bool {
        let held = room.recovering.take().unwrap_or_default();
        for (epoch, offset, env) in from_history.into_iter().chain(held) {
            // Once a gap reopens, accept_chat keeps the rest waiting for the next read.
            self.accept_chat(room, epoch, offset, env);
        }
        room.recovering.is_some()
    }
}

fn again_if(again: bool) -> Recovery {
    if again {
        Recovery::Again
    } else {
        Recovery::Done
    }
}
