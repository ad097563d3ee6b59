//! Webhooks (the Standard Webhooks specification): the ledger side.
//!
//! A tenant registers endpoints; every committed change is reported to the endpoints that
//! subscribe to its event type. The report is an outbox row (`webhook_deliveries`) written by the
//! audit flush in the transaction of the change itself: a change that rolls back (a refused
//! command, a failed batch) leaves no row, and a committed change always has its rows, across a
//! crash. [`event_types`] is the one place that maps a change (its audit action) to events, so
//! a new feature gets events by writing its audit record.
//!
//! Delivery (HTTP, signing, the SSRF guard) is the adapter's; it claims due rows with
//! [`crate::Ledger::claim_webhook_deliveries`] and records each attempt with
//! [`crate::Ledger::finish_webhook_delivery`], which also schedules the retry and disables an
//! endpoint that has failed for too long.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::LedgerError;
use crate::model::TenantId;

/// Every event type an endpoint can subscribe to.
pub const EVENT_TYPES: &[&str] = &[
    "seat.assigned",
    "seat.unassigned",
    "seat.granted",
    "seat.released",
    "seat.revoked",
    "seat.activated",
    "session.started",
    "session.ended",
    "user.created",
    "user.retired",
    "pool.changed",
    "pool.exhausted",
];

/// The event `POST /v1/webhooks/{id}/test` sends (to that endpoint only, whatever it subscribes to).
pub const TEST_EVENT: &str = "webhook.test";

/// The event types a committed change (its audit action) is reported as. `pool.exhausted` is
/// added by the store after a seat-taking event when the product has no free seat left.
pub fn event_types(action: &str) -> &'static [&'static str] {
    match action {
        "license.assign" => &["seat.assigned"],
        "license.unassign" | "license.remove_all" => &["seat.unassigned"],
        "seat.grant" => &["seat.granted"],
        "seat.release" => &["seat.released"],
        "seat.revoke" => &["seat.revoked"],
        "seat.activate" => &["seat.activated"],
        "session.logon" => &["session.started"],
        "session.end" => &["session.ended"],
        "user.create" => &["user.created"],
        "user.retire" | "user.delete" => &["user.retired"],
        "product.create" | "product.edit" | "seats.add" | "owner.remove" | "company.quota" => {
            &["pool.changed"]
        }
        _ => &[],
    }
}

/// Events after which a pool may have run out: they took a seat.
pub(crate) fn takes_seat(event: &str) -> bool {
    matches!(event, "seat.assigned" | "seat.granted" | "session.started")
}

/// A registered endpoint (its secret is shown once, at creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    pub description: String,
    /// The event types it receives; empty: every event.
    pub events: Vec<String>,
    /// Disabled endpoints receive nothing (their pending deliveries wait).
    pub enabled: bool,
    /// Since when its deliveries have been failing, if they are.
    #[serde(with = "time::serde::rfc3339::option")]
    pub failing_since: Option<OffsetDateTime>,
    /// When it was disabled for failing too long, if it was.
    #[serde(with = "time::serde::rfc3339::option")]
    pub disabled_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl WebhookEndpoint {
    pub fn subscribes(&self, event: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == event)
    }
}

/// Changes to an endpoint (`None`: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub description: Option<String>,
    pub events: Option<Vec<String>>,
    /// Enabling again also forgets the run of failures.
    pub enabled: Option<bool>,
}

/// One delivery of one event to one endpoint, as the deliveries list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookDelivery {
    pub id: i64,
    pub endpoint: String,
    /// The Standard Webhooks message id (`webhook-id`).
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed` (gave up after the last retry).
    pub status: String,
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_attempt_at: Option<OffsetDateTime>,
    /// When the next attempt is due (pending deliveries).
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A delivery claimed by a worker: everything it needs to send it. Holds the endpoint's secret
/// in clear, so it has no `Debug` that could print it.
#[derive(Clone)]
pub struct DueDelivery {
    pub id: i64,
    pub tenant: TenantId,
    pub endpoint: String,
    pub url: String,
    /// The signing secret's bytes (the part after `whsec_`, decoded).
    pub secret: Vec<u8>,
    pub event_id: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i64,
    /// The claim token; recording the attempt needs it, so a late worker cannot overwrite.
    pub claim: String,
}

impl std::fmt::Debug for DueDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DueDelivery")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("endpoint", &self.endpoint)
            .field("event_id", &self.event_id)
            .field("attempts", &self.attempts)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx answer.
    Delivered { status: u16 },
    /// Another status, or no answer (`status` None: connect error, time-out, refused address).
    Failed { status: Option<u16>, error: String },
}

/// When to retry and when to give up on an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait before each retry: after the first failed attempt the first entry, and so on;
    /// once they are used up the delivery is `failed`.
    pub schedule: Vec<Duration>,
    /// An endpoint whose deliveries have failed without a success for this long is disabled.
    pub disable_after: Duration,
}

impl Default for RetryPolicy {
    /// The Standard Webhooks example schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h; endpoints
    /// disabled after failing for 5 days.
    fn default() -> Self {
        RetryPolicy {
            schedule: [5, 300, 1800, 7200, 18000, 36000]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            disable_after: Duration::from_secs(5 * 24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt after `attempts` failed ones (1-based), with up to 10 %
    /// jitter so that retries of many deliveries spread out; `None`: give up.
    pub fn next_delay(&self, attempts: i64) -> Option<Duration> {
        let base = *self.schedule.get(usize::try_from(attempts - 1).ok()?)?;
        let jitter = base.mul_f64(rand::random::<f64>() * 0.1);
        Some(base + jitter)
    }
}

/// Checks the event list of an endpoint: known types, no repeats.
pub(crate) fn check_events(events: &[String]) -> Result<Vec<String>, LedgerError> {
    let mut out: Vec<String> = Vec::with_capacity(events.len());
    for event in events {
        if !EVENT_TYPES.contains(&event.as_str()) {
            return Err(LedgerError::Invalid {
                field: "events",
                reason: format!(
                    "unknown event type {event:?}; known: {}",
                    EVENT_TYPES.join(", ")
                ),
            });
        }
        if !out.contains(event) {
            out.push(event.clone());
        }
    }
    Ok(out)
}

/// Checks the shape of an endpoint URL (absolute http or https with a host, at most 2000
/// characters). Whether its addresses may be reached is the adapter's check (it resolves them).
pub(crate) fn check_url(url: &str) -> Result<String, LedgerError> {
    let url = url.trim();
    let invalid = |reason: &str| LedgerError::Invalid {
        field: "url",
        reason: reason.to_owned(),
    };
    if url.len() > 2000 {
        return Err(invalid("at most 2000 characters"));
    }
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| invalid("an absolute http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') {
        return Err(invalid("a host, without user information"));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid("no spaces or control characters"));
    }
    Ok(url.to_owned())
}

/// The prefix of a Standard Webhooks signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

fn secret_aad(tenant: TenantId, endpoint: &str) -> Vec<u8> {
    format!("allot-webhook-secret:{tenant}:{endpoint}").into_bytes()
}

impl crate::Ledger {
    /// Registers an endpoint and answers it with its signing secret (`whsec_` and base64 of 32
    /// random bytes), which is shown this once: the store keeps it sealed like the
    /// license-signing keys, so that the worker can sign.
    pub async fn create_webhook(
        &self,
        ctx: &crate::Context,
        url: &str,
        description: &str,
        events: &[String],
    ) -> Result<(WebhookEndpoint, String), LedgerError> {
        use base64::Engine;
        let id = format!("ep_{}", uuid::Uuid::new_v4().simple());
        let secret: [u8; 32] = rand::random();
        let sealed = self
            .vault
            .seal_bytes(&secret_aad(ctx.tenant, &id), &secret)?;
        let outcome = self
            .execute(
                ctx,
                crate::Command::CreateWebhook {
                    id,
                    url: url.to_owned(),
                    description: description.to_owned(),
                    events: events.to_vec(),
                    sealed_secret: sealed,
                },
            )
            .await?;
        match outcome {
            crate::Outcome::Webhook(endpoint) => Ok((
                endpoint,
                format!(
                    "{SECRET_PREFIX}{}",
                    base64::engine::general_purpose::STANDARD.encode(secret)
                ),
            )),
            other => Err(LedgerError::Store(format!(
                "unexpected outcome of create_webhook: {other:?}"
            ))),
        }
    }

    /// The tenant's endpoints, oldest first.
    pub async fn webhooks(&self, tenant: TenantId) -> crate::QueryResult<Vec<WebhookEndpoint>> {
        Ok(self.store.webhooks(tenant, None).await?)
    }

    pub async fn webhook(&self, tenant: TenantId, id: &str) -> crate::QueryResult<WebhookEndpoint> {
        self.store
            .webhooks(tenant, Some(id))
            .await?
            .pop()
            .ok_or_else(|| LedgerError::UnknownWebhook(id.to_owned()))
    }

    /// An endpoint's deliveries, newest first (at most `limit`).
    pub async fn webhook_deliveries(
        &self,
        tenant: TenantId,
        id: &str,
        limit: i64,
    ) -> crate::QueryResult<Vec<WebhookDelivery>> {
        self.webhook(tenant, id).await?;
        Ok(self
            .store
            .webhook_deliveries(tenant, id, limit.clamp(1, 1000))
            .await?)
    }

    /// Claims up to `limit` due deliveries for `lease` (after which another worker may take
    /// one back), each with its endpoint's secret opened. Of each endpoint only its oldest
    /// pending delivery is due, so an endpoint gets its events in order.
    pub async fn claim_webhook_deliveries(
        &self,
        limit: i64,
        lease: Duration,
    ) -> crate::QueryResult<Vec<DueDelivery>> {
        let claim = uuid::Uuid::new_v4().to_string();
        let now = self.now();
        let until = now + i64::try_from(lease.as_micros()).unwrap_or(i64::MAX / 2);
        let rows = self
            .store
            .claim_webhook_deliveries(&claim, now, until, limit)
            .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in rows {
            // A secret that does not open (the operator's key changed) is an empty secret:
            // the attempt is made and the receiver refuses the signature, visibly.
            let secret = match self.vault.open_bytes(
                &secret_aad(row.tenant, &row.endpoint),
                &row.sealed_secret,
                "a webhook secret",
            ) {
                Ok(secret) => secret,
                Err(e) => {
                    tracing::error!(endpoint = %row.endpoint, error = %e, "webhook secret");
                    Vec::new()
                }
            };
            due.push(DueDelivery {
                id: row.id,
                tenant: row.tenant,
                endpoint: row.endpoint,
                url: row.url,
                secret,
                event_id: row.event_id,
                payload: row.payload,
                attempts: row.attempts,
                claim: claim.clone(),
            });
        }
        Ok(due)
    }

    /// Records an attempt at a claimed delivery: delivered; or failed, then retried after the
    /// policy's next wait or, with the schedule used up, `failed`. An endpoint failing for
    /// longer than the policy allows is disabled. `false`: the claim had lapsed and another
    /// worker holds the delivery now (nothing recorded).
    pub async fn finish_webhook_delivery(
        &self,
        due: &DueDelivery,
        attempt: &Attempt,
        policy: &RetryPolicy,
    ) -> crate::QueryResult<bool> {
        let now = self.now();
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 4);
        let attempts = due.attempts + 1;
        let (status, next, code, error, succeeded) = match attempt {
            Attempt::Delivered { status } => ("delivered", now, Some(*status as i64), None, true),
            Attempt::Failed { status, error } => {
                let code = status.map(|s| s as i64);
                let error: String = error.chars().take(500).collect();
                match policy.next_delay(attempts) {
                    Some(wait) => ("pending", now + micros(wait), code, Some(error), false),
                    None => ("failed", now, code, Some(error), false),
                }
            }
        };
        let record = crate::store::AttemptRecord {
            id: due.id,
            claim: &due.claim,
            endpoint: &due.endpoint,
            status,
            next_attempt_at: next,
            status_code: code,
            error,
            succeeded,
            disable_if_failing_since: now - micros(policy.disable_after),
        };
        Ok(self
            .store
            .finish_webhook_delivery(due.tenant, &record, now)
            .await?)
    }

    /// A key for the server's keyed hashes (the Idempotency-Key fingerprint): derived from the
    /// operator's license key when one is configured, else a random secret the store made once.
    pub async fn hash_key(&self, label: &str) -> crate::QueryResult<Vec<u8>> {
        if let Some(key) = self.vault.derive(label) {
            return Ok(key);
        }
        Ok(self.store.server_secret(label).await?.into_bytes())
    }
}
