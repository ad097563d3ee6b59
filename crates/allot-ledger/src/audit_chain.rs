//! The tamper-evident audit chain: each audit record carries the hash of its predecessor in the
//! tenant's chain, and the tenant row carries the hash of the last record (the head). A record's
//! hash is SHA-256 over its predecessor's hash and a canonical encoding of its fields, so an
//! edited, removed or reordered record breaks the chain at that record.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The fields of an audit record that its hash covers, in their stored form.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ChainedFields {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub user_id: Option<i64>,
    pub product_id: Option<i64>,
    pub seat_uuid: Option<String>,
    pub company_id: Option<i64>,
    pub session_uuid: Option<String>,
    pub detail: String,
    pub request_id: Option<String>,
}

impl ChainedFields {
    /// Lower-case hex SHA-256 of `prev` (empty for the first record) and the fields as a JSON
    /// array: an array of scalars and strings has one encoding, whatever serde_json's map order.
    pub fn hash(&self, prev: Option<&str>) -> String {
        let canonical = serde_json::to_string(&(
            self.seq,
            self.at,
            &self.actor,
            &self.action,
            self.user_id,
            self.product_id,
            &self.seat_uuid,
            self.company_id,
            &self.session_uuid,
            &self.detail,
            &self.request_id,
        ))
        .expect("a tuple of scalars and strings serialises");
        let mut h = Sha256::new();
        h.update(prev.unwrap_or("").as_bytes());
        h.update(b"\n");
        h.update(canonical.as_bytes());
        format!("{:x}", h.finalize())
    }
}

/// Where a tenant's chain stands (`GET /v1/audit/head`), for an outside system to anchor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AuditHead {
    /// The last record's sequence number (0: no record yet).
    pub seq: i64,
    /// The last record's hash, lower-case hex SHA-256 (`None`: no record yet).
    pub hash: Option<String>,
    /// When the last record was written, if any.
    #[serde(with = "time::serde::rfc3339::option")]
    pub at: Option<time::OffsetDateTime>,
}

/// The outcome of walking a tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainCheck {
    /// Every record links to its predecessor and the last one to the tenant's head.
    Intact { records: i64, head: AuditHead },
    /// The first record at which the chain breaks, and why.
    Broken { seq: i64, reason: String },
}
