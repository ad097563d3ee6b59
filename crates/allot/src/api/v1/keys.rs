//! License-signing keys: the public JWK Set (no authentication: an offline client needs only
//! it), rotation, and the tenant's license-file validity.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::extract::{ApiJson, ApiQuery, Caller};
use crate::state::AppState;
use allot_ledger::keys::{Jwk, JwkSet};
use allot_ledger::{Command, LedgerError};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KeysQuery {
    /// The tenant whose keys to list, by name.
    pub tenant: String,
}

/// The tenant's public signing keys as a JWK Set (RFC 7517, RFC 8037 `OKP`/`Ed25519`), newest
/// first. License files name their key by `kid`; rotated-out keys stay listed so older files
/// still verify.
#[utoipa::path(get, path = "/v1/keys", tag = "licenses", params(KeysQuery),
    responses((status = 200, body = JwkSet, content_type = "application/jwk-set+json"),
        (status = 404, body = ErrorBody)))]
pub async fn jwks(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<KeysQuery>,
) -> ApiResult<impl IntoResponse> {
    let tenant = state
        .ledger
        .tenant(&q.tenant)
        .await?
        .ok_or_else(|| ApiError::from(LedgerError::UnknownTenant(q.tenant.clone())))?;
    let set = state.ledger.jwks(tenant.id).await?;
    let body = serde_json::to_string(&set)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/jwk-set+json"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    ))
}

/// Adds a new signing key to the caller's tenant: it signs every file from now on, and the
/// previous keys stay in the JWK Set for the files they signed.
#[utoipa::path(post, path = "/v1/keys", tag = "licenses", security(("bearer" = [])),
    responses((status = 201, body = Jwk), (status = 403, body = ErrorBody)))]
pub async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> ApiResult<(StatusCode, ApiJson<Jwk>)> {
    let tenant = caller.admin()?;
    let ctx = caller.context(tenant, &headers);
    let key = state.ledger.rotate_signing_key(&ctx).await?;
    Ok((StatusCode::CREATED, ApiJson(Jwk::from(&key))))
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LicenseSettings {
    /// How long a license file is valid (`exp - iat`), in seconds: 60 to 31622400; default
    /// 604800 (7 days).
    #[schema(minimum = 60, maximum = 31_622_400)]
    pub validity_seconds: i64,
}

#[utoipa::path(get, path = "/v1/license-settings", tag = "licenses", security(("bearer" = [])),
    responses((status = 200, body = LicenseSettings)))]
pub async fn get_settings(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiJson<LicenseSettings>> {
    let tenant = caller.reader()?;
    Ok(ApiJson(LicenseSettings {
        validity_seconds: state.ledger.license_validity(tenant).await?,
    }))
}

#[utoipa::path(put, path = "/v1/license-settings", tag = "licenses", security(("bearer" = [])),
    request_body = LicenseSettings,
    responses((status = 200, body = LicenseSettings), (status = 422, body = ErrorBody)))]
pub async fn put_settings(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LicenseSettings>,
) -> ApiResult<ApiJson<LicenseSettings>> {
    let tenant = caller.admin()?;
    super::run(
        &state,
        &caller,
        tenant,
        &headers,
        Command::SetLicenseValidity {
            seconds: req.validity_seconds,
        },
    )
    .await?;
    Ok(ApiJson(LicenseSettings {
        validity_seconds: state.ledger.license_validity(tenant).await?,
    }))
}
