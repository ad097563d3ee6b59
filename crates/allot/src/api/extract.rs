//! Extractors: the caller's principal, and JSON/query/path wrappers whose rejections come back
//! in the API's error shape.

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, Query};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use uuid::Uuid;

use super::error::ApiError;
use crate::auth::Principal;
use crate::state::AppState;
use allot_ledger::{Context, ProductRef, Role, TenantId, UserRef};

/// A JSON body (`application/json`, UTF-8: a declared charset other than UTF-8 is refused 415
/// rather than read as UTF-8 anyway).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        if let Some(content_type) = req.headers().get(axum::http::header::CONTENT_TYPE)
            && !charset_is_utf8(content_type.to_str().unwrap_or("?"))
        {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "JSON bodies are UTF-8; send application/json without another charset",
            ));
        }
        // JSON (and JSON Schema's `integer`) does not tell 2 from 2.0: whole-numbered floats are
        // read as integers, then the body is bound as usual.
        let Json(mut value) = Json::<serde_json::Value>::from_request(req, state).await?;
        // Every request body is an object (serde would also bind a struct from an array).
        if !value.is_object() {
            return Err(ApiError::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "the body is a JSON object",
            ));
        }
        integral_floats_as_integers(&mut value);
        let body = serde_json::to_vec(&value).unwrap_or_default();
        let Json(value) = Json::<T>::from_bytes(&body)?;
        Ok(ApiJson(value))
    }
}

/// Rewrites every float with no fractional part that fits an `i64` (`2519.0`, `1e3`) as that
/// integer.
fn integral_floats_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f >= i64::MIN as f64
                && f < i64::MAX as f64
            {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// Whether a `Content-Type` declares no charset, or UTF-8.
pub fn charset_is_utf8(content_type: &str) -> bool {
    content_type
        .split(';')
        .skip(1)
        .all(|param| match param.split_once('=') {
            Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
                let value = value.trim().trim_matches('"');
                value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8")
            }
            _ => true,
        })
}

#[derive(FromRequestParts)]
#[from_request(via(Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

impl<T: serde::Serialize> axum::response::IntoResponse for ApiJson<T> {
    fn into_response(self) -> axum::response::Response {
        Json(self.0).into_response()
    }
}

/// The authenticated caller (from `Authorization: Bearer <token>`).
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::token_missing("no Authorization header"))?
            .to_str()
            .map_err(|_| ApiError::token_missing("the Authorization header is not text"))?;
        let (scheme, token) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::token_missing(
                "the Authorization header is not a Bearer token",
            ));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(ApiError::token_missing(
                "the Authorization header has no token after Bearer",
            ));
        }
        let principal = state.auth.token(token).await?;
        Ok(Caller(principal))
    }
}

/// The request id set by the middleware, for the audit trail.
pub fn request_id(parts: &axum::http::HeaderMap) -> Option<String> {
    parts
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

impl Caller {
    /// The caller's tenant; operators have none and are refused here.
    pub fn tenant(&self) -> Result<TenantId, ApiError> {
        if self.0.role == Role::Scim {
            return Err(ApiError::forbidden(
                "a scim token may use /scim/v2 and nothing else",
            ));
        }
        self.0
            .tenant
            .ok_or_else(|| ApiError::forbidden("operator credentials cannot act inside a tenant"))
    }

    /// Tenant reads: admin and reader.
    pub fn reader(&self) -> Result<TenantId, ApiError> {
        let tenant = self.tenant()?;
        if !self.0.can_read() {
            return Err(ApiError::forbidden("this needs the reader or admin role"));
        }
        Ok(tenant)
    }

    /// Tenant changes: admin only.
    pub fn admin(&self) -> Result<TenantId, ApiError> {
        let tenant = self.tenant()?;
        if !self.0.can_write() {
            return Err(ApiError::forbidden("this needs the admin role"));
        }
        Ok(tenant)
    }

    /// Reads about one user: admin, reader, or that user itself.
    pub fn reader_or_self(&self, user: allot_ledger::UserId) -> Result<TenantId, ApiError> {
        let tenant = self.tenant()?;
        if self.0.can_read() || self.0.is_self(user) {
            return Ok(tenant);
        }
        Err(ApiError::forbidden(
            "a user credential sees only its own user",
        ))
    }

    /// Changes to one user's own sessions: admin or that user itself.
    pub fn admin_or_self(&self, user: allot_ledger::UserId) -> Result<TenantId, ApiError> {
        let tenant = self.tenant()?;
        if self.0.can_write() || self.0.is_self(user) {
            return Ok(tenant);
        }
        Err(ApiError::forbidden(
            "this needs the admin role, or the user itself",
        ))
    }

    pub fn operator(&self) -> Result<(), ApiError> {
        if self.0.role == Role::Operator {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs the operator role"))
        }
    }

    /// The audit context for a change.
    pub fn context(&self, tenant: TenantId, headers: &axum::http::HeaderMap) -> Context {
        Context {
            tenant,
            actor: self.0.login.clone(),
            request_id: request_id(headers),
        }
    }
}

/// A user named in a path or body: integer id, UUID, or login.
pub fn user_ref(text: &str) -> UserRef {
    if let Ok(id) = text.parse::<i64>() {
        UserRef::Id(id)
    } else if let Ok(uuid) = Uuid::parse_str(text) {
        UserRef::Uuid(uuid)
    } else {
        UserRef::Login(text.to_owned())
    }
}

/// A product named in a path or body: integer id or `owner/name`.
pub fn product_ref(text: &str) -> Result<ProductRef, ApiError> {
    if let Ok(id) = text.parse::<i64>() {
        return Ok(ProductRef::Id(id));
    }
    match text.split_once('/') {
        Some((owner, name)) if !owner.is_empty() && !name.is_empty() => {
            Ok(ProductRef::named(owner, name))
        }
        _ => Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("product {text:?}: expected an id or owner/name"),
        )),
    }
}
