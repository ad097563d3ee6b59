//! Logins, tokens and tenants.

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use std::net::SocketAddr;
use uuid::Uuid;

use super::{run, unexpected};
use crate::api::dto::*;
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::auth::{Principal, new_token};
use crate::state::AppState;
use allot_ledger::*;

/// Client address when the server runs on a real socket (absent in in-process tests).
pub type Peer = Option<axum::Extension<ConnectInfo<SocketAddr>>>;

#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = IssuedToken), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<ApiJson<IssuedToken>> {
    let tenant = state
        .ledger
        .tenant(&req.tenant)
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    let principal = state
        .auth
        .password(
            tenant.id,
            &req.login,
            &req.password,
            peer.map(|p| p.0.0.ip()),
        )
        .await?;
    let expires_at = state.ledger.now_time() + state.token_ttl;
    let issued = issue(
        &state,
        &principal,
        tenant.id,
        &headers,
        principal.role,
        principal.user,
        "login",
        expires_at,
    )
    .await?;
    Ok(ApiJson(issued))
}

#[allow(clippy::too_many_arguments)]
async fn issue(
    state: &AppState,
    principal: &Principal,
    tenant: TenantId,
    headers: &HeaderMap,
    role: Role,
    user: Option<UserId>,
    label: &str,
    expires_at: time::OffsetDateTime,
) -> ApiResult<IssuedToken> {
    let (token, hash) = new_token();
    let caller = Caller(principal.clone());
    let outcome = run(
        state,
        &caller,
        tenant,
        headers,
        Command::IssueToken {
            token_hash: hash,
            role,
            login: principal.login.clone(),
            user,
            label: label.to_owned(),
            expires_at,
        },
    )
    .await?;
    match outcome {
        Outcome::Token(info) => Ok(IssuedToken {
            token,
            id: info.id,
            role: info.role,
            expires_at: info.expires_at,
        }),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(get, path = "/v1/tokens", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Vec<TokenInfo>)))]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiJson<Vec<TokenInfo>>> {
    let tenant = caller.admin()?;
    Ok(ApiJson(state.ledger.tokens(tenant).await?))
}

#[utoipa::path(post, path = "/v1/tokens", tag = "auth", security(("bearer" = [])), request_body = NewTokenRequest,
    responses((status = 201, body = IssuedToken), (status = 403, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<NewTokenRequest>,
) -> ApiResult<(StatusCode, ApiJson<IssuedToken>)> {
    let tenant = caller.admin()?;
    let user = match (&req.role, &req.user) {
        (_, Some(key)) => Some(state.ledger.user(tenant, &key.user()).await?.id),
        (Role::User, None) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "a user token names its user",
            ));
        }
        _ => None,
    };
    let hours = req.ttl_hours.unwrap_or(720);
    if !(1..=24 * 366).contains(&hours) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "ttl_hours must be between 1 and 8784",
        ));
    }
    let expires_at = state.ledger.now_time() + time::Duration::hours(hours);
    let issued = issue(
        &state, &caller.0, tenant, &headers, req.role, user, &req.label, expires_at,
    )
    .await?;
    Ok((StatusCode::CREATED, ApiJson(issued)))
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "auth", security(("bearer" = [])), params(("id" = Uuid, Path, description = "token id")),
    responses((status = 200, body = Changed), (status = 404, body = ErrorBody)))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
) -> axum::response::Response {
    super::answer_changed(&state, &caller, &headers, Command::RevokeToken { id }).await
}

#[utoipa::path(get, path = "/v1/logins", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Vec<LoginInfo>)))]
pub async fn list_logins(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiJson<Vec<LoginInfo>>> {
    let tenant = caller.admin()?;
    Ok(ApiJson(state.ledger.logins(tenant).await?))
}

#[utoipa::path(post, path = "/v1/logins", tag = "auth", security(("bearer" = [])), request_body = NewLoginRequest,
    responses((status = 201, body = LoginInfo), (status = 409, body = ErrorBody)))]
pub async fn create_login(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<NewLoginRequest>,
) -> ApiResult<(StatusCode, ApiJson<LoginInfo>)> {
    let tenant = caller.admin()?;
    let password_hash = hash_password(&state, &req.password).await?;
    let outcome = run(
        &state,
        &caller,
        tenant,
        &headers,
        Command::CreateLogin {
            login: req.login,
            password_hash,
            role: req.role,
            user: req.user.as_ref().map(Key::user),
        },
    )
    .await?;
    match outcome {
        Outcome::Login(info) => Ok((StatusCode::CREATED, ApiJson(info))),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(put, path = "/v1/logins/{login}/password", tag = "auth", security(("bearer" = [])), params(("login" = String, Path)),
    request_body = PasswordRequest, responses((status = 200, body = Changed)))]
pub async fn set_password(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(login): ApiPath<String>,
    ApiJson(req): ApiJson<PasswordRequest>,
) -> ApiResult<ApiJson<Changed>> {
    let tenant = caller.admin()?;
    let password_hash = hash_password(&state, &req.password).await?;
    let outcome = run(
        &state,
        &caller,
        tenant,
        &headers,
        Command::SetPassword {
            login,
            password_hash,
        },
    )
    .await?;
    Ok(ApiJson(Changed {
        changed: outcome.changed(),
    }))
}

pub(crate) async fn hash_password(state: &AppState, password: &str) -> ApiResult<String> {
    state
        .auth
        .passwords
        .hash(password)
        .await
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string()))
}

#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<Tenant>)))]
pub async fn list_tenants(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<Tenant>>> {
    caller.operator()?;
    let tenants = state.ledger.tenants().await?;
    Ok(ApiJson(Page::slice(tenants, &q, |t| t.id)))
}

/// Creates a tenant with its first admin login (operator only).
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", security(("bearer" = [])), request_body = NewTenantRequest,
    responses((status = 201, body = Tenant), (status = 409, body = ErrorBody)))]
pub async fn create_tenant(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<NewTenantRequest>,
) -> ApiResult<(StatusCode, ApiJson<Tenant>)> {
    caller.operator()?;
    let password_hash = hash_password(&state, &req.admin_password).await?;
    // One transaction: if the login is refused, the tenant is not created either.
    let admin = Command::CreateLogin {
        login: req.admin_login,
        password_hash,
        role: Role::Admin,
        user: None,
    };
    let (tenant, _) = state
        .ledger
        .create_tenant_with(
            &req.name,
            &caller.0.login,
            caller.context(0, &headers).request_id,
            &[admin],
        )
        .await?;
    Ok((StatusCode::CREATED, ApiJson(tenant)))
}
