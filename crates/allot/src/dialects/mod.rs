//! Wire-compatible dialects: other vendors' protocols over the same ledger and principals.
//!
//! - [`superoffice`]: SuperOffice NetServer, REST agents under `/api/v1/...` and SOAP services
//!   under `/Remote/ServicesNN/...`.
//! - [`msp360`]: the MSP360 Managed Backup API under `/api/...` (anything but `/api/v1`).
//!
//! Both answer at the root (the tenant `default`, an on-site installation) and under a tenant
//! prefix (`/{tenant}/api/...`, `/{tenant}/Remote/...`), as SuperOffice Online addresses its
//! customers. Their clients are case-insensitive about paths (IIS and ASP.NET are), so routing
//! inside a dialect is done on lowercased segments here rather than by axum's exact matcher.
//!
//! A dialect only translates: it parses its wire format, calls [`allot_ledger::Ledger`] and
//! [`crate::auth::Authenticator`], and writes its wire format. It never touches SQL.

pub mod msp360;
pub mod superoffice;

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRef, Path, Request, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use crate::state::{AppState, Msp360State, SuperOfficeState};
use allot_ledger::TenantId;

/// The tenant an unprefixed dialect path addresses.
pub const DEFAULT_TENANT: &str = "default";

/// A request as a dialect sees it: routing already decided which dialect, and the body has
/// been read within the server's size and time limits.
#[derive(Debug)]
pub struct DialectRequest {
    /// Tenant name from the path prefix, or [`DEFAULT_TENANT`].
    pub tenant: String,
    /// Whether the tenant came from a path prefix (addresses in WSDLs must keep it).
    pub prefixed: bool,
    /// Path segments after `api/` or `Remote/`, percent-decoded, case kept.
    pub segments: Vec<String>,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub client: Option<IpAddr>,
}

impl DialectRequest {
    /// The segment at `index`, lowercased, or "".
    pub fn segment_lower(&self, index: usize) -> String {
        self.segments
            .get(index)
            .map(|s| s.to_ascii_lowercase())
            .unwrap_or_default()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Query parameters, keys as sent.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.uri
            .query()
            .map(|q| {
                form_urlencoded_pairs(q)
                    .into_iter()
                    .collect::<Vec<(String, String)>>()
            })
            .unwrap_or_default()
    }

    /// A query parameter by name, compared case-insensitively.
    pub fn query(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The path prefix that addresses this tenant: "" at the root, "/{tenant}" otherwise.
    pub fn tenant_prefix(&self) -> String {
        if self.prefixed {
            format!("/{}", self.tenant)
        } else {
            String::new()
        }
    }
}

fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap_or_default()
}

/// Resolves a tenant name to its id (`None`: no such tenant).
pub async fn tenant_id(
    ledger: &allot_ledger::Ledger,
    name: &str,
) -> Result<Option<TenantId>, allot_ledger::LedgerError> {
    Ok(ledger.tenant(name).await?.map(|t| t.id))
}

/// The routes that carry the dialects: `[/{tenant}]/api/{*rest}` and `[/{tenant}]/Remote/{*rest}`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api", any(root_api))
        .route("/api/{*rest}", any(root_api))
        .route("/{tenant}/api", any(tenant_api))
        .route("/{tenant}/api/{*rest}", any(tenant_api))
        .route("/Remote/{*rest}", any(root_remote))
        .route("/{tenant}/Remote/{*rest}", any(tenant_remote))
}

/// Rewrites the fixed `api` and `Remote` segments (first or second in the path) to the casing
/// the routes use, so `/API/licenses` and `/acme/remote/services86/...` reach their dialect.
pub fn normalize_path(mut req: Request) -> Request {
    let uri = req.uri();
    let path = uri.path();
    let mut segments: Vec<&str> = path.split('/').collect();
    // segments[0] is "" (the path starts with '/').
    let mut changed = false;
    for index in [1, 2] {
        let Some(seg) = segments.get(index) else {
            break;
        };
        let canonical = if seg.eq_ignore_ascii_case("api") {
            "api"
        } else if seg.eq_ignore_ascii_case("remote") {
            "Remote"
        } else {
            continue;
        };
        if *seg != canonical {
            segments[index] = canonical;
            changed = true;
        }
        break;
    }
    if changed {
        let new_path = segments.join("/");
        let rebuilt = match uri.query() {
            Some(q) => format!("{new_path}?{q}"),
            None => new_path,
        };
        if let Ok(new_uri) = rebuilt.parse::<Uri>() {
            *req.uri_mut() = new_uri;
        }
    }
    req
}

async fn root_api(State(state): State<AppState>, req: Request) -> Response {
    dispatch(state, None, Area::Api, req).await
}

async fn tenant_api(
    State(state): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    req: Request,
) -> Response {
    dispatch(state, tenant_param(params), Area::Api, req).await
}

async fn root_remote(State(state): State<AppState>, req: Request) -> Response {
    dispatch(state, None, Area::Remote, req).await
}

async fn tenant_remote(
    State(state): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    req: Request,
) -> Response {
    dispatch(state, tenant_param(params), Area::Remote, req).await
}

fn tenant_param(params: Vec<(String, String)>) -> Option<String> {
    params
        .into_iter()
        .find(|(k, _)| k == "tenant")
        .map(|(_, v)| v)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Area {
    Api,
    Remote,
}

async fn dispatch(state: AppState, tenant: Option<String>, area: Area, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let client = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // Everything after the fixed `api`/`Remote` segment.
    let skip = if tenant.is_some() { 3 } else { 2 };
    let segments: Vec<String> = parts
        .uri
        .path()
        .split('/')
        .skip(skip)
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let is_superoffice_rest = area == Area::Api
        && segments
            .first()
            .is_some_and(|s| s.eq_ignore_ascii_case("v1"));
    // The body limit layer bounds this read; a body that exceeds it or times out is refused in
    // the dialect's own error shape.
    let (body, body_error) = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => (bytes, None),
        Err(e) => (Bytes::new(), Some(BodyError::from_axum(&e))),
    };
    let request = DialectRequest {
        prefixed: tenant.is_some(),
        tenant: tenant.unwrap_or_else(|| DEFAULT_TENANT.to_owned()),
        segments,
        method: parts.method,
        uri: parts.uri,
        headers: parts.headers,
        body,
        client,
    };
    let mut response = match area {
        Area::Remote => {
            superoffice::soap::handle(SuperOfficeState::from_ref(&state), request, body_error).await
        }
        Area::Api if is_superoffice_rest => {
            superoffice::rest::handle(SuperOfficeState::from_ref(&state), request, body_error).await
        }
        Area::Api => msp360::handle(Msp360State::from_ref(&state), request, body_error).await,
    };
    response.extensions_mut().insert(DialectAnswer);
    response
}

/// Marks a response a dialect wrote itself; [`error_shapes`] leaves those alone.
#[derive(Debug, Clone, Copy)]
pub struct DialectAnswer;

/// Answers the server's own layers give before a dialect runs (rate limit 429, early 413 on a
/// large `Content-Length`, 408 timeout, 503 load shedding, 500 from a caught panic) come back in
/// the dialect's shape on dialect paths: `{"Message": ...}` for the REST dialects, a SOAP fault
/// under `/Remote`. Status and headers (`Retry-After`) are kept.
pub async fn error_shapes(req: Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path().to_owned();
    let soap12 = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/soap+xml"));
    let response = next.run(req).await;
    let status = response.status();
    if response.extensions().get::<DialectAnswer>().is_some()
        || !matches!(status.as_u16(), 408 | 413 | 429 | 500 | 503)
    {
        return response;
    }
    let area = path.split('/').skip(1).take(2).find_map(|seg| {
        if seg.eq_ignore_ascii_case("api") {
            Some(Area::Api)
        } else if seg.eq_ignore_ascii_case("remote") {
            Some(Area::Remote)
        } else {
            None
        }
    });
    let Some(area) = area else {
        return response;
    };
    let text = match status.as_u16() {
        408 => "The request took too long.",
        413 => "The request body is larger than this server accepts.",
        429 => "Too many requests from this address; retry after the time in Retry-After.",
        503 => "The server is busy; please try again.",
        _ => "An error has occurred.",
    };
    let (parts, _) = response.into_parts();
    let mut rewritten = match area {
        Area::Api => {
            let body = serde_json::json!({ "Message": text }).to_string();
            (
                status,
                [(
                    axum::http::header::CONTENT_TYPE,
                    "application/json; charset=utf-8",
                )],
                body,
            )
                .into_response()
        }
        Area::Remote => {
            let version = if soap12 {
                superoffice::soap::SoapVersion::V12
            } else {
                superoffice::soap::SoapVersion::V11
            };
            superoffice::soap::fault(
                version,
                status,
                status.as_u16() != 500 && status.as_u16() != 503,
                text,
            )
        }
    };
    for name in [
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderName::from_static("x-request-id"),
    ] {
        if let Some(value) = parts.headers.get(&name) {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

/// Why the request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the configured limit: answer 413.
    TooLarge,
    /// The client stopped sending or was too slow: answer 408.
    Incomplete,
}

impl BodyError {
    fn from_axum(e: &axum::Error) -> Self {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return BodyError::TooLarge;
            }
            source = err.source();
        }
        BodyError::Incomplete
    }
}

fn percent_decode(segment: &str) -> String {
    // `+` is literal in paths; only %XX sequences are decoded.
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_is_total() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
    }

    #[test]
    fn fixed_segments_are_normalised() {
        let req = Request::builder()
            .uri("/acme/REMOTE/Services86/User.svc?wsdl")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(
            normalize_path(req).uri().to_string(),
            "/acme/Remote/Services86/User.svc?wsdl"
        );
        let req = Request::builder()
            .uri("/Api/Licenses")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(normalize_path(req).uri().path(), "/api/Licenses");
    }
}
