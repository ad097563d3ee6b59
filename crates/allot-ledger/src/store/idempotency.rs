//! Idempotent command runs (the native API's `Idempotency-Key`): the key is claimed, the
//! commands run, the answer's read is made, the answer rendered and stored, in ONE
//! transaction, so a change and its answer commit together or not at all. A claim already
//! stored answers its stored answer and runs nothing; the same key with another request is
//! refused.
//!
//! These runs take the writer connection directly rather than going through SQLite's group
//! committer: the claim, the commands and the answer are one unit that commits or rolls back
//! alone, never a savepoint in a batch of other callers' commands.

use std::time::Duration;

use sqlx::{Executor, Row};

use super::queries::{
    QueryError, QueryResult, group_view_on, pool_status_on, seat_on, user_view_on,
};
use super::{Backend, Conn, Env, MAX_ATTEMPTS, OpError, Store, ops};
use crate::command::{Command, Context, Outcome};
use crate::error::{LedgerError, StoreError};
use crate::idempotency::{
    Answer, AnswerRead, Answered, IdempotencyRecord, IdempotentRequest, LIFETIME_MICROS,
    PRUNE_BATCH, Ran, ReadValue, RunMode,
};

impl Store {
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn apply_answered<R, F>(
        &self,
        ctx: &Context,
        request: &IdempotentRequest,
        commands: &[Command],
        mode: RunMode,
        read: &R,
        render: &F,
        now: i64,
    ) -> Result<Answered, QueryError>
    where
        R: Fn(&[Result<Outcome, LedgerError>]) -> Option<AnswerRead> + Send + Sync,
        F: Fn(Result<Ran, LedgerError>) -> Answer + Send + Sync,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .apply_answered_once(ctx, request, commands, mode, read, render, now)
                .await
            {
                Err(QueryError::Store(e)) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                    let jitter = rand::random::<u64>() % (5 * attempt as u64);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                other => return other,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn apply_answered_once<R, F>(
        &self,
        ctx: &Context,
        request: &IdempotentRequest,
        commands: &[Command],
        mode: RunMode,
        read: &R,
        render: &F,
        now: i64,
    ) -> Result<Answered, QueryError>
    where
        R: Fn(&[Result<Outcome, LedgerError>]) -> Option<AnswerRead> + Send + Sync,
        F: Fn(Result<Ran, LedgerError>) -> Answer + Send + Sync,
    {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin(self.backend).await?;
        prune_expired(&mut tx, ctx.tenant, now).await?;
        // The claim: on PostgreSQL a concurrent claim of the same key waits here on the
        // primary key until the first transaction ends, then sees its row. An expired claim
        // not yet pruned is taken over.
        let claimed = sqlx::query(
            "INSERT INTO idempotency_keys (tenant_id, principal, idem_key, fingerprint, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (tenant_id, principal, idem_key) DO UPDATE SET \
             fingerprint = excluded.fingerprint, outcome = NULL, status = NULL, body = NULL, \
             created_at = excluded.created_at, expires_at = excluded.expires_at \
             WHERE idempotency_keys.expires_at <= $5",
        )
        .bind(ctx.tenant)
        .bind(request.principal.clone())
        .bind(request.key.clone())
        .bind(request.fingerprint.clone())
        .bind(now)
        .bind(now + LIFETIME_MICROS)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if super::is_unique_violation(&e) {
                StoreError::Contended
            } else {
                StoreError::Database(e)
            }
        })?
        .rows_affected();
        if claimed == 0 {
            let row = sqlx::query(
                "SELECT fingerprint, outcome, status, body FROM idempotency_keys \
                 WHERE tenant_id = $1 AND principal = $2 AND idem_key = $3",
            )
            .bind(ctx.tenant)
            .bind(request.principal.clone())
            .bind(request.key.clone())
            .fetch_one(&mut *tx)
            .await?;
            let fingerprint: String = row.try_get("fingerprint")?;
            if fingerprint != request.fingerprint {
                tx.rollback().await?;
                return Err(crate::idempotency::mismatch().into());
            }
            let status: Option<i64> = row.try_get("status")?;
            if let Some(status) = status {
                tx.rollback().await?;
                return Ok(Answered::Replayed(Answer {
                    status: status as u16,
                    body: row
                        .try_get::<Option<String>, _>("body")?
                        .unwrap_or_default(),
                }));
            }
            // A claim of an older version, committed with its outcomes but without the answer
            // it meant to store after the commit: rendered now from those outcomes, and stored.
            let outcome: Option<String> = row.try_get("outcome")?;
            let outcomes: Vec<Outcome> = serde_json::from_str(outcome.as_deref().unwrap_or(""))
                .map_err(|e| StoreError::Corrupt(format!("idempotency outcome: {e}")))?;
            let results: Vec<_> = outcomes.into_iter().map(Ok).collect();
            let ran = with_read(&mut tx, ctx.tenant, now, results, read).await?;
            let answer = render(ran);
            return self.store_answer(tx, ctx, request, answer).await.map(|a| {
                // It answers a request run before: a replay.
                Answered::Replayed(a.answer().clone())
            });
        }
        let ran = match mode {
            RunMode::Atomic => run_atomic(&mut tx, ctx, commands, now, self.backend).await?,
            RunMode::Each | RunMode::DryRun => {
                run_each(&mut tx, ctx, commands, now, self.backend, mode).await?
            }
        };
        let ran = match ran {
            Ok(results) => with_read(&mut tx, ctx.tenant, now, results, read).await?,
            Err(refusal) => Err(refusal),
        };
        let answer = render(ran);
        self.store_answer(tx, ctx, request, answer).await
    }

    /// Stores the answer with the claim and commits; a server error is not stored, and its
    /// transaction (the change with it) is rolled back.
    async fn store_answer(
        &self,
        mut tx: super::Tx<'_>,
        ctx: &Context,
        request: &IdempotentRequest,
        answer: Answer,
    ) -> Result<Answered, QueryError> {
        if answer.status >= 500 {
            tx.rollback().await?;
            return Ok(Answered::Fresh(answer));
        }
        sqlx::query(
            "UPDATE idempotency_keys SET status = $4, body = $5 \
             WHERE tenant_id = $1 AND principal = $2 AND idem_key = $3",
        )
        .bind(ctx.tenant)
        .bind(request.principal.clone())
        .bind(request.key.clone())
        .bind(answer.status as i64)
        .bind(answer.body.clone())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Answered::Fresh(answer))
    }

    /// Runs an answer's read on the reader pool (committed state).
    pub(crate) async fn read_answer(
        &self,
        tenant: crate::model::TenantId,
        read: &AnswerRead,
        now: i64,
    ) -> QueryResult<ReadValue> {
        let mut conn = self.read_conn().await?;
        read_on(&mut conn, tenant, read, now).await
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
            "SELECT fingerprint, status, body FROM idempotency_keys \
             WHERE tenant_id = $1 AND principal = $2 AND idem_key = $3 AND expires_at > $4",
        )
        .bind(tenant)
        .bind(principal.to_owned())
        .bind(key.to_owned())
        .bind(now)
        .fetch_optional(&mut self.read_conn().await?)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let status: Option<i64> = row.try_get("status")?;
        let body: Option<String> = row.try_get("body")?;
        Ok(Some(IdempotencyRecord {
            fingerprint: row.try_get("fingerprint")?,
            response: status.map(|s| (s as u16, body.unwrap_or_default())),
        }))
    }
}

/// Deletes at most [`PRUNE_BATCH`] expired claims of the tenant.
async fn prune_expired(c: &mut Conn, tenant: i64, now: i64) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND (principal, idem_key) IN \
         (SELECT principal, idem_key FROM idempotency_keys \
          WHERE tenant_id = $1 AND expires_at <= $2 LIMIT $3)",
    )
    .bind(tenant)
    .bind(now)
    .bind(PRUNE_BATCH)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// All or nothing: the first refusal rolls every command back (to a savepoint after the claim)
/// and is the result; a refusal for want of a seat is still counted in the usage history.
async fn run_atomic(
    tx: &mut super::Tx<'_>,
    ctx: &Context,
    commands: &[Command],
    now: i64,
    backend: Backend,
) -> Result<Result<Vec<Result<Outcome, LedgerError>>, LedgerError>, StoreError> {
    tx.execute("SAVEPOINT allot_answered").await?;
    let mut results = Vec::with_capacity(commands.len());
    for command in commands {
        let env = Env::new(ctx, now, backend);
        let result = match ops::execute(tx, &env, command).await {
            Ok(outcome) => ops::finish_command(tx, &env).await.map(|()| outcome),
            Err(e) => Err(e),
        };
        match result {
            Ok(outcome) => results.push(Ok(outcome)),
            Err(OpError::Rule(rule)) => {
                tx.execute("ROLLBACK TO SAVEPOINT allot_answered").await?;
                tx.execute("RELEASE SAVEPOINT allot_answered").await?;
                if let Some(product) = ops::denied_product(&rule) {
                    ops::record_denial(tx, &env, product)
                        .await
                        .map_err(super::op_store_error)?;
                }
                return Ok(Err(rule));
            }
            Err(OpError::Store(e)) => return Err(e),
        }
    }
    tx.execute("RELEASE SAVEPOINT allot_answered").await?;
    Ok(Ok(results))
}

/// Each command under its own savepoint (a refusal undoes only its own); a dry run then
/// undoes them all.
async fn run_each(
    tx: &mut super::Tx<'_>,
    ctx: &Context,
    commands: &[Command],
    now: i64,
    backend: Backend,
    mode: RunMode,
) -> Result<Result<Vec<Result<Outcome, LedgerError>>, LedgerError>, StoreError> {
    let dry = mode == RunMode::DryRun;
    if dry {
        tx.execute("SAVEPOINT allot_dry_run").await?;
    }
    let mut results = Vec::with_capacity(commands.len());
    for command in commands {
        let env = Env::new(ctx, now, backend);
        tx.execute("SAVEPOINT allot_command").await?;
        let result = match ops::execute(tx, &env, command).await {
            Ok(outcome) => ops::finish_command(tx, &env).await.map(|()| outcome),
            Err(e) => Err(e),
        };
        match result {
            Ok(outcome) => {
                tx.execute("RELEASE SAVEPOINT allot_command").await?;
                results.push(Ok(outcome));
            }
            Err(OpError::Rule(rule)) => {
                tx.execute("ROLLBACK TO SAVEPOINT allot_command").await?;
                tx.execute("RELEASE SAVEPOINT allot_command").await?;
                if let Some(product) = ops::denied_product(&rule) {
                    ops::record_denial(tx, &env, product)
                        .await
                        .map_err(super::op_store_error)?;
                }
                results.push(Err(rule));
            }
            Err(OpError::Store(e)) => return Err(e),
        }
    }
    if dry {
        tx.execute("ROLLBACK TO SAVEPOINT allot_dry_run").await?;
        tx.execute("RELEASE SAVEPOINT allot_dry_run").await?;
    }
    Ok(Ok(results))
}

/// Adds the answer's read (in the transaction, after the commands) to their results; a read
/// that a rule refuses (the thing is gone) is the result instead.
async fn with_read<R>(
    c: &mut Conn,
    tenant: i64,
    now: i64,
    results: Vec<Result<Outcome, LedgerError>>,
    read: &R,
) -> Result<Result<Ran, LedgerError>, StoreError>
where
    R: Fn(&[Result<Outcome, LedgerError>]) -> Option<AnswerRead> + Send + Sync,
{
    let value = match read(&results) {
        None => None,
        Some(what) => match read_on(c, tenant, &what, now).await {
            Ok(value) => Some(value),
            Err(QueryError::Ledger(e)) => return Ok(Err(e)),
            Err(QueryError::Store(e)) => return Err(e),
        },
    };
    Ok(Ok(Ran {
        results,
        read: value,
    }))
}

async fn read_on(c: &mut Conn, tenant: i64, read: &AnswerRead, now: i64) -> QueryResult<ReadValue> {
    Ok(match read {
        AnswerRead::Product(product) => {
            let product = ops::find_product(c, tenant, product).await?.product;
            let status = pool_status_on(c, tenant, Some(product.id), now)
                .await?
                .pop()
                .ok_or_else(|| LedgerError::UnknownProduct(format!("#{}", product.id)))?;
            ReadValue::Product(product, status)
        }
        AnswerRead::Seat(seat) => ReadValue::Seat(seat_on(c, tenant, *seat).await?),
        AnswerRead::User(user) => ReadValue::User(ops::find_user(c, tenant, user).await?.user),
        AnswerRead::Company(company) => {
            ReadValue::Company(ops::find_company(c, tenant, company).await?)
        }
        AnswerRead::Group(group) => ReadValue::Group(group_view_on(c, tenant, group).await?),
        AnswerRead::UserProduct { user, product } => ReadValue::UserProduct(
            user_view_on(c, tenant, user, now, Some(&[*product]))
                .await?
                .pop()
                .ok_or_else(|| LedgerError::UnknownProduct(format!("#{product}")))?,
        ),
    })
}
