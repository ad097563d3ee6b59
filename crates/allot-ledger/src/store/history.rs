//! The read side of the usage history (the write side is `ops::usage`): one product's points
//! are two index-range reads of its buckets, whatever the length of the range.

use sqlx::Row;

use super::Store;
use crate::error::StoreError;
use crate::model::{ProductId, TenantId, UsagePoint, UsageStep};
use crate::rules;

/// A bucket as stored.
struct Bucket {
    start: i64,
    total: i64,
    in_use: i64,
    in_use_max: i64,
    in_use_area: i64,
    total_area: i64,
    last_at: i64,
    denied: i64,
}

impl Store {
    /// The product's points of `step` whose start lies in `[first, end)` (`first` a bucket
    /// start), each up to `now` at most. Steps with no change carry the counts of the last one
    /// before them; before the first change of the product, the counts are zero.
    pub async fn usage(
        &self,
        tenant: TenantId,
        product: ProductId,
        first: i64,
        end: i64,
        step: UsageStep,
        now: i64,
    ) -> Result<Vec<UsagePoint>, StoreError> {
        let width = step.seconds() * 1_000_000;
        let carried: Option<(i64, i64)> = sqlx::query_as(
            "SELECT total, in_use FROM usage_buckets WHERE tenant_id = $1 AND product_id = $2 \
               AND step = $3 AND start < $4 ORDER BY start DESC LIMIT 1",
        )
        .bind(tenant)
        .bind(product)
        .bind(step.seconds())
        .bind(first)
        .fetch_optional(&mut self.read_conn().await?)
        .await?;
        let rows = sqlx::query(
            "SELECT start, total, in_use, in_use_max, in_use_area, total_area, last_at, denied \
             FROM usage_buckets WHERE tenant_id = $1 AND product_id = $2 AND step = $3 \
               AND start >= $4 AND start < $5 ORDER BY start",
        )
        .bind(tenant)
        .bind(product)
        .bind(step.seconds())
        .bind(first)
        .bind(end)
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        let mut buckets = rows
            .iter()
            .map(|row| {
                Ok(Bucket {
                    start: row.try_get("start")?,
                    total: row.try_get("total")?,
                    in_use: row.try_get("in_use")?,
                    in_use_max: row.try_get("in_use_max")?,
                    in_use_area: row.try_get("in_use_area")?,
                    total_area: row.try_get("total_area")?,
                    last_at: row.try_get("last_at")?,
                    denied: row.try_get("denied")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?
            .into_iter()
            .peekable();
        let (mut total, mut in_use) = carried.unwrap_or((0, 0));
        let mut points = Vec::new();
        let mut start = first;
        while start < end && start <= now {
            // The part of the step that has happened.
            let until = (start + width).min(now.max(start + 1));
            let span = (until - start) as i128;
            let point = match buckets.next_if(|b| b.start == start) {
                Some(b) => {
                    let tail = (until - b.last_at).max(0) as i128;
                    let in_use_area = b.in_use_area as i128 + b.in_use as i128 * tail;
                    let total_area = b.total_area as i128 + b.total as i128 * tail;
                    (total, in_use) = (b.total, b.in_use);
                    point(
                        start,
                        b.total,
                        b.in_use_max,
                        in_use_area,
                        total_area,
                        span,
                        b.denied,
                    )
                }
                None => point(
                    start,
                    total,
                    in_use,
                    in_use as i128 * span,
                    total as i128 * span,
                    span,
                    0,
                ),
            };
            points.push(point);
            start += width;
        }
        Ok(points)
    }

    /// Requests refused for want of a seat since the history began, per product that had any.
    pub async fn pool_denials(
        &self,
        tenant: TenantId,
    ) -> Result<Vec<(ProductId, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT product_id, denied FROM pool_usage WHERE tenant_id = $1 AND denied > 0 \
             ORDER BY product_id",
        )
        .bind(tenant)
        .fetch_all(&mut self.read_conn().await?)
        .await?)
    }
}

fn point(
    start: i64,
    total: i64,
    in_use_max: i64,
    in_use_area: i128,
    total_area: i128,
    span: i128,
    denied: i64,
) -> UsagePoint {
    UsagePoint {
        at: rules::from_micros(start),
        total,
        in_use_max,
        in_use_avg: in_use_area as f64 / span as f64,
        denied,
        // Overflow seats (held beyond those bought) leave nothing unused.
        unused_seat_seconds: ((total_area - in_use_area).max(0) / 1_000_000) as i64,
        unused_seat_cost: None,
    }
}
