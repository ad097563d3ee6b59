//! Reads of signing keys and license settings.

use sqlx::Row;

use super::Store;
use crate::error::StoreError;
use crate::keys::PublicSigningKey;
use crate::model::TenantId;
use crate::rules;

/// A signing key row with its sealed private half (never leaves the crate).
pub(crate) struct SealedKeyRow {
    pub kid: String,
    pub sealed: String,
}

impl Store {
    /// The tenant's public keys, newest first.
    pub async fn signing_keys(
        &self,
        tenant: TenantId,
    ) -> Result<Vec<PublicSigningKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, kid, public_key, created_at FROM signing_keys WHERE tenant_id = $1 \
             ORDER BY seq DESC",
        )
        .bind(tenant)
        .fetch_all(&mut self.read_conn().await?)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PublicSigningKey {
                    kid: r.try_get("kid")?,
                    x: r.try_get("public_key")?,
                    seq: r.try_get("seq")?,
                    created_at: rules::from_micros(r.try_get("created_at")?),
                })
            })
            .collect()
    }

    /// The key that signs new files: the tenant's newest.
    pub(crate) async fn active_signing_key(
        &self,
        tenant: TenantId,
    ) -> Result<Option<SealedKeyRow>, StoreError> {
        let row = sqlx::query(
            "SELECT kid, private_key FROM signing_keys WHERE tenant_id = $1 \
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(tenant)
        .fetch_optional(&mut self.read_conn().await?)
        .await?;
        Ok(match row {
            Some(r) => Some(SealedKeyRow {
                kid: r.try_get("kid")?,
                sealed: r.try_get("private_key")?,
            }),
            None => None,
        })
    }

    /// The tenant's license-file validity in seconds (the default when never set).
    pub async fn license_validity(&self, tenant: TenantId) -> Result<i64, StoreError> {
        let seconds: Option<i64> = sqlx::query_scalar(
            "SELECT validity_seconds FROM license_settings WHERE tenant_id = $1",
        )
        .bind(tenant)
        .fetch_optional(&mut self.read_conn().await?)
        .await?;
        Ok(seconds.unwrap_or(crate::license::DEFAULT_VALIDITY_SECONDS))
    }
}
