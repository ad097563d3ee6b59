//! The web console at `/console` (and `/` redirects there): server-rendered HTML over the same
//! ledger commands and queries the API uses, with every asset embedded in the binary.
//!
//! An adapter like the others: it reads with the ledger's queries, changes with its commands
//! (through the API's `run`, so the same role checks, metrics and audit context apply), and
//! decides no rule. See `session.rs` for logins, cookies and CSRF.
//!
//! Every answer carries a Content-Security-Policy that allows scripts and styles from the
//! console itself only: no inline script, no inline event handler, no inline style.

mod actions;
mod assets;
mod audit_stream;
pub mod history;
mod pages;
pub mod session;
pub mod views;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};

use crate::state::AppState;

/// The policy every console answer carries.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

pub fn routes(state: AppState) -> Router<AppState> {
    use actions::*;
    use pages::*;
    Router::new()
        .route("/", get(root))
        .route("/console", get(dashboard))
        .route("/console/", get(dashboard))
        .route(
            "/console/login",
            get(session::login_form).post(session::login),
        )
        .route("/console/logout", post(session::logout))
        .route("/console/static/{name}", get(assets::asset))
        .route("/console/products", get(products))
        .route("/console/products/{id}", get(product))
        .route("/console/users", get(users).post(create_user))
        .route("/console/users/{id}", get(user))
        .route("/console/users/{id}/assign", post(assign))
        .route("/console/users/{id}/unassign", post(unassign))
        .route("/console/users/{id}/retire", post(retire))
        .route("/console/users/{id}/unretire", post(unretire))
        .route("/console/sessions", get(sessions))
        .route("/console/sessions/{id}/end", post(end_session))
        .route("/console/companies", get(companies))
        .route("/console/companies/{id}", get(company))
        .route("/console/companies/{id}/quota", post(set_quota))
        .route("/console/audit", get(audit))
        .route("/console/audit/stream", get(audit_stream::audit_stream))
        .route("/console/tokens", get(tokens).post(create_token))
        .route("/console/tokens/{id}/revoke", post(revoke_token))
        .route("/console/{*rest}", get(not_found).post(not_found))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            session::require_csrf,
        ))
        .route_layer(axum::middleware::from_fn(security_headers))
}

/// CSP and the usual hardening headers on every console answer; pages are not cached (they
/// show a session's data), static files are.
async fn security_headers(req: Request, next: Next) -> Response {
    let is_asset = req.uri().path().starts_with("/console/static/");
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    if !is_asset {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}
