//! Idle-seat harvesting: per-product policies, exempt users, the listing of idle seats and a
//! harvest run (each reclaim its own ledger command, audited with the reason `idle`).

use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;

use axum::http::StatusCode;
use axum::response::Response;

use super::run_admin;
use crate::api::dto::*;
use crate::api::error::{ApiResult, ErrorBody};
use crate::api::extract::{ApiJson, ApiPath, ApiQuery, Caller, product_ref, user_ref};
use crate::state::AppState;
use allot_ledger::idempotency::RunMode;
use allot_ledger::*;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct HarvestQuery {
    /// List what would be reclaimed without reclaiming it.
    #[serde(default)]
    pub dry_run: bool,
}

/// Held seats idle past their product's policy (exempt users left out): what a harvest would do.
#[utoipa::path(get, path = "/v1/harvest", tag = "harvest", security(("bearer" = [])),
    responses((status = 200, body = Vec<IdleSeat>)))]
pub async fn idle(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiJson<Vec<IdleSeat>>> {
    let tenant = caller.reader()?;
    Ok(ApiJson(state.ledger.idle_seats(tenant).await?))
}

/// Runs the harvest now: releases the idle seats whose policy says release (each only if still
/// idle) and answers every idle seat with what happened to it.
#[utoipa::path(post, path = "/v1/harvest", tag = "harvest", security(("bearer" = [])), params(HarvestQuery),
    responses((status = 200, body = Vec<IdleSeat>)))]
pub async fn run(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<HarvestQuery>,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    let idle = state.ledger.idle_seats(tenant).await?;
    // Each seat by its own command, which re-checks inside the transaction that the seat is
    // still idle (a use in between wins, and the seat is reported as not released).
    let commands = if q.dry_run {
        Vec::new()
    } else {
        allot_ledger::harvest_commands(&idle)
    };
    Ok(super::answer(
        &state,
        &caller,
        tenant,
        &headers,
        commands,
        RunMode::Each,
        |_| None,
        |ran| {
            let ran = ran?;
            Ok((
                StatusCode::OK,
                allot_ledger::harvest_report(idle.clone(), &ran.results),
            ))
        },
    )
    .await)
}

#[utoipa::path(get, path = "/v1/harvest/policies", tag = "harvest", security(("bearer" = [])),
    responses((status = 200, body = Vec<ProductHarvestPolicy>)))]
pub async fn policies(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiJson<Vec<ProductHarvestPolicy>>> {
    let tenant = caller.reader()?;
    Ok(ApiJson(state.ledger.harvest_policies(tenant).await?))
}

#[utoipa::path(put, path = "/v1/products/{product}/harvest-policy", tag = "harvest", security(("bearer" = [])),
    params(("product" = String, Path, description = "id, or owner/name (URL-encoded)", pattern = r"^(-?[0-9]+|[^/]+/.+)$")),
    request_body = HarvestPolicyRequest,
    responses((status = 200, body = Changed), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn set_policy(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(product): ApiPath<String>,
    ApiJson(req): ApiJson<HarvestPolicyRequest>,
) -> ApiResult<ApiJson<Changed>> {
    let command = Command::SetHarvestPolicy {
        product: product_ref(&product)?,
        policy: Some(HarvestPolicy {
            idle_days: req.idle_days,
            action: req.action,
        }),
    };
    run_admin(&state, &caller, &headers, command).await
}

#[utoipa::path(delete, path = "/v1/products/{product}/harvest-policy", tag = "harvest", security(("bearer" = [])),
    params(("product" = String, Path, description = "id, or owner/name (URL-encoded)", pattern = r"^(-?[0-9]+|[^/]+/.+)$")),
    responses((status = 200, body = Changed), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_policy(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(product): ApiPath<String>,
) -> ApiResult<Response> {
    let command = Command::SetHarvestPolicy {
        product: product_ref(&product)?,
        policy: None,
    };
    Ok(super::answer_changed(&state, &caller, &headers, command).await)
}

#[utoipa::path(get, path = "/v1/harvest/exempt", tag = "harvest", security(("bearer" = [])),
    responses((status = 200, body = Vec<User>)))]
pub async fn exempt_users(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiJson<Vec<User>>> {
    let tenant = caller.reader()?;
    Ok(ApiJson(state.ledger.harvest_exempt_users(tenant).await?))
}

#[utoipa::path(put, path = "/v1/users/{user}/harvest-exempt", tag = "harvest", security(("bearer" = [])),
    params(("user" = String, Path)), responses((status = 200, body = Changed), (status = 404, body = ErrorBody)))]
pub async fn exempt(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(user): ApiPath<String>,
) -> ApiResult<ApiJson<Changed>> {
    let command = Command::SetHarvestExempt {
        user: user_ref(&user),
        exempt: true,
    };
    run_admin(&state, &caller, &headers, command).await
}

#[utoipa::path(delete, path = "/v1/users/{user}/harvest-exempt", tag = "harvest", security(("bearer" = [])),
    params(("user" = String, Path)), responses((status = 200, body = Changed), (status = 404, body = ErrorBody)))]
pub async fn unexempt(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(user): ApiPath<String>,
) -> ApiResult<Response> {
    let command = Command::SetHarvestExempt {
        user: user_ref(&user),
        exempt: false,
    };
    Ok(super::answer_changed(&state, &caller, &headers, command).await)
}

#[utoipa::path(get, path = "/v1/harvest/exempt-groups", tag = "harvest", security(("bearer" = [])),
    responses((status = 200, body = Vec<Group>)))]
pub async fn exempt_groups(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiJson<Vec<Group>>> {
    let tenant = caller.reader()?;
    Ok(ApiJson(state.ledger.harvest_exempt_groups(tenant).await?))
}

/// Exempts the seats of a group's members from the harvest, while they are members.
#[utoipa::path(put, path = "/v1/groups/{group}/harvest-exempt", tag = "harvest", security(("bearer" = [])),
    params(("group" = String, Path, description = "The group's id, UUID or name")),
    responses((status = 200, body = Changed), (status = 404, body = ErrorBody)))]
pub async fn exempt_group(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(group): ApiPath<String>,
) -> ApiResult<ApiJson<Changed>> {
    let command = Command::SetHarvestExemptGroup {
        group: super::groups::group_ref(&group),
        exempt: true,
    };
    run_admin(&state, &caller, &headers, command).await
}

#[utoipa::path(delete, path = "/v1/groups/{group}/harvest-exempt", tag = "harvest", security(("bearer" = [])),
    params(("group" = String, Path, description = "The group's id, UUID or name")),
    responses((status = 200, body = Changed), (status = 404, body = ErrorBody)))]
pub async fn unexempt_group(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(group): ApiPath<String>,
) -> ApiResult<Response> {
    let command = Command::SetHarvestExemptGroup {
        group: super::groups::group_ref(&group),
        exempt: false,
    };
    Ok(super::answer_changed(&state, &caller, &headers, command).await)
}
