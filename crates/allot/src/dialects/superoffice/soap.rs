//! NetServer SOAP: `POST /Remote/ServicesNN/<Service>.svc` (SOAP 1.1 or 1.2, answered in the
//! request's version) and `GET ...svc?wsdl`.
//!
//! Errors travel the NetServer way: a normal response whose `Succeeded` header is false and whose
//! `ExceptionInfo` header says why. A SOAP fault is reserved for envelopes that cannot be read:
//! bad XML, a wrong envelope or namespace, an unknown operation.

use std::fmt::Write as _;

use axum::http::{HeaderValue, Method as Verb, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::methods::{self, Answer, Args, Method, Returns};
use super::wire::Wire;
use super::{SoCaller, SoError, Version};
use crate::config::plain_host;
use crate::dialects::{BodyError, DialectRequest};
use crate::state::SuperOfficeState;
use crate::xml::{Element, escape};

pub const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
pub const ARRAYS: &str = "http://schemas.microsoft.com/2003/10/Serialization/Arrays";
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// The services served, by their canonical names.
pub const SERVICES: [&str; 4] = ["User", "Associate", "License", "SoPrincipal"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoapVersion {
    V11,
    V12,
}

impl SoapVersion {
    fn namespace(self) -> &'static str {
        match self {
            SoapVersion::V11 => SOAP11,
            SoapVersion::V12 => SOAP12,
        }
    }

    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            SoapVersion::V11 => "text/xml; charset=utf-8",
            SoapVersion::V12 => "application/soap+xml; charset=utf-8",
        })
    }
}

pub async fn handle(
    state: SuperOfficeState,
    req: DialectRequest,
    body_error: Option<BodyError>,
) -> Response {
    let version = req.segments.first().and_then(|s| Version::parse(s));
    let service = req.segments.get(1).and_then(|s| {
        // `.svc` in any casing, as IIS accepts it.
        let cut = s.len().checked_sub(4)?;
        let name = s
            .get(cut..)
            .filter(|suffix| suffix.eq_ignore_ascii_case(".svc"))
            .map(|_| &s[..cut])?;
        SERVICES.into_iter().find(|x| x.eq_ignore_ascii_case(name))
    });
    let (Some(version), Some(service)) = (version, service) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "No such service. Services: Remote/ServicesNN/{User,Associate,License,SoPrincipal}.svc \
             with NN in 75, 80-88.",
        )
            .into_response();
    };
    match req.method {
        Verb::GET | Verb::HEAD => {
            let wants_wsdl = req.query_pairs().iter().any(|(k, _)| {
                k.eq_ignore_ascii_case("wsdl") || k.eq_ignore_ascii_case("singlewsdl")
            });
            if wants_wsdl {
                let address = service_address(&state.config, &req, version, service);
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
                    super::wsdl::document(version, service, &address),
                )
                    .into_response()
            } else {
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    format!(
                        "{service} service of NetServer Services{}. Its WSDL: {}?wsdl",
                        version.0,
                        service_address(&state.config, &req, version, service)
                    ),
                )
                    .into_response()
            }
        }
        Verb::POST => post(&state, &req, version, service, body_error).await,
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, POST")],
            "SOAP services take POST; GET ?wsdl describes them.",
        )
            .into_response(),
    }
}

/// The absolute address of a service: under the configured public URL, or else as the client
/// reached it, its `Host` (or `X-Forwarded-Host`) taken only when it is a plain host[:port], so
/// a forged header cannot put an arbitrary address into a WSDL that a proxy may cache.
fn service_address(
    config: &crate::config::SuperOfficeConfig,
    req: &DialectRequest,
    version: Version,
    service: &str,
) -> String {
    let base = match &config.public_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let host = req
                .header("x-forwarded-host")
                .or(req.header("host"))
                .filter(|h| plain_host(h))
                .unwrap_or("localhost");
            let scheme = req
                .header("x-forwarded-proto")
                .filter(|p| p.eq_ignore_ascii_case("https"))
                .map(|_| "https")
                .unwrap_or("http");
            format!("{scheme}://{host}")
        }
    };
    format!(
        "{base}{}/Remote/Services{}/{service}.svc",
        req.tenant_prefix(),
        version.0
    )
}

/// A SOAP fault, for envelopes that cannot be read.
pub fn fault(soap: SoapVersion, status: StatusCode, sender: bool, text: &str) -> Response {
    let text = escape(text);
    let body = match soap {
        SoapVersion::V11 => format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"{SOAP11}\"><s:Body><s:Fault>\
             <faultcode>s:{}</faultcode><faultstring xml:lang=\"en-US\">{text}</faultstring>\
             </s:Fault></s:Body></s:Envelope>",
            if sender { "Client" } else { "Server" }
        ),
        SoapVersion::V12 => format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"{SOAP12}\"><s:Body><s:Fault>\
             <s:Code><s:Value>s:{}</s:Value></s:Code><s:Reason><s:Text xml:lang=\"en-US\">{text}</s:Text></s:Reason>\
             </s:Fault></s:Body></s:Envelope>",
            if sender { "Sender" } else { "Receiver" }
        ),
    };
    (status, [(header::CONTENT_TYPE, soap.content_type())], body).into_response()
}

/// The header items a NetServer request may carry, found inside `Header` or, as the reference
/// pages print them, directly under `Envelope`.
#[derive(Debug, Default)]
pub struct RequestHeaders {
    pub application_token: Option<String>,
    pub ticket: Option<String>,
}

pub fn request_headers(envelope: &Element) -> RequestHeaders {
    let mut found = RequestHeaders::default();
    let loose = envelope
        .children
        .iter()
        .filter(|c| !c.name.eq_ignore_ascii_case("Body") && !c.name.eq_ignore_ascii_case("Header"));
    let in_header = envelope
        .children
        .iter()
        .filter(|c| c.name.eq_ignore_ascii_case("Header"))
        .flat_map(|h| h.children.iter());
    for item in in_header.chain(loose) {
        if item.name.eq_ignore_ascii_case("ApplicationToken") && !item.is_nil() {
            found
                .application_token
                .get_or_insert_with(|| item.value().to_owned());
        } else if (item.name.eq_ignore_ascii_case("Credentials")
            || item.name.eq_ignore_ascii_case("SoCredentials"))
            && let Some(ticket) = item.child("Ticket").filter(|t| !t.is_nil())
        {
            found
                .ticket
                .get_or_insert_with(|| ticket.value().to_owned());
        }
    }
    found
}

/// Why an envelope names no operation of the service: answered as a SOAP fault (400), in the
/// envelope's SOAP version when it has one.
#[derive(Debug)]
pub struct Refusal {
    pub soap: Option<SoapVersion>,
    pub text: String,
}

/// The SOAP version of an envelope, its operation element and the method it calls on
/// `service` of `version`. Pure (no store): the fuzz target reads envelopes through it too.
pub fn operation_of<'e>(
    envelope: &'e Element,
    version: Version,
    service: &str,
) -> Result<(SoapVersion, &'e Element, &'static Method), Refusal> {
    let refuse = |soap: Option<SoapVersion>, text: String| Refusal { soap, text };
    let soap = match envelope.namespace.as_deref() {
        Some(SOAP11) if envelope.name == "Envelope" => SoapVersion::V11,
        Some(SOAP12) if envelope.name == "Envelope" => SoapVersion::V12,
        _ => {
            return Err(refuse(
                None,
                "The root element is not a SOAP 1.1 or 1.2 Envelope.".into(),
            ));
        }
    };
    let Some(body) = envelope
        .children
        .iter()
        .find(|c| c.name == "Body" && c.namespace.as_deref() == Some(soap.namespace()))
    else {
        return Err(refuse(Some(soap), "The envelope has no Body.".into()));
    };
    let Some(operation) = body.children.first() else {
        return Err(refuse(Some(soap), "The Body names no operation.".into()));
    };
    let namespace = version.namespace();
    if operation.namespace.as_deref() != Some(namespace.as_str()) {
        return Err(refuse(
            Some(soap),
            format!(
                "The operation element must be in the namespace {namespace}, not {}.",
                operation.namespace.as_deref().unwrap_or("(none)")
            ),
        ));
    }
    let Some(method) = methods::find(service, &operation.name).filter(|m| m.in_soap(version))
    else {
        return Err(refuse(
            Some(soap),
            format!(
                "Services{}/{service}.svc has no operation '{}'.",
                version.0, operation.name
            ),
        ));
    };
    Ok((soap, operation, method))
}

async fn post(
    state: &SuperOfficeState,
    req: &DialectRequest,
    version: Version,
    service: &'static str,
    body_error: Option<BodyError>,
) -> Response {
    let content_type = req
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut soap = if content_type.starts_with("application/soap+xml") {
        SoapVersion::V12
    } else {
        SoapVersion::V11
    };
    match body_error {
        Some(BodyError::TooLarge) => {
            return fault(
                soap,
                StatusCode::PAYLOAD_TOO_LARGE,
                true,
                "The message is too large.",
            );
        }
        Some(BodyError::Incomplete) => {
            return fault(
                soap,
                StatusCode::REQUEST_TIMEOUT,
                true,
                "The message did not arrive in time.",
            );
        }
        None => {}
    }
    if !(content_type.is_empty() || content_type.contains("xml")) {
        return fault(
            soap,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            true,
            &format!(
                "Content type '{content_type}' is not a SOAP message; use text/xml or application/soap+xml."
            ),
        );
    }
    let Ok(text) = std::str::from_utf8(&req.body) else {
        return fault(
            soap,
            StatusCode::BAD_REQUEST,
            true,
            "The message is not UTF-8.",
        );
    };
    let envelope = match crate::xml::parse(text) {
        Ok(e) => e,
        Err(e) => return fault(soap, StatusCode::BAD_REQUEST, true, &e.to_string()),
    };
    let (operation, method) = match operation_of(&envelope, version, service) {
        Ok((found, operation, method)) => {
            soap = found;
            (operation, method)
        }
        Err(refusal) => {
            return fault(
                refusal.soap.unwrap_or(soap),
                StatusCode::BAD_REQUEST,
                true,
                &refusal.text,
            );
        }
    };
    let namespace = version.namespace();
    let headers = request_headers(&envelope);
    let out = Out {
        soap,
        namespace,
        method,
    };
    if let Err(e) = super::check_app_token(state, &req.tenant, headers.application_token.as_deref())
    {
        return out.failure(e);
    }
    let args = match Args::from_xml(method, operation) {
        Ok(a) => a,
        Err(e) => return out.failure(e),
    };
    if method.agent == "SoPrincipal" {
        return authenticate(state, req, &args, out).await;
    }
    let caller = match caller(state, req, headers.ticket.as_deref()).await {
        Ok(c) => c,
        Err(e) => return out.failure(e),
    };
    match methods::call(state, &caller, method, &args, version).await {
        Ok(Answer::Value(wire)) => out.success(Some(&wire)),
        Ok(Answer::Void) => out.success(None),
        Ok(Answer::NotFound) if method.returns == Returns::Void => out.failure(SoError::Refused(
            allot_ledger::LedgerError::UnknownUser("the associate does not exist".into()),
        )),
        Ok(Answer::NotFound) => out.success(Some(&Wire::Null)),
        Err(e) => out.failure(e),
    }
}

async fn caller(
    state: &SuperOfficeState,
    req: &DialectRequest,
    ticket: Option<&str>,
) -> Result<SoCaller, SoError> {
    let tenant = super::tenant_of(state, &req.tenant).await?;
    let ticket = ticket
        .filter(|t| !t.trim().is_empty())
        .ok_or(SoError::Unauthorized)?;
    let principal = super::principal_from_ticket(state, tenant, ticket).await?;
    Ok(SoCaller {
        tenant,
        tenant_name: req.tenant.clone(),
        principal,
        request_id: req.header("x-request-id").map(str::to_owned),
    })
}

/// SoPrincipal's Authenticate: a wrong password is `AuthenticationSucceeded=false`, not an error.
async fn authenticate(
    state: &SuperOfficeState,
    req: &DialectRequest,
    args: &Args,
    out: Out,
) -> Response {
    let tenant = match state.ledger.tenant(&req.tenant).await {
        Ok(t) => t,
        Err(_) => return out.failure(SoError::Unavailable),
    };
    let Some(tenant) = tenant else {
        return out.authenticated(None);
    };
    let principal = match state
        .auth
        .password(
            tenant.id,
            args.str("UserName"),
            args.str("Password"),
            req.client,
        )
        .await
    {
        Ok(p) => p,
        Err(crate::auth::AuthError::Unauthorized) => return out.authenticated(None),
        Err(e) => return out.failure(e.into()),
    };
    let issued = match state
        .auth
        .issue(
            &principal,
            tenant.id,
            super::TICKET_PREFIX,
            "superoffice ticket",
            super::ticket_lifetime(state),
            req.header("x-request-id").map(str::to_owned),
        )
        .await
    {
        Ok(i) => i,
        Err(e) => return out.failure(e.into()),
    };
    match methods::principal_carrier(state, tenant.id, &principal, false).await {
        Ok(carrier) => out.authenticated(Some((carrier, issued.secret))),
        Err(e) => out.failure(e),
    }
}

/// Writes responses for one operation.
struct Out {
    soap: SoapVersion,
    namespace: String,
    method: &'static Method,
}

impl Out {
    fn envelope(&self, header: &str, body: &str) -> Response {
        let mut xml = String::with_capacity(512 + body.len());
        let _ = write!(
            xml,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"{}\" xmlns:i=\"{XSI}\" \
             xmlns:a=\"{ARRAYS}\" xmlns:tns=\"{}\"><s:Header>{header}</s:Header><s:Body>{body}</s:Body></s:Envelope>",
            self.soap.namespace(),
            self.namespace
        );
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, self.soap.content_type())],
            xml,
        )
            .into_response()
    }

    fn response_element(&self) -> String {
        if self.method.agent == "SoPrincipal" {
            "AuthenticateResponse".to_owned()
        } else {
            format!("{}Response", self.method.name)
        }
    }

    fn success(&self, value: Option<&Wire>) -> Response {
        let name = self.response_element();
        let mut body = format!("<tns:{name}>");
        if let Some(value) = value {
            if matches!(value, Wire::Null) {
                body.push_str("<tns:Response i:nil=\"true\"/>");
            } else {
                body.push_str("<tns:Response>");
                value.write_soap_content("tns", &mut body);
                body.push_str("</tns:Response>");
            }
        }
        let _ = write!(body, "</tns:{name}>");
        self.envelope("<tns:Succeeded>true</tns:Succeeded>", &body)
    }

    fn authenticated(&self, result: Option<(Wire, String)>) -> Response {
        let mut body = String::from("<tns:AuthenticateResponse>");
        match &result {
            Some((carrier, ticket)) => {
                body.push_str("<tns:Response>");
                carrier.write_soap_content("tns", &mut body);
                let _ = write!(
                    body,
                    "</tns:Response><tns:Credentials><tns:Ticket>{}</tns:Ticket></tns:Credentials>\
                     <tns:AuthenticationSucceeded>true</tns:AuthenticationSucceeded>",
                    escape(ticket)
                );
            }
            None => body.push_str(
                "<tns:Response i:nil=\"true\"/><tns:Credentials i:nil=\"true\"/>\
                 <tns:AuthenticationSucceeded>false</tns:AuthenticationSucceeded>",
            ),
        }
        body.push_str("</tns:AuthenticateResponse>");
        self.envelope("<tns:Succeeded>true</tns:Succeeded>", &body)
    }

    fn failure(&self, e: SoError) -> Response {
        if matches!(e, SoError::Unavailable) {
            tracing::warn!(
                operation = self.method.name,
                "SOAP call failed: store unavailable"
            );
        }
        let info = Wire::Obj(
            "SoExceptionInfo",
            vec![
                ("Message", Wire::Str(e.message())),
                ("StackTrace", Wire::str("")),
                ("FriendlyText", Wire::Str(e.message())),
                ("ExceptionType", Wire::str(e.exception_type())),
                ("Source", Wire::str("allot")),
            ],
        );
        let mut header = String::from("<tns:ExceptionInfo>");
        info.write_soap_content("tns", &mut header);
        header.push_str("</tns:ExceptionInfo><tns:Succeeded>false</tns:Succeeded>");
        let name = self.response_element();
        self.envelope(&header, &format!("<tns:{name}/>"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_hosts_reach_the_wsdl() {
        for good in [
            "allot.example.com",
            "allot.example.com:8443",
            "127.0.0.1:8080",
            "[::1]:80",
        ] {
            assert!(plain_host(good), "{good}");
        }
        for bad in [
            "",
            "evil.com/x",
            "a@evil.com",
            "evil.com\"/><x",
            "a b",
            "evil.com:99999x",
        ] {
            assert!(!plain_host(bad), "{bad}");
        }
    }

    #[test]
    fn headers_are_found_inside_header_and_loose_under_envelope() {
        let loose = crate::xml::parse(
            "<e:Envelope xmlns:e=\"http://www.w3.org/2003/05/soap-envelope\" xmlns:u=\"urn:u\">\
             <u:ApplicationToken>app</u:ApplicationToken><u:Credentials><u:Ticket>7T:x</u:Ticket></u:Credentials>\
             <e:Body/></e:Envelope>",
        )
        .unwrap();
        let h = request_headers(&loose);
        assert_eq!(h.application_token.as_deref(), Some("app"));
        assert_eq!(h.ticket.as_deref(), Some("7T:x"));
        let inside = crate::xml::parse(
            "<e:Envelope xmlns:e=\"http://schemas.xmlsoap.org/soap/envelope/\"><e:Header>\
             <Credentials xmlns=\"urn:u\"><Ticket>7T:y</Ticket></Credentials></e:Header><e:Body/></e:Envelope>",
        )
        .unwrap();
        assert_eq!(request_headers(&inside).ticket.as_deref(), Some("7T:y"));
    }
}
