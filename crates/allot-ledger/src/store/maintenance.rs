//! Housekeeping of rows that only grow: minute buckets of the usage history past their
//! retention, and webhook deliveries that are over (delivered, or given up on). Each call
//! deletes at most one bounded batch in a short write transaction of its own, so a large
//! backlog never holds the writer for long; the caller repeats while batches come back full.

use super::Store;
use super::ops::sql;
use crate::error::StoreError;

impl Store {
    /// Deletes up to `batch` minute buckets that start before `before` (microseconds), keeping
    /// each product's newest minute bucket: a minute answer carries the counts of the last
    /// bucket before its range, and that one must stay for the steps after it to be right.
    /// Hour and day buckets are never deleted.
    pub(crate) async fn prune_minute_buckets(
        &self,
        before: i64,
        batch: i64,
    ) -> Result<u64, StoreError> {
        self.delete_batch(
            "DELETE FROM usage_buckets WHERE (tenant_id, product_id, step, start) IN ( \
               SELECT b.tenant_id, b.product_id, b.step, b.start FROM usage_buckets b \
               WHERE b.step = 60 AND b.start < $1 \
                 AND EXISTS (SELECT 1 FROM usage_buckets n WHERE n.tenant_id = b.tenant_id \
                   AND n.product_id = b.product_id AND n.step = 60 AND n.start > b.start) \
               ORDER BY b.start LIMIT $2)",
            before,
            batch,
        )
        .await
    }

    /// Deletes up to `batch` webhook deliveries that ended (`delivered`, or `failed` for good)
    /// before `before` (microseconds). Pending deliveries are never deleted. An ended row's
    /// `next_attempt_at` is the time of its last attempt, so the pending index finds them.
    pub(crate) async fn prune_webhook_deliveries(
        &self,
        before: i64,
        batch: i64,
    ) -> Result<u64, StoreError> {
        self.delete_batch(
            "DELETE FROM webhook_deliveries WHERE id IN ( \
               SELECT id FROM webhook_deliveries \
               WHERE status IN ('delivered', 'failed') AND next_attempt_at < $1 LIMIT $2)",
            before,
            batch,
        )
        .await
    }

    async fn delete_batch(
        &self,
        statement: &'static str,
        before: i64,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin(self.backend).await?;
        let deleted = sqlx::query(sql(statement.to_owned()))
            .bind(before)
            .bind(batch.max(1))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }
}
