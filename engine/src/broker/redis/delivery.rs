//! The pub/sub client's two event streams: each message goes to the probe or, in order, to its
//! room's members; each reconnect resubscribes the rooms that connection carried.

use super::Inner;
use super::keys::{Payload, chat_envelope, owner_at, parse_payload};
use super::probe::PROBE_PREFIX;
use evd_protocol::bus::{Body, Envelope};
use fred::prelude::*;
use fred::types::Message;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

impl Inner {
    /// Hands one pub/sub message to the hub, keeping each room's chat in offset order.
    fn on_message(self: &Arc<Self>, msg: Message) {
        let channel = &*msg.channel;
        if channel.starts_with(PROBE_PREFIX) {
            return self.on_probe(channel, &msg.value);
        }
        let Some(bytes) = msg.value.as_bytes() else {
            return;
        };
        let Some(payload) = parse_payload(bytes) else {
            tracing::warn!(channel, "unreadable broker payload");
            return;
        };
        let mut rooms = self.rooms.lock();
        let Some(room) = rooms.get_mut(channel) else {
            return;
        };
        match payload {
            Payload::Other(body) => match Envelope::decode(body) {
                Ok(env) => self.handler.handle(&room.key, &env),
                Err(e) => tracing::warn!(channel, error = %e, "undecodable envelope"),
            },
            Payload::Chat(epoch, offset, body) => {
                let Some(env) = chat_envelope(epoch, offset, body) else {
                    return tracing::warn!(channel, "undecodable chat envelope");
                };
                if let Body::Chat { message, .. } = &env.body {
                    let lag = crate::clock::unix_ms().saturating_sub(message.ts);
                    self.metrics.lag.record(lag as f64 / 1000.0);
                }
                if self.accept_chat(room, epoch.to_owned(), offset, env) {
                    self.spawn_recovery(channel.to_owned());
                }
            }
        }
    }
}

/// Delivers pub/sub messages until shutdown. Falling behind the connection recovers every room.
pub(super) async fn deliver_loop(
    inner: Arc<Inner>,
    stopped: impl std::future::Future<Output = ()>,
) {
    let mut rx = inner.conn.sub.message_rx();
    tokio::pin!(stopped);
    loop {
        let msg = tokio::select! {
            _ = &mut stopped => return,
            msg = rx.recv() => msg,
        };
        match msg {
            Ok(msg) => inner.on_message(msg),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    skipped = n,
                    "broker delivery fell behind; recovering every room"
                );
                let me = Arc::clone(&inner);
                tokio::spawn(async move {
                    let all = me.all_channels();
                    me.resubscribe(all, "lagged").await;
                });
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Resubscribes, until shutdown, the rooms of each pub/sub connection that reconnects.
pub(super) async fn reconnect_loop(
    inner: Arc<Inner>,
    stopped: impl std::future::Future<Output = ()>,
) {
    let mut rx = inner.conn.sub.reconnect_rx();
    tokio::pin!(stopped);
    loop {
        let server = tokio::select! {
            _ = &mut stopped => return,
            s = rx.recv() => s,
        };
        match server {
            Ok(server) => {
                tracing::info!(%server, "pub/sub connection re-established");
                inner.reset_probes(&server);
                let state = inner.conn.client.cached_cluster_state();
                let channels = inner.channels_where(|_, r| {
                    r.owner.as_ref().is_none_or(|o| *o == server)
                        || owner_at(state.as_ref(), r.slot) == Some(&server)
                });
                inner.resubscribe(channels, "reconnect").await;
            }
            Err(RecvError::Lagged(_)) => {
                let all = inner.all_channels();
                inner.resubscribe(all, "reconnect").await;
            }
            Err(RecvError::Closed) => return,
        }
    }
}
