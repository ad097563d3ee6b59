//! NetServer REST: the agents (`POST /api/v1/Agents/<Agent>/<Method>`), the RESTful license
//! mirrors (`/api/v1/License/...`) and `GET /api/v1/User/currentPrincipal`.
//!
//! Agents answer the NetServer way: 200 with the carrier, 200 `null` for unknown ids, 204 for
//! void methods, 400 `{Message, MessageDetail}` for parameters that cannot be bound. RESTful
//! routes answer 404 `{Error, ErrorType, ErrorMessage, ErrorSource}` for unknown entities.

use axum::http::{HeaderValue, Method as Verb, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::methods::{self, Answer, Args, Method, Returns};
use super::wire::{Wire, parse_select};
use super::{SoCaller, SoError, Version};
use crate::dialects::{BodyError, DialectRequest};
use crate::state::SuperOfficeState;
use allot_ledger::rules;

pub async fn handle(
    state: SuperOfficeState,
    req: DialectRequest,
    body_error: Option<BodyError>,
) -> Response {
    let format = Format::negotiate(req.header("accept"));
    if let Some(e) = body_error {
        return match e {
            BodyError::TooLarge => message(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is larger than this server accepts.",
                None,
                format,
            ),
            BodyError::Incomplete => message(
                StatusCode::REQUEST_TIMEOUT,
                "The request body was not received in time.",
                None,
                format,
            ),
        };
    }
    let seg: Vec<String> = (0..req.segments.len())
        .map(|i| req.segment_lower(i))
        .collect();
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    match seg.as_slice() {
        ["v1", "agents", agent, name] => {
            let Some(method) = methods::find(agent, name).filter(|m| m.rest) else {
                return no_resource(&req, format);
            };
            match req.method {
                Verb::POST => agent_call(&state, &req, method, format).await,
                Verb::GET | Verb::HEAD => describe(&req, method, format),
                _ => message(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "The requested resource does not support this http method; agents are called with POST.",
                    None,
                    format,
                ),
            }
        }
        ["v1", "license", ..] => license_resource(&state, &req, format).await,
        ["v1", "user", "currentprincipal"] if req.method == Verb::GET => {
            match authenticate(&state, &req).await {
                Ok(caller) => {
                    match methods::principal_carrier(&state, caller.tenant, &caller.principal, true)
                        .await
                    {
                        Ok(wire) => render(StatusCode::OK, Some(wire), &req, format),
                        Err(e) => restful_error(e, format),
                    }
                }
                Err(e) => restful_error(e, format),
            }
        }
        _ => no_resource(&req, format),
    }
}

/// JSON (the default) or XML, from `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

impl Format {
    /// The first media type in `Accept` that names JSON or XML decides; anything else
    /// (absent, `*/*`, unknown types) means JSON.
    pub fn negotiate(accept: Option<&str>) -> Format {
        for entry in accept.unwrap_or("").split(',') {
            let media = entry
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if media.ends_with("/json") || media.ends_with("+json") {
                return Format::Json;
            }
            if media.ends_with("/xml") || media.ends_with("+xml") {
                return Format::Xml;
            }
        }
        Format::Json
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Format::Json => "application/json; charset=utf-8",
            Format::Xml => "application/xml; charset=utf-8",
        })
    }
}

/// A carrier (or `null`) in the negotiated format.
fn respond(status: StatusCode, wire: &Wire, format: Format) -> Response {
    let body = match format {
        Format::Json => wire.to_json(),
        Format::Xml => wire.to_rest_xml(),
    };
    (
        status,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}

fn render(
    status: StatusCode,
    value: Option<Wire>,
    req: &DialectRequest,
    format: Format,
) -> Response {
    let value = value.unwrap_or(Wire::Null);
    let value = match req.query("$select") {
        Some(select) => value.select(&parse_select(&select)),
        None => value,
    };
    respond(status, &value, format)
}

/// ASP.NET's `HttpError` shape: `{"Message": ..., "MessageDetail": ...}`.
fn message(status: StatusCode, text: &str, detail: Option<&str>, format: Format) -> Response {
    let mut fields = vec![("Message", Wire::str(text))];
    if let Some(detail) = detail {
        fields.push(("MessageDetail", Wire::str(detail)));
    }
    let wire = Wire::Obj("Error", fields);
    respond(status, &wire, format)
}

fn no_resource(req: &DialectRequest, format: Format) -> Response {
    message(
        StatusCode::NOT_FOUND,
        &format!(
            "No HTTP resource was found that matches the request URI '{}'.",
            req.uri.path()
        ),
        None,
        format,
    )
}

/// How an agent reports a failure.
fn agent_error(e: SoError, format: Format) -> Response {
    match e {
        SoError::Refused(ref l) if l.code().starts_with("unknown") => {
            respond(StatusCode::OK, &Wire::Null, format)
        }
        SoError::Bind(detail) => message(
            StatusCode::BAD_REQUEST,
            "The request is invalid.",
            Some(&detail),
            format,
        ),
        SoError::Refused(l) => message(
            StatusCode::BAD_REQUEST,
            "The request was refused.",
            Some(&l.to_string()),
            format,
        ),
        other => auth_error(other, format),
    }
}

/// Credential, rights, throttling and availability failures (shared by agents and RESTful).
fn auth_error(e: SoError, format: Format) -> Response {
    let (status, text) = match &e {
        SoError::Unauthorized | SoError::AppToken => (StatusCode::UNAUTHORIZED, e.message()),
        SoError::Forbidden(_) => (StatusCode::FORBIDDEN, e.message()),
        SoError::Throttled(_) => (StatusCode::TOO_MANY_REQUESTS, e.message()),
        SoError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, e.message()),
        SoError::Bind(_) | SoError::Refused(_) => (StatusCode::BAD_REQUEST, e.message()),
    };
    let mut response = message(status, &text, None, format);
    match e {
        SoError::Unauthorized | SoError::AppToken => {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("SOTicket, Basic realm=\"SuperOffice\""),
            );
        }
        SoError::Throttled(seconds) => {
            if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        _ => {}
    }
    response
}

/// RESTful entity errors: `{"Error": true, "ErrorType", "ErrorMessage", "ErrorSource"}`.
fn restful_error(e: SoError, format: Format) -> Response {
    let status = match &e {
        SoError::Refused(l) if l.code().starts_with("unknown") => StatusCode::NOT_FOUND,
        SoError::Refused(_) | SoError::Bind(_) => StatusCode::BAD_REQUEST,
        _ => return auth_error(e, format),
    };
    entity_error(status, e.exception_type(), &e.message(), format)
}

fn entity_error(status: StatusCode, kind: &str, text: &str, format: Format) -> Response {
    let wire = Wire::Obj(
        "Error",
        vec![
            ("Error", Wire::Bool(true)),
            ("ErrorType", Wire::str(kind)),
            ("ErrorMessage", Wire::str(text)),
            ("ErrorSource", Wire::str("allot.SuperOffice")),
        ],
    );
    respond(status, &wire, format)
}

/// Who is calling: `Authorization` (Basic, SOTicket, Bearer; scheme case-insensitive), or
/// without it an `X-XSRF-TOKEN` header equal to the `XSRF-TOKEN` cookie beside a session
/// cookie holding a ticket. Online tenants also need a registered `SO-AppToken`.
pub async fn authenticate(
    state: &SuperOfficeState,
    req: &DialectRequest,
) -> Result<SoCaller, SoError> {
    super::check_app_token(state, &req.tenant, req.header("so-apptoken"))?;
    let tenant = super::tenant_of(state, &req.tenant).await?;
    let principal = if let Some(authorization) = req.header("authorization") {
        let (scheme, credentials) =
            crate::auth::split_authorization(authorization).ok_or(SoError::Unauthorized)?;
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => super::principal_from_basic(state, tenant, credentials, req.client).await?,
            "soticket" | "bearer" => {
                super::principal_from_ticket(state, tenant, credentials).await?
            }
            _ => return Err(SoError::Unauthorized),
        }
    } else if let Some(xsrf) = req.header("x-xsrf-token") {
        let cookies = cookies(req);
        let cookie_xsrf = cookie(&cookies, "XSRF-TOKEN").ok_or(SoError::Unauthorized)?;
        // Compare digests so the comparison takes the same time wherever they differ.
        if xsrf.is_empty()
            || !rules::hashes_match(&rules::hash_token(xsrf), &rules::hash_token(cookie_xsrf))
        {
            return Err(SoError::Unauthorized);
        }
        let ticket = cookie(&cookies, "SoTicket").ok_or(SoError::Unauthorized)?;
        super::principal_from_ticket(state, tenant, ticket).await?
    } else {
        return Err(SoError::Unauthorized);
    };
    Ok(SoCaller {
        tenant,
        tenant_name: req.tenant.clone(),
        principal,
        request_id: req.header("x-request-id").map(str::to_owned),
    })
}

fn cookies(req: &DialectRequest) -> Vec<(String, String)> {
    crate::auth::cookie_pairs(
        req.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

fn cookie<'a>(cookies: &'a [(String, String)], name: &str) -> Option<&'a str> {
    cookies
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The request body, by `Content-Type`: JSON (also `text/json` and the patch types), XML,
/// or form-encoded; an empty body binds every parameter to its default.
pub enum Body {
    Empty,
    Json(serde_json::Value),
    Xml(crate::xml::Element),
    Form(Vec<(String, String)>),
}

fn read_body(req: &DialectRequest) -> Result<Body, Box<Response>> {
    let format = Format::negotiate(req.header("accept"));
    parse_body(req.header("content-type"), &req.body).map_err(|(status, detail)| match status {
        StatusCode::BAD_REQUEST => Box::new(message(
            status,
            "The request is invalid.",
            Some(&detail),
            format,
        )),
        _ => Box::new(message(status, &detail, None, format)),
    })
}

/// Reads an agent call's body by its `Content-Type` (JSON when none is given). Refusals are
/// 400 with a detail, or 415. Pure (no store): the fuzz target reads bodies through it too.
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Body, (StatusCode, String)> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body::Empty);
    }
    let content_type = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let invalid = |detail: String| (StatusCode::BAD_REQUEST, detail);
    if content_type.ends_with("/json") || content_type.ends_with("+json") {
        return serde_json::from_slice(body)
            .map(Body::Json)
            .map_err(|e| invalid(format!("The request body is not valid JSON: {e}")));
    }
    if content_type.ends_with("/xml") {
        let text = std::str::from_utf8(body)
            .map_err(|_| invalid("The request body is not UTF-8.".into()))?;
        return crate::xml::parse(text)
            .map(Body::Xml)
            .map_err(|e| invalid(format!("The request body is not acceptable XML: {e}")));
    }
    if content_type == "application/x-www-form-urlencoded" {
        return serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .map(Body::Form)
            .map_err(|e| invalid(format!("The form body cannot be read: {e}")));
    }
    Err((
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "The request entity's media type '{content_type}' is not supported for this resource."
        ),
    ))
}

/// Binds a body to a method's parameters.
pub fn bind(method: &Method, body: &Body) -> Result<Args, SoError> {
    match body {
        Body::Empty => Ok(Args::default()),
        Body::Json(value) => Args::from_json(method, value),
        Body::Xml(element) => Args::from_xml(method, element),
        Body::Form(pairs) => Args::from_form(method, pairs),
    }
}

async fn agent_call(
    state: &SuperOfficeState,
    req: &DialectRequest,
    method: &Method,
    format: Format,
) -> Response {
    let caller = match authenticate(state, req).await {
        Ok(c) => c,
        Err(e) => return auth_error(e, format),
    };
    let body = match read_body(req) {
        Ok(b) => b,
        Err(response) => return *response,
    };
    let args = match bind(method, &body) {
        Ok(a) => a,
        Err(e) => return agent_error(e, format),
    };
    match methods::call(state, &caller, method, &args, Version::REST).await {
        Ok(Answer::Value(wire)) => render(StatusCode::OK, Some(wire), req, format),
        Ok(Answer::Void) => StatusCode::NO_CONTENT.into_response(),
        Ok(Answer::NotFound) => render(StatusCode::OK, None, req, format),
        Err(e) => agent_error(e, format),
    }
}

/// `GET` on an agent URL: what the call takes and answers. Never runs it.
fn describe(req: &DialectRequest, method: &Method, format: Format) -> Response {
    let returns = match method.returns {
        Returns::Void => "void".to_owned(),
        Returns::One(t) => t.to_owned(),
        Returns::Many(t) => format!("{t}[]"),
    };
    let parameters = Wire::Arr(
        "Parameter",
        method
            .params
            .iter()
            .map(|(name, kind)| {
                Wire::Obj(
                    "Parameter",
                    vec![
                        ("Name", Wire::str(*name)),
                        ("Type", Wire::str(kind.dotnet())),
                    ],
                )
            })
            .collect(),
    );
    let wire = Wire::Obj(
        "AgentMethodDescription",
        vec![
            ("Agent", Wire::str(method.agent)),
            ("Method", Wire::str(method.name)),
            ("Verb", Wire::str("POST")),
            (
                "Url",
                Wire::Str(format!(
                    "{}/api/v1/Agents/{}/{}",
                    req.tenant_prefix(),
                    method.agent,
                    method.name
                )),
            ),
            ("Summary", Wire::str(method.summary)),
            ("Parameters", parameters),
            ("Returns", Wire::Str(returns)),
        ],
    );
    respond(StatusCode::OK, &wire, format)
}

/// The RESTful `/api/v1/License` routes, which wrap the License agent.
async fn license_resource(
    state: &SuperOfficeState,
    req: &DialectRequest,
    format: Format,
) -> Response {
    let caller = match authenticate(state, req).await {
        Ok(c) => c,
        Err(e) => return auth_error(e, format),
    };
    // Segments after "v1/License", case kept (owner and module names are data).
    let rest: Vec<&str> = req.segments.iter().skip(2).map(String::as_str).collect();
    let mut args = Args::default();
    let method_name = match (&req.method, rest.as_slice()) {
        (&Verb::GET, []) => "GetLicenseForAllOwnersFromDB",
        (&Verb::GET, [user, id]) if user.eq_ignore_ascii_case("user") => {
            let Ok(id) = id.parse::<i32>() else {
                return entity_error(
                    StatusCode::BAD_REQUEST,
                    "SoArgumentException",
                    &format!("'{id}' is not a valid associate id."),
                    format,
                );
            };
            args.set_int("AssociateId", i64::from(id));
            "GetUserLicenses"
        }
        (&Verb::GET, [owner]) => {
            args.set_str("OwnerName", (*owner).to_owned());
            "GetLicenseFromDB"
        }
        (&Verb::DELETE, [owner]) => {
            args.set_str("ModuleOwner", (*owner).to_owned());
            "RemoveLicenseFromDB"
        }
        // An int32 second segment is an associate id; anything else is a module name.
        (verb, [owner, second]) => match second.parse::<i32>() {
            Ok(id) => {
                args.set_int("AssociateId", i64::from(id));
                args.set_str("ModuleOwner", (*owner).to_owned());
                match *verb {
                    Verb::GET => "GetThirdPartyLicenseAssignments",
                    Verb::PUT | Verb::DELETE => {
                        let names = match module_names(req, format) {
                            Ok(n) => n,
                            Err(response) => return *response,
                        };
                        args.set_strs("ModuleLicenseNames", names);
                        if *verb == Verb::PUT {
                            "AssignThirdPartyLicenses"
                        } else {
                            "UnassignThirdPartyLicenses"
                        }
                    }
                    _ => return method_not_allowed(format),
                }
            }
            Err(_) if *verb == Verb::GET => {
                args.set_str("OwnerName", (*owner).to_owned());
                args.set_str("ModuleName", (*second).to_owned());
                "GetModuleLicenseFromDB"
            }
            Err(_) => return method_not_allowed(format),
        },
        (_, [] | [_]) => return method_not_allowed(format),
        _ => return no_resource(req, format),
    };
    let Some(method) = methods::find("License", method_name) else {
        return no_resource(req, format);
    };
    match methods::call(state, &caller, method, &args, Version::REST).await {
        Ok(Answer::Value(wire)) => render(StatusCode::OK, Some(wire), req, format),
        Ok(Answer::Void) => StatusCode::NO_CONTENT.into_response(),
        Ok(Answer::NotFound) => entity_error(
            StatusCode::NOT_FOUND,
            "SoNotFoundException",
            &format!("{} not found", req.uri.path()),
            format,
        ),
        Err(e) => restful_error(e, format),
    }
}

fn method_not_allowed(format: Format) -> Response {
    message(
        StatusCode::METHOD_NOT_ALLOWED,
        "The requested resource does not support this http method.",
        None,
        format,
    )
}

/// The body of PUT/DELETE `License/{owner}/{associateId}`: a JSON array of module names, or an
/// XML `ArrayOfstring`.
fn module_names(req: &DialectRequest, format: Format) -> Result<Vec<String>, Box<Response>> {
    let invalid = || {
        Box::new(entity_error(
            StatusCode::BAD_REQUEST,
            "SoArgumentException",
            "Bad request. The body must be an array of module license names.",
            format,
        ))
    };
    match read_body(req)? {
        Body::Json(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(invalid),
        Body::Xml(element) => Ok(element.children.iter().map(|c| c.text.clone()).collect()),
        Body::Form(pairs) => Ok(pairs.into_iter().map(|(_, v)| v).collect()),
        Body::Empty | Body::Json(_) => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_first_known_type() {
        assert_eq!(Format::negotiate(None), Format::Json);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Json);
        assert_eq!(Format::negotiate(Some("text/xml")), Format::Xml);
        assert_eq!(
            Format::negotiate(Some("application/xml;q=0.9, application/json")),
            Format::Xml
        );
        assert_eq!(
            Format::negotiate(Some("application/json; charset=utf-8")),
            Format::Json
        );
        assert_eq!(Format::negotiate(Some("garbage")), Format::Json);
    }
}
