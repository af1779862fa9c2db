//! [`RedisBoard`]: the stats board in Redis, shared by every node on the broker.
//!
//! Each node's snapshot is a JSON string under `evd:{admin}:n:<node>` that expires after the
//! snapshot's ttl, and `evd:{admin}:nodes` is a sorted set of node → when its snapshot lapses,
//! so a reader finds the nodes without scanning keys. The shared hash tag puts them all in one
//! cluster slot: the publish script writes both atomically, and one `MGET` reads every
//! snapshot. Lapsed nodes are pruned from the set on each publish, so it holds the live nodes
//! and those gone for less than a ttl. Times are the Redis server's (`TIME`), so the nodes'
//! clocks need not agree.

use super::{NodeSnapshot, StatsBoard, StatsError};
use async_trait::async_trait;
use fred::prelude::*;
use fred::types::scripts::Script;
use std::time::Duration;

/// The sorted set of nodes.
const NODES_KEY: &str = "evd:{admin}:nodes";

/// Writes one node's snapshot (`KEYS[1]` the set, `KEYS[2]` the node's key; `ARGV` the node,
/// the JSON, the ttl in ms) and prunes lapsed nodes from the set.
const PUBLISH: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
";

fn node_key(node: &str) -> String {
    format!("evd:{{admin}}:n:{node}")
}

fn unavailable(e: impl std::fmt::Display) -> StatsError {
    StatsError::Unavailable(e.to_string())
}

/// The stats board in Redis. See the module docs.
pub struct RedisBoard {
    client: Client,
    publish: Script,
}

impl std::fmt::Debug for RedisBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBoard").finish_non_exhaustive()
    }
}

impl RedisBoard {
    /// The board over `client` (the broker's command client).
    pub fn new(client: Client) -> RedisBoard {
        RedisBoard {
            client,
            publish: Script::from_lua(PUBLISH),
        }
    }
}

#[async_trait]
impl StatsBoard for RedisBoard {
    async fn publish(&self, snapshot: &NodeSnapshot, ttl: Duration) -> Result<(), StatsError> {
        let json = serde_json::to_string(snapshot).map_err(unavailable)?;
        let keys = vec![NODES_KEY.to_owned(), node_key(&snapshot.node)];
        let args = vec![
            snapshot.node.clone(),
            json,
            ttl.as_millis().max(1).to_string(),
        ];
        let _: i64 = self
            .publish
            .evalsha_with_reload(&self.client, keys, args)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn read(&self) -> Result<Vec<NodeSnapshot>, StatsError> {
        let nodes: Vec<String> = self
            .client
            .zrange(NODES_KEY, 0, -1, None, false, None, false)
            .await
            .map_err(unavailable)?;
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = nodes.iter().map(|n| node_key(n)).collect();
        let values: Vec<Option<String>> = self.client.mget(keys).await.map_err(unavailable)?;
        Ok(values
            .into_iter()
            .flatten()
            .filter_map(|json| {
                serde_json::from_str(&json)
                    .inspect_err(|e| tracing::warn!(error = %e, "unreadable node snapshot"))
                    .ok()
            })
            .collect())
    }
}
