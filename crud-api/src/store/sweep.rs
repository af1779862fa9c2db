//! Time-driven work: lapsed offers expire (and their seats go to the next person), polls
//! close at their `closes_at`, old idempotency keys are dropped.

use super::sql::args;
use super::{Result, SqlStore, StoreError};
use async_trait::async_trait;
use tracing::instrument;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Offers expired.
    pub offers_expired: usize,
    /// Polls closed.
    pub polls_closed: usize,
    /// Idempotency keys dropped.
    pub keys_dropped: u64,
}

/// The sweep, run by a background task ([`crate::spawn_sweeper`]) or directly in tests.
#[async_trait]
pub trait Sweeper {
    /// Handles up to `limit` lapsed offers and `limit` due polls, as of the store's clock.
    async fn sweep(&self, limit: i64) -> Result<SweepReport>;
}

const SWEEP: &str = "app.sweep";

#[async_trait]
impl Sweeper for SqlStore {
    #[instrument(skip_all)]
    async fn sweep(&self, limit: i64) -> Result<SweepReport> {
        let now = self.now();
        // Find the work across orgs, then do each piece as its own org.
        let mut tx = self.begin_write().await?;
        tx.set_local(SWEEP, "on").await?;
        let offers: Vec<(String, String)> = tx
            .fetch_all(
                "select org_id, id from waitlist_offers where status = 'open' \
                 and expires_at <= $1 order by expires_at limit $2",
                args![now, limit],
            )
            .await?;
        let polls: Vec<(String, String)> = tx
            .fetch_all(
                "select org_id, id from polls where status = 'open' and closes_at <= $1 \
                 order by closes_at limit $2",
                args![now, limit],
            )
            .await?;
        let keys_dropped = tx
            .execute(
                "delete from idempotency_keys where created_at < $1",
                args![now - super::idempotency::KEY_TTL_MS],
            )
            .await?;
        tx.commit().await?;

        let mut report = SweepReport {
            keys_dropped,
            ..SweepReport::default()
        };
        for (org, id) in offers {
            if self.expire_offer(&org, &id, now).await? {
                report.offers_expired += 1;
            }
        }
        for (org, id) in polls {
            let mut tx = self.write(&org).await?;
            match super::polls::close(&mut tx, &org, &id, now).await {
                Ok(_) => {
                    self.commit(tx, true).await?;
                    report.polls_closed += 1;
                }
                // Closed by hand in the meantime.
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}
