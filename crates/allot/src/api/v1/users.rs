//! Users (associates), their license view, assignments and retirement.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;

use super::{answer, answer_changed, unexpected};
use crate::api::dto::*;
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::extract::{ApiJson, ApiPath, ApiQuery, Caller, product_ref, user_ref};
use crate::state::AppState;
use allot_ledger::idempotency::{AnswerRead, ReadValue, RunMode};
use allot_ledger::*;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UserQuery {
    /// Cursor: the `next` of the previous page.
    pub after: Option<i64>,
    /// Page size [default: 100]; clamped to 1..=1000.
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])), params(UserQuery),
    responses((status = 200, body = Page<User>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> ApiResult<ApiJson<Page<User>>> {
    let tenant = caller.reader()?;
    let limit = allot_ledger::rules::page_limit(q.limit);
    let users = state.ledger.users(tenant, q.after, Some(limit)).await?;
    Ok(ApiJson(Page::of(users, limit, |u| u.id)))
}

#[utoipa::path(post, path = "/v1/users", tag = "users", security(("bearer" = [])), request_body = NewUserRequest,
    responses((status = 201, body = User), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<NewUserRequest>,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    // Hash first: a password that is refused must not leave a user behind.
    let password_hash = match &req.password {
        Some(p) => Some(super::auth::hash_password(&state, p).await?),
        None => None,
    };
    let new = NewUser {
        id: req.id,
        login: req.login.clone(),
        first_name: req.first_name,
        last_name: req.last_name,
        email: req.email,
        company: req.company.as_ref().map(Key::company),
        license_mode: req.license_mode.unwrap_or(LicenseMode::Manual),
        user_type: req.user_type.unwrap_or_else(|| "internal".into()),
        external_id: None,
        display_name: None,
    };
    let mut commands = vec![Command::CreateUser(new)];
    if let Some(password_hash) = password_hash {
        commands.push(Command::CreateLogin {
            login: req.login.clone(),
            password_hash,
            role: Role::User,
            user: Some(UserRef::Login(req.login.clone())),
        });
    }
    // User and login commit together or not at all.
    Ok(answer(
        &state,
        &caller,
        tenant,
        &headers,
        commands,
        RunMode::Atomic,
        |_| None,
        |ran| match ran?.outcomes().into_iter().next() {
            Some(Outcome::User(u)) => Ok((StatusCode::CREATED, u)),
            Some(other) => Err(unexpected(other)),
            None => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "no user created",
            )),
        },
    )
    .await)
}

#[utoipa::path(get, path = "/v1/users/{user}", tag = "users", security(("bearer" = [])),
    params(("user" = String, Path, description = "integer id, UUID or login")),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<String>,
) -> ApiResult<ApiJson<User>> {
    let tenant = caller.tenant()?;
    let user = state.ledger.user(tenant, &user_ref(&user)).await?;
    caller.reader_or_self(user.id)?;
    Ok(ApiJson(user))
}

#[utoipa::path(patch, path = "/v1/users/{user}", tag = "users", security(("bearer" = [])),
    params(("user" = String, Path)), request_body = UserPatchRequest,
    responses((status = 200, body = User), (status = 409, body = ErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(user): ApiPath<String>,
    ApiJson(req): ApiJson<UserPatchRequest>,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    let target = user_ref(&user);
    let id = state.ledger.user(tenant, &target).await?.id;
    let patch = UserPatch {
        login: req.login,
        first_name: req.first_name,
        last_name: req.last_name,
        email: req.email,
        company: req.company.map(|c| c.as_ref().map(Key::company)),
        license_mode: req.license_mode,
        user_type: req.user_type,
        ..Default::default()
    };
    let command = Command::EditUser {
        user: UserRef::Id(id),
        patch,
    };
    Ok(answer(
        &state,
        &caller,
        tenant,
        &headers,
        vec![command],
        RunMode::Atomic,
        |_| Some(AnswerRead::User(UserRef::Id(id))),
        |ran| match ran?.read {
            Some(ReadValue::User(user)) => Ok((StatusCode::OK, user)),
            _ => Err(super::unexpected_read()),
        },
    )
    .await)
}

/// Every product as this user sees it: Assigned, CanAssign and the pool counts.
#[utoipa::path(get, path = "/v1/users/{user}/licenses", tag = "users", security(("bearer" = [])),
    params(("user" = String, Path)), responses((status = 200, body = Vec<UserProductView>)))]
pub async fn licenses(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<String>,
) -> ApiResult<ApiJson<Vec<UserProductView>>> {
    let tenant = caller.tenant()?;
    let user = state.ledger.user(tenant, &user_ref(&user)).await?;
    caller.reader_or_self(user.id)?;
    Ok(ApiJson(
        state
            .ledger
            .user_view(tenant, &UserRef::Id(user.id))
            .await?,
    ))
}

/// A product's id for an assignment change: as given, or looked up by owner/name. An id is not
/// looked up here: the command finds the product (or answers 404) in its own transaction.
async fn product_id(
    state: &AppState,
    tenant: TenantId,
    product: ProductRef,
) -> ApiResult<ProductId> {
    match product {
        ProductRef::Id(id) => Ok(id),
        named => Ok(state.ledger.product(tenant, &named).await?.id),
    }
}

/// Runs an assignment change and answers the product as the user now sees it. The user is not
/// looked up first: the command finds it (or answers 404), and the answer reads it again.
async fn view_answer(
    state: &AppState,
    caller: &Caller,
    tenant: TenantId,
    headers: &HeaderMap,
    user: UserRef,
    product: ProductId,
    command: Command,
) -> Response {
    answer(
        state,
        caller,
        tenant,
        headers,
        vec![command],
        RunMode::Atomic,
        |_| {
            Some(AnswerRead::UserProduct {
                user: user.clone(),
                product,
            })
        },
        |ran| match ran?.read {
            Some(ReadValue::UserProduct(view)) => Ok((StatusCode::OK, view)),
            _ => Err(super::unexpected_read()),
        },
    )
    .await
}

#[utoipa::path(post, path = "/v1/users/{user}/assignments", tag = "users", security(("bearer" = [])),
    params(("user" = String, Path)), request_body = AssignmentRequest,
    responses((status = 200, body = UserProductView), (status = 409, body = ErrorBody)))]
pub async fn assign(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(user): ApiPath<String>,
    ApiJson(req): ApiJson<AssignmentRequest>,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    let user = user_ref(&user);
    let product = product_id(&state, tenant, req.product.product()?).await?;
    let command = Command::Assign {
        user: user.clone(),
        product: ProductRef::Id(product),
    };
    Ok(view_answer(&state, &caller, tenant, &headers, user, product, command).await)
}

#[utoipa::path(delete, path = "/v1/users/{user}/assignments/{product}", tag = "users", security(("bearer" = [])),
    params(("user" = String, Path), ("product" = String, Path, description = "id, or owner/name (URL-encoded)", pattern = r"^(-?[0-9]+|[^/]+/.+)$")),
    responses((status = 200, body = UserProductView), (status = 404, body = ErrorBody)))]
pub async fn unassign(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath((user, product)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    let user = user_ref(&user);
    let product = product_id(&state, tenant, product_ref(&product)?).await?;
    let command = Command::Unassign {
        user: user.clone(),
        product: ProductRef::Id(product),
    };
    Ok(view_answer(&state, &caller, tenant, &headers, user, product, command).await)
}

#[utoipa::path(delete, path = "/v1/users/{user}/licenses", tag = "users", security(("bearer" = [])),
    params(("user" = String, Path)), responses((status = 200, body = Changed)))]
pub async fn remove_all(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(user): ApiPath<String>,
) -> Response {
    answer_changed(
        &state,
        &caller,
        &headers,
        Command::RemoveAllLicenses {
            user: user_ref(&user),
        },
    )
    .await
}

#[utoipa::path(post, path = "/v1/users/{user}/retire", tag = "users", security(("bearer" = [])),
    params(("user" = String, Path)), responses((status = 200, body = Changed)))]
pub async fn retire(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(user): ApiPath<String>,
) -> Response {
    answer_changed(
        &state,
        &caller,
        &headers,
        Command::Retire {
            user: user_ref(&user),
        },
    )
    .await
}

#[utoipa::path(post, path = "/v1/users/{user}/unretire", tag = "users", security(("bearer" = [])),
    params(("user" = String, Path)), responses((status = 200, body = Changed)))]
pub async fn unretire(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(user): ApiPath<String>,
) -> Response {
    answer_changed(
        &state,
        &caller,
        &headers,
        Command::Unretire {
            user: user_ref(&user),
        },
    )
    .await
}
