//! Presence in Redis, shared by every node.
//!
//! Per room (all under the room's hash tag): `…:pu`, a hash of user → connections on every
//! node, so the member count is one `HLEN`; `…:pn`, a sorted set of node → heartbeat deadline;
//! and `…:pn:<node>`, each node's own user → connections. A node refreshes its deadline in
//! every room it has members in each third of `presence.ttl_ms`. The heartbeat script also
//! sweeps nodes whose deadline passed, subtracting their users, so a node that died leaves no
//! ghosts after the ttl; the users that left with it are announced like any leave.
//!
//! Every add and remove of a node counts in its version of the room, kept here and in Redis
//! (`…:pn:<node>:v`). The heartbeat compares them: when Redis does not hold all of the node's
//! writes (it was swept after a pause, a promoted replica lacks the last ones, an add failed
//! during a failover) the node re-asserts its members in one script, which corrects Redis to
//! exactly them, and announces who joined or left by it. A failed add is therefore retried by
//! the next heartbeat, not dropped.

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
    reassert: Script,
    snapshot: Script,
    /// This node's members per room: what the heartbeat keeps alive and re-asserts.
    local: Mutex<HashMap<RoomKey, LocalRoom>>,
}

/// What a re-assert did: users joined, users left, the version Redis holds now.
type Reasserted = (Vec<String>, Vec<String>, u64);

/// This node's side of one room's presence.
#[derive(Default)]
struct LocalRoom {
    /// User → local connections.
    users: HashMap<String, u64>,
    /// Adds and removes sent to Redis so far, failed or not: Redis counts the ones it applied.
    version: u64,
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
            reassert: Script::from_lua(lua::presence_reassert()),
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
        let version = self.local.lock().get(room).map_or(0, |l| l.version);
        let args = vec![
            self.node.clone(),
            self.ttl.as_millis().to_string(),
            version.to_string(),
        ];
        let out: Vec<Value> = self.run(&self.heartbeat, room, args).await?;
        let known = out.first().and_then(|v| v.as_u64()) == Some(1);
        let mut leaves: Vec<String> = out.iter().skip(1).filter_map(|v| v.as_string()).collect();
        let mut joins = Vec::new();
        let mut synced = version;
        if !known {
            let (j, l, v) = self.reassert(room).await?;
            joins = j;
            leaves.extend(l);
            synced = v;
        }
        // Redis agrees that this node has nobody left here: forget the room.
        let mut local = self.local.lock();
        if local
            .get(room)
            .is_some_and(|l| l.users.is_empty() && l.version == synced)
        {
            local.remove(room);
        }
        drop(local);
        Ok(HeartbeatChange {
            room: room.clone(),
            joins,
            leaves,
        })
    }

    /// Makes Redis hold exactly this node's members of `room`; returns who joined and who left
    /// by it, and the version Redis now has.
    async fn reassert(&self, room: &RoomKey) -> Result<Reasserted, PresenceError> {
        let mut args = vec![self.node.clone(), self.ttl.as_millis().to_string()];
        let version = {
            let local = self.local.lock();
            let mine = local.get(room);
            let version = mine.map_or(0, |l| l.version);
            args.push(version.to_string());
            for (user, n) in mine.iter().flat_map(|l| &l.users) {
                args.push(user.clone());
                args.push(n.to_string());
            }
            version
        };
        let users = args.len() / 2 - 1;
        let out: Vec<Value> = self.run(&self.reassert, room, args).await?;
        let n_joins = out.first().and_then(|v| v.as_u64()).unwrap_or_default() as usize;
        let mut names = out.iter().skip(1).filter_map(|v| v.as_string());
        let joins: Vec<String> = names.by_ref().take(n_joins).collect();
        let leaves: Vec<String> = names.collect();
        tracing::info!(
            ?room,
            users,
            joins = joins.len(),
            leaves = leaves.len(),
            "presence re-asserted"
        );
        Ok((joins, leaves, version))
    }

    /// Counts one write of this node to `room` in its version.
    fn bump(&self, room: &RoomKey) {
        self.local.lock().entry(room.clone()).or_default().version += 1;
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn add(&self, room: &RoomKey, user: &str, _conn: ConnId) -> Result<bool, PresenceError> {
        {
            let mut local = self.local.lock();
            let mine = local.entry(room.clone()).or_default();
            *mine.users.entry(user.to_owned()).or_default() += 1;
            mine.version += 1;
        }
        // On an error the user stays counted here: the version then differs from Redis's, and
        // the next heartbeat re-asserts (and announces) them.
        self.add_n(room, user, 1).await
    }

    async fn remove(
        &self,
        room: &RoomKey,
        user: &str,
        _conn: ConnId,
    ) -> Result<bool, PresenceError> {
        release_local(&self.local, room, user);
        self.bump(room);
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

/// One connection of `user` left `room` on this node. The room's entry stays (with its version)
/// while the heartbeat runs, so a remove that failed is still corrected by a re-assert; the
/// heartbeat drops it once Redis agrees it is empty.
fn release_local(local: &Mutex<HashMap<RoomKey, LocalRoom>>, room: &RoomKey, user: &str) {
    let mut local = local.lock();
    if let Some(mine) = local.get_mut(room)
        && let Some(n) = mine.users.get_mut(user)
    {
        *n = n.saturating_sub(1);
        if *n == 0 {
            mine.users.remove(user);
        }
    }
}
