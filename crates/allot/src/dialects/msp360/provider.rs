//! `POST /api/Provider/Login`: an API login and password (JSON, form-encoded or DataContract
//! XML) for a bearer token that lives 14 days. Answered in OWIN's token-endpoint shape, always
//! JSON. Each login issues a new token and leaves earlier ones alive (PowerShell logs in before
//! every call); changing the login's password revokes them all.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::wire::{self, Out};
use super::{Fault, field, request_id};
use crate::auth::AuthError;
use crate::dialects::DialectRequest;
use crate::state::Msp360State;
use allot_ledger::Role;

/// Token lifetime: "each token expires two weeks after its generation".
pub const TOKEN_LIFETIME: time::Duration = time::Duration::days(14);
const BAD_CREDENTIALS: &str = "The user name or password is incorrect.";

pub async fn login(state: &Msp360State, req: &DialectRequest) -> Result<Response, Fault> {
    let fields = wire::parse_body(
        req.header("content-type"),
        &req.body,
        "LoginUserBindingModel",
    )?
    .unwrap_or_default();
    let user = field(fields.given("UserName"))?;
    let password = field(fields.text("Password"))?;
    let (Some(user), Some(password)) = (user, password.filter(|p| !p.is_empty())) else {
        return Err(Fault::bad(
            "The request is invalid: UserName and Password are required.",
        ));
    };
    let bad_credentials = || {
        let forbidden = state
            .config
            .forbidden_on_bad_login
            .iter()
            .any(|t| t.eq_ignore_ascii_case(&req.tenant));
        let status = if forbidden {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::BAD_REQUEST
        };
        Fault::oauth(status, "invalid_grant", BAD_CREDENTIALS)
    };
    let tenant = match crate::dialects::tenant_id(&state.ledger, &req.tenant).await {
        Ok(Some(id)) => id,
        // An unknown tenant looks like wrong credentials.
        Ok(None) => return Err(bad_credentials()),
        Err(_) => return Err(Fault::unavailable()),
    };
    let principal = match state
        .auth
        .password(tenant, &user, &password, req.client)
        .await
    {
        Ok(p) => p,
        Err(AuthError::Unauthorized | AuthError::BadToken(_)) => return Err(bad_credentials()),
        Err(AuthError::Throttled(wait)) => {
            let seconds = wait.as_secs().max(1);
            let mut fault = Fault::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many failed logins; try again in {seconds} seconds."),
            );
            fault.retry_after = Some(seconds);
            return Err(fault);
        }
        Err(AuthError::Unavailable) => return Err(Fault::unavailable()),
        Err(AuthError::Busy(wait)) => {
            let mut fault = Fault::unavailable();
            fault.retry_after = Some(wait.as_secs().max(1));
            return Err(fault);
        }
    };
    // The API is the provider's: logins bound to one user have no business here.
    if !matches!(principal.role, Role::Admin | Role::Reader) {
        return Err(Fault::oauth(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            "This login may not use the API.",
        ));
    }
    let issued = state
        .auth
        .issue(
            &principal,
            tenant,
            "",
            "msp360",
            TOKEN_LIFETIME,
            request_id(req),
        )
        .await
        .map_err(Fault::from)?;
    // OWIN writes the whole seconds left, 1209599 for a fresh two-week token.
    let left = (issued.info.expires_at - state.ledger.now_time())
        .whole_seconds()
        .min(TOKEN_LIFETIME.whole_seconds() - 1)
        .max(0);
    let out = Out::Obj {
        name: "Token",
        fields: vec![
            ("access_token", Out::Str(issued.secret)),
            ("token_type", Out::Str("bearer".into())),
            ("expires_in", Out::Int(left)),
            ("userName", Out::Str(principal.login)),
            (".issued", Out::Str(wire::rfc1123(issued.info.created_at))),
            (".expires", Out::Str(wire::rfc1123(issued.info.expires_at))),
        ],
    };
    let mut response = super::render(StatusCode::OK, &out, wire::Format::Json, "Token");
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}
