//! Webhook endpoints (Standard Webhooks): register, list, change, remove, test, and see each
//! endpoint's deliveries. Admins only. The secret is answered once, at creation.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use axum::response::Response;

use super::unexpected;
use crate::api::error::{ApiError, ApiResult, ErrorBody};
use crate::api::extract::{ApiJson, ApiPath, ApiQuery, Caller};
use crate::state::AppState;
use allot_ledger::idempotency::RunMode;
use allot_ledger::webhooks::{WebhookDelivery, WebhookEndpoint, WebhookPatch};
use allot_ledger::{Command, Outcome};

/// An event type an endpoint can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum WebhookEvent {
    #[serde(rename = "seat.assigned")]
    SeatAssigned,
    #[serde(rename = "seat.unassigned")]
    SeatUnassigned,
    #[serde(rename = "seat.granted")]
    SeatGranted,
    #[serde(rename = "seat.released")]
    SeatReleased,
    #[serde(rename = "seat.revoked")]
    SeatRevoked,
    #[serde(rename = "seat.activated")]
    SeatActivated,
    #[serde(rename = "session.started")]
    SessionStarted,
    #[serde(rename = "session.ended")]
    SessionEnded,
    #[serde(rename = "user.created")]
    UserCreated,
    #[serde(rename = "user.retired")]
    UserRetired,
    #[serde(rename = "pool.changed")]
    PoolChanged,
    #[serde(rename = "pool.exhausted")]
    PoolExhausted,
}

impl WebhookEvent {
    fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

fn names(events: &[WebhookEvent]) -> Vec<String> {
    events.iter().map(|e| e.name()).collect()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookRequest {
    /// Where deliveries are POSTed: http or https; hosts that resolve to loopback, private or
    /// link-local addresses are refused (422) unless the server allows them.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"^https?://[^\s@/?#]+([/?#]\S*)?$"
    )]
    pub url: String,
    /// The event types to receive; empty or absent: every event.
    #[serde(default)]
    pub events: Vec<WebhookEvent>,
    #[serde(default)]
    #[schema(max_length = 400, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub description: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatchRequest {
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = r"^https?://[^\s@/?#]+([/?#]\S*)?$"
    )]
    pub url: Option<String>,
    pub events: Option<Vec<WebhookEvent>>,
    #[schema(max_length = 400, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub description: Option<String>,
    /// `true` enables a disabled endpoint again (and forgets its failures).
    pub enabled: Option<bool>,
}

/// A new endpoint with its signing secret, shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    pub id: String,
    /// The Standard Webhooks signing secret: `whsec_` and base64. Keep it; it is not shown again.
    pub secret: String,
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub enabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookList {
    pub items: Vec<WebhookEndpoint>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryList {
    /// Newest first.
    pub items: Vec<WebhookDelivery>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestQueued {
    /// The `webhook-id` of the queued test event.
    pub event_id: String,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// How many, newest first [default: 100].
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// The SSRF guard's refusal, in the API's error shape.
async fn check_url(state: &AppState, url: &str) -> ApiResult<()> {
    let allow = state.settings.webhooks.allow_private;
    match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        crate::webhooks::check_url(url, allow),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(refused)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "webhook_url_refused",
            format!("url: {refused}"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "webhook_url_refused",
            "url: resolving its host timed out",
        )),
    }
}

#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = WebhookList)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiJson<WebhookList>> {
    let tenant = caller.admin()?;
    Ok(ApiJson(WebhookList {
        items: state.ledger.webhooks(tenant).await?,
    }))
}

#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    request_body = NewWebhookRequest,
    responses((status = 201, body = CreatedWebhook), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<NewWebhookRequest>,
) -> ApiResult<(StatusCode, ApiJson<CreatedWebhook>)> {
    let tenant = caller.admin()?;
    check_url(&state, &req.url).await?;
    let ctx = caller.context(tenant, &headers);
    let (endpoint, secret) = state
        .ledger
        .create_webhook(&ctx, &req.url, &req.description, &names(&req.events))
        .await?;
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedWebhook {
            id: endpoint.id,
            secret,
            url: endpoint.url,
            description: endpoint.description,
            events: endpoint.events,
            enabled: endpoint.enabled,
            created_at: endpoint.created_at,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = WebhookEndpoint), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<ApiJson<WebhookEndpoint>> {
    let tenant = caller.admin()?;
    Ok(ApiJson(state.ledger.webhook(tenant, &id).await?))
}

#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = WebhookPatchRequest,
    responses((status = 200, body = WebhookEndpoint), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<WebhookPatchRequest>,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    // Unknown endpoints are 404 before any URL is resolved.
    state.ledger.webhook(tenant, &id).await?;
    if let Some(url) = &req.url {
        check_url(&state, url).await?;
    }
    let command = Command::EditWebhook {
        id,
        patch: WebhookPatch {
            url: req.url,
            description: req.description,
            events: req.events.as_deref().map(names),
            enabled: req.enabled,
        },
    };
    Ok(super::answer(
        &state,
        &caller,
        tenant,
        &headers,
        vec![command],
        RunMode::Atomic,
        |_| None,
        |ran| match super::single(ran)? {
            (Outcome::Webhook(endpoint), _) => Ok((StatusCode::OK, endpoint)),
            (other, _) => Err(unexpected(other)),
        },
    )
    .await)
}

#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = crate::api::dto::Changed, description = "removed, with its deliveries"),
        (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> Response {
    super::answer_changed(&state, &caller, &headers, Command::DeleteWebhook { id }).await
}

#[utoipa::path(post, path = "/v1/webhooks/{id}/test", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 202, body = TestQueued, description = "a webhook.test event is queued for the endpoint"),
        (status = 404, body = ErrorBody)))]
pub async fn test(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let tenant = caller.admin()?;
    let event_id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let command = Command::TestWebhook {
        id,
        event_id: event_id.clone(),
    };
    Ok(super::answer(
        &state,
        &caller,
        tenant,
        &headers,
        vec![command],
        RunMode::Atomic,
        |_| None,
        |ran| {
            ran?;
            Ok((
                StatusCode::ACCEPTED,
                TestQueued {
                    event_id: event_id.clone(),
                },
            ))
        },
    )
    .await)
}

#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path), DeliveriesQuery),
    responses((status = 200, body = DeliveryList), (status = 404, body = ErrorBody)))]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> ApiResult<ApiJson<DeliveryList>> {
    let tenant = caller.admin()?;
    let items = state
        .ledger
        .webhook_deliveries(tenant, &id, q.limit.unwrap_or(100))
        .await?;
    Ok(ApiJson(DeliveryList { items }))
}
