//! MSP360 (CloudBerry) Managed Backup Service API: licenses, users, companies and computers
//! under `[/{tenant}]/api/...`, over the ledger (see `docs/msp360.md`).
//!
//! - [`wire`]: content negotiation, the output model (JSON or DataContract XML), body parsing.
//! - [`provider`]: `POST /api/Provider/Login` and bearer tokens.
//! - [`licenses`], [`users`], [`companies`], [`computers`]: the resources.
//!
//! Routing is on lowercased segments (ASP.NET is case-insensitive); a path that matches no
//! route answers ASP.NET's 404 text, a known path with the wrong verb 405. Routing comes before
//! authentication, as in Web API, so a mistyped path says so even without a token.

mod companies;
mod computers;
mod licenses;
mod provider;
mod users;
pub mod wire;

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use super::{BodyError, DialectRequest};
use crate::auth::{AuthError, Principal};
use crate::state::Msp360State;
use allot_ledger::{Command, Context, LedgerError, Outcome, TenantId};
use wire::{BodyFault, Fields, Format, Out};

/// ASP.NET's text for a request without a valid token.
pub const DENIED: &str = "Authorization has been denied for this request.";

pub async fn handle(
    state: Msp360State,
    req: DialectRequest,
    body_error: Option<BodyError>,
) -> Response {
    let format = wire::negotiate(req.header("accept"));
    if let Some(e) = body_error {
        return match e {
            BodyError::TooLarge => Fault::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request body is larger than the server accepts.",
            ),
            BodyError::Incomplete => Fault::new(
                StatusCode::REQUEST_TIMEOUT,
                "The request body did not arrive in time.",
            ),
        }
        .into_response(format);
    }
    let route = match route(&req) {
        Ok(route) => route,
        Err(miss) => return miss.into_response(&req, format),
    };
    let result = match route {
        Route::Login => provider::login(&state, &req).await,
        route => match Call::authenticate(&state, &req, format, &route).await {
            Ok(call) => call.dispatch(route).await,
            Err(fault) => Err(fault),
        },
    };
    match result {
        Ok(response) => response,
        Err(fault) => fault.into_response(format),
    }
}

/// Every operation the dialect answers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Login,
    Licenses,
    License(String),
    Grant,
    Release,
    Revoke,
    Users,
    CreateUser,
    EditUser,
    User(String),
    DeleteUser(String),
    UserComputers(String),
    Companies,
    CreateCompany,
    EditCompany,
    Company(String),
    DeleteCompany(String),
    AuthorizeComputer(String),
    ComputersPage(String, String),
    Computer(String),
}

impl Route {
    fn writes(&self) -> bool {
        !matches!(
            self,
            Route::Licenses
                | Route::License(_)
                | Route::Users
                | Route::User(_)
                | Route::UserComputers(_)
                | Route::Companies
                | Route::Company(_)
                | Route::ComputersPage(..)
                | Route::Computer(_)
        )
    }
}

enum Miss {
    NotFound,
    /// The path exists but not for this verb.
    Method,
}

impl Miss {
    fn into_response(self, req: &DialectRequest, format: Format) -> Response {
        match self {
            Miss::NotFound => not_found(req).into_response(format),
            Miss::Method => Fault::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "The requested resource does not support http method '{}'.",
                    req.method
                ),
            )
            .into_response(format),
        }
    }
}

fn not_found(req: &DialectRequest) -> Fault {
    Fault::new(
        StatusCode::NOT_FOUND,
        format!(
            "No HTTP resource was found that matches the request URI '{}'.",
            req.uri
        ),
    )
}

fn route(req: &DialectRequest) -> Result<Route, Miss> {
    let segs: Vec<String> = req
        .segments
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let raw = |i: usize| req.segments[i].clone();
    let m = &req.method;
    let only = |allowed: &Method, route: Route| {
        if m == allowed {
            Ok(route)
        } else {
            Err(Miss::Method)
        }
    };
    match s.as_slice() {
        ["provider", "login"] => only(&Method::POST, Route::Login),
        ["licenses"] => only(&Method::GET, Route::Licenses),
        ["licenses", "grant"] if m == Method::POST => Ok(Route::Grant),
        ["licenses", "release"] if m == Method::POST => Ok(Route::Release),
        ["licenses", "revoke"] if m == Method::POST => Ok(Route::Revoke),
        ["licenses", _] => only(&Method::GET, Route::License(raw(1))),
        ["users"] => match *m {
            Method::GET => Ok(Route::Users),
            Method::POST => Ok(Route::CreateUser),
            Method::PUT => Ok(Route::EditUser),
            _ => Err(Miss::Method),
        },
        ["users", _] => match *m {
            Method::GET => Ok(Route::User(raw(1))),
            Method::DELETE => Ok(Route::DeleteUser(raw(1))),
            _ => Err(Miss::Method),
        },
        ["users", _, "account"] => only(&Method::DELETE, Route::DeleteUser(raw(1))),
        ["users", _, "computers"] => only(&Method::GET, Route::UserComputers(raw(1))),
        ["companies"] => match *m {
            Method::GET => Ok(Route::Companies),
            Method::POST => Ok(Route::CreateCompany),
            Method::PUT => Ok(Route::EditCompany),
            _ => Err(Miss::Method),
        },
        ["companies", _] => match *m {
            Method::GET => Ok(Route::Company(raw(1))),
            Method::DELETE => Ok(Route::DeleteCompany(raw(1))),
            _ => Err(Miss::Method),
        },
        ["computers", _, "authorization"] => only(&Method::POST, Route::AuthorizeComputer(raw(1))),
        ["computers", _, _] => only(&Method::GET, Route::ComputersPage(raw(1), raw(2))),
        ["computers", _] => only(&Method::GET, Route::Computer(raw(1))),
        _ => Err(Miss::NotFound),
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// The body of an error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FaultBody {
    /// ASP.NET's `HttpError`: `{"Message": "..."}`.
    Message(String),
    /// The OAuth token endpoint's `{"error": ..., "error_description": ...}`.
    OAuth {
        error: &'static str,
        description: String,
    },
    /// The Computers endpoints' `{"ErrorCode": ..., "Message": ...}`.
    Coded { code: i64, message: String },
}

/// An error answer: status and body (and `Retry-After` when throttled).
#[derive(Debug, Clone)]
pub struct Fault {
    status: StatusCode,
    body: FaultBody,
    retry_after: Option<u64>,
}

impl Fault {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Fault {
        Fault {
            status,
            body: FaultBody::Message(message.into()),
            retry_after: None,
        }
    }

    pub fn bad(message: impl Into<String>) -> Fault {
        Fault::new(StatusCode::BAD_REQUEST, message)
    }

    fn oauth(status: StatusCode, error: &'static str, description: impl Into<String>) -> Fault {
        Fault {
            status,
            body: FaultBody::OAuth {
                error,
                description: description.into(),
            },
            retry_after: None,
        }
    }

    fn coded(status: StatusCode, code: i64, message: impl Into<String>) -> Fault {
        Fault {
            status,
            body: FaultBody::Coded {
                code,
                message: message.into(),
            },
            retry_after: None,
        }
    }

    pub fn unavailable() -> Fault {
        let mut f = Fault::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The service is temporarily unavailable; try again.",
        );
        f.retry_after = Some(1);
        f
    }

    fn unauthorized() -> Fault {
        Fault::new(StatusCode::UNAUTHORIZED, DENIED)
    }

    fn into_response(self, format: Format) -> Response {
        let out = match &self.body {
            FaultBody::Message(m) => Out::Obj {
                name: "Error",
                fields: vec![("Message", Out::Str(m.clone()))],
            },
            FaultBody::OAuth { error, description } => Out::Obj {
                name: "Error",
                fields: vec![
                    ("error", Out::Str((*error).to_owned())),
                    ("error_description", Out::Str(description.clone())),
                ],
            },
            FaultBody::Coded { code, message } => Out::Obj {
                name: "Error",
                fields: vec![
                    ("ErrorCode", Out::Int(*code)),
                    ("Message", Out::Str(message.clone())),
                ],
            },
        };
        // The token endpoint always answers JSON, as OWIN's does.
        let format = match self.body {
            FaultBody::OAuth { .. } => Format::Json,
            _ => format,
        };
        let mut response = render(self.status, &out, format, "Error");
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<BodyFault> for Fault {
    fn from(e: BodyFault) -> Fault {
        match e {
            BodyFault::Unsupported(media) => Fault::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "The request entity's media type '{media}' is not supported for this resource."
                ),
            ),
            BodyFault::Malformed(reason) => {
                Fault::bad(format!("The request is invalid: {reason}."))
            }
        }
    }
}

/// A ledger refusal in MSP360's words ("license" for seat, "Email" for login).
impl From<LedgerError> for Fault {
    fn from(e: LedgerError) -> Fault {
        use LedgerError::*;
        let message = match &e {
            Store(_) => return Fault::unavailable(),
            UnknownSeat(id) => format!("License '{id}' not found."),
            UnknownUser(u) => format!("User '{}' not found.", u.trim_matches('"')),
            UnknownCompany(c) => format!("Company '{}' not found.", c.trim_matches('"')),
            UnknownProduct(p) => format!("License type {p} not found."),
            AlreadyExists { what: "user", name } => {
                format!("Email already exists: a user with the login '{name}' is registered.")
            }
            AlreadyExists { what, name } => format!("A {what} named '{name}' already exists."),
            NoSeatFree { .. } => "No free license of this type is left in the user's pool.".into(),
            QuotaExhausted { .. } => {
                "The company's quota of licenses of this type is used up.".into()
            }
            Retired(_) => "The user has been deleted.".into(),
            Disabled(_) => "The user is disabled.".into(),
            WrongHolder { seat } => format!("License '{seat}' is granted to another user."),
            NotHeld(seat) => format!("License '{seat}' is not granted to any user."),
            SeatExpired(seat) => format!("License '{seat}' has expired."),
            ProductExpired { .. } => "Licenses of this type have expired.".into(),
            WrongPool { seat, .. } => format!(
                "License '{seat}' is not in a pool this user may take licenses from (see the \
                 user's LicenseManagmentMode and the company's LicenseSettings)."
            ),
            WrongKind { .. } => format!("This license cannot be used that way: {e}."),
            AlreadyActivated { seat } => {
                format!("License '{seat}' is activated on another computer.")
            }
            ComputerHasSeat(hid) => {
                format!("Computer '{hid}' already has a license of this type.")
            }
            ComputerOfAnotherUser(hid) => format!("Computer '{hid}' belongs to another user."),
            Invalid { field, reason } => format!("Invalid {field}: {reason}."),
            other => format!("{}.", capitalise(&other.to_string())),
        };
        Fault::bad(message)
    }
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Responses

fn render(status: StatusCode, out: &Out, format: Format, null_name: &str) -> Response {
    let (body, content_type) = match format {
        Format::Json => (wire::to_json(out), "application/json; charset=utf-8"),
        Format::Xml => (
            wire::to_xml(out, null_name),
            "application/xml; charset=utf-8",
        ),
    };
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// 200 with `out`; `null_name` names the XML root when `out` is null.
fn ok(out: &Out, format: Format, null_name: &str) -> Result<Response, Fault> {
    Ok(render(StatusCode::OK, out, format, null_name))
}

/// 200 with an empty body, as the API answers Grant, Release, Revoke, PUT and DELETE.
fn ok_empty() -> Result<Response, Fault> {
    Ok(Response::builder()
        .status(StatusCode::OK)
        .body(Body::empty())
        .unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------
// Authenticated calls

/// An authenticated request: who, in which tenant, wanting which format.
struct Call<'a> {
    state: &'a Msp360State,
    req: &'a DialectRequest,
    format: Format,
    tenant: TenantId,
    principal: Principal,
}

impl<'a> Call<'a> {
    async fn authenticate(
        state: &'a Msp360State,
        req: &'a DialectRequest,
        format: Format,
        route: &Route,
    ) -> Result<Call<'a>, Fault> {
        let tenant = match super::tenant_id(&state.ledger, &req.tenant).await {
            Ok(Some(id)) => id,
            Ok(None) => return Err(not_found(req)),
            Err(_) => return Err(Fault::unavailable()),
        };
        let token = req
            .header("authorization")
            .and_then(crate::auth::bearer_token)
            .ok_or_else(Fault::unauthorized)?;
        let principal = match state.auth.token(token).await {
            Ok(p) => p,
            Err(AuthError::Unavailable) => return Err(Fault::unavailable()),
            Err(_) => return Err(Fault::unauthorized()),
        };
        if principal.tenant != Some(tenant) {
            return Err(Fault::unauthorized());
        }
        let allowed = if route.writes() {
            principal.can_write()
        } else {
            principal.can_read()
        };
        if !allowed {
            return Err(Fault::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{DENIED} The login '{}' ({}) may not {} here.",
                    principal.login,
                    principal.role,
                    if route.writes() {
                        "make changes"
                    } else {
                        "read"
                    }
                ),
            ));
        }
        Ok(Call {
            state,
            req,
            format,
            tenant,
            principal,
        })
    }

    async fn dispatch(self, route: Route) -> Result<Response, Fault> {
        match route {
            Route::Login => Err(not_found(self.req)),
            Route::Licenses => licenses::list(&self).await,
            Route::License(id) => licenses::get(&self, &id).await,
            Route::Grant => licenses::operate(&self, licenses::Op::Grant).await,
            Route::Release => licenses::operate(&self, licenses::Op::Release).await,
            Route::Revoke => licenses::operate(&self, licenses::Op::Revoke).await,
            Route::Users => users::list(&self).await,
            Route::User(id) => users::get(&self, &id).await,
            Route::CreateUser => users::create(&self).await,
            Route::EditUser => users::edit(&self).await,
            Route::DeleteUser(id) => users::delete(&self, &id).await,
            Route::UserComputers(id) => users::computers(&self, &id).await,
            Route::Companies => companies::list(&self).await,
            Route::Company(id) => companies::get(&self, &id).await,
            Route::CreateCompany => companies::create(&self).await,
            Route::EditCompany => companies::edit(&self).await,
            Route::DeleteCompany(id) => companies::delete(&self, &id).await,
            Route::AuthorizeComputer(hid) => computers::authorize(&self, &hid).await,
            Route::ComputersPage(offset, count) => computers::page(&self, &offset, &count).await,
            Route::Computer(hid) => computers::one(&self, &hid).await,
        }
    }

    fn context(&self) -> Context {
        Context {
            tenant: self.tenant,
            actor: self.principal.login.clone(),
            request_id: request_id(self.req),
        }
    }

    /// Runs one ledger command as the caller.
    async fn execute(&self, command: Command) -> Result<Outcome, LedgerError> {
        self.state.ledger.execute(&self.context(), command).await
    }

    /// The request body's members; a missing body is a 400 naming the model expected.
    fn body(&self, xml_root: &str) -> Result<Fields, Fault> {
        wire::parse_body(self.req.header("content-type"), &self.req.body, xml_root)?.ok_or_else(
            || {
                Fault::bad(format!(
                    "The request is invalid: a {xml_root} body is required."
                ))
            },
        )
    }

    fn ok(&self, out: &Out, null_name: &str) -> Result<Response, Fault> {
        ok(out, self.format, null_name)
    }
}

fn request_id(req: &DialectRequest) -> Option<String> {
    req.header("x-request-id").map(str::to_owned)
}

/// A GUID as the API writes them (with or without braces or dashes, any case).
pub fn parse_id(text: &str) -> Option<Uuid> {
    Uuid::parse_str(text.trim().trim_start_matches('{').trim_end_matches('}')).ok()
}

/// A field error (from [`Fields`] accessors) as a 400.
fn field(result: Result<Option<String>, String>) -> Result<Option<String>, Fault> {
    result.map_err(|reason| Fault::bad(format!("The request is invalid: {reason}.")))
}

fn invalid(reason: String) -> Fault {
    Fault::bad(format!("The request is invalid: {reason}."))
}
