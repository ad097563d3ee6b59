//! The audit chain's reads (head, verification) and the one-time chaining of records written
//! before migration 0007. The write side is in `ops::flush_audit`.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::ops::sql;
use super::queries::QueryResult;
use super::{Backend, OpError, Store};
use crate::audit_chain::{AuditHead, ChainCheck, ChainedFields};
use crate::error::StoreError;
use crate::model::TenantId;

const CHAIN_COLUMNS: &str = "seq, at, actor, action, user_id, product_id, seat_uuid, company_id, \
     session_uuid, detail, request_id, prev_hash";
/// Records read per round trip while walking a chain.
const PAGE: i64 = 1000;

fn fields(r: &AnyRow) -> Result<(ChainedFields, Option<String>), sqlx::Error> {
    Ok((
        ChainedFields {
            seq: r.try_get("seq")?,
            at: r.try_get("at")?,
            actor: r.try_get("actor")?,
            action: r.try_get("action")?,
            user_id: r.try_get("user_id")?,
            product_id: r.try_get("product_id")?,
            seat_uuid: r.try_get("seat_uuid")?,
            company_id: r.try_get("company_id")?,
            session_uuid: r.try_get("session_uuid")?,
            detail: r.try_get("detail")?,
            request_id: r.try_get("request_id")?,
        },
        r.try_get("prev_hash")?,
    ))
}

impl Store {
    /// Chains the records of every tenant whose chain has no head yet but has records: those
    /// written before migration 0007. Runs once, at open; each tenant in one transaction holding
    /// its counter's row, so a concurrent writer (another process) waits and then chains on top.
    pub(super) async fn chain_unchained_audit(&self) -> Result<(), StoreError> {
        let mut conn = self.write_conn().await?;
        let tenants: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM tenants WHERE audit_head IS NULL AND last_audit_seq > 0 ORDER BY id",
        )
        .fetch_all(&mut conn)
        .await?;
        for tenant in tenants {
            let mut tx = conn.begin(self.backend).await?;
            // Lock the tenant's counter row (as every audit write does) and re-check.
            let row = sqlx::query(
                "UPDATE tenants SET last_audit_seq = last_audit_seq WHERE id = $1 \
                 RETURNING audit_head",
            )
            .bind(tenant)
            .fetch_one(&mut *tx)
            .await?;
            let head: Option<String> = row.try_get(0)?;
            if head.is_some() {
                continue;
            }
            // The append-only trigger (migration 0003) is lifted inside this transaction only.
            match self.backend {
                Backend::Sqlite => {
                    sqlx::query("DROP TRIGGER audit_events_no_update")
                        .execute(&mut *tx)
                        .await?;
                }
                Backend::Postgres => {
                    sqlx::query(
                        "ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only",
                    )
                    .execute(&mut *tx)
                    .await?;
                }
            }
            let mut prev: Option<String> = None;
            let mut after = 0i64;
            loop {
                let rows = sqlx::query(sql(format!(
                    "SELECT {CHAIN_COLUMNS} FROM audit_events WHERE tenant_id = $1 AND seq > $2 \
                     ORDER BY seq LIMIT $3"
                )))
                .bind(tenant)
                .bind(after)
                .bind(PAGE)
                .fetch_all(&mut *tx)
                .await?;
                if rows.is_empty() {
                    break;
                }
                for r in &rows {
                    let (record, _) = fields(r)?;
                    sqlx::query(
                        "UPDATE audit_events SET prev_hash = $3 WHERE tenant_id = $1 AND seq = $2",
                    )
                    .bind(tenant)
                    .bind(record.seq)
                    .bind(prev.clone())
                    .execute(&mut *tx)
                    .await?;
                    prev = Some(record.hash(prev.as_deref()));
                    after = record.seq;
                }
            }
            match self.backend {
                Backend::Sqlite => {
                    sqlx::query(
                        "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events \
                         BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
                    )
                    .execute(&mut *tx)
                    .await?;
                }
                Backend::Postgres => {
                    sqlx::query("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only")
                        .execute(&mut *tx)
                        .await?;
                }
            }
            sqlx::query("UPDATE tenants SET audit_head = $2 WHERE id = $1")
                .bind(tenant)
                .bind(prev)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// The tenant's chain head: its last record's number, hash and time (one row).
    pub async fn audit_head(&self, tenant: TenantId) -> QueryResult<Option<AuditHead>> {
        let row = sqlx::query(
            "SELECT t.last_audit_seq, t.audit_head, a.at FROM tenants t LEFT JOIN audit_events a \
             ON a.tenant_id = t.id AND a.seq = t.last_audit_seq WHERE t.id = $1",
        )
        .bind(tenant)
        .fetch_optional(&mut self.read_conn().await?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(AuditHead {
            seq: row.try_get(0)?,
            hash: row.try_get(1)?,
            at: row
                .try_get::<Option<i64>, _>(2)?
                .map(crate::rules::from_micros),
        }))
    }

    /// Walks the tenant's chain from its first record and names the first record at which it
    /// breaks: missing (a gap in the dense numbering, or records missing at the end), or not
    /// matching the hash its successor (or the tenant's head, for the last one) carries.
    pub async fn verify_audit_chain(&self, tenant: TenantId) -> QueryResult<Option<ChainCheck>> {
        let Some(head) = self.audit_head(tenant).await? else {
            return Ok(None);
        };
        let mut prev: Option<String> = None;
        let mut expected = 1i64;
        loop {
            // Only up to the head read first: records are never changed once written, so the
            // walk and the head agree even while new records are being appended meanwhile.
            let rows = sqlx::query(sql(format!(
                "SELECT {CHAIN_COLUMNS} FROM audit_events WHERE tenant_id = $1 AND seq >= $2 \
                 AND seq <= $4 ORDER BY seq LIMIT $3"
            )))
            .bind(tenant)
            .bind(expected)
            .bind(PAGE)
            .bind(head.seq)
            .fetch_all(&mut self.read_conn().await?)
            .await?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let (record, carried) = fields(r).map_err(OpError::from)?;
                if record.seq != expected {
                    return Ok(Some(broken(expected, "removed")));
                }
                if carried != prev {
                    // The link into this record is broken. If this record's own hash is what
                    // its successor carries, it is intact and its predecessor was edited;
                    // otherwise this record is the one edited or out of place.
                    let own = record.hash(carried.as_deref());
                    let successor = self.carried_by_successor(tenant, record.seq, &head).await?;
                    return Ok(Some(
                        if record.seq > 1 && successor.as_deref() == Some(&own) {
                            broken(record.seq - 1, "edited")
                        } else {
                            broken(record.seq, "edited or reordered")
                        },
                    ));
                }
                prev = Some(record.hash(prev.as_deref()));
                expected += 1;
            }
        }
        if expected - 1 < head.seq {
            return Ok(Some(broken(expected, "removed")));
        }
        if prev != head.hash {
            return Ok(Some(broken(expected - 1, "edited")));
        }
        Ok(Some(ChainCheck::Intact {
            records: expected - 1,
            head,
        }))
    }

    /// The predecessor hash the record after `seq` carries, or the tenant's head for the last.
    async fn carried_by_successor(
        &self,
        tenant: TenantId,
        seq: i64,
        head: &AuditHead,
    ) -> QueryResult<Option<String>> {
        if seq >= head.seq {
            return Ok(head.hash.clone());
        }
        let carried: Option<Option<String>> = sqlx::query_scalar(
            "SELECT prev_hash FROM audit_events WHERE tenant_id = $1 AND seq = $2",
        )
        .bind(tenant)
        .bind(seq + 1)
        .fetch_optional(&mut self.read_conn().await?)
        .await?;
        Ok(carried.flatten())
    }
}

fn broken(seq: i64, how: &str) -> ChainCheck {
    ChainCheck::Broken {
        seq,
        reason: format!("audit record {seq} was {how}"),
    }
}
