//! Console sessions: logging in with a tenant login (the API's credential check and brute-force
//! throttle), the session cookie, CSRF tokens, logging out.
//!
//! A console session is an API token of the login, labelled `console`, issued by the ledger like
//! every token and kept in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` behind TLS). So it
//! expires with the token lifetime, shows in the tenant's token list, is revoked by a password
//! change, and logging out revokes it. The API does not read the cookie (it wants a bearer
//! header), so the cookie cannot be used to call the API from another site.
//!
//! CSRF: every state-changing request carries a token, as a form field `csrf` or an
//! `X-CSRF-Token` header. Logged in, it is derived from the session secret (SHA-256 of a label
//! and the secret), so only pages served to the session know it; on the login form, where there
//! is no session yet, it is a random value also set as a cookie (double submit).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::views::{ConsoleError, ConsoleResult, Flash, render};
use crate::api::error::ApiError;
use crate::auth::{AuthError, Principal, TOKEN_PREFIX};
use crate::state::AppState;
use allot_ledger::{Command, Context, Role, TenantId, UserId};

pub const SESSION_COOKIE: &str = "allot_console";
pub const LOGIN_CSRF_COOKIE: &str = "allot_console_login";
pub const CSRF_FIELD: &str = "csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The value of cookie `name` in the request, if sent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// Whether cookies get the `Secure` flag: always when configured (the console is served over
/// TLS), or when a trusted proxy says the request came over HTTPS.
pub fn secure(state: &AppState, headers: &HeaderMap) -> bool {
    let settings = &state.settings;
    settings.console_secure_cookie
        || (settings.trust_forwarded_proto
            && headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https")))
}

fn set_cookie(response: &mut Response, cookie: cookie::Cookie<'_>) {
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

fn console_cookie<'c>(
    name: &'c str,
    value: String,
    secure: bool,
    max_age: time::Duration,
) -> cookie::Cookie<'c> {
    cookie::Cookie::build((name, value))
        .path("/console")
        .http_only(true)
        .secure(secure)
        .same_site(cookie::SameSite::Strict)
        .max_age(max_age)
        .build()
}

/// The CSRF token of a session: bound to its secret, useless without the session cookie.
pub fn csrf_for_session(session_secret: &str) -> String {
    allot_ledger::rules::hash_token(&format!("allot console csrf\n{session_secret}"))
}

fn same_secret(a: &str, b: &str) -> bool {
    !a.is_empty() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Who is looking at the console: a live session's principal, always inside a tenant.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub principal: Principal,
    pub tenant: TenantId,
    pub tenant_name: String,
    csrf: String,
}

/// What templates see of the viewer.
#[derive(Serialize)]
pub struct ViewerView<'a> {
    pub login: &'a str,
    pub role: Role,
    pub tenant: &'a str,
    pub is_admin: bool,
    /// Admins and readers see the whole tenant; a `user` login only itself.
    pub sees_tenant: bool,
    pub user: Option<UserId>,
}

impl Viewer {
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    pub fn view(&self) -> ViewerView<'_> {
        ViewerView {
            login: &self.principal.login,
            role: self.principal.role,
            tenant: &self.tenant_name,
            is_admin: self.principal.can_write(),
            sees_tenant: self.principal.can_read(),
            user: self.principal.user,
        }
    }

    /// The principal as an API caller (the same role checks as the API).
    pub fn caller(&self) -> crate::api::extract::Caller {
        crate::api::extract::Caller(self.principal.clone())
    }

    /// Pages about the whole tenant: admins and readers.
    pub fn reader(&self) -> Result<TenantId, ConsoleError> {
        Ok(self.caller().reader()?)
    }

    /// Changes: admins only (the server refuses a reader whatever its page showed).
    pub fn admin(&self) -> Result<TenantId, ConsoleError> {
        Ok(self.caller().admin()?)
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ConsoleError> {
        let htmx = parts.headers.contains_key("hx-request");
        let logged_out = || ConsoleError::LoggedOut {
            htmx,
            // Only a page is worth coming back to (not a form's target).
            next: (parts.method == Method::GET)
                .then(|| parts.uri.path_and_query().map(|p| p.as_str().to_owned()))
                .flatten(),
        };
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(logged_out());
        };
        let principal = match state.auth.token(&secret).await {
            Ok(p) => p,
            Err(AuthError::BadToken(_)) => return Err(logged_out()),
            Err(e) => return Err(ApiError::from(e).into()),
        };
        let Some(tenant) = principal.tenant else {
            return Err(logged_out());
        };
        let tenant_name = state
            .ledger
            .tenants()
            .await?
            .into_iter()
            .find(|t| t.id == tenant)
            .map(|t| t.name)
            .unwrap_or_default();
        Ok(Viewer {
            principal,
            tenant,
            tenant_name,
            csrf: csrf_for_session(&secret),
        })
    }
}

/// Refuses (403) every request that is not GET or HEAD unless it carries the CSRF token of its
/// session (or, for the login form, of the login cookie).
pub async fn require_csrf(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let expected = if req.uri().path() == "/console/login" {
        cookie(req.headers(), LOGIN_CSRF_COOKIE)
    } else {
        cookie(req.headers(), SESSION_COOKIE).map(|s| csrf_for_session(&s))
    };
    let header_token = req
        .headers()
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, state.settings.max_body).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ConsoleError::Page {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                title: "Too large",
                message: "The form is larger than this server accepts.".into(),
                retry_after: None,
            }
            .into_response();
        }
    };
    let form_token = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
        .ok()
        .and_then(|fields| {
            fields
                .into_iter()
                .find(|(k, _)| k == CSRF_FIELD)
                .map(|(_, v)| v)
        });
    let presented = header_token.or(form_token).unwrap_or_default();
    match expected {
        Some(expected) if same_secret(&presented, &expected) => {
            next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
                .await
        }
        _ => {
            metrics::counter!("allot_console_csrf_refusals_total").increment(1);
            ConsoleError::Page {
                status: StatusCode::FORBIDDEN,
                title: "Form refused",
                message: "This form did not carry this session's security token (CSRF), so \
                          nothing was changed. Reload the page and try again."
                    .into(),
                retry_after: None,
            }
            .into_response()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Where to go after logging in: a console page named by `next`, else the dashboard. Anything
/// else (another site, `//host`) is ignored.
fn landing(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/console")
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.starts_with("/console/login")
                && !n.starts_with("/console/logout") =>
        {
            n.to_owned()
        }
        _ => "/console".to_owned(),
    }
}

#[derive(Serialize, Default)]
struct LoginForm<'a> {
    tenant: &'a str,
    login: &'a str,
    next: &'a str,
}

/// The login page, with a fresh login CSRF cookie unless the browser has one.
fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    form: LoginForm<'_>,
    message: Option<Flash>,
) -> ConsoleResult {
    let existing = cookie(headers, LOGIN_CSRF_COOKIE).filter(|c| c.len() == 64);
    let token = existing
        .clone()
        .unwrap_or_else(allot_ledger::rules::new_lease_token);
    let flash = message.or_else(|| Flash::from_headers(headers));
    let html = render(
        "login.html",
        context! { csrf => token, form => form, flash => flash, version => env!("CARGO_PKG_VERSION") },
    )?;
    let mut response = (status, axum::response::Html(html)).into_response();
    if existing.is_none() {
        set_cookie(
            &mut response,
            console_cookie(
                LOGIN_CSRF_COOKIE,
                token,
                secure(state, headers),
                time::Duration::hours(12),
            ),
        );
    }
    Ok(response)
}

pub async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> ConsoleResult {
    let next = landing(q.next.as_deref());
    login_page(
        &state,
        &headers,
        StatusCode::OK,
        LoginForm {
            tenant: crate::dialects::DEFAULT_TENANT,
            login: "",
            next: &next,
        },
        None,
    )
}

#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    login: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// Checks the login as `POST /v1/auth/login` does (same throttle, same answer for unknown
/// tenants and logins), then starts a session.
pub async fn login(
    State(state): State<AppState>,
    peer: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    axum::Form(req): axum::Form<LoginRequest>,
) -> ConsoleResult {
    let next = landing(req.next.as_deref());
    let form = LoginForm {
        tenant: &req.tenant,
        login: &req.login,
        next: &next,
    };
    let refused = |status: StatusCode, text: &str| (status, Flash::error(text));
    let tenant = state.ledger.tenant(req.tenant.trim()).await?;
    let outcome = match tenant {
        // An unknown tenant costs no password check but answers exactly like a wrong password.
        None => Err(AuthError::Unauthorized),
        Some(t) => state
            .auth
            .password(t.id, &req.login, &req.password, peer.map(|p| p.0.0.ip()))
            .await
            .map(|p| (t, p)),
    };
    let (tenant, principal) = match outcome {
        Ok(ok) => ok,
        Err(e) => {
            let (status, flash) = match &e {
                AuthError::Throttled(wait) => refused(
                    StatusCode::TOO_MANY_REQUESTS,
                    &format!(
                        "Too many failed attempts. Try again in {} seconds.",
                        wait.as_secs().max(1)
                    ),
                ),
                AuthError::Busy(_) | AuthError::Unavailable => refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The server is busy. Try again in a moment.",
                ),
                _ => refused(StatusCode::UNAUTHORIZED, "Wrong tenant, login or password."),
            };
            let mut response = login_page(&state, &headers, status, form, Some(flash))?;
            if let AuthError::Throttled(wait) = e {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(wait.as_secs().max(1)),
                );
            }
            return Ok(response);
        }
    };
    let issued = state
        .auth
        .issue(
            &principal,
            tenant.id,
            TOKEN_PREFIX,
            "console",
            state.token_ttl,
            crate::api::extract::request_id(&headers),
        )
        .await?;
    let secure = secure(&state, &headers);
    let mut response = Redirect::to(&next).into_response();
    set_cookie(
        &mut response,
        console_cookie(SESSION_COOKIE, issued.secret, secure, state.token_ttl),
    );
    // The login form's token has done its job.
    set_cookie(
        &mut response,
        console_cookie(
            LOGIN_CSRF_COOKIE,
            String::new(),
            secure,
            time::Duration::ZERO,
        ),
    );
    Ok(response)
}

/// Revokes the session's token and clears the cookie.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap, viewer: Viewer) -> Response {
    if let Some(id) = viewer.principal.token {
        let ctx = Context {
            tenant: viewer.tenant,
            actor: viewer.principal.login.clone(),
            request_id: crate::api::extract::request_id(&headers),
        };
        if let Err(e) = state
            .ledger
            .execute(&ctx, Command::RevokeToken { id })
            .await
        {
            return ConsoleError::from(e).into_response();
        }
    }
    let secure = secure(&state, &headers);
    let mut response =
        super::views::redirect_with("/console/login", Flash::ok("You are logged out."), secure);
    set_cookie(
        &mut response,
        console_cookie(SESSION_COOKIE, String::new(), secure, time::Duration::ZERO),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landing_pages_stay_in_the_console() {
        assert_eq!(
            landing(Some("/console/users?q=ann")),
            "/console/users?q=ann"
        );
        assert_eq!(landing(Some("https://evil.example/")), "/console");
        assert_eq!(landing(Some("//evil.example/console")), "/console");
        assert_eq!(landing(Some("/console/login")), "/console");
        assert_eq!(landing(None), "/console");
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session_and_compared_whole() {
        let a = csrf_for_session("allot_aaaa");
        assert_eq!(a.len(), 64);
        assert_ne!(a, csrf_for_session("allot_aaab"));
        assert!(same_secret(&a, &a.clone()));
        assert!(!same_secret("", ""));
        assert!(!same_secret(&a[..63], &a));
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("allot_console=xyz"),
        );
        assert_eq!(cookie(&headers, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&headers, "c"), None);
    }
}
