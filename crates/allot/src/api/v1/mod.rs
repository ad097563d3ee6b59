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

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ApiResult, ErrorBody, ErrorDetail};
use super::extract::{ApiJson, Caller};
use crate::state::AppState;
use allot_ledger::idempotency::{Answer, AnswerRead, Answered, Ran, RunMode};
use allot_ledger::{Command, LedgerError, Outcome, TenantId};

/// Runs commands as the caller and answers what `render` makes of their results and of the
/// read `read` asks for. Every POST, PATCH and DELETE that takes an `Idempotency-Key` answers
/// through here.
///
/// Under a key, the ledger claims it, runs the commands, makes the read, has `render` make the
/// answer and stores it, all in one transaction ([`allot_ledger::Ledger::apply_answered`]): a
/// refusal is rendered and stored too, and a retry gets the stored answer. Without a key the
/// commands commit as usual (SQLite's group commit), then the read is made and rendered.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn answer<T, R, F>(
    state: &AppState,
    caller: &Caller,
    tenant: TenantId,
    headers: &HeaderMap,
    commands: Vec<Command>,
    mode: RunMode,
    read: R,
    render: F,
) -> Response
where
    T: serde::Serialize,
    R: Fn(&[Result<Outcome, LedgerError>]) -> Option<AnswerRead> + Send + Sync,
    F: Fn(Result<Ran, LedgerError>) -> ApiResult<(StatusCode, T)> + Send + Sync,
{
    let ctx = caller.context(tenant, headers);
    let op = commands.first().map(Command::name).unwrap_or("none");
    let Some(request) = idempotency::request_of(&caller.0, headers) else {
        let ran = run_plain(state, &ctx, commands, mode, &read).await;
        count(op, ran.is_ok());
        return match render(ran) {
            Ok((status, body)) => (status, ApiJson(body)).into_response(),
            Err(e) => e.into_response(),
        };
    };
    let to_answer = |ran: Result<Ran, LedgerError>| match render(ran) {
        Ok((status, body)) => match serde_json::to_string(&body) {
            Ok(body) => Answer {
                status: status.as_u16(),
                body,
            },
            Err(e) => error_answer(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("rendering the answer failed: {e}"),
            )),
        },
        Err(e) => error_answer(e),
    };
    match state
        .ledger
        .apply_answered(&ctx, &request, &commands, mode, read, to_answer)
        .await
    {
        Ok(Answered::Fresh(answer)) => {
            count(op, answer.status < 400);
            idempotency::answer_response(answer, false)
        }
        Ok(Answered::Replayed(answer)) => idempotency::answer_response(answer, true),
        Err(LedgerError::Invalid {
            field: "Idempotency-Key",
            ..
        }) => idempotency::key_reused(),
        Err(e) => {
            count(op, false);
            ApiError::from(e).into_response()
        }
    }
}

fn count(op: &'static str, ok: bool) {
    let outcome = if ok { "ok" } else { "refused" };
    metrics::counter!("allot_ledger_operations_total", "op" => op, "outcome" => outcome)
        .increment(1);
}

/// Runs commands without a key: committed first, then the answer's read on committed state.
async fn run_plain<R>(
    state: &AppState,
    ctx: &allot_ledger::Context,
    commands: Vec<Command>,
    mode: RunMode,
    read: &R,
) -> Result<Ran, LedgerError>
where
    R: Fn(&[Result<Outcome, LedgerError>]) -> Option<AnswerRead>,
{
    let results: Vec<Result<Outcome, LedgerError>> = match mode {
        _ if commands.is_empty() => Vec::new(),
        RunMode::Atomic if commands.len() == 1 => {
            let command = commands.into_iter().next().expect("one command");
            vec![Ok(state.ledger.execute(ctx, command).await?)]
        }
        RunMode::Atomic => state
            .ledger
            .apply_all_or_nothing(ctx, &commands)
            .await?
            .into_iter()
            .map(Ok)
            .collect(),
        RunMode::Each => state.ledger.apply(ctx, &commands).await?,
        RunMode::DryRun => state.ledger.apply_dry_run(ctx, &commands).await?,
    };
    let read = match read(&results) {
        Some(what) => Some(state.ledger.read_answer(ctx.tenant, &what).await?),
        None => None,
    };
    Ok(Ran { results, read })
}

/// An error as a stored answer: the status and the body its response has.
fn error_answer(e: ApiError) -> Answer {
    let body = ErrorBody {
        error: ErrorDetail {
            code: e.code.to_owned(),
            message: e.message,
        },
    };
    Answer {
        status: e.status.as_u16(),
        body: serde_json::to_string(&body).unwrap_or_else(|_| "{}".to_owned()),
    }
}

/// Runs one command and answers how much it changed (`{"changed": n}`); only the admin role.
pub(crate) async fn answer_changed(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    command: Command,
) -> Response {
    let tenant = match caller.admin() {
        Ok(tenant) => tenant,
        Err(e) => return e.into_response(),
    };
    answer(
        state,
        caller,
        tenant,
        headers,
        vec![command],
        RunMode::Atomic,
        |_| None,
        changed,
    )
    .await
}

/// Renders `{"changed": n}` from a run of one command.
pub(crate) fn changed(
    ran: Result<Ran, LedgerError>,
) -> ApiResult<(StatusCode, crate::api::dto::Changed)> {
    let changed = ran?.outcomes().iter().map(Outcome::changed).sum();
    Ok((StatusCode::OK, crate::api::dto::Changed { changed }))
}

/// The single outcome of a run of one command.
pub(crate) fn single(ran: Result<Ran, LedgerError>) -> ApiResult<(Outcome, Ran)> {
    let ran = ran?;
    match ran.results.first() {
        Some(Ok(outcome)) => Ok((outcome.clone(), ran)),
        Some(Err(e)) => Err(e.clone().into()),
        None => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the ledger answered no outcome",
        )),
    }
}

/// Runs one command as the caller (a route without an `Idempotency-Key`: PUT, or no key).
pub(crate) async fn run(
    state: &AppState,
    caller: &Caller,
    tenant: TenantId,
    headers: &HeaderMap,
    command: Command,
) -> ApiResult<Outcome> {
    if idempotency::request_of(&caller.0, headers).is_some() {
        // A route that takes the key answers through `answer`; reaching here is a bug, and
        // running the command without its claim would break the key's promise.
        tracing::error!(
            op = command.name(),
            "a keyed request reached the unkeyed path"
        );
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "this route does not run under an Idempotency-Key",
        ));
    }
    let ctx = caller.context(tenant, headers);
    let op = command.name();
    let result = state.ledger.execute(&ctx, command).await;
    count(op, result.is_ok());
    result.map_err(ApiError::from)
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

/// An answer's read of an unexpected kind (or none) is a bug; answered as a server error.
pub(crate) fn unexpected_read() -> ApiError {
    tracing::error!("unexpected answer read");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "unexpected ledger read",
    )
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
