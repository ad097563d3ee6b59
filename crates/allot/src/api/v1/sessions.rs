//! Log-on sessions: open (taking a floating seat), heartbeat, end, log off, list.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use uuid::Uuid;

use super::{run, unexpected};
use crate::api::dto::*;
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::extract::{ApiJson, ApiPath, ApiQuery, Caller, user_ref};
use crate::state::AppState;
use allot_ledger::*;

/// Header carrying a session's lease token on `DELETE /v1/sessions/{id}`.
pub const LEASE_TOKEN_HEADER: &str = "lease-token";

#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", security(("bearer" = [])), request_body = LogOnRequest,
    responses((status = 201, body = SessionLease), (status = 409, body = ErrorBody)))]
pub async fn log_on(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LogOnRequest>,
) -> ApiResult<(StatusCode, ApiJson<SessionLease>)> {
    let tenant = caller.tenant()?;
    let user = state.ledger.user(tenant, &req.user.user()).await?.id;
    caller.admin_or_self(user)?;
    let command = Command::LogOn {
        user: UserRef::Id(user),
        client: req.client,
        device: req.device,
        product: req.product.as_ref().map(Key::product).transpose()?,
        lease_seconds: req.lease_seconds,
    };
    match run(&state, &caller, tenant, &headers, command).await? {
        Outcome::Lease(lease) => Ok((StatusCode::CREATED, ApiJson(lease.into()))),
        other => Err(unexpected(other)),
    }
}

/// Renews a lease (answered in the same shape as log-on). The lease token is the credential
/// here: whoever holds it may renew.
#[utoipa::path(post, path = "/v1/sessions/{id}/heartbeat", tag = "sessions", security(("bearer" = [])), params(("id" = Uuid, Path, description = "session id")),
    request_body = HeartbeatRequest,
    responses((status = 200, body = SessionLease), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<HeartbeatRequest>,
) -> ApiResult<ApiJson<SessionLease>> {
    let tenant = caller.tenant()?;
    let session = state.ledger.session(tenant, id).await?;
    caller.admin_or_self(session.user)?;
    let command = Command::Heartbeat {
        session: id,
        lease_token: req.lease_token,
        lease_seconds: req.lease_seconds,
    };
    match run(&state, &caller, tenant, &headers, command).await? {
        Outcome::Lease(lease) => Ok(ApiJson(lease.into())),
        other => Err(unexpected(other)),
    }
}

/// Ends a session. Admins may end any; a user its own, presenting the lease token in the
/// `Lease-Token` header.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions", security(("bearer" = [])), params(("id" = Uuid, Path, description = "session id")),
    responses((status = 200, body = Changed), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn end(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<axum::response::Response> {
    let tenant = caller.tenant()?;
    let session = state.ledger.session(tenant, id).await?;
    caller.admin_or_self(session.user)?;
    let lease_token = headers
        .get(LEASE_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !caller.0.can_write() && lease_token.is_none() {
        return Err(ApiError::forbidden(
            "ending your own session needs its Lease-Token header",
        ));
    }
    let reason = if caller.0.can_write() && lease_token.is_none() {
        EndReason::Admin
    } else {
        EndReason::Logoff
    };
    let command = Command::EndSession {
        session: id,
        lease_token,
        reason,
    };
    Ok(super::answer(
        &state,
        &caller,
        tenant,
        &headers,
        vec![command],
        allot_ledger::idempotency::RunMode::Atomic,
        |_| None,
        super::changed,
    )
    .await)
}

#[utoipa::path(post, path = "/v1/sessions/logoff", tag = "sessions", security(("bearer" = [])), request_body = LogOffRequest,
    responses((status = 200, body = Changed), (status = 404, body = ErrorBody)))]
pub async fn log_off(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LogOffRequest>,
) -> ApiResult<axum::response::Response> {
    let tenant = caller.admin()?;
    let command = Command::LogOff {
        users: req.users.iter().map(Key::user).collect(),
        client: req.client,
        reason: EndReason::Admin,
    };
    Ok(super::answer(
        &state,
        &caller,
        tenant,
        &headers,
        vec![command],
        allot_ledger::idempotency::RunMode::Atomic,
        |_| None,
        super::changed,
    )
    .await)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SessionQuery {
    pub user: Option<String>,
    pub client: Option<ClientKind>,
    /// Cursor: the `next` of the previous page.
    pub after: Option<i64>,
    /// Page size [default: 100]; clamped to 1..=1000.
    pub limit: Option<i64>,
}

/// Live sessions (a lapsed lease counts until it expires or is taken over).
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", security(("bearer" = [])), params(SessionQuery),
    responses((status = 200, body = Page<Session>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SessionQuery>,
) -> ApiResult<ApiJson<Page<Session>>> {
    let tenant = caller.tenant()?;
    let user = match &q.user {
        Some(u) => Some(state.ledger.user(tenant, &user_ref(u)).await?.id),
        None => None,
    };
    let user = if caller.0.can_read() {
        user
    } else {
        let me = caller
            .0
            .user
            .ok_or_else(|| ApiError::forbidden("this credential has no user"))?;
        if user.is_some_and(|u| u != me) {
            return Err(ApiError::forbidden(
                "a user credential sees only its own sessions",
            ));
        }
        Some(me)
    };
    let limit = allot_ledger::rules::page_limit(q.limit);
    let sessions = state
        .ledger
        .live_sessions(tenant, user, q.client, q.after, Some(limit))
        .await?;
    Ok(ApiJson(Page::of(sessions, limit, |s| s.number)))
}
