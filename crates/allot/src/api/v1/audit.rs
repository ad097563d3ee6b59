//! The audit trail.

use axum::extract::State;
use serde::Deserialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::api::dto::*;
use crate::api::error::ApiResult;
use crate::api::extract::{ApiJson, ApiQuery, Caller, product_ref, user_ref};
use crate::state::AppState;
use allot_ledger::*;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only events after this sequence number (the `next` of the previous page).
    pub after: Option<i64>,
    /// RFC 3339 time: events at or after it.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<OffsetDateTime>,
    /// RFC 3339 time: events before it.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<OffsetDateTime>,
    pub actor: Option<String>,
    pub user: Option<String>,
    /// id, or owner/name.
    #[param(pattern = r"^(-?[0-9]+|[^/]+/.+)$")]
    pub product: Option<String>,
    pub seat: Option<Uuid>,
    /// Page size [default: 100]; clamped to 1..=1000.
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = Page<AuditEvent>)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<ApiJson<Page<AuditEvent>>> {
    let tenant = caller.reader()?;
    let user = match &q.user {
        Some(u) => Some(state.ledger.user(tenant, &user_ref(u)).await?.id),
        None => None,
    };
    let product = match &q.product {
        Some(p) => Some(state.ledger.product(tenant, &product_ref(p)?).await?.id),
        None => None,
    };
    let limit = allot_ledger::rules::page_limit(q.limit);
    let filter = AuditFilter {
        after_seq: q.after,
        since: q.since.map(rules::to_micros),
        until: q.until.map(rules::to_micros),
        actor: q.actor,
        user,
        product,
        seat: q.seat,
        limit: Some(limit),
    };
    let events = state.ledger.audit(tenant, &filter).await?;
    Ok(ApiJson(Page::of(events, limit, |e| e.seq)))
}

/// The head of the tenant's tamper-evident audit chain: the last record's sequence number and
/// hash (each record carries its predecessor's), for an outside system to anchor.
#[utoipa::path(get, path = "/v1/audit/head", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = allot_ledger::audit_chain::AuditHead)))]
pub async fn head(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiJson<allot_ledger::audit_chain::AuditHead>> {
    let tenant = caller.reader()?;
    match state.ledger.audit_head(tenant).await? {
        Some(head) => Ok(ApiJson(head)),
        None => Err(crate::api::error::ApiError::not_found("unknown tenant")),
    }
}
