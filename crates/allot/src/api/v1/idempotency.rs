//! `Idempotency-Key` (IETF httpapi draft) on the native API's POST, PATCH and DELETE.
//!
//! The middleware fingerprints the request (HMAC-SHA256 under a server secret of method, path
//! and query and body) and scopes the key to the tenant and principal; [`super::answer`] then
//! hands both to the ledger, which claims the key, applies the change, renders the answer
//! (status and body, a refusal's included) and stores it in ONE transaction: no change commits
//! without its answer. A retry gets the stored answer (same status and body, marked
//! `Idempotent-Replayed: true`) and changes nothing; the same key with another request is 422;
//! a retry while the first is still running in this process is 409 (across processes on one
//! PostgreSQL the retry waits for the first and then gets its answer). Keys live 24 hours.
//!
//! Routes whose requests or answers carry secrets (login, new tokens and logins, session leases),
//! tenant creation (no tenant yet) and key rotation ignore the header: nothing of them is stored.

use std::collections::HashSet;
use std::sync::Mutex;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};

use crate::api::error::ApiError;
use crate::auth::Principal;
use crate::state::AppState;
use allot_ledger::TenantId;
use allot_ledger::idempotency::{Answer, IdempotentRequest};

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set by the middleware only (any copy a client sends is removed): the request's fingerprint.
const FINGERPRINT: HeaderName = HeaderName::from_static("x-allot-idempotency-fingerprint");
/// On a replayed answer.
const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Routes that ignore the key: their answers hold secrets (tokens, lease tokens), or they are
/// not inside a tenant.
const IGNORED: &[&str] = &[
    "/v1/auth/login",
    "/v1/tokens",
    "/v1/logins",
    "/v1/keys",
    "/v1/tenants",
    "/v1/sessions",
    "/v1/sessions/{id}/heartbeat",
    // The answer holds the endpoint's signing secret.
    "/v1/webhooks",
];

/// Keys being run right now in this process.
static IN_FLIGHT: Mutex<Option<HashSet<(TenantId, String, String)>>> = Mutex::new(None);

struct InFlight((TenantId, String, String));

impl InFlight {
    fn enter(scope: (TenantId, String, String)) -> Option<InFlight> {
        let entered = IN_FLIGHT
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(scope.clone());
        // Made only when entered (and after the lock is released): its drop leaves the set.
        entered.then(|| InFlight(scope))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut set = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = set.as_mut() {
            set.remove(&self.0);
        }
    }
}

pub(crate) fn principal_scope(principal: &Principal) -> String {
    format!("{}:{}", principal.role, principal.login)
}

/// The key as sent: a structured-field string (`"..."`) or a bare token; 1 to 255 visible
/// ASCII characters.
fn parse_key(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    (!text.is_empty() && text.len() <= 255 && text.bytes().all(|b| (0x20..0x7f).contains(&b)))
        .then(|| text.to_owned())
}

/// The idempotent request a handler runs under, if the middleware admitted one.
pub(crate) fn request_of(principal: &Principal, headers: &HeaderMap) -> Option<IdempotentRequest> {
    let fingerprint = headers.get(&FINGERPRINT)?.to_str().ok()?.to_owned();
    let key = parse_key(headers.get(&IDEMPOTENCY_KEY)?)?;
    Some(IdempotentRequest {
        principal: principal_scope(principal),
        key,
        fingerprint,
    })
}

fn refusal(status: StatusCode, code: &'static str, message: &str) -> Response {
    ApiError::new(status, code, message).into_response()
}

pub async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    parts.headers.remove(&FINGERPRINT);
    let applies = matches!(parts.method, Method::POST | Method::PATCH | Method::DELETE)
        && parts.uri.path().starts_with("/v1/")
        && !parts
            .extensions
            .get::<MatchedPath>()
            .is_some_and(|p| IGNORED.contains(&p.as_str()));
    let Some(value) = parts.headers.get(&IDEMPOTENCY_KEY).filter(|_| applies) else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let Some(key) = parse_key(value) else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "Idempotency-Key: 1 to 255 visible ASCII characters",
        );
    };
    // The scope is the caller; without valid tenant credentials the handler answers as usual.
    let token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    let principal = match token {
        Some(token) => state.auth.token(&token).await.ok(),
        None => None,
    };
    let Some((principal, tenant)) = principal.and_then(|p| p.tenant.map(|t| (p, t))) else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let bytes = match axum::body::to_bytes(body, state.settings.max_body).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the body is larger than max_body",
            );
        }
    };
    // Keyed (HMAC with a server secret): a body may hold a password, and a stored plain hash
    // of it could be tested against guesses offline.
    let hmac_key = match state
        .fingerprint_key
        .get_or_try_init(|| state.ledger.hash_key("idempotency-fingerprint"))
        .await
    {
        Ok(hmac_key) => hmac_key,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut digest = <Hmac<sha2_11::Sha256> as KeyInit>::new_from_slice(hmac_key)
        .expect("HMAC takes a key of any length");
    digest.update(parts.method.as_str().as_bytes());
    digest.update(b" ");
    digest.update(
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("")
            .as_bytes(),
    );
    digest.update(b"\n");
    digest.update(&bytes);
    let fingerprint: String = digest
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let request = IdempotentRequest {
        principal: principal_scope(&principal),
        key,
        fingerprint,
    };
    let Some(_running) = InFlight::enter((tenant, request.principal.clone(), request.key.clone()))
    else {
        return refusal(
            StatusCode::CONFLICT,
            "idempotency_in_flight",
            "a request with this Idempotency-Key is still being processed; retry later",
        );
    };
    // A stored answer is sent before the handler runs: its pre-reads (a user found by the
    // login the first request changed, say) could fail now. The ledger checks again inside
    // its transaction, for a retry that races the first across processes.
    match state
        .ledger
        .idempotency_record(tenant, &request.principal, &request.key)
        .await
    {
        Err(e) => return ApiError::from(e).into_response(),
        Ok(Some(record)) if record.fingerprint != request.fingerprint => return key_reused(),
        Ok(Some(record)) => {
            if let Some((status, body)) = record.response {
                return answer_response(Answer { status, body }, true);
            }
            // A claim an older version committed without its answer: the handler runs, and
            // the ledger renders that answer from the recorded outcomes, changing nothing.
        }
        Ok(None) => {}
    }
    if let Ok(value) = HeaderValue::from_str(&request.fingerprint) {
        parts.headers.insert(FINGERPRINT, value);
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// 422: the key was used for another request.
pub(crate) fn key_reused() -> Response {
    refusal(
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
        "this Idempotency-Key was used for another request",
    )
}

/// An answer as a response; a replayed one says so.
pub(crate) fn answer_response(answer: Answer, replayed: bool) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = (status, answer.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if replayed {
        headers.insert(REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// Documents the header on every POST, PATCH and DELETE of the OpenAPI document.
pub struct IdempotencyHeader;

impl utoipa::Modify for IdempotencyHeader {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::{ObjectBuilder, Required, Type};
        for (path, item) in openapi.paths.paths.iter_mut() {
            if IGNORED.contains(&path.as_str()) {
                continue;
            }
            for op in [&mut item.post, &mut item.patch, &mut item.delete]
                .into_iter()
                .flatten()
            {
                let parameter = ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "Makes a retry safe: the first answer (a refusal's too) is stored in \
                         the transaction of the change and returned again for the same key and \
                         request (24 hours, per tenant and principal); 422 for the same key \
                         with another request, 409 while the first is still running.",
                    ))
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(255))
                            .pattern(Some(r"^[\x21-\x7e]+$")),
                    ))
                    .build();
                op.parameters
                    .get_or_insert_with(Vec::new)
                    .push(parameter.into());
            }
        }
    }
}
