//! Idempotent command runs (the native API's `Idempotency-Key`): the key is claimed, the
//! commands run and their outcomes recorded in ONE transaction, so a change and its record
//! commit together or not at all. A claim already committed answers its recorded outcomes and
//! runs nothing; the same key with another request is refused.

use std::time::Duration;

use sqlx::{Connection, Executor, Row};

use super::ops;
use super::{Backend, MAX_ATTEMPTS, OpError, Store, busy_on_timeout, is_unique_violation};
use crate::command::{Command, Context, Outcome};
use crate::error::{LedgerError, StoreError};
use crate::idempotency::{IdempotencyRecord, IdempotentRequest};

/// What an idempotent run did.
pub(crate) enum Claimed {
    /// Ran now: the outcomes (or the first refusal, with nothing applied or recorded).
    Ran(Result<Vec<Outcome>, LedgerError>),
    /// Ran before: its recorded outcomes, nothing run.
    Replayed(Vec<Outcome>),
}

impl Store {
    pub(crate) async fn apply_idempotent(
        &self,
        ctx: &Context,
        request: &IdempotentRequest,
        commands: &[Command],
        now: i64,
    ) -> Result<Claimed, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .apply_idempotent_once(ctx, request, commands, now)
                .await
            {
                Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                    let jitter = rand::random::<u64>() % (5 * attempt as u64);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                other => return other,
            }
        }
    }

    async fn apply_idempotent_once(
        &self,
        ctx: &Context,
        request: &IdempotentRequest,
        commands: &[Command],
        now: i64,
    ) -> Result<Claimed, StoreError> {
        let env = super::Env::new(ctx, now, self.backend);
        let mut conn = self.writer.acquire().await.map_err(busy_on_timeout)?;
        let mut tx = match self.backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => conn.begin().await?,
        };
        // Expired claims of the tenant go first, so an old key is free again.
        sqlx::query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND expires_at <= $2")
            .bind(ctx.tenant)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // The claim: on PostgreSQL a concurrent claim of the same key waits here on the
        // primary key until the first transaction ends, then sees its row.
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (tenant_id, principal, idem_key, fingerprint, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant_id, principal, idem_key) DO NOTHING",
        )
        .bind(ctx.tenant)
        .bind(request.principal.clone())
        .bind(request.key.clone())
        .bind(request.fingerprint.clone())
        .bind(now)
        .bind(now + crate::idempotency::LIFETIME_MICROS)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Contended
            } else {
                StoreError::Database(e)
            }
        })?
        .rows_affected();
        if claimed == 0 {
            let row = sqlx::query(
                "SELECT fingerprint, outcome FROM idempotency_keys \
                 WHERE tenant_id = $1 AND principal = $2 AND idem_key = $3",
            )
            .bind(ctx.tenant)
            .bind(request.principal.clone())
            .bind(request.key.clone())
            .fetch_one(&mut *tx)
            .await?;
            tx.rollback().await?;
            let fingerprint: String = row.try_get("fingerprint")?;
            if fingerprint != request.fingerprint {
                return Ok(Claimed::Ran(Err(crate::idempotency::mismatch())));
            }
            let outcome: Option<String> = row.try_get("outcome")?;
            let outcomes = serde_json::from_str(outcome.as_deref().unwrap_or("null"))
                .map_err(|e| StoreError::Corrupt(format!("idempotency outcome: {e}")))?;
            return Ok(Claimed::Replayed(outcomes));
        }
        let mut outcomes = Vec::with_capacity(commands.len());
        for command in commands {
            let result = match ops::execute(&mut tx, &env, command).await {
                Ok(outcome) => ops::finish_command(&mut tx, &env).await.map(|()| outcome),
                Err(e) => Err(e),
            };
            match result {
                Ok(outcome) => outcomes.push(outcome),
                Err(OpError::Rule(rule)) => {
                    // Nothing changed: the claim goes with the rollback, and a retry runs again.
                    env.pending_audit().clear();
                    tx.rollback().await?;
                    super::record_denial_alone(&mut conn, self.backend, &env, &rule).await;
                    return Ok(Claimed::Ran(Err(rule)));
                }
                Err(OpError::Store(e)) => return Err(e),
            }
        }
        let recorded = serde_json::to_string(&outcomes)
            .map_err(|e| StoreError::Corrupt(format!("idempotency outcome: {e}")))?;
        sqlx::query(
            "UPDATE idempotency_keys SET outcome = $4 \
             WHERE tenant_id = $1 AND principal = $2 AND idem_key = $3",
        )
        .bind(ctx.tenant)
        .bind(request.principal.clone())
        .bind(request.key.clone())
        .bind(recorded)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Claimed::Ran(Ok(outcomes)))
    }

    /// The live record of a key, if any.
    pub(crate) async fn idempotency_record(
        &self,
        tenant: crate::model::TenantId,
        principal: &str,
        key: &str,
        now: i64,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT fingerprint, outcome IS NOT NULL AS done, status, body FROM idempotency_keys \
             WHERE tenant_id = $1 AND principal = $2 AND idem_key = $3 AND expires_at > $4",
        )
        .bind(tenant)
        .bind(principal.to_owned())
        .bind(key.to_owned())
        .bind(now)
        .fetch_optional(self.reader())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let status: Option<i64> = row.try_get("status")?;
        let body: Option<String> = row.try_get("body")?;
        Ok(Some(IdempotencyRecord {
            fingerprint: row.try_get("fingerprint")?,
            committed: match self.backend {
                Backend::Postgres => row.try_get::<bool, _>("done")?,
                Backend::Sqlite => row.try_get::<i64, _>("done")? != 0,
            },
            response: status.map(|s| (s as u16, body.unwrap_or_default())),
        }))
    }

    /// Records the rendered answer of a committed claim (once).
    pub(crate) async fn record_idempotent_response(
        &self,
        tenant: crate::model::TenantId,
        request: &IdempotentRequest,
        status: u16,
        body: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.writer.acquire().await.map_err(busy_on_timeout)?;
        let done = conn
            .execute(
                sqlx::query(
                    "UPDATE idempotency_keys SET status = $5, body = $6 \
                     WHERE tenant_id = $1 AND principal = $2 AND idem_key = $3 \
                     AND fingerprint = $4 AND outcome IS NOT NULL AND status IS NULL",
                )
                .bind(tenant)
                .bind(request.principal.clone())
                .bind(request.key.clone())
                .bind(request.fingerprint.clone())
                .bind(status as i64)
                .bind(body.to_owned()),
            )
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
