//! NetServer REST: `/api/v1/Agents/...` and the RESTful `/api/v1/License/...` mirrors.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::dialects::{BodyError, DialectRequest};
use crate::server::AppState;

pub async fn handle(_state: AppState, _req: DialectRequest, _body: Option<BodyError>) -> Response {
    StatusCode::NOT_FOUND.into_response()
}
