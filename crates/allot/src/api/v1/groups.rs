//! Groups of users and the licenses given to them; disabling and enabling users.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{answer, answer_changed, run, single, unexpected};
use crate::api::dto::*;
use crate::api::error::{ApiResult, ErrorBody};
use crate::api::extract::{ApiJson, ApiPath, ApiQuery, Caller, product_ref, user_ref};
use crate::state::AppState;
use allot_ledger::idempotency::{AnswerRead, ReadValue, RunMode};
use allot_ledger::*;

/// A group named in a path: integer id, UUID, or name.
pub fn group_ref(text: &str) -> GroupRef {
    if let Ok(id) = text.parse::<i64>() {
        GroupRef::Id(id)
    } else if let Ok(uuid) = uuid::Uuid::parse_str(text) {
        GroupRef::Uuid(uuid)
    } else {
        GroupRef::Name(text.to_owned())
    }
}

#[utoipa::path(get, path = "/v1/groups", tag = "groups", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = Page<Group>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<ApiJson<Page<Group>>> {
    let tenant = caller.reader()?;
    let limit = q.limit();
    let groups = state.ledger.groups(tenant, q.after, Some(limit)).await?;
    Ok(ApiJson(Page::of(groups, limit, |g| g.id)))
}

#[utoipa::path(post, path = "/v1/groups", tag = "groups", security(("bearer" = [])), request_body = NewGroupRequest,
    responses((status = 201, body = Group), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<NewGroupRequest>,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    let command = Command::CreateGroup {
        name: req.name,
        uuid: None,
        external_id: None,
    };
    Ok(answer(
        &state,
        &caller,
        tenant,
        &headers,
        vec![command],
        RunMode::Atomic,
        |_| None,
        |ran| match single(ran)? {
            (Outcome::Group(g), _) => Ok((StatusCode::CREATED, g)),
            (other, _) => Err(unexpected(other)),
        },
    )
    .await)
}

/// The group with its members, its licenses and every member's assignment state.
#[utoipa::path(get, path = "/v1/groups/{group}", tag = "groups", security(("bearer" = [])),
    params(("group" = String, Path, description = "integer id, UUID or name")),
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(group): ApiPath<String>,
) -> ApiResult<ApiJson<GroupView>> {
    let tenant = caller.reader()?;
    Ok(ApiJson(
        state.ledger.group_view(tenant, &group_ref(&group)).await?,
    ))
}

#[utoipa::path(patch, path = "/v1/groups/{group}", tag = "groups", security(("bearer" = [])),
    params(("group" = String, Path)), request_body = GroupPatchRequest,
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(group): ApiPath<String>,
    ApiJson(req): ApiJson<GroupPatchRequest>,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    let id = state.ledger.group(tenant, &group_ref(&group)).await?.id;
    // Without a new name nothing changes: the answer is the group as it stands.
    let commands = req
        .name
        .map(|name| Command::RenameGroup {
            group: GroupRef::Id(id),
            name,
        })
        .into_iter()
        .collect();
    Ok(group_answer(&state, &caller, tenant, &headers, id, commands).await)
}

/// Runs group commands and answers the group as they left it.
async fn group_answer(
    state: &AppState,
    caller: &Caller,
    tenant: TenantId,
    headers: &HeaderMap,
    id: GroupId,
    commands: Vec<Command>,
) -> Response {
    answer(
        state,
        caller,
        tenant,
        headers,
        commands,
        RunMode::Atomic,
        |_| Some(AnswerRead::Group(GroupRef::Id(id))),
        |ran| match ran?.read {
            Some(ReadValue::Group(view)) => Ok((StatusCode::OK, view)),
            _ => Err(super::unexpected_read()),
        },
    )
    .await
}

/// Deletes the group: its members lose the seats it was the last reason for.
#[utoipa::path(delete, path = "/v1/groups/{group}", tag = "groups", security(("bearer" = [])),
    params(("group" = String, Path)), responses((status = 200, body = Changed), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(group): ApiPath<String>,
) -> Response {
    let command = Command::DeleteGroup {
        group: group_ref(&group),
    };
    answer_changed(&state, &caller, &headers, command).await
}

/// Runs a membership or license change, then answers the group as it now stands.
async fn change(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    group: &str,
    command: impl FnOnce(GroupRef) -> Command,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    let id = state.ledger.group(tenant, &group_ref(group)).await?.id;
    let commands = vec![command(GroupRef::Id(id))];
    Ok(group_answer(state, caller, tenant, headers, id, commands).await)
}

/// Adds a member: it gets a seat of every license of the group, or waits for one.
#[utoipa::path(post, path = "/v1/groups/{group}/members", tag = "groups", security(("bearer" = [])),
    params(("group" = String, Path)), request_body = GroupMemberRequest,
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(group): ApiPath<String>,
    ApiJson(req): ApiJson<GroupMemberRequest>,
) -> ApiResult<Response> {
    let user = req.user.user();
    change(&state, &caller, &headers, &group, |group| {
        Command::AddGroupMember { group, user }
    })
    .await
}

/// Removes a member: it loses the seats this group was the last reason for.
#[utoipa::path(delete, path = "/v1/groups/{group}/members/{user}", tag = "groups", security(("bearer" = [])),
    params(("group" = String, Path), ("user" = String, Path, description = "integer id, UUID or login")),
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody)))]
pub async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath((group, user)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let user = user_ref(&user);
    change(&state, &caller, &headers, &group, |group| {
        Command::RemoveGroupMember { group, user }
    })
    .await
}

/// Gives a user product to the group: every member holds a seat of it, or waits for one.
#[utoipa::path(post, path = "/v1/groups/{group}/licenses", tag = "groups", security(("bearer" = [])),
    params(("group" = String, Path)), request_body = AssignmentRequest,
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn add_license(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(group): ApiPath<String>,
    ApiJson(req): ApiJson<AssignmentRequest>,
) -> ApiResult<Response> {
    let product = req.product.product()?;
    change(&state, &caller, &headers, &group, |group| {
        Command::AddGroupLicense { group, product }
    })
    .await
}

#[utoipa::path(delete, path = "/v1/groups/{group}/licenses/{product}", tag = "groups", security(("bearer" = [])),
    params(("group" = String, Path), ("product" = String, Path, description = "id, or owner/name (URL-encoded)", pattern = r"^(-?[0-9]+|[^/]+/.+)$")),
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn remove_license(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath((group, product)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let product = product_ref(&product)?;
    change(&state, &caller, &headers, &group, |group| {
        Command::RemoveGroupLicense { group, product }
    })
    .await
}

/// Disables a user: sessions end, its tokens are revoked, logins refused, seats released
/// (unless the tenant keeps them). The user stays.
#[utoipa::path(post, path = "/v1/users/{user}/disable", tag = "users", security(("bearer" = [])),
    params(("user" = String, Path)), responses((status = 200, body = Changed), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(user): ApiPath<String>,
) -> Response {
    let command = Command::DisableUser {
        user: user_ref(&user),
    };
    answer_changed(&state, &caller, &headers, command).await
}

/// Enables a disabled user. Revoked tokens stay revoked; group licenses queue again.
#[utoipa::path(post, path = "/v1/users/{user}/enable", tag = "users", security(("bearer" = [])),
    params(("user" = String, Path)), responses((status = 200, body = Changed), (status = 404, body = ErrorBody)))]
pub async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(user): ApiPath<String>,
) -> Response {
    let command = Command::EnableUser {
        user: user_ref(&user),
    };
    answer_changed(&state, &caller, &headers, command).await
}

/// The groups a user is a member of.
#[utoipa::path(get, path = "/v1/users/{user}/groups", tag = "users", security(("bearer" = [])),
    params(("user" = String, Path)), responses((status = 200, body = Vec<Group>), (status = 404, body = ErrorBody)))]
pub async fn user_groups(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<String>,
) -> ApiResult<ApiJson<Vec<Group>>> {
    let tenant = caller.tenant()?;
    let user = state.ledger.user(tenant, &user_ref(&user)).await?;
    caller.reader_or_self(user.id)?;
    Ok(ApiJson(state.ledger.user_groups(tenant, user.id).await?))
}

#[utoipa::path(get, path = "/v1/directory-settings", tag = "groups", security(("bearer" = [])),
    responses((status = 200, body = DirectorySettings)))]
pub async fn get_settings(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiJson<DirectorySettings>> {
    let tenant = caller.reader()?;
    Ok(ApiJson(DirectorySettings {
        disabled_keep_seats: state.ledger.disabled_keep_seats(tenant).await?,
    }))
}

#[utoipa::path(put, path = "/v1/directory-settings", tag = "groups", security(("bearer" = [])),
    request_body = DirectorySettings, responses((status = 200, body = DirectorySettings)))]
pub async fn put_settings(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<DirectorySettings>,
) -> ApiResult<ApiJson<DirectorySettings>> {
    let tenant = caller.admin()?;
    let command = Command::SetDisabledKeepSeats {
        keep: req.disabled_keep_seats,
    };
    run(&state, &caller, tenant, &headers, command).await?;
    Ok(ApiJson(req))
}
