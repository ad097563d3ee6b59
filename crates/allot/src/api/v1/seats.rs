//! Individual seats: listing, grant, release, revoke, activate.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use uuid::Uuid;

use super::{answer, single, unexpected};
use crate::api::dto::*;
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::extract::{ApiJson, ApiPath, ApiQuery, Caller, product_ref, user_ref};
use crate::state::AppState;
use allot_ledger::idempotency::{AnswerRead, Ran, ReadValue, RunMode};
use allot_ledger::*;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SeatQuery {
    /// Product id or owner/name.
    /// id, or owner/name.
    #[param(pattern = r"^(-?[0-9]+|[^/]+/.+)$")]
    pub product: Option<String>,
    /// Holder: id, UUID or login.
    pub user: Option<String>,
    pub available: Option<bool>,
    pub held: Option<bool>,
    pub activated: Option<bool>,
    /// Cursor: the `next` of the previous page.
    pub after: Option<i64>,
    /// Page size [default: 100]; clamped to 1..=1000.
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/seats", tag = "seats", security(("bearer" = [])), params(SeatQuery),
    responses((status = 200, body = Page<Seat>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SeatQuery>,
) -> ApiResult<ApiJson<Page<Seat>>> {
    let tenant = caller.tenant()?;
    let product = match &q.product {
        Some(p) => Some(state.ledger.product(tenant, &product_ref(p)?).await?.id),
        None => None,
    };
    let holder = match &q.user {
        Some(u) => Some(state.ledger.user(tenant, &user_ref(u)).await?.id),
        None => None,
    };
    // A user credential lists only its own seats.
    let holder = if caller.0.role == Role::User {
        let me = caller
            .0
            .user
            .ok_or_else(|| ApiError::forbidden("this credential has no user"))?;
        if holder.is_some_and(|h| h != me) {
            return Err(ApiError::forbidden(
                "a user credential sees only its own seats",
            ));
        }
        Some(me)
    } else {
        caller.reader()?;
        holder
    };
    let limit = allot_ledger::rules::page_limit(q.limit);
    let filter = SeatFilter {
        product,
        holder,
        available: q.available,
        held: q.held,
        activated: q.activated,
        after_number: q.after,
        limit: Some(limit),
    };
    let seats = state.ledger.seats(tenant, &filter).await?;
    Ok(ApiJson(Page::of(seats, limit, |s| s.number)))
}

#[utoipa::path(get, path = "/v1/seats/{id}", tag = "seats", security(("bearer" = [])), params(("id" = Uuid, Path, description = "seat id")),
    responses((status = 200, body = Seat), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<ApiJson<Seat>> {
    let tenant = caller.tenant()?;
    let seat = state.ledger.seat(tenant, id).await?;
    match seat.holder {
        Some(holder) => caller.reader_or_self(holder)?,
        None => caller.reader()?,
    };
    Ok(ApiJson(seat))
}

/// Runs a seat command and answers the seat as it left it (the outcome's, or read after it).
async fn seat_answer(
    state: &AppState,
    caller: &Caller,
    tenant: TenantId,
    headers: &HeaderMap,
    id: Uuid,
    command: Command,
    refused: impl Fn(LedgerError) -> ApiError + Send + Sync,
) -> Response {
    answer(
        state,
        caller,
        tenant,
        headers,
        vec![command],
        RunMode::Atomic,
        |results| match results.first() {
            Some(Ok(Outcome::Seat(_))) => None,
            _ => Some(AnswerRead::Seat(id)),
        },
        |ran: Result<Ran, LedgerError>| {
            let (outcome, ran) = single(Ok(ran.map_err(&refused)?))?;
            match (outcome, ran.read) {
                (Outcome::Seat(seat), _) => Ok((StatusCode::OK, seat)),
                (Outcome::Changed { .. }, Some(ReadValue::Seat(seat))) => {
                    Ok((StatusCode::OK, seat))
                }
                (Outcome::Changed { .. }, _) => Err(super::unexpected_read()),
                (other, _) => Err(unexpected(other)),
            }
        },
    )
    .await
}

#[utoipa::path(post, path = "/v1/seats/{id}/grant", tag = "seats", security(("bearer" = [])), params(("id" = Uuid, Path, description = "seat id")), request_body = GrantRequest,
    responses((status = 200, body = Seat), (status = 409, body = ErrorBody)))]
pub async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<GrantRequest>,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    let command = Command::GrantSeat {
        seat: id,
        user: req.user.user(),
    };
    Ok(seat_answer(
        &state,
        &caller,
        tenant,
        &headers,
        id,
        command,
        ApiError::from,
    )
    .await)
}

#[utoipa::path(post, path = "/v1/seats/{id}/release", tag = "seats", security(("bearer" = [])), params(("id" = Uuid, Path, description = "seat id")), request_body = SeatUserRequest,
    responses((status = 200, body = Seat), (status = 409, body = ErrorBody)))]
pub async fn release(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<SeatUserRequest>,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    let command = Command::ReleaseSeat {
        seat: id,
        user: req.user.as_ref().map(Key::user),
    };
    Ok(seat_answer(
        &state,
        &caller,
        tenant,
        &headers,
        id,
        command,
        ApiError::from,
    )
    .await)
}

#[utoipa::path(post, path = "/v1/seats/{id}/revoke", tag = "seats", security(("bearer" = [])), params(("id" = Uuid, Path, description = "seat id")), request_body = SeatUserRequest,
    responses((status = 200, body = Seat), (status = 409, body = ErrorBody)))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<SeatUserRequest>,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    let command = Command::RevokeSeat {
        seat: id,
        user: req.user.as_ref().map(Key::user),
    };
    Ok(seat_answer(
        &state,
        &caller,
        tenant,
        &headers,
        id,
        command,
        ApiError::from,
    )
    .await)
}

#[utoipa::path(post, path = "/v1/seats/{id}/activate", tag = "seats", security(("bearer" = [])), params(("id" = Uuid, Path, description = "seat id")), request_body = ActivateRequest,
    responses((status = 200, body = Seat), (status = 409, body = ErrorBody)))]
pub async fn activate(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<ActivateRequest>,
) -> ApiResult<Response> {
    let tenant = caller.tenant()?;
    // An admin activates any held seat; a user only its own, which the ledger checks on the
    // locked seat (checking here first and then acting would race with a change of holder).
    let user = if caller.0.can_write() {
        None
    } else {
        match caller.0.user {
            Some(user) if caller.0.is_self(user) => Some(UserRef::Id(user)),
            _ => {
                return Err(ApiError::forbidden(
                    "this needs the admin role, or the user itself",
                ));
            }
        }
    };
    let acting_for_self = user.is_some();
    let activation = Activation {
        hardware_id: req.hardware_id,
        computer_name: req.computer_name,
        operating_system: req.operating_system,
    };
    let command = Command::ActivateSeat {
        seat: id,
        activation,
        user,
    };
    let refused = move |e: LedgerError| {
        let e = ApiError::from(e);
        // Someone else's seat (or nobody's) is not the user's to activate: the same 403 as for
        // any other action on another user.
        if acting_for_self && matches!(e.code, "wrong_holder" | "not_held") {
            ApiError::forbidden("this needs the admin role, or the user itself")
        } else {
            e
        }
    };
    Ok(seat_answer(&state, &caller, tenant, &headers, id, command, refused).await)
}
