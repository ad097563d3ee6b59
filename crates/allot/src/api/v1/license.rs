//! Signed offline license files: a JWS compact serialisation (`alg` EdDSA, `kid`) that a client
//! checks with only the tenant's JWK Set (`GET /v1/keys`).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use uuid::Uuid;

use crate::api::error::{ApiResult, ErrorBody};
use crate::api::extract::{ApiPath, Caller, user_ref};
use crate::state::AppState;
use allot_ledger::SignedLicense;

/// The media type of a JWT (RFC 7519): the file is a JWS compact serialisation of JWT claims.
const JWT: &str = "application/jwt";

fn file(license: SignedLicense) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, JWT),
            (header::CACHE_CONTROL, "no-store"),
        ],
        license.token,
    )
}

/// Everything the user may use offline: the products held with their prerequisites met, the
/// seats behind them with the devices they are activated on, their expiries, and
/// `iat`/`nbf`/`exp` (the tenant's validity, 7 days by default).
#[utoipa::path(get, path = "/v1/users/{user}/license", tag = "licenses", security(("bearer" = [])),
    params(("user" = String, Path, description = "integer id, UUID or login")),
    responses((status = 200, description = "JWS compact serialisation", body = String, content_type = "application/jwt"),
        (status = 404, body = ErrorBody)))]
pub async fn user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<String>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let found = state.ledger.user(tenant, &user_ref(&user)).await?;
    caller.reader_or_self(found.id)?;
    let license = state
        .ledger
        .user_license(tenant, &allot_ledger::UserRef::Id(found.id))
        .await?;
    Ok(file(license))
}

/// One held seat: its holder, its product and the device it is activated on.
#[utoipa::path(get, path = "/v1/seats/{id}/license", tag = "licenses", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "seat id")),
    responses((status = 200, description = "JWS compact serialisation", body = String, content_type = "application/jwt"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn seat(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<impl IntoResponse> {
    let tenant = caller.tenant()?;
    let seat = state.ledger.seat(tenant, id).await?;
    match seat.holder {
        Some(holder) => caller.reader_or_self(holder)?,
        None => caller.reader()?,
    };
    Ok(file(state.ledger.seat_license(tenant, id).await?))
}
