//! Idempotent requests (IETF httpapi "The Idempotency-Key HTTP Header Field"): the ledger side.
//! [`Ledger::apply_idempotent`] claims the key, runs the commands and records their outcomes in
//! one transaction; a retry of a committed claim gets those outcomes back and changes nothing.
//! The adapter records the answer it rendered from them ([`Ledger::record_idempotent_response`])
//! and replays that answer on later retries.

use crate::command::{Command, Context, Outcome};
use crate::error::LedgerError;
use crate::{Ledger, QueryResult, TenantId};

/// How long a key is remembered: 24 hours.
pub const LIFETIME_MICROS: i64 = 24 * 3600 * 1_000_000;

/// One request under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentRequest {
    /// Who sent it (with the tenant, the key's scope).
    pub principal: String,
    /// The client's `Idempotency-Key`.
    pub key: String,
    /// A digest of the request (method, path, body): the same key with another request is refused.
    pub fingerprint: String,
}

/// A key's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub fingerprint: String,
    /// The change committed (its outcomes are recorded).
    pub committed: bool,
    /// The answer rendered for it: status and body.
    pub response: Option<(u16, String)>,
}

/// What an idempotent run answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotent {
    /// Ran now.
    Fresh(Vec<Outcome>),
    /// Ran before under this key: the outcomes then, nothing run now.
    Replayed(Vec<Outcome>),
}

impl Idempotent {
    pub fn outcomes(self) -> Vec<Outcome> {
        match self {
            Idempotent::Fresh(o) | Idempotent::Replayed(o) => o,
        }
    }
}

pub(crate) fn mismatch() -> LedgerError {
    LedgerError::Invalid {
        field: "Idempotency-Key",
        reason: "this key was used for another request".into(),
    }
}

impl Ledger {
    /// Runs commands all-or-nothing under an idempotency key: claimed, applied and recorded in
    /// one transaction. A refusal records nothing (nothing changed; a retry runs again).
    pub async fn apply_idempotent(
        &self,
        ctx: &Context,
        request: &IdempotentRequest,
        commands: &[Command],
    ) -> Result<Idempotent, LedgerError> {
        use crate::store::Claimed;
        let claimed = self
            .store
            .apply_idempotent(ctx, request, commands, self.now())
            .await;
        self.credentials_changed(ctx.tenant, commands);
        match claimed? {
            Claimed::Ran(Ok(outcomes)) => Ok(Idempotent::Fresh(outcomes)),
            Claimed::Ran(Err(e)) => Err(e),
            Claimed::Replayed(outcomes) => Ok(Idempotent::Replayed(outcomes)),
        }
    }

    /// The live record of a key in the tenant, if any.
    pub async fn idempotency_record(
        &self,
        tenant: TenantId,
        principal: &str,
        key: &str,
    ) -> QueryResult<Option<IdempotencyRecord>> {
        Ok(self
            .store
            .idempotency_record(tenant, principal, key, self.now())
            .await?)
    }

    /// Records the answer rendered for a committed claim; `false` when there is no committed
    /// claim of this request (or its answer is already recorded).
    pub async fn record_idempotent_response(
        &self,
        tenant: TenantId,
        request: &IdempotentRequest,
        status: u16,
        body: &str,
    ) -> QueryResult<bool> {
        Ok(self
            .store
            .record_idempotent_response(tenant, request, status, body)
            .await?)
    }
}
