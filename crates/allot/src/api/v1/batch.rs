//! `POST /v1/batch`: up to 1,000 operations in one request, each answered with its own outcome
//! (the ledger runs them as one batch, each command under its own savepoint: a refused one
//! leaves no trace and the others still apply). `allot import` sends its rows through it.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};

use crate::api::error::{ApiError, ApiResult, ErrorBody, ErrorDetail};
use crate::api::extract::{ApiJson, Caller, product_ref, user_ref};
use crate::state::AppState;
use allot_ledger::idempotency::RunMode;
use allot_ledger::*;

/// Operations at most in one request.
pub const MAX_BATCH: usize = 1000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    #[schema(max_items = 1000)]
    pub operations: Vec<BatchOperation>,
    /// Run every operation and answer their outcomes, then roll everything back.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum BatchOperation {
    /// Creates the user with this login, or brings it to these values (absent fields stay as
    /// they are); the company is made if missing; listed licenses are assigned if not held;
    /// the user joins each listed group, made if missing.
    UpsertUser {
        login: String,
        first_name: Option<String>,
        last_name: Option<String>,
        email: Option<String>,
        /// The company's name.
        company: Option<String>,
        /// Products as owner/name or id.
        #[serde(default)]
        licenses: Vec<String>,
        /// Group names.
        #[serde(default)]
        groups: Vec<String>,
    },
    /// Gives a user (id, UUID or login) a seat of a product (owner/name or id).
    Assign { user: String, product: String },
    /// Takes a product away from a user.
    Unassign { user: String, product: String },
}

/// One operation's outcome: `ok` with how much it changed, or the error it met (`field`
/// names the part of the operation at fault when the server can tell).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchResult {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchResponse {
    /// One per operation, in order.
    pub results: Vec<BatchResult>,
    /// The sum of the operations' changes.
    pub changed: u64,
    pub dry_run: bool,
}

fn refused(field: Option<&str>, code: &str, message: String) -> BatchResult {
    BatchResult {
        ok: false,
        changed: None,
        field: field.map(str::to_owned),
        error: Some(ErrorDetail {
            code: code.to_owned(),
            message,
        }),
    }
}

/// Which part of an operation a refusal is about, for reports by row and field.
fn field_of(e: &LedgerError) -> Option<&'static str> {
    use LedgerError::*;
    match e {
        Invalid { field, .. } => Some(field),
        UnknownUser(_) | AlreadyExists { what: "user", .. } | Retired(_) => Some("login"),
        UnknownCompany(_) | AlreadyExists { .. } => Some("company"),
        UnknownProduct(_)
        | NoSeatFree { .. }
        | QuotaExhausted { .. }
        | PrerequisiteMissing { .. }
        | ProductExpired { .. }
        | WrongKind { .. } => Some("licenses"),
        _ => None,
    }
}

fn command_of(op: BatchOperation) -> Result<Command, BatchResult> {
    let product = |text: &str, field: &str| {
        product_ref(text).map_err(|e| refused(Some(field), e.code, e.message))
    };
    Ok(match op {
        BatchOperation::UpsertUser {
            login,
            first_name,
            last_name,
            email,
            company,
            licenses,
            groups,
        } => Command::UpsertUser(UserUpsert {
            login,
            first_name,
            last_name,
            email,
            company,
            licenses: licenses
                .iter()
                .map(|l| product(l, "licenses"))
                .collect::<Result<_, _>>()?,
            groups,
        }),
        BatchOperation::Assign { user, product: p } => Command::Assign {
            user: user_ref(&user),
            product: product(&p, "product")?,
        },
        BatchOperation::Unassign { user, product: p } => Command::Unassign {
            user: user_ref(&user),
            product: product(&p, "product")?,
        },
    })
}

#[utoipa::path(post, path = "/v1/batch", tag = "batch", security(("bearer" = [])), request_body = BatchRequest,
    responses((status = 200, body = BatchResponse), (status = 422, description = "more than 1,000 operations, or a malformed one", body = ErrorBody)))]
pub async fn batch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<BatchRequest>,
) -> ApiResult<axum::response::Response> {
    let tenant = caller.admin()?;
    if req.operations.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("operations: at most {MAX_BATCH} in one request"),
        ));
    }
    // Operations that cannot become commands are answered without reaching the ledger.
    let mut results: Vec<Option<BatchResult>> = Vec::with_capacity(req.operations.len());
    let mut commands = Vec::new();
    for op in req.operations {
        match command_of(op) {
            Ok(command) => {
                commands.push(command);
                results.push(None);
            }
            Err(refusal) => results.push(Some(refusal)),
        }
    }
    let mode = if req.dry_run {
        RunMode::DryRun
    } else {
        RunMode::Each
    };
    let dry_run = req.dry_run;
    Ok(super::answer(
        &state,
        &caller,
        tenant,
        &headers,
        commands,
        mode,
        |_| None,
        |ran| {
            let ran = ran?;
            Ok((StatusCode::OK, report(&results, ran.results, dry_run)))
        },
    )
    .await)
}

/// The batch's answer: each operation's refusal (made before the ledger) or its outcome.
fn report(
    results: &[Option<BatchResult>],
    outcomes: Vec<Result<Outcome, LedgerError>>,
    dry_run: bool,
) -> BatchResponse {
    let mut outcomes = outcomes.into_iter();
    let mut total = 0;
    let results = results
        .iter()
        .map(|slot| match slot {
            Some(refusal) => refusal.clone(),
            None => match outcomes.next() {
                Some(Ok(outcome)) => {
                    total += outcome.changed();
                    BatchResult {
                        ok: true,
                        changed: Some(outcome.changed()),
                        field: None,
                        error: None,
                    }
                }
                Some(Err(e)) => {
                    let field = field_of(&e);
                    let api = ApiError::from(e);
                    refused(field, api.code, api.message)
                }
                None => refused(
                    None,
                    "internal",
                    "the ledger answered too few outcomes".into(),
                ),
            },
        })
        .collect();
    BatchResponse {
        results,
        changed: total,
        dry_run,
    }
}
