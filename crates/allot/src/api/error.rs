//! The native API's one error shape: `{"error": {"code": "...", "message": "..."}}` with a
//! stable machine code and the right status.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::auth::{AuthError, TokenRefusal};
use allot_ledger::LedgerError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `no_seat_free`.
    pub code: String,
    /// For people.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failed password login (an unknown tenant or login answers the same).
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong tenant, login or password",
        )
    }

    /// No bearer token in the request (`why` says what was there instead).
    pub fn token_missing(why: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "token_missing",
            format!("{why}: send Authorization: Bearer <token> (allot login or ALLOT_TOKEN)"),
        )
    }

    /// A bearer token the server does not accept. The message never repeats the token.
    pub fn token_refused(why: TokenRefusal) -> Self {
        let (code, message) = match why {
            TokenRefusal::Unknown => (
                "token_unknown",
                "the bearer token is not one this server issued (mistyped, or from another server)",
            ),
            TokenRefusal::Expired => (
                "token_expired",
                "the bearer token has expired; log in again for a new one",
            ),
            TokenRefusal::Revoked => (
                "token_revoked",
                "the bearer token has been revoked (by hand, or by a password change); log in again",
            ),
        };
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the store is unavailable or overloaded; try again",
        )
        .retry(1)
    }

    pub fn retry(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: a presented but refused token is `invalid_token`; none at all, no code.
            let challenge = if self.code.starts_with("token_") && self.code != "token_missing" {
                "Bearer realm=\"allot\", error=\"invalid_token\""
            } else {
                "Bearer realm=\"allot\""
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        use LedgerError::*;
        let status = match &e {
            UnknownTenant(_) | UnknownUser(_) | UnknownProduct(_) | UnknownCompany(_)
            | UnknownSeat(_) | UnknownSession(_) | UnknownToken(_) | UnknownGroup(_)
            | UnknownWebhook(_) => StatusCode::NOT_FOUND,
            AlreadyExists { .. }
            | NoSeatFree { .. }
            | NotEnoughFreeSeats { .. }
            | QuotaExhausted { .. }
            | PrerequisiteMissing { .. }
            | Retired(_)
            | Disabled(_)
            | WrongHolder { .. }
            | NotHeld(_)
            | SeatExpired(_)
            | ProductExpired { .. }
            | WrongPool { .. }
            | AlreadyActivated { .. }
            | ComputerHasSeat(_)
            | ComputerOfAnotherUser(_)
            | LeaseLost
            | OverAllocated { .. }
            | WrongKind { .. } => StatusCode::CONFLICT,
            BadLeaseToken => StatusCode::FORBIDDEN,
            Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Store(_) => {
                tracing::error!(error = %e, "store failure");
                return ApiError::unavailable();
            }
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthorized => ApiError::unauthorized(),
            AuthError::BadToken(why) => ApiError::token_refused(why),
            AuthError::Throttled(wait) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                "too many failed attempts; wait before trying again",
            )
            .retry(wait.as_secs_f64().ceil() as u64),
            AuthError::Unavailable => ApiError::unavailable(),
            AuthError::Busy(wait) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many logins in progress; try again shortly",
            )
            .retry(wait.as_secs_f64().ceil() as u64),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let (status, code) = match &r {
            JsonRejection::JsonDataError(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            JsonRejection::JsonSyntaxError(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            JsonRejection::MissingJsonContentType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
            }
            _ => (r.status(), "bad_request"),
        };
        ApiError::new(status, code, r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_path", r.body_text())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
