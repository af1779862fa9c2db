//! The outbox relay: durable changes (a poll opened, an offer made) reach live clients.
//!
//! The REST API writes an outbox row in the same transaction as the change. Every engine node
//! runs this relay: it claims unsent rows (on PostgreSQL with `FOR UPDATE SKIP LOCKED` and a
//! lease, so each row is taken by one node at a time), publishes each through the broker, and
//! marks it sent. A row whose publish failed is not marked, and is claimed again when its lease
//! ends: delivery is at least once, and nodes drop copies by `outbox_id`.
//!
//! It wakes on the store's in-process notification (the API in the same process), on
//! PostgreSQL `NOTIFY evd_outbox` (an API in another process), and otherwise every
//! [`POLL_EVERY`] as a backstop.
//!
//! Its metrics: rows relayed, failures by stage, the lag from a row's write to its publish,
//! and, every [`BACKLOG_EVERY`], the rows still unsent and the age of the oldest
//! ([`crate::metrics`], `evd_outbox_*`).

use crate::broker::Broker;
use crate::metrics::{
    OUTBOX_OLDEST_PENDING_AGE, OUTBOX_PENDING, OUTBOX_RELAY_ERRORS as RELAY_ERRORS,
    OUTBOX_RELAY_LAG, OUTBOX_RELAY_STAGES, OUTBOX_RELAYED as RELAYED,
};
use crate::room_key::RoomKey;
use crate::shutdown::Shutdown;
use evd_api::store::Store;
use evd_protocol::RoomName;
use evd_protocol::bus::Body;
use metrics::{counter, gauge, histogram};
use std::sync::Arc;
use std::time::Duration;

/// Rows claimed at once.
const BATCH: i64 = 256;
/// How long a claim holds rows before another node may take them: far longer than a publish.
const LEASE: Duration = Duration::from_secs(30);
/// The backstop poll when no notification arrives.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Sent rows are kept this long (for inspection), then deleted.
const KEEP_SENT: Duration = Duration::from_secs(24 * 3600);
/// How often sent rows are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// The PostgreSQL channel the store notifies on insert.
const CHANNEL: &str = "evd_outbox";
/// How often the backlog gauges are refreshed: one indexed count of the unsent rows each time,
/// often enough for an alert that waits minutes.
const BACKLOG_EVERY: Duration = Duration::from_secs(5);

/// Starts the relay on `shutdown`. `postgres` is the store's pool when it runs on PostgreSQL,
/// for `LISTEN`.
pub fn spawn(
    store: Arc<dyn Store>,
    postgres: Option<sqlx::PgPool>,
    broker: Arc<dyn Broker>,
    shutdown: &Shutdown,
) {
    let stopped = shutdown.stopped();
    shutdown.spawn(async move {
        tokio::pin!(stopped);
        let wake = store.outbox_wakeup();
        let mut listener = match &postgres {
            Some(pool) => listen(pool).await,
            None => None,
        };
        let mut last_prune = tokio::time::Instant::now();
        let mut last_backlog: Option<tokio::time::Instant> = None;
        for stage in OUTBOX_RELAY_STAGES {
            counter!(RELAY_ERRORS, "stage" => stage).increment(0);
        }
        counter!(RELAYED).increment(0);
        let _registered = histogram!(OUTBOX_RELAY_LAG);
        loop {
            let more = relay_once(&*store, &*broker).await;
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = tokio::time::Instant::now();
                prune(&*store).await;
            }
            if last_backlog.is_none_or(|t| t.elapsed() >= BACKLOG_EVERY) {
                last_backlog = Some(tokio::time::Instant::now());
                backlog(&*store).await;
            }
            if more {
                continue;
            }
            let notified = async {
                match listener.as_mut() {
                    Some(l) => {
                        if l.recv().await.is_err() {
                            // sqlx reconnects on the next call; do not spin meanwhile.
                            tokio::time::sleep(POLL_EVERY).await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut stopped => return,
                _ = wake.notified() => {}
                _ = notified => {}
                _ = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
    });
}

async fn listen(pool: &sqlx::PgPool) -> Option<sqlx::postgres::PgListener> {
    match sqlx::postgres::PgListener::connect_with(pool).await {
        Ok(mut l) => match l.listen(CHANNEL).await {
            Ok(()) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN evd_outbox failed; polling instead");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "outbox listener connection failed; polling instead");
            None
        }
    }
}

/// Relays one batch; true if a full batch went out (there may be more).
async fn relay_once(store: &dyn Store, broker: &dyn Broker) -> bool {
    let rows = match store.claim_outbox(BATCH, LEASE).await {
        Ok(rows) => rows,
        Err(e) => {
            counter!(RELAY_ERRORS, "stage" => "claim").increment(1);
            tracing::warn!(error = %e, "outbox claim failed");
            return false;
        }
    };
    let full = rows.len() as i64 == BATCH;
    let mut sent = Vec::with_capacity(rows.len());
    let mut publish_failed = false;
    for row in &rows {
        let (room, event) = match (RoomName::parse(&row.room), row.event()) {
            (Ok(room), Ok(event)) => (room, event),
            (room, event) => {
                // A row that can never be delivered must not block the ones after it.
                counter!(RELAY_ERRORS, "stage" => "decode").increment(1);
                tracing::error!(id = row.id, kind = %row.kind, room_ok = room.is_ok(), event_ok = event.is_ok(), "undeliverable outbox row skipped");
                sent.push(row.id);
                continue;
            }
        };
        let mut event = event;
        event.set_outbox_id(row.id);
        let key = RoomKey::new(&row.org_id, room);
        match broker
            .broadcast(
                &key,
                Body::Event {
                    event,
                    outbox_id: Some(row.id),
                },
            )
            .await
        {
            Ok(()) => {
                let lag_ms = crate::clock::unix_ms()
                    .saturating_sub(row.created_at)
                    .max(0);
                histogram!(OUTBOX_RELAY_LAG).record(lag_ms as f64 / 1000.0);
                sent.push(row.id);
            }
            Err(e) => {
                counter!(RELAY_ERRORS, "stage" => "publish").increment(1);
                tracing::warn!(error = %e, id = row.id, "outbox publish failed; it will be retried after its lease");
                publish_failed = true;
                break;
            }
        }
    }
    if !sent.is_empty() {
        if let Err(e) = store.mark_outbox_sent(&sent).await {
            counter!(RELAY_ERRORS, "stage" => "mark").increment(1);
            tracing::warn!(error = %e, "marking outbox rows sent failed; they will be relayed again");
        } else {
            counter!(RELAYED).increment(sent.len() as u64);
        }
    }
    full && !publish_failed
}

/// Refreshes the backlog gauges; on a failed read they keep their last values (the claim's
/// own failures are counted).
async fn backlog(store: &dyn Store) {
    match store.outbox_backlog().await {
        Ok(b) => {
            gauge!(OUTBOX_PENDING).set(b.rows as f64);
            let age_ms = b
                .oldest_created_at
                .map_or(0, |at| crate::clock::unix_ms().saturating_sub(at).max(0));
            gauge!(OUTBOX_OLDEST_PENDING_AGE).set(age_ms as f64 / 1000.0);
        }
        Err(e) => tracing::warn!(error = %e, "outbox backlog read failed"),
    }
}

async fn prune(store: &dyn Store) {
    let before = crate::clock::unix_ms() - i64::try_from(KEEP_SENT.as_millis()).unwrap_or(i64::MAX);
    if let Err(e) = store.prune_outbox(before, 10_000).await {
        tracing::warn!(error = %e, "outbox prune failed");
    }
}
