//! Admission: whether a new connection may be upgraded (not draining, under the per-IP rate,
//! under `limits.max_connections`), and the slot it holds while open.

use super::Node;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Why an upgrade was refused before it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node is draining.
    Draining,
    /// Too many new connections from this IP.
    RateLimited {
        /// When to retry.
        retry_after: Duration,
    },
    /// The node holds `limits.max_connections`.
    Full,
}

/// Holds one of the node's connection slots; released on drop.
#[derive(Debug)]
pub struct ConnPermit {
    open: Arc<AtomicUsize>,
    connections: ::metrics::Gauge,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.connections.decrement(1.0);
    }
}

impl Node {
    /// Checks drain state, the per-IP rate and capacity, in that order, and takes a slot for a
    /// connection of `protocol` (the metrics label).
    pub fn admit(&self, ip: IpAddr, protocol: &'static str) -> Result<ConnPermit, Refusal> {
        if self.shutdown.is_draining() {
            return Err(Refusal::Draining);
        }
        if let Some(limiter) = &self.ip_limiter
            && let Err(not_until) = limiter.check_key(&ip)
        {
            let retry_after =
                not_until.wait_time_from(governor::clock::Clock::now(limiter.clock()));
            return Err(Refusal::RateLimited { retry_after });
        }
        let max = self.settings.limits.max_connections;
        if self.open_conns.fetch_add(1, Ordering::Relaxed) >= max {
            self.open_conns.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::Full);
        }
        let connections = self.metrics.connections(protocol);
        connections.increment(1.0);
        Ok(ConnPermit {
            open: Arc::clone(&self.open_conns),
            connections,
        })
    }
}
