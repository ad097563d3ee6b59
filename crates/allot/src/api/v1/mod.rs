//! The native JSON API, `/v1`. Handlers extract, check the caller's role, call the ledger and
//! map the result; no rule lives here.

pub mod audit;
pub mod auth;
pub mod batch;
pub mod companies;
pub mod groups;
pub mod harvest;
pub mod idempotency;
pub mod keys;
pub mod license;
pub mod products;
pub mod seats;
pub mod sessions;
pub mod usage;
pub mod users;
pub mod webhooks;

use axum::http::HeaderMap;

use super::error::{ApiError, ApiResult};
use super::extract::Caller;
use crate::state::AppState;
use allot_ledger::{Command, Outcome, TenantId};

/// Runs one command as the caller, in the caller's tenant, counting it in the metrics.
pub(crate) async fn run(
    state: &AppState,
    caller: &Caller,
    tenant: TenantId,
    headers: &HeaderMap,
    command: Command,
) -> ApiResult<Outcome> {
    let ctx = caller.context(tenant, headers);
    let op = command.name();
    let result = match idempotency::request_of(&caller.0, headers) {
        // Under an Idempotency-Key: claimed, applied and recorded in one transaction.
        Some(request) => state
            .ledger
            .apply_idempotent(&ctx, &request, std::slice::from_ref(&command))
            .await
            .and_then(|done| {
                done.outcomes()
                    .pop()
                    .ok_or(allot_ledger::LedgerError::Store(
                        "the store returned no outcome".into(),
                    ))
            }),
        None => state.ledger.execute(&ctx, command).await,
    };
    let outcome = if result.is_ok() { "ok" } else { "refused" };
    metrics::counter!("allot_ledger_operations_total", "op" => op, "outcome" => outcome)
        .increment(1);
    result.map_err(ApiError::from)
}

/// Runs commands all-or-nothing as the caller (under its Idempotency-Key, if any).
pub(crate) async fn run_all(
    state: &AppState,
    caller: &Caller,
    tenant: TenantId,
    headers: &HeaderMap,
    commands: &[Command],
) -> Result<Vec<Outcome>, allot_ledger::LedgerError> {
    let ctx = caller.context(tenant, headers);
    match idempotency::request_of(&caller.0, headers) {
        Some(request) => Ok(state
            .ledger
            .apply_idempotent(&ctx, &request, commands)
            .await?
            .outcomes()),
        None => state.ledger.apply_all_or_nothing(&ctx, commands).await,
    }
}

/// Runs an admin command in the caller's tenant and answers how much it changed.
pub(crate) async fn run_admin(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    command: Command,
) -> ApiResult<crate::api::extract::ApiJson<crate::api::dto::Changed>> {
    let tenant = caller.admin()?;
    let outcome = run(state, caller, tenant, headers, command).await?;
    Ok(crate::api::extract::ApiJson(crate::api::dto::Changed {
        changed: outcome.changed(),
    }))
}

/// An outcome of an unexpected kind is a bug; answer it as a server error without panicking.
pub(crate) fn unexpected(outcome: Outcome) -> ApiError {
    tracing::error!(?outcome, "unexpected outcome");
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "unexpected ledger outcome",
    )
}
