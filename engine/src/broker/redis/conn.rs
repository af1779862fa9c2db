//! Connecting to Redis: [`RedisConn`], one client for commands and one for pub/sub, from a
//! `redis://` or `redis-cluster://` URL.

use crate::broker::BrokerError;
use crate::settings::BrokerSettings;
use fred::prelude::*;
use std::time::Duration;

/// Pub/sub messages buffered between the connection and the delivery task. A burst above this
/// while the task is behind counts as a lost subscription: every room recovers from history.
/// fred preallocates this many slots for each of its eight event channels, so it is memory too
/// (about 5 MiB here); the command client keeps fred's small default.
const MESSAGE_BUFFER: usize = 4_096;

/// Tries per command before it fails: a few, to ride out a reconnect or a failover.
const MAX_COMMAND_ATTEMPTS: u32 = 3;

/// `MOVED`/`ASK` redirections followed per command: enough for a slot migrating mid-command.
const MAX_REDIRECTIONS: u32 = 10;

/// Reconnect backoff, in ms: the first delay, and the ceiling it doubles up to. Short, so a
/// node resumes soon after Redis does.
const RECONNECT_MIN_MS: u32 = 50;
/// See [`RECONNECT_MIN_MS`].
const RECONNECT_MAX_MS: u32 = 2_000;

/// A connected Redis: one client for commands, one for pub/sub.
#[derive(Clone)]
pub struct RedisConn {
    /// Commands: scripts, history, presence, probes.
    pub client: Client,
    /// Sharded subscriptions (a connection per primary in a cluster).
    pub sub: Client,
    /// True for a cluster URL.
    pub clustered: bool,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("clustered", &self.clustered)
            .finish_non_exhaustive()
    }
}

/// fred's cluster URL is `redis-cluster://h1:p1?node=h2:p2&node=h3:p3`; we also accept the
/// comma list `redis-cluster://h1:p1,h2:p2,h3:p3`.
fn fred_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, hosts) = match rest.rsplit_once('@') {
        Some((a, h)) => (format!("{a}@"), h),
        None => (String::new(), rest),
    };
    let (hosts, query) = match hosts.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (hosts, None),
    };
    let mut parts = hosts.split(',');
    let first = parts.next().unwrap_or_default();
    let mut params: Vec<String> = parts
        .map(|h| match h.contains(':') {
            true => format!("node={h}"),
            false => format!("node={h}:6379"),
        })
        .collect();
    if let Some(q) = query {
        params.push(q.to_owned());
    }
    if params.is_empty() {
        format!("{scheme}://{auth}{first}")
    } else {
        format!("{scheme}://{auth}{first}?{}", params.join("&"))
    }
}

impl RedisConn {
    /// Connects both clients to `settings.url`.
    pub async fn connect(settings: &BrokerSettings) -> Result<RedisConn, BrokerError> {
        let url = fred_url(&settings.url);
        let config = Config::from_url(&url).map_err(unavailable)?;
        let clustered = config.server.is_clustered();
        let timeout = Duration::from_millis(settings.command_timeout_ms);
        let build = |pubsub: bool| {
            let mut config = config.clone();
            if pubsub {
                // The pub/sub client. RESP3 lets its connections carry ordinary commands too.
                config.version = fred::types::RespVersion::RESP3;
            }
            Builder::from_config(config)
                .with_performance_config(|p| {
                    p.default_command_timeout = timeout;
                    if pubsub {
                        p.broadcast_channel_capacity = MESSAGE_BUFFER;
                    }
                })
                .with_connection_config(|c| {
                    c.connection_timeout = timeout;
                    c.internal_command_timeout = timeout;
                    c.max_command_attempts = MAX_COMMAND_ATTEMPTS;
                    c.max_redirections = MAX_REDIRECTIONS;
                })
                // Never give up (0 attempts is no limit): a node outlives any Redis outage and
                // resumes after it.
                .set_policy(ReconnectPolicy::new_exponential(
                    0,
                    RECONNECT_MIN_MS,
                    RECONNECT_MAX_MS,
                    2,
                ))
                .build()
                .map_err(unavailable)
        };
        let client = build(false)?;
        let sub = build(true)?;
        client.init().await.map_err(unavailable)?;
        sub.init().await.map_err(unavailable)?;
        Ok(RedisConn {
            client,
            sub,
            clustered,
        })
    }

    /// Whether both clients are connected now (fred's state; no round trip).
    pub fn is_connected(&self) -> bool {
        self.client.is_connected() && self.sub.is_connected()
    }

    /// Closes both clients.
    pub async fn quit(&self) {
        let _ = self.sub.quit().await;
        let _ = self.client.quit().await;
    }
}

/// A Redis error as the broker reports it.
pub(super) fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls_accept_a_comma_list() {
        assert_eq!(
            fred_url("redis-cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002"),
            "redis-cluster://127.0.0.1:7000?node=127.0.0.1:7001&node=127.0.0.1:7002"
        );
        assert_eq!(fred_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            fred_url("redis-cluster://u:p@h1:1,h2:2"),
            "redis-cluster://u:p@h1:1?node=h2:2"
        );
        assert_eq!(
            fred_url("redis-cluster://h1,h2,h3"),
            "redis-cluster://h1?node=h2:6379&node=h3:6379",
            "ports default to 6379"
        );
        let config = Config::from_url(&fred_url("redis-cluster://h1,h2:7001")).unwrap();
        assert!(config.server.is_clustered());
    }
}
