//! Presence in Redis, shared by every node.
//!
//! Per room (all under the room's hash tag): `…:pu`, a hash of user → connections on every
//! node, so the member count is one `HLEN`; `…:pn`, a sorted set of node → heartbeat deadline;
//! and `…:pn:<node>`, each node's own user → connections. A node refreshes its deadline in
//! every room it has members in each third of `presence.ttl_ms`. The heartbeat script also
//! sweeps nodes whose deadline passed, subtracting their users, so a node that died leaves no
//! ghosts after the ttl; the users that left with it are announced like any leave. A node that
//! paused past its deadline finds itself swept, adds its members back and announces them.

use super::{HeartbeatChange, Presence, PresenceError};
use crate::broker::lua;
use crate::conn::ConnId;
use crate::room_key::RoomKey;
use async_trait::async_trait;
use evd_protocol::event::{PresenceMember, PresenceSnapshot};
use fred::prelude::*;
use fred::types::scripts::Script;
use futures_util::StreamExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;

/// Rooms heartbeated at once.
const HEARTBEAT_CONCURRENCY: usize = 32;

/// Presence in Redis. See the module docs.
pub struct RedisPresence {
    node: String,
    client: Client,
    ttl: Duration,
    add: Script,
    remove: Script,
    heartbeat: Script,
    snapshot: Script,
    /// This node's members per room (user → local connections): what the heartbeat keeps alive
    /// and what it restores if this node was swept while paused.
    local: Mutex<HashMap<RoomKey, HashMap<String, u64>>>,
}

impl std::fmt::Debug for RedisPresence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisPresence")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn keys(room: &RoomKey) -> Vec<String> {
    let c = room.channel();
    vec![format!("{c}:pu"), format!("{c}:pn")]
}

fn unavailable(e: impl std::fmt::Display) -> PresenceError {
    PresenceError::Unavailable(e.to_string())
}

impl RedisPresence {
    /// Presence for `node` over `client`; members expire `ttl` after their node's last
    /// heartbeat.
    pub fn new(node: &str, client: Client, ttl: Duration) -> RedisPresence {
        RedisPresence {
            node: node.to_owned(),
            client,
            ttl,
            add: Script::from_lua(lua::presence_add()),
            remove: Script::from_lua(lua::presence_remove()),
            heartbeat: Script::from_lua(lua::presence_heartbeat()),
            snapshot: Script::from_lua(lua::PRESENCE_SNAPSHOT),
            local: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `script` on `room`'s presence keys.
    async fn run<R: FromValue>(
        &self,
        script: &Script,
        room: &RoomKey,
        args: Vec<String>,
    ) -> Result<R, PresenceError> {
        script
            .evalsha_with_reload(&self.client, keys(room), args)
            .await
            .map_err(unavailable)
    }

    async fn add_n(&self, room: &RoomKey, user: &str, n: u64) -> Result<bool, PresenceError> {
        let args = vec![
            self.node.clone(),
            user.to_owned(),
            n.to_string(),
            self.ttl.as_millis().to_string(),
        ];
        let first: i64 = self.run(&self.add, room, args).await?;
        Ok(first == 1)
    }

    async fn beat(&self, room: &RoomKey) -> Result<HeartbeatChange, PresenceError> {
        let args = vec![self.node.clone(), self.ttl.as_millis().to_string()];
        let out: Vec<Value> = self.run(&self.heartbeat, room, args).await?;
        let known = out.first().and_then(|v| v.as_u64()) == Some(1);
        let leaves: Vec<String> = out.iter().skip(1).filter_map(|v| v.as_string()).collect();
        let mut joins = Vec::new();
        if !known {
            // This node was swept (it paused longer than the ttl): put its members back.
            let mine: Vec<(String, u64)> = self
                .local
                .lock()
                .get(room)
                .map(|u| u.iter().map(|(k, v)| (k.clone(), *v)).collect())
                .unwrap_or_default();
            tracing::warn!(?room, users = mine.len(), "presence was swept; restoring");
            for (user, n) in mine {
                if self.add_n(room, &user, n).await? {
                    joins.push(user);
                }
            }
        }
        Ok(HeartbeatChange {
            room: room.clone(),
            joins,
            leaves,
        })
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn add(&self, room: &RoomKey, user: &str, _conn: ConnId) -> Result<bool, PresenceError> {
        *self
            .local
            .lock()
            .entry(room.clone())
            .or_default()
            .entry(user.to_owned())
            .or_default() += 1;
        let first = self.add_n(room, user, 1).await;
        if first.is_err() {
            // Not counted in Redis: keep the heartbeat from restoring it.
            release_local(&self.local, room, user);
        }
        first
    }

    async fn remove(
        &self,
        room: &RoomKey,
        user: &str,
        _conn: ConnId,
    ) -> Result<bool, PresenceError> {
        release_local(&self.local, room, user);
        let args = vec![self.node.clone(), user.to_owned()];
        let last: i64 = self.run(&self.remove, room, args).await?;
        Ok(last == 1)
    }

    async fn snapshot(
        &self,
        room: &RoomKey,
        limit: usize,
    ) -> Result<PresenceSnapshot, PresenceError> {
        let out: Vec<Value> = self
            .run(&self.snapshot, room, vec![limit.to_string()])
            .await?;
        let count = out.first().and_then(|v| v.as_u64()).unwrap_or_default();
        let mut members: Vec<PresenceMember> = out
            .iter()
            .skip(1)
            .filter_map(|v| v.as_string())
            .map(|user| PresenceMember { user })
            .collect();
        members.sort();
        Ok(PresenceSnapshot { count, members })
    }

    async fn count(&self, room: &RoomKey) -> Result<u64, PresenceError> {
        self.client
            .hlen(keys(room).swap_remove(0))
            .await
            .map_err(unavailable)
    }

    fn heartbeat_every(&self) -> Option<Duration> {
        Some(self.ttl / 3)
    }

    async fn heartbeat(&self) -> Vec<HeartbeatChange> {
        let rooms: Vec<RoomKey> = self.local.lock().keys().cloned().collect();
        futures_util::stream::iter(rooms)
            .map(|room| async move {
                match self.beat(&room).await {
                    Ok(c) if !c.joins.is_empty() || !c.leaves.is_empty() => Some(c),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(?room, error = %e, "presence heartbeat failed");
                        None
                    }
                }
            })
            .buffer_unordered(HEARTBEAT_CONCURRENCY)
            .filter_map(|x| async move { x })
            .collect()
            .await
    }
}

fn release_local(
    local: &Mutex<HashMap<RoomKey, HashMap<String, u64>>>,
    room: &RoomKey,
    user: &str,
) {
    let mut local = local.lock();
    if let Some(users) = local.get_mut(room) {
        if let Some(n) = users.get_mut(user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                users.remove(user);
            }
        }
        if users.is_empty() {
            local.remove(room);
        }
    }
}
