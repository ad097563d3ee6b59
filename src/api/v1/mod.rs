//! The native JSON API, `/v1`. Handlers extract, check the caller's role, call the ledger and
//! map the result; no rule lives here.

pub mod audit;
pub mod auth;
pub mod companies;
pub mod products;
pub mod seats;
pub mod sessions;
pub mod users;

use axum::http::HeaderMap;

use super::error::{ApiError, ApiResult};
use super::extract::Caller;
use crate::ledger::{Command, Outcome, TenantId};
use crate::server::AppState;

/// Runs one command as the caller, in the caller's tenant, counting it in the metrics.
pub(crate) async fn run(
    state: &AppState,
    caller: &Caller,
    tenant: TenantId,
    headers: &HeaderMap,
    command: Command,
) -> ApiResult<Outcome> {
    let ctx = caller.context(tenant, headers);
    let op = command_name(&command);
    let result = state.ledger.execute(&ctx, command).await;
    let outcome = if result.is_ok() { "ok" } else { "refused" };
    metrics::counter!("allot_ledger_operations_total", "op" => op, "outcome" => outcome)
        .increment(1);
    result.map_err(ApiError::from)
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::CreateCompany { .. } => "create_company",
        Command::EditCompany { .. } => "edit_company",
        Command::SetCompanyQuota { .. } => "set_company_quota",
        Command::CreateUser(_) => "create_user",
        Command::EditUser { .. } => "edit_user",
        Command::CreateProduct(_) => "create_product",
        Command::EditProduct { .. } => "edit_product",
        Command::AddSeats(_) => "add_seats",
        Command::Assign { .. } => "assign",
        Command::Unassign { .. } => "unassign",
        Command::RemoveAllLicenses { .. } => "remove_all_licenses",
        Command::Retire { .. } => "retire",
        Command::Unretire { .. } => "unretire",
        Command::GrantSeat { .. } => "grant",
        Command::ReleaseSeat { .. } => "release",
        Command::RevokeSeat { .. } => "revoke",
        Command::ActivateSeat { .. } => "activate",
        Command::RegisterComputer { .. } => "register_computer",
        Command::LogOn { .. } => "log_on",
        Command::Heartbeat { .. } => "heartbeat",
        Command::LogOff { .. } => "log_off",
        Command::EndSession { .. } => "end_session",
        Command::ExpireSessions => "expire_sessions",
        Command::CreateLogin { .. } => "create_login",
        Command::SetPassword { .. } => "set_password",
        Command::IssueToken { .. } => "issue_token",
        Command::RevokeToken { .. } => "revoke_token",
    }
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
