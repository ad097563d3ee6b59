//! Webhook endpoints (commands, audited) and the outbox: [`enqueue`] turns a command's audit
//! records into delivery rows in the same transaction, for every enabled endpoint subscribed.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Conn, Env, OpResult, Subjects, audit, parse_enum};
use crate::audit_chain::ChainedFields;
use crate::command::Outcome;
use crate::error::LedgerError;
use crate::model::ProductKind;
use crate::rules;
use crate::webhooks::{self, WebhookEndpoint, WebhookPatch};

const ENDPOINT_COLUMNS: &str = "id, url, description, events, enabled, failing_since, \
     disabled_at, created_at, updated_at";

pub(crate) fn endpoint_from_row(row: &AnyRow) -> OpResult<WebhookEndpoint> {
    let events: String = row.try_get("events")?;
    let failing_since: Option<i64> = row.try_get("failing_since")?;
    let disabled_at: Option<i64> = row.try_get("disabled_at")?;
    Ok(WebhookEndpoint {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        events: serde_json::from_str(&events).map_err(|e| {
            super::OpError::Store(crate::error::StoreError::Corrupt(format!(
                "webhook events: {e}"
            )))
        })?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        failing_since: failing_since.map(rules::from_micros),
        disabled_at: disabled_at.map(rules::from_micros),
        created_at: rules::from_micros(row.try_get("created_at")?),
        updated_at: rules::from_micros(row.try_get("updated_at")?),
    })
}

fn check_description(description: &str) -> OpResult<String> {
    let description = description.trim();
    if description.chars().count() > 400 || description.chars().any(char::is_control) {
        return Err(LedgerError::Invalid {
            field: "description",
            reason: "at most 400 characters, without control characters".into(),
        }
        .into());
    }
    Ok(description.to_owned())
}

fn events_json(events: &[String]) -> String {
    serde_json::Value::from(events.to_vec()).to_string()
}

async fn find_endpoint(c: &mut Conn, env: &Env<'_>, id: &str) -> OpResult<WebhookEndpoint> {
    let row = sqlx::query(super::sql(format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2"
    )))
    .bind(env.tenant())
    .bind(id.to_owned())
    .fetch_optional(&mut *c)
    .await?;
    match row {
        Some(row) => endpoint_from_row(&row),
        None => Err(LedgerError::UnknownWebhook(id.to_owned()).into()),
    }
}

pub(crate) async fn create_webhook(
    c: &mut Conn,
    env: &Env<'_>,
    id: &str,
    url: &str,
    description: &str,
    events: &[String],
    sealed_secret: &str,
) -> OpResult<Outcome> {
    let url = webhooks::check_url(url)?;
    let events = webhooks::check_events(events)?;
    let description = check_description(description)?;
    sqlx::query(
        "INSERT INTO webhook_endpoints (tenant_id, id, url, description, events, secret, \
         enabled, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7)",
    )
    .bind(env.tenant())
    .bind(id.to_owned())
    .bind(url.clone())
    .bind(description.clone())
    .bind(events_json(&events))
    .bind(sealed_secret.to_owned())
    .bind(env.now)
    .execute(&mut *c)
    .await
    .map_err(|e| {
        if super::is_unique_violation(&e) {
            LedgerError::AlreadyExists {
                what: "webhook endpoint",
                name: id.to_owned(),
            }
            .into()
        } else {
            super::OpError::from(e)
        }
    })?;
    audit(
        env,
        "webhook.create",
        Subjects::default(),
        json!({ "after": { "id": id, "url": url, "events": events, "description": description } }),
    )
    .await?;
    Ok(Outcome::Webhook(find_endpoint(c, env, id).await?))
}

pub(crate) async fn edit_webhook(
    c: &mut Conn,
    env: &Env<'_>,
    id: &str,
    patch: &WebhookPatch,
) -> OpResult<Outcome> {
    let before = find_endpoint(c, env, id).await?;
    let url = match &patch.url {
        Some(url) => webhooks::check_url(url)?,
        None => before.url.clone(),
    };
    let events = match &patch.events {
        Some(events) => webhooks::check_events(events)?,
        None => before.events.clone(),
    };
    let description = match &patch.description {
        Some(d) => check_description(d)?,
        None => before.description.clone(),
    };
    let enabled = patch.enabled.unwrap_or(before.enabled);
    if url == before.url
        && events == before.events
        && description == before.description
        && enabled == before.enabled
    {
        return Ok(Outcome::Webhook(before));
    }
    // Enabling forgets the run of failures, so the endpoint gets a fresh `disable_after`.
    let reenabled = enabled && !before.enabled;
    sqlx::query(
        "UPDATE webhook_endpoints SET url = $3, description = $4, events = $5, enabled = $6, \
         updated_at = $7, \
         failing_since = CASE WHEN $8 = 1 THEN NULL ELSE failing_since END, \
         disabled_at = CASE WHEN $8 = 1 THEN NULL ELSE disabled_at END \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(env.tenant())
    .bind(id.to_owned())
    .bind(url.clone())
    .bind(description.clone())
    .bind(events_json(&events))
    .bind(enabled as i64)
    .bind(env.now)
    .bind(reenabled as i64)
    .execute(&mut *c)
    .await?;
    audit(
        env,
        "webhook.edit",
        Subjects::default(),
        json!({
            "id": id,
            "before": { "url": before.url, "events": before.events, "description": before.description, "enabled": before.enabled },
            "after": { "url": url, "events": events, "description": description, "enabled": enabled },
        }),
    )
    .await?;
    Ok(Outcome::Webhook(find_endpoint(c, env, id).await?))
}

pub(crate) async fn delete_webhook(c: &mut Conn, env: &Env<'_>, id: &str) -> OpResult<Outcome> {
    let before = find_endpoint(c, env, id).await?;
    sqlx::query("DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2")
        .bind(env.tenant())
        .bind(id.to_owned())
        .execute(&mut *c)
        .await?;
    sqlx::query("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
        .bind(env.tenant())
        .bind(id.to_owned())
        .execute(&mut *c)
        .await?;
    audit(
        env,
        "webhook.delete",
        Subjects::default(),
        json!({ "before": { "id": id, "url": before.url } }),
    )
    .await?;
    Ok(Outcome::Changed { changed: 1 })
}

/// Queues a test event for one endpoint (enabled or not: an operator may test before enabling).
pub(crate) async fn test_webhook(
    c: &mut Conn,
    env: &Env<'_>,
    id: &str,
    event_id: &str,
) -> OpResult<Outcome> {
    let endpoint = find_endpoint(c, env, id).await?;
    let data = json!({ "endpoint": endpoint.id, "message": "a test event from allot" });
    insert_delivery(
        c,
        env,
        &endpoint.id,
        event_id,
        webhooks::TEST_EVENT,
        env.now,
        &data,
        None,
    )
    .await?;
    Ok(Outcome::Changed { changed: 1 })
}

#[allow(clippy::too_many_arguments)]
async fn insert_delivery(
    c: &mut Conn,
    env: &Env<'_>,
    endpoint: &str,
    event_id: &str,
    event: &str,
    at: i64,
    data: &serde_json::Value,
    audit_seq: Option<i64>,
) -> OpResult<()> {
    let timestamp = rules::from_micros(at)
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| LedgerError::Store(format!("formatting a time: {e}")))?;
    let payload = json!({ "type": event, "timestamp": timestamp, "data": data }).to_string();
    sqlx::query(
        "INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, event_type, payload, \
         audit_seq, status, attempts, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7)",
    )
    .bind(env.tenant())
    .bind(endpoint.to_owned())
    .bind(event_id.to_owned())
    .bind(event.to_owned())
    .bind(payload)
    .bind(audit_seq)
    .bind(env.now)
    .execute(&mut *c)
    .await?;
    Ok(())
}

fn new_event_id() -> String {
    format!("msg_{}", uuid::Uuid::new_v4().simple())
}

/// Writes the outbox rows of a command's audit records (called by the audit flush, inside the
/// command's transaction and savepoint): one row per event and subscribed, enabled endpoint.
/// Costs nothing beyond one indexed read when the tenant has no endpoint.
pub(crate) async fn enqueue(
    c: &mut Conn,
    env: &Env<'_>,
    records: &[ChainedFields],
) -> OpResult<()> {
    let events: Vec<(&ChainedFields, &'static str)> = records
        .iter()
        .flat_map(|r| {
            webhooks::event_types(&r.action)
                .iter()
                .map(move |e| (r, *e))
        })
        .collect();
    if events.is_empty() {
        return Ok(());
    }
    let endpoints: Vec<(String, Vec<String>)> = sqlx::query(
        "SELECT id, events FROM webhook_endpoints WHERE tenant_id = $1 AND enabled = 1 ORDER BY id",
    )
    .bind(env.tenant())
    .fetch_all(&mut *c)
    .await?
    .iter()
    .map(|row| {
        let events: String = row.try_get("events")?;
        Ok((
            row.try_get("id")?,
            serde_json::from_str(&events).unwrap_or_default(),
        ))
    })
    .collect::<OpResult<_>>()?;
    if endpoints.is_empty() {
        return Ok(());
    }
    let wants = |event: &str| -> Vec<&str> {
        endpoints
            .iter()
            .filter(|(_, events)| events.is_empty() || events.iter().any(|e| e == event))
            .map(|(id, _)| id.as_str())
            .collect()
    };
    let exhausted_wanted = !wants("pool.exhausted").is_empty();
    for (record, event) in events {
        let detail: serde_json::Value =
            serde_json::from_str(&record.detail).unwrap_or(serde_json::Value::Null);
        let data = json!({
            "audit_seq": record.seq,
            "action": record.action,
            "actor": record.actor,
            "user": record.user_id,
            "product": record.product_id,
            "seat": record.seat_uuid,
            "company": record.company_id,
            "session": record.session_uuid,
            "detail": detail,
            "request_id": record.request_id,
        });
        let targets = wants(event);
        if !targets.is_empty() {
            let event_id = new_event_id();
            for endpoint in &targets {
                insert_delivery(
                    c,
                    env,
                    endpoint,
                    &event_id,
                    event,
                    record.at,
                    &data,
                    Some(record.seq),
                )
                .await?;
            }
        }
        if exhausted_wanted && webhooks::takes_seat(event) {
            for product in products_taken(record, &detail) {
                if pool_exhausted(c, env, product).await? {
                    let data = json!({
                        "audit_seq": record.seq,
                        "product": product,
                        "user": record.user_id,
                        "seat": record.seat_uuid,
                    });
                    let event_id = new_event_id();
                    for endpoint in wants("pool.exhausted") {
                        insert_delivery(
                            c,
                            env,
                            endpoint,
                            &event_id,
                            "pool.exhausted",
                            record.at,
                            &data,
                            Some(record.seq),
                        )
                        .await?;
                    }
                }
            }
        }
    }
    Ok(())
}

/// The products whose seats a record took: its subject, and the seats listed in its detail (an
/// assigned plan takes its members' seats too).
fn products_taken(record: &ChainedFields, detail: &serde_json::Value) -> Vec<i64> {
    let mut products: Vec<i64> = record.product_id.into_iter().collect();
    if let Some(seats) = detail.get("seats").and_then(|s| s.as_array()) {
        for seat in seats {
            if let Some(p) = seat.get("product").and_then(|p| p.as_i64())
                && !products.contains(&p)
            {
                products.push(p);
            }
        }
    }
    products
}

/// Has a restricted user or floating product no unexpired seat left free?
async fn pool_exhausted(c: &mut Conn, env: &Env<'_>, product: i64) -> OpResult<bool> {
    let row = sqlx::query(
        "SELECT p.kind, p.unrestricted, \
           CAST(COALESCE((SELECT sum(f.free) FROM pool_free f WHERE f.tenant_id = p.tenant_id \
             AND f.product_id = p.id), 0) AS BIGINT) \
           - (SELECT count(*) FROM seats s WHERE s.tenant_id = p.tenant_id AND s.product_id = p.id \
             AND s.lapsed = 0 AND s.expires_at IS NOT NULL AND s.expires_at <= $3 AND s.holder_id IS NULL) AS free \
         FROM products p WHERE p.tenant_id = $1 AND p.id = $2",
    )
    .bind(env.tenant())
    .bind(product)
    .bind(env.now)
    .fetch_optional(&mut *c)
    .await?;
    let Some(row) = row else { return Ok(false) };
    let kind: ProductKind = parse_enum(&row.try_get::<String, _>("kind")?)?;
    Ok(kind != ProductKind::Site
        && row.try_get::<i64, _>("unrestricted")? == 0
        && row.try_get::<i64, _>("free")? == 0)
}

/// How an attempt ends the delivery's row: the next status and when to try again.
pub(crate) struct AttemptRecord<'a> {
    pub id: i64,
    pub claim: &'a str,
    pub endpoint: &'a str,
    pub status: &'static str,
    pub next_attempt_at: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub succeeded: bool,
    /// An endpoint failing since this time or earlier is disabled.
    pub disable_if_failing_since: i64,
}

/// Records one attempt on its delivery (only under the worker's claim) and on the endpoint: a
/// success ends its run of failures; a failure starts or continues one, and a run that has lasted
/// long enough disables the endpoint (audited). Answers whether the claim still held.
pub(crate) async fn finish_delivery(
    c: &mut Conn,
    env: &Env<'_>,
    attempt: &AttemptRecord<'_>,
) -> OpResult<bool> {
    let updated = sqlx::query(
        "UPDATE webhook_deliveries SET status = $3, attempts = attempts + 1, \
         last_attempt_at = $4, last_status_code = $5, last_error = $6, next_attempt_at = $7, \
         claim = NULL, claimed_until = NULL WHERE id = $1 AND claim = $2",
    )
    .bind(attempt.id)
    .bind(attempt.claim.to_owned())
    .bind(attempt.status)
    .bind(env.now)
    .bind(attempt.status_code)
    .bind(attempt.error.clone())
    .bind(attempt.next_attempt_at)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if updated == 0 {
        return Ok(false);
    }
    if attempt.succeeded {
        sqlx::query(
            "UPDATE webhook_endpoints SET failing_since = NULL \
             WHERE tenant_id = $1 AND id = $2 AND failing_since IS NOT NULL",
        )
        .bind(env.tenant())
        .bind(attempt.endpoint.to_owned())
        .execute(&mut *c)
        .await?;
        return Ok(true);
    }
    sqlx::query(
        "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $3) \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(env.tenant())
    .bind(attempt.endpoint.to_owned())
    .bind(env.now)
    .execute(&mut *c)
    .await?;
    let disabled = sqlx::query(
        "UPDATE webhook_endpoints SET enabled = 0, disabled_at = $3 \
         WHERE tenant_id = $1 AND id = $2 AND enabled = 1 AND failing_since <= $4",
    )
    .bind(env.tenant())
    .bind(attempt.endpoint.to_owned())
    .bind(env.now)
    .bind(attempt.disable_if_failing_since)
    .execute(&mut *c)
    .await?
    .rows_affected();
    if disabled > 0 {
        audit(
            env,
            "webhook.disable",
            Subjects::default(),
            json!({
                "id": attempt.endpoint,
                "reason": "its deliveries failed for longer than the configured limit",
                "before": { "enabled": true },
                "after": { "enabled": false },
            }),
        )
        .await?;
    }
    Ok(true)
}
