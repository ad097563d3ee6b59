//! Housekeeping the server runs on a schedule: pruning the usage history's minute buckets and
//! the webhook deliveries that are over, each past a retention, in bounded batches.

use time::Duration;

use crate::{Ledger, QueryResult};

/// Rows one pruning call deletes at most (one short write transaction).
pub const PRUNE_BATCH: i64 = 1_000;

impl Ledger {
    /// Deletes up to `batch` minute buckets of the usage history that start more than
    /// `retention` before now (each product's newest minute bucket stays, as the carry for the
    /// minutes after it; hour and day buckets stay forever). Answers how many were deleted:
    /// `batch` means there may be more.
    pub async fn prune_usage_minutes(&self, retention: Duration, batch: i64) -> QueryResult<u64> {
        let before = self.now().saturating_sub(micros(retention));
        Ok(self.store.prune_minute_buckets(before, batch).await?)
    }

    /// Deletes up to `batch` webhook deliveries that ended (delivered, or failed for good) more
    /// than `retention` before now; pending ones always stay. Answers how many were deleted.
    pub async fn prune_webhook_deliveries(
        &self,
        retention: Duration,
        batch: i64,
    ) -> QueryResult<u64> {
        let before = self.now().saturating_sub(micros(retention));
        Ok(self.store.prune_webhook_deliveries(before, batch).await?)
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.whole_microseconds().max(0)).unwrap_or(i64::MAX)
}
