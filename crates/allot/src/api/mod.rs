//! HTTP adapters. `v1` is allot's own JSON API; the SuperOffice and MSP360 dialects will sit
//! beside it, each a thin layer over the same ledger and principals.

pub mod dto;
pub mod error;
pub mod extract;
pub mod v1;

use axum::Router;
use axum::routing::{delete, get, post, put};
use utoipa::OpenApi;

use crate::state::AppState;
use v1::idempotency::IdempotencyHeader;

#[derive(OpenApi)]
#[openapi(
    info(title = "allot", description = "License-seat server: allot's native API."),
    paths(
        v1::auth::login, v1::auth::list_tokens, v1::auth::create_token, v1::auth::revoke_token,
        v1::auth::list_logins, v1::auth::create_login, v1::auth::set_password, v1::auth::list_tenants, v1::auth::create_tenant,
        v1::products::list, v1::products::create, v1::products::get, v1::products::patch,
        v1::products::add_seats, v1::products::remove_seats, v1::products::pools,
        v1::harvest::idle, v1::harvest::run, v1::harvest::policies, v1::harvest::set_policy,
        v1::harvest::delete_policy, v1::harvest::exempt_users, v1::harvest::exempt,
        v1::harvest::unexempt, v1::harvest::exempt_groups, v1::harvest::exempt_group,
        v1::harvest::unexempt_group, v1::batch::batch,
        v1::usage::product, v1::usage::tenant,
        v1::seats::list, v1::seats::get, v1::seats::grant, v1::seats::release, v1::seats::revoke,
        v1::seats::activate,
        v1::users::list, v1::users::create, v1::users::get, v1::users::patch, v1::users::licenses,
        v1::users::assign, v1::users::unassign, v1::users::remove_all, v1::users::retire,
        v1::users::unretire,
        v1::companies::list, v1::companies::create, v1::companies::get, v1::companies::patch,
        v1::companies::set_quota,
        v1::groups::list, v1::groups::create, v1::groups::get, v1::groups::patch, v1::groups::delete,
        v1::groups::add_member, v1::groups::remove_member, v1::groups::add_license,
        v1::groups::remove_license, v1::groups::disable, v1::groups::enable, v1::groups::user_groups,
        v1::groups::get_settings, v1::groups::put_settings,
        v1::sessions::log_on, v1::sessions::heartbeat, v1::sessions::end, v1::sessions::log_off,
        v1::sessions::list,
        v1::audit::list, v1::audit::head, invariants,
        v1::keys::jwks, v1::keys::rotate, v1::keys::get_settings, v1::keys::put_settings,
        v1::license::user, v1::license::seat,
        v1::webhooks::list, v1::webhooks::create, v1::webhooks::get, v1::webhooks::patch,
        v1::webhooks::remove, v1::webhooks::test, v1::webhooks::deliveries,
    ),
    modifiers(&BearerAuth, &CommonErrors, &IdempotencyHeader),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The error answers any operation can give, whatever the handler: bad path or query (400),
/// credentials (401, 403), unknown ids (404), rules (409), body size, type and content (413,
/// 415, 422), throttling (429), timeouts and overload (408, 503). Each operation's own
/// `responses` come first; these fill in the rest, all in the `ErrorBody` shape.
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        const COMMON: [(&str, &str); 12] = [
            ("400", "malformed request, path or query"),
            ("401", "missing, invalid, expired or revoked credentials"),
            ("403", "the role does not allow it"),
            ("404", "unknown resource or route"),
            ("405", "method not allowed"),
            ("408", "request over the request timeout"),
            ("409", "a rule refused"),
            ("413", "body larger than max_body"),
            ("415", "body not application/json (UTF-8)"),
            ("422", "well-formed but invalid"),
            ("429", "too many failed logins or requests (Retry-After)"),
            ("503", "overloaded or store unavailable (Retry-After)"),
        ];
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                for (status, description) in COMMON {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(description)
                                .content(
                                    "application/json",
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                                        .build(),
                                )
                                .build()
                                .into()
                        });
                }
            }
        }
    }
}

/// The OpenAPI document, as served at `/v1/openapi.json`.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_owned())
}

pub fn v1_routes() -> Router<AppState> {
    use v1::*;
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/auth/login", post(auth::login))
        .route(
            "/v1/tokens",
            get(auth::list_tokens).post(auth::create_token),
        )
        .route("/v1/tokens/{id}", delete(auth::revoke_token))
        .route(
            "/v1/logins",
            get(auth::list_logins).post(auth::create_login),
        )
        .route("/v1/logins/{login}/password", put(auth::set_password))
        .route(
            "/v1/tenants",
            get(auth::list_tenants).post(auth::create_tenant),
        )
        .route("/v1/products", get(products::list).post(products::create))
        .route(
            "/v1/products/{product}",
            get(products::get).patch(products::patch),
        )
        .route("/v1/products/{product}/seats", post(products::add_seats))
        .route(
            "/v1/products/{product}/seats/remove",
            post(products::remove_seats),
        )
        .route(
            "/v1/products/{product}/harvest-policy",
            put(harvest::set_policy).delete(harvest::delete_policy),
        )
        .route("/v1/harvest", get(harvest::idle).post(harvest::run))
        .route("/v1/batch", post(batch::batch))
        .route("/v1/harvest/policies", get(harvest::policies))
        .route("/v1/harvest/exempt", get(harvest::exempt_users))
        .route(
            "/v1/users/{user}/harvest-exempt",
            put(harvest::exempt).delete(harvest::unexempt),
        )
        .route("/v1/harvest/exempt-groups", get(harvest::exempt_groups))
        .route(
            "/v1/groups/{group}/harvest-exempt",
            put(harvest::exempt_group).delete(harvest::unexempt_group),
        )
        .route("/v1/pools", get(products::pools))
        .route("/v1/products/{product}/usage", get(usage::product))
        .route("/v1/usage", get(usage::tenant))
        .route("/v1/seats", get(seats::list))
        .route("/v1/seats/{id}", get(seats::get))
        .route("/v1/seats/{id}/grant", post(seats::grant))
        .route("/v1/seats/{id}/release", post(seats::release))
        .route("/v1/seats/{id}/revoke", post(seats::revoke))
        .route("/v1/seats/{id}/activate", post(seats::activate))
        .route("/v1/users", get(users::list).post(users::create))
        .route("/v1/users/{user}", get(users::get).patch(users::patch))
        .route(
            "/v1/users/{user}/licenses",
            get(users::licenses).delete(users::remove_all),
        )
        .route("/v1/users/{user}/assignments", post(users::assign))
        .route(
            "/v1/users/{user}/assignments/{product}",
            delete(users::unassign),
        )
        .route("/v1/users/{user}/retire", post(users::retire))
        .route("/v1/users/{user}/unretire", post(users::unretire))
        .route("/v1/users/{user}/disable", post(groups::disable))
        .route("/v1/users/{user}/enable", post(groups::enable))
        .route("/v1/users/{user}/groups", get(groups::user_groups))
        .route("/v1/groups", get(groups::list).post(groups::create))
        .route(
            "/v1/groups/{group}",
            get(groups::get).patch(groups::patch).delete(groups::delete),
        )
        .route("/v1/groups/{group}/members", post(groups::add_member))
        .route(
            "/v1/groups/{group}/members/{user}",
            delete(groups::remove_member),
        )
        .route("/v1/groups/{group}/licenses", post(groups::add_license))
        .route(
            "/v1/groups/{group}/licenses/{product}",
            delete(groups::remove_license),
        )
        .route(
            "/v1/directory-settings",
            get(groups::get_settings).put(groups::put_settings),
        )
        .route(
            "/v1/companies",
            get(companies::list).post(companies::create),
        )
        .route(
            "/v1/companies/{company}",
            get(companies::get).patch(companies::patch),
        )
        .route(
            "/v1/companies/{company}/quotas/{product}",
            put(companies::set_quota),
        )
        .route("/v1/sessions", get(sessions::list).post(sessions::log_on))
        .route("/v1/sessions/logoff", post(sessions::log_off))
        .route("/v1/sessions/{id}", delete(sessions::end))
        .route("/v1/sessions/{id}/heartbeat", post(sessions::heartbeat))
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/head", get(audit::head))
        .route("/v1/keys", get(keys::jwks).post(keys::rotate))
        .route(
            "/v1/license-settings",
            get(keys::get_settings).put(keys::put_settings),
        )
        .route("/v1/users/{user}/license", get(license::user))
        .route("/v1/seats/{id}/license", get(license::seat))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get)
                .patch(webhooks::patch)
                .delete(webhooks::remove),
        )
        .route("/v1/webhooks/{id}/test", post(webhooks::test))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/invariants", get(invariants))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi_json(),
    )
}

/// Every ledger invariant violated in the caller's tenant (an empty list: all hold).
#[utoipa::path(get, path = "/v1/invariants", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = dto::Invariants)))]
pub async fn invariants(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: extract::Caller,
) -> error::ApiResult<extract::ApiJson<dto::Invariants>> {
    let tenant = caller.reader()?;
    let violations = state.ledger.check_invariants(tenant).await?;
    Ok(extract::ApiJson(dto::Invariants { violations }))
}

/// The process is up.
async fn healthz() -> extract::ApiJson<dto::Health> {
    extract::ApiJson(dto::Health { status: "ok" })
}

/// The store answers.
async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> error::ApiResult<extract::ApiJson<dto::Health>> {
    state.ledger.ping().await?;
    Ok(extract::ApiJson(dto::Health { status: "ready" }))
}
