//! MSP360 (CloudBerry) Managed Backup API dialect. Being built (issue 6).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{BodyError, DialectRequest};
use crate::server::AppState;

pub async fn handle(_state: AppState, req: DialectRequest, _body: Option<BodyError>) -> Response {
    let message = format!(
        "No HTTP resource was found that matches the request URI '{}'.",
        req.uri
    );
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({ "Message": message })),
    )
        .into_response()
}
