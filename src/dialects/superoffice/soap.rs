//! NetServer SOAP: `/Remote/ServicesNN/<Service>.svc`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::dialects::{BodyError, DialectRequest};
use crate::server::AppState;

pub async fn handle(_state: AppState, _req: DialectRequest, _body: Option<BodyError>) -> Response {
    StatusCode::NOT_FOUND.into_response()
}
