//! Repairing a room after its primary failed over: the promoted replica may lack the dead
//! primary's last writes (replication is asynchronous), which members may already have received
//! (pub/sub fans out before replication). The node refills them from the chat archive, where
//! every acknowledged message is, so the room keeps its epoch and its members recover exactly.

use super::Inner;
use super::conn::unavailable;
use super::keys::{script_keys, value_u64};
use crate::broker::{BrokerError, lua, new_epoch};
use crate::room_key::RoomKey;
use evd_protocol::bus::{Body, Envelope};
use fred::prelude::*;
use std::time::Duration;

/// How long a repair waits for the archive to reach an offset this node knows was handed out
/// (its archive commit may still be in flight) before it leaves that offset a hole.
const ARCHIVE_CATCH_UP: Duration = Duration::from_secs(1);

/// How often the archive is read again meanwhile.
const ARCHIVE_POLL: Duration = Duration::from_millis(100);

/// A publish or history script is run again at most this often after repairing its room (a
/// second failover in between could need a second repair).
pub(super) const REPAIR_TRIES: usize = 3;

/// A script reply that says the room's primary failed over: `Some((epoch, offset))` as the
/// promoted replica has them.
pub(super) fn failover(out: &[Value]) -> Option<(String, u64)> {
    match out {
        [mark, epoch, offset] if mark.as_str().as_deref() == Some(lua::FAILOVER) => {
            Some((epoch.as_string()?, value_u64(offset)?))
        }
        _ => None,
    }
}

impl Inner {
    /// The highest offset of `epoch` this node handed to its hub for `room`.
    fn delivered(&self, room: &RoomKey, epoch: &str) -> u64 {
        match self
            .rooms
            .lock()
            .get(&room.channel())
            .and_then(|r| r.last.as_ref())
        {
            Some((e, o)) if e == epoch => *o,
            _ => 0,
        }
    }

    /// Refills `room`'s history past `offset` (what the promoted replica holds) from the
    /// archive, then lets the scripts run on. Without an archive the room starts a new epoch,
    /// as it must: offsets handed out by the dead primary could otherwise be handed out again.
    pub(super) async fn repair(
        &self,
        room: &RoomKey,
        epoch: &str,
        offset: u64,
    ) -> Result<(), BrokerError> {
        let archive = self.archive.get().cloned();
        let floor = self.delivered(room, epoch);
        let mut pairs: Vec<Value> = Vec::new();
        let mut fresh = String::new();
        match archive {
            None => fresh = new_epoch(),
            Some(archive) => {
                let deadline = tokio::time::Instant::now() + ARCHIVE_CATCH_UP;
                let rows = loop {
                    let rows = archive
                        .since(room, epoch, offset, self.history.size)
                        .await?;
                    let top = rows.last().map_or(offset, |m| m.offset);
                    if top >= floor || tokio::time::Instant::now() >= deadline {
                        break rows;
                    }
                    tokio::time::sleep(ARCHIVE_POLL).await;
                };
                for mut message in rows {
                    let o = message.offset;
                    message.offset = 0;
                    let env = Envelope {
                        node: self.node.clone(),
                        body: Body::Chat {
                            epoch: String::new(),
                            message,
                        },
                    };
                    pairs.push(o.to_string().into());
                    pairs.push(Value::Bytes(env.encode().map_err(unavailable)?));
                }
            }
        }
        let refilled = pairs.len() / 2;
        let mut args: Vec<Value> = vec![
            epoch.into(),
            offset.to_string().into(),
            (self.history.meta_ttl_secs * 1000).to_string().into(),
            self.history.size.to_string().into(),
            floor.to_string().into(),
            fresh.as_str().into(),
        ];
        args.extend(pairs);
        let done: i64 = self
            .repair
            .evalsha_with_reload(&self.conn.client, script_keys(room), args)
            .await
            .map_err(unavailable)?;
        self.metrics.repairs.increment(1);
        tracing::info!(
            ?room,
            epoch,
            from = offset,
            refilled,
            floor,
            new_epoch = !fresh.is_empty(),
            done,
            "room repaired after a failover"
        );
        Ok(())
    }
}
