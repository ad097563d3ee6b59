//! Webhook reads and the delivery worker's claims. The worker is an adapter; its claims and the
//! records of its attempts are statements here, each in a short write transaction of its own.

use sqlx::Row;

use super::ops::{self, AttemptRecord};
use super::{Backend, Env, OpError, Store};
use crate::command::Context;
use crate::error::StoreError;
use crate::model::TenantId;
use crate::rules;
use crate::webhooks::{WebhookDelivery, WebhookEndpoint};

/// A claimed delivery as stored: the endpoint's secret still sealed.
pub(crate) struct ClaimedRow {
    pub id: i64,
    pub tenant: TenantId,
    pub endpoint: String,
    pub url: String,
    pub sealed_secret: String,
    pub event_id: String,
    pub payload: String,
    pub attempts: i64,
}

/// The actor of the worker's own audit records (an endpoint disabled for failing).
const WORKER: &str = "webhook-worker";

fn from_op(e: OpError) -> StoreError {
    match e {
        OpError::Store(e) => e,
        OpError::Rule(e) => StoreError::Corrupt(e.to_string()),
    }
}

impl Store {
    pub(crate) async fn webhooks(
        &self,
        tenant: TenantId,
        id: Option<&str>,
    ) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let select = "SELECT id, url, description, events, enabled, failing_since, disabled_at, \
             created_at, updated_at FROM webhook_endpoints WHERE tenant_id = $1";
        let rows = match id {
            Some(id) => {
                sqlx::query(ops::sql(format!("{select} AND id = $2")))
                    .bind(tenant)
                    .bind(id.to_owned())
                    .fetch_all(&mut self.read_conn().await?)
                    .await?
            }
            None => {
                sqlx::query(ops::sql(format!("{select} ORDER BY created_at, id")))
                    .bind(tenant)
                    .fetch_all(&mut self.read_conn().await?)
                    .await?
            }
        };
        rows.iter()
            .map(|r| ops::endpoint_from_row(r).map_err(from_op))
            .collect()
    }

    /// An endpoint's deliveries, newest first.
    pub(crate) async fn webhook_deliveries(
        &self,
        tenant: TenantId,
        endpoint: &str,
        limit: i64,
    ) -> Result<Vec<WebhookDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, endpoint_id, event_id, event_type, status, attempts, last_status_code, \
             last_error, last_attempt_at, next_attempt_at, created_at FROM webhook_deliveries \
             WHERE tenant_id = $1 AND endpoint_id = $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(tenant)
        .bind(endpoint.to_owned())
        .bind(limit)
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter()
            .map(|r| {
                let status: String = r.try_get("status")?;
                let last_attempt_at: Option<i64> = r.try_get("last_attempt_at")?;
                let next: i64 = r.try_get("next_attempt_at")?;
                Ok(WebhookDelivery {
                    id: r.try_get("id")?,
                    endpoint: r.try_get("endpoint_id")?,
                    event_id: r.try_get("event_id")?,
                    event_type: r.try_get("event_type")?,
                    next_attempt_at: (status == "pending").then(|| rules::from_micros(next)),
                    status,
                    attempts: r.try_get("attempts")?,
                    last_status_code: r.try_get("last_status_code")?,
                    last_error: r.try_get("last_error")?,
                    last_attempt_at: last_attempt_at.map(rules::from_micros),
                    created_at: rules::from_micros(r.try_get("created_at")?),
                })
            })
            .collect()
    }

    /// Claims up to `limit` due deliveries for `claim_until`: of each enabled endpoint only the
    /// oldest pending one (deliveries to an endpoint go in order), and none another worker
    /// holds. On PostgreSQL `FOR UPDATE SKIP LOCKED` lets several processes claim side by side,
    /// each row going to one of them; SQLite has one writer.
    pub(crate) async fn claim_webhook_deliveries(
        &self,
        claim: &str,
        now: i64,
        claim_until: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedRow>, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin(self.backend).await?;
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE OF d SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // The outer conditions repeat the inner ones: PostgreSQL re-checks them on the row's
        // newest version, so a row another worker claimed meanwhile is not claimed twice.
        let claimed = sqlx::query(ops::sql(format!(
            "UPDATE webhook_deliveries SET claim = $1, claimed_until = $2 \
             WHERE status = 'pending' AND (claimed_until IS NULL OR claimed_until <= $3) \
             AND id IN (SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e \
               ON e.tenant_id = d.tenant_id AND e.id = d.endpoint_id \
               WHERE d.status = 'pending' AND d.next_attempt_at <= $3 AND e.enabled = 1 \
               AND (d.claimed_until IS NULL OR d.claimed_until <= $3) \
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries o WHERE o.tenant_id = d.tenant_id \
                 AND o.endpoint_id = d.endpoint_id AND o.status = 'pending' AND o.id < d.id) \
               ORDER BY d.id LIMIT $4{lock})"
        )))
        .bind(claim.to_owned())
        .bind(claim_until)
        .bind(now)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT d.id, d.tenant_id, d.endpoint_id, e.url, e.secret, d.event_id, d.payload, \
             d.attempts FROM webhook_deliveries d JOIN webhook_endpoints e \
             ON e.tenant_id = d.tenant_id AND e.id = d.endpoint_id \
             WHERE d.claim = $1 AND d.status = 'pending' ORDER BY d.id",
        )
        .bind(claim.to_owned())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(ClaimedRow {
                    id: r.try_get("id")?,
                    tenant: r.try_get("tenant_id")?,
                    endpoint: r.try_get("endpoint_id")?,
                    url: r.try_get("url")?,
                    sealed_secret: r.try_get("secret")?,
                    event_id: r.try_get("event_id")?,
                    payload: r.try_get("payload")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect()
    }

    /// Records an attempt (see [`ops::finish_delivery`]); `false` when the claim had lapsed.
    pub(crate) async fn finish_webhook_delivery(
        &self,
        tenant: TenantId,
        attempt: &AttemptRecord<'_>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let ctx = Context::new(tenant, WORKER);
        let env = Env::new(&ctx, now, self.backend);
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin(self.backend).await?;
        let held = ops::finish_delivery(&mut tx, &env, attempt)
            .await
            .map_err(from_op)?;
        ops::finish_command(&mut tx, &env).await.map_err(from_op)?;
        tx.commit().await?;
        Ok(held)
    }

    /// A server-wide secret, made (random) the first time it is asked for.
    pub(crate) async fn server_secret(&self, name: &str) -> Result<String, StoreError> {
        let fresh: [u8; 32] = rand::random();
        let fresh: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
        let mut conn = self.write_conn().await?;
        sqlx::query(
            "INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.to_owned())
        .bind(fresh)
        .execute(&mut conn)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
                .bind(name.to_owned())
                .fetch_one(&mut conn)
                .await?,
        )
    }
}
