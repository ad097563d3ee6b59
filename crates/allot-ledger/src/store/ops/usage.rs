//! The write side of the usage history: the pools a command changed, and the refusals for want
//! of a seat, rolled up into minute, hour and day buckets in the command's own transaction.
//!
//! Which pools changed is not left to each command to say: triggers on `seats` keep
//! `pool_usage` counting every insert, delete and change of holder, and mark the row. At the end
//! of every command [`flush_usage`] takes the marked rows (one statement, by a partial index)
//! and writes one multi-row upsert per changed product, so a command costs one statement plus
//! one per product it changed, however many seats it moved.

use super::*;

/// The bucket sizes kept, in seconds.
pub(crate) const STEPS: [i64; 3] = [60, 3_600, 86_400];

/// A pool's counts: seats bought (overflow excluded) and seats held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub total: i64,
    pub in_use: i64,
}

/// Writes the pools the running command changed into the buckets and clears their marks.
pub(crate) async fn flush_usage(c: &mut Conn, env: &Env<'_>) -> OpResult<()> {
    flush_usage_at(c, env, env.now).await
}

/// Seats lapse by the passage of time: when their own expiry or their product's passes. No
/// command makes that happen, so the triggers cannot see it; instead every command first
/// lapses what expired since the last one (`seats.lapsed`, which the triggers count), one
/// expiry time after another in time order, and writes each pool's change into the buckets at
/// that time, not at the command's. The history so shows the seats leaving the pool when they
/// expired, whatever touches the tenant next; the server's session reaper runs a command in
/// every tenant every few seconds, so that is soon even in a quiet tenant. As every write to
/// the buckets goes through here first, no lapse is ever recorded before a later change. When
/// nothing expired (nearly always) this costs one read of a partial index.
pub(crate) async fn lapse_expired(c: &mut Conn, env: &Env<'_>) -> OpResult<()> {
    let times: Vec<i64> = sqlx::query_scalar(
        "SELECT t FROM ( \
           SELECT s.expires_at AS t FROM seats s WHERE s.tenant_id = $1 AND s.lapsed = 0 \
             AND s.expires_at IS NOT NULL AND s.expires_at <= $2 \
           UNION \
           SELECT p.expires_at AS t FROM products p WHERE p.tenant_id = $1 AND p.lapsed = 0 \
             AND p.expires_at IS NOT NULL AND p.expires_at <= $2 \
         ) due ORDER BY t",
    )
    .bind(env.tenant())
    .bind(env.now)
    .fetch_all(&mut *c)
    .await?;
    for t in times {
        // The seats whose own expiry passed, then those of products whose expiry passed (each
        // statement by its index), then those products are marked done.
        for statement in [
            "UPDATE seats SET lapsed = 1 WHERE tenant_id = $1 AND lapsed = 0 \
               AND expires_at IS NOT NULL AND expires_at <= $2",
            "UPDATE seats SET lapsed = 1 WHERE tenant_id = $1 AND lapsed = 0 \
               AND product_id IN (SELECT id FROM products WHERE tenant_id = $1 AND lapsed = 0 \
                 AND expires_at IS NOT NULL AND expires_at <= $2)",
            "UPDATE products SET lapsed = 1 WHERE tenant_id = $1 AND lapsed = 0 \
               AND expires_at IS NOT NULL AND expires_at <= $2",
        ] {
            sqlx::query(statement)
                .bind(env.tenant())
                .bind(t)
                .execute(&mut *c)
                .await?;
        }
        flush_usage_at(c, env, t).await?;
    }
    Ok(())
}

/// Re-decides which seats of `product` have lapsed, as of now, after its expiry was changed:
/// an extended product's seats count again from now, and one whose expiry was moved into the
/// past loses them now (the change is the edit, recorded at its time).
pub(crate) async fn relapse_product(
    c: &mut Conn,
    env: &Env<'_>,
    product: ProductId,
) -> OpResult<()> {
    sqlx::query(
        "UPDATE seats SET lapsed = 1 - lapsed WHERE tenant_id = $1 AND product_id = $2 \
           AND lapsed <> CASE WHEN (expires_at IS NOT NULL AND expires_at <= $3) \
             OR EXISTS (SELECT 1 FROM products p WHERE p.tenant_id = $1 AND p.id = $2 \
               AND p.expires_at IS NOT NULL AND p.expires_at <= $3) THEN 1 ELSE 0 END",
    )
    .bind(env.tenant())
    .bind(product)
    .bind(env.now)
    .execute(&mut *c)
    .await?;
    sqlx::query(
        "UPDATE products SET lapsed = CASE WHEN expires_at IS NOT NULL AND expires_at <= $3 \
           THEN 1 ELSE 0 END WHERE tenant_id = $1 AND id = $2",
    )
    .bind(env.tenant())
    .bind(product)
    .bind(env.now)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// [`flush_usage`] with the changes recorded at `at` (no earlier than the pool's last record).
async fn flush_usage_at(c: &mut Conn, env: &Env<'_>, at: i64) -> OpResult<()> {
    // One statement takes the marks and says what changed: SET reads the row as it was, so
    // `prior_*` receive the counts last recorded.
    let changed = sqlx::query(sql(format!(
        "UPDATE pool_usage SET dirty = 0, prior_total = recorded_total, \
           prior_in_use = recorded_in_use, recorded_total = total, recorded_in_use = in_use, \
           recorded_at = {}(recorded_at, $2) \
         WHERE tenant_id = $1 AND dirty = 1 \
         RETURNING product_id, total, in_use, prior_total, prior_in_use, recorded_at",
        greatest(env)
    )))
    .bind(env.tenant())
    .bind(at)
    .fetch_all(&mut *c)
    .await?;
    for row in changed {
        let before = Counts {
            total: row.try_get("prior_total")?,
            in_use: row.try_get("prior_in_use")?,
        };
        let after = Counts {
            total: row.try_get("total")?,
            in_use: row.try_get("in_use")?,
        };
        if before != after {
            let product: ProductId = row.try_get("product_id")?;
            let at: i64 = row.try_get("recorded_at")?;
            record(c, env, product, at, before, after, 0).await?;
        }
    }
    Ok(())
}

/// The product whose pool had no seat for a refused command, if that was why it was refused.
pub(crate) fn denied_product(error: &LedgerError) -> Option<ProductId> {
    match error {
        LedgerError::NoSeatFree { product, .. } | LedgerError::QuotaExhausted { product, .. } => {
            Some(*product)
        }
        _ => None,
    }
}

/// Counts one refusal for want of a seat of `product` in the buckets of `env.now`. Runs after
/// the refused command was rolled back, in the transaction that goes on (or one of its own).
pub(crate) async fn record_denial(c: &mut Conn, env: &Env<'_>, product: ProductId) -> OpResult<()> {
    // The refused command's own sweep was rolled back with it.
    lapse_expired(c, env).await?;
    // Counts the refusal on the pool's lifetime counter and reads the counts it was refused at
    // (locking the row on PostgreSQL, so they cannot change before the buckets are written).
    let row = sqlx::query(sql(format!(
        "INSERT INTO pool_usage (tenant_id, product_id, denied, recorded_at) VALUES ($1, $2, 1, $3) \
         ON CONFLICT (tenant_id, product_id) DO UPDATE SET denied = pool_usage.denied + 1, \
           recorded_at = {}(pool_usage.recorded_at, excluded.recorded_at) \
         RETURNING recorded_total, recorded_in_use, recorded_at",
        greatest(env)
    )))
    .bind(env.tenant())
    .bind(product)
    .bind(env.now)
    .fetch_one(&mut *c)
    .await?;
    let counts = Counts {
        total: row.try_get("recorded_total")?,
        in_use: row.try_get("recorded_in_use")?,
    };
    let at: i64 = row.try_get("recorded_at")?;
    record(c, env, product, at, counts, counts, 1).await
}

fn greatest(env: &Env<'_>) -> &'static str {
    match env.backend {
        Backend::Postgres => "GREATEST",
        Backend::Sqlite => "max",
    }
}

/// One upsert of the product's minute, hour and day buckets holding `now`: the pool went from
/// `before` to `after` (equal for a refusal) and `denied` more requests were refused.
async fn record(
    c: &mut Conn,
    env: &Env<'_>,
    product: ProductId,
    now: i64,
    before: Counts,
    after: Counts,
    denied: i64,
) -> OpResult<()> {
    let greatest = greatest(env);
    let mut values = Vec::with_capacity(STEPS.len());
    for (i, _) in STEPS.iter().enumerate() {
        let p = i * 9;
        values.push(format!(
            "($1, $2, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            p + 3,
            p + 4,
            p + 5,
            p + 6,
            p + 7,
            p + 8,
            p + 9,
            p + 10,
            p + 11
        ));
    }
    // A new bucket starts with the counts the pool had since its start (`before`); an existing
    // one adds the counts since its last change to its areas.
    let statement = format!(
        "INSERT INTO usage_buckets (tenant_id, product_id, step, start, total, in_use, in_use_max, \
           in_use_area, total_area, last_at, denied) VALUES {} \
         ON CONFLICT (tenant_id, product_id, step, start) DO UPDATE SET \
           in_use_area = usage_buckets.in_use_area + usage_buckets.in_use * \
             ({greatest}(excluded.last_at, usage_buckets.last_at) - usage_buckets.last_at), \
           total_area = usage_buckets.total_area + usage_buckets.total * \
             ({greatest}(excluded.last_at, usage_buckets.last_at) - usage_buckets.last_at), \
           last_at = {greatest}(excluded.last_at, usage_buckets.last_at), \
           in_use_max = {greatest}(usage_buckets.in_use_max, excluded.in_use), \
           total = excluded.total, in_use = excluded.in_use, \
           denied = usage_buckets.denied + excluded.denied",
        values.join(", ")
    );
    let mut query = sqlx::query(sql(statement)).bind(env.tenant()).bind(product);
    for step in STEPS {
        let start = bucket_start(now, step);
        let elapsed = now - start;
        query = query
            .bind(step)
            .bind(start)
            .bind(after.total)
            .bind(after.in_use)
            .bind(before.in_use.max(after.in_use))
            .bind(before.in_use * elapsed)
            .bind(before.total * elapsed)
            .bind(now)
            .bind(denied);
    }
    query.execute(&mut *c).await?;
    Ok(())
}

/// The start (microseconds) of the `step`-second bucket holding `at`.
pub(crate) fn bucket_start(at: i64, step: i64) -> i64 {
    let step = step * 1_000_000;
    at.div_euclid(step) * step
}
