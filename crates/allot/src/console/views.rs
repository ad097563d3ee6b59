//! Rendering: the templates (embedded, autoescaped as HTML), the page frame every page shares,
//! flash messages carried across a redirect, and the console's error pages.

use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use minijinja::{AutoEscape, Environment, Value, context};
use serde::{Deserialize, Serialize};

use super::session::Viewer;
use crate::api::error::ApiError;

/// The templates, compiled once. They are part of the binary (`include_str!`).
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Everything is HTML: every value is escaped unless a template says otherwise.
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_filter("when", when);
    for (name, source) in TEMPLATE_SOURCES {
        // A template that does not parse is a bug caught by the first test that renders it;
        // the error names the template and line.
        if let Err(e) = env.add_template(name, source) {
            tracing::error!(template = name, error = %e, "console template does not parse");
        }
    }
    env
});

const TEMPLATE_SOURCES: &[(&str, &str)] = &[
    ("layout.html", include_str!("templates/layout.html")),
    ("login.html", include_str!("templates/login.html")),
    ("error.html", include_str!("templates/error.html")),
    ("dashboard.html", include_str!("templates/dashboard.html")),
    ("products.html", include_str!("templates/products.html")),
    ("product.html", include_str!("templates/product.html")),
    ("users.html", include_str!("templates/users.html")),
    (
        "users_table.html",
        include_str!("templates/users_table.html"),
    ),
    ("user.html", include_str!("templates/user.html")),
    ("sessions.html", include_str!("templates/sessions.html")),
    (
        "sessions_table.html",
        include_str!("templates/sessions_table.html"),
    ),
    ("companies.html", include_str!("templates/companies.html")),
    ("company.html", include_str!("templates/company.html")),
    ("audit.html", include_str!("templates/audit.html")),
    ("audit_row.html", include_str!("templates/audit_row.html")),
    ("tokens.html", include_str!("templates/tokens.html")),
];

/// `{{ t | when }}`: an RFC 3339 time as `2026-12-03 10:15 UTC` (minutes are enough on a page;
/// the full time is in the `datetime` attribute the templates put beside it).
fn when(value: Option<String>) -> String {
    let Some(text) = value else {
        return String::new();
    };
    match time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339) {
        Ok(t) => {
            let t = t.to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute()
            )
        }
        Err(_) => text,
    }
}

/// Renders `template` with `ctx`; a rendering failure is logged and answered as a 500 page.
pub fn render(template: &str, ctx: Value) -> Result<String, ConsoleError> {
    TEMPLATES
        .get_template(template)
        .and_then(|t| t.render(ctx))
        .map_err(|e| {
            tracing::error!(template, error = %e, "rendering a console page failed");
            ConsoleError::internal()
        })
}

/// A message shown once on the next page (after a form's redirect).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Flash {
    /// "ok" or "error".
    pub kind: String,
    pub text: String,
}

pub const FLASH_COOKIE: &str = "allot_console_flash";

impl Flash {
    pub fn ok(text: impl Into<String>) -> Self {
        Flash {
            kind: "ok".into(),
            text: text.into(),
        }
    }
    pub fn error(text: impl Into<String>) -> Self {
        Flash {
            kind: "error".into(),
            text: text.into(),
        }
    }

    /// The flash as a cookie value (base64url of its JSON: cookie values allow few characters).
    fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// The flash the request carries, if any.
    pub fn from_headers(headers: &HeaderMap) -> Option<Flash> {
        let value = super::session::cookie(headers, FLASH_COOKIE)?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value)
            .ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// A redirect (303: the browser follows with GET) that shows `flash` on the next page.
pub fn redirect_with(location: &str, flash: Flash, secure: bool) -> Response {
    let cookie = cookie::Cookie::build((FLASH_COOKIE, flash.encode()))
        .path("/console")
        .http_only(true)
        .secure(secure)
        .same_site(cookie::SameSite::Strict)
        .max_age(time::Duration::minutes(1))
        .build();
    let mut response = Redirect::to(location).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// A page of the console, framed by the layout: navigation for the viewer's role, the flash of
/// the request (then cleared), and the CSRF token forms carry.
pub fn page(
    viewer: &Viewer,
    headers: &HeaderMap,
    template: &str,
    current: &str,
    ctx: Value,
) -> Result<Response, ConsoleError> {
    let flash = Flash::from_headers(headers);
    let html = render(
        template,
        context! {
            viewer => viewer.view(),
            csrf => viewer.csrf(),
            current => current,
            flash => flash,
            version => env!("CARGO_PKG_VERSION"),
            ..ctx
        },
    )?;
    let mut response = Html(html).into_response();
    if flash.is_some() {
        let gone = cookie::Cookie::build((FLASH_COOKIE, ""))
            .path("/console")
            .http_only(true)
            .same_site(cookie::SameSite::Strict)
            .max_age(time::Duration::ZERO)
            .build();
        if let Ok(value) = HeaderValue::from_str(&gone.to_string()) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// A fragment (a table an htmx request refreshes): no frame, no flash.
pub fn fragment(viewer: &Viewer, template: &str, ctx: Value) -> Result<Response, ConsoleError> {
    let html = render(
        template,
        context! {
            viewer => viewer.view(),
            csrf => viewer.csrf(),
            ..ctx
        },
    )?;
    Ok(Html(html).into_response())
}

/// What a console request can end in besides its page.
#[derive(Debug)]
pub enum ConsoleError {
    /// No live session: off to the login page (`next` is where to come back to). For an htmx
    /// request (a table refreshing itself) the whole page goes there, not the table.
    LoggedOut { next: Option<String>, htmx: bool },
    /// An error page with this status and text.
    Page {
        status: StatusCode,
        title: &'static str,
        message: String,
        retry_after: Option<u64>,
    },
}

impl ConsoleError {
    pub fn internal() -> Self {
        ConsoleError::Page {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            title: "Something went wrong",
            message: "The page could not be shown; the server's log says why.".into(),
            retry_after: None,
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ConsoleError::Page {
            status: StatusCode::FORBIDDEN,
            title: "Not allowed",
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ConsoleError::Page {
            status: StatusCode::BAD_REQUEST,
            title: "Bad request",
            message: message.into(),
            retry_after: None,
        }
    }
}

/// Ledger refusals, role refusals and store failures, phrased as the API phrases them.
impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        let title = match e.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::CONFLICT => "Refused",
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => "Invalid input",
            StatusCode::TOO_MANY_REQUESTS => "Too many attempts",
            StatusCode::SERVICE_UNAVAILABLE => "Unavailable",
            _ => "Something went wrong",
        };
        ConsoleError::Page {
            status: e.status,
            title,
            message: e.message,
            retry_after: e.retry_after,
        }
    }
}

impl From<allot_ledger::LedgerError> for ConsoleError {
    fn from(e: allot_ledger::LedgerError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            ConsoleError::LoggedOut { next, htmx } => {
                let location = match next {
                    Some(next) => format!(
                        "/console/login?next={}",
                        serde_urlencoded::to_string([("", next.as_str())])
                            .map(|s| s.trim_start_matches('=').to_owned())
                            .unwrap_or_default()
                    ),
                    None => "/console/login".to_owned(),
                };
                if htmx {
                    let mut response = StatusCode::NO_CONTENT.into_response();
                    if let Ok(value) = HeaderValue::from_str(&location) {
                        response.headers_mut().insert("hx-redirect", value);
                    }
                    return response;
                }
                Redirect::to(&location).into_response()
            }
            ConsoleError::Page {
                status,
                title,
                message,
                retry_after,
            } => {
                let html = render(
                    "error.html",
                    context! { status => status.as_u16(), title => title, message => message,
                    version => env!("CARGO_PKG_VERSION") },
                )
                .unwrap_or_else(|_| format!("{} {title}", status.as_u16()));
                let mut response = (status, Html(html)).into_response();
                if let Some(seconds) = retry_after {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                response
            }
        }
    }
}

pub type ConsoleResult<T = Response> = Result<T, ConsoleError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for (name, _) in TEMPLATE_SOURCES {
            assert!(
                TEMPLATES.get_template(name).is_ok(),
                "{name} does not parse"
            );
        }
    }

    #[test]
    fn values_are_escaped() {
        let html = render(
            "error.html",
            context! { status => 400, title => "t", message => "<script>alert(1)</script>",
            version => "0" },
        )
        .unwrap();
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>alert"), "{html}");
    }

    #[test]
    fn times_show_to_the_minute_in_utc() {
        assert_eq!(
            when(Some("2026-12-03T11:15:42+01:00".into())),
            "2026-12-03 10:15 UTC"
        );
        assert_eq!(when(None), "");
    }

    #[test]
    fn flash_survives_its_cookie_encoding() {
        let flash = Flash::error("no seat free of \"SuperOffice/crm\"; 0 of 3 left");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("{FLASH_COOKIE}={}", flash.encode())).unwrap(),
        );
        assert_eq!(Flash::from_headers(&headers), Some(flash));
    }
}
