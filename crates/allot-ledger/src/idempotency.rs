//! Idempotent requests (IETF httpapi "The Idempotency-Key HTTP Header Field"): the ledger side.
//!
//! [`Ledger::apply_answered`] claims the key, runs the commands, reads what the answer shows,
//! has the caller render the answer (status and body) from all that, and stores the answer
//! with the claim: ONE transaction. A change therefore never commits without its answer (a
//! crash at any moment leaves either nothing, and a retry runs afresh, or the change with its
//! answer, and a retry gets that answer again). A retry of a stored key gets the stored answer
//! and runs nothing; the same key with another request is refused.
//!
//! What is stored is the first answer, whatever it was: a change's answer, or a rule's refusal
//! (the draft's "the result of the previous request, success or error"). Only an answer the
//! renderer marks as a server error (status 500 and above) is not stored: its transaction is
//! rolled back whole, and a retry runs again.

use uuid::Uuid;

use crate::command::{Command, CompanyRef, Context, GroupRef, Outcome, ProductRef, UserRef};
use crate::error::LedgerError;
use crate::model::{
    Company, GroupView, PoolStatus, Product, ProductId, Seat, User, UserProductView,
};
use crate::{Ledger, QueryResult, TenantId};

/// How long a key is remembered: 24 hours.
pub const LIFETIME_MICROS: i64 = 24 * 3600 * 1_000_000;

/// Expired keys deleted at most per keyed request (bounded: a request never pays for a backlog).
pub const PRUNE_BATCH: i64 = 100;

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
    /// The answer stored with the change: status and body (`None` only for a claim written by
    /// an older version that stored the answer after the commit and never got to it).
    pub response: Option<(u16, String)>,
}

/// A read an answer shows, run after the commands in their transaction (so the answer is the
/// state the change left, not a later one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerRead {
    /// A product with its pool counts.
    Product(ProductRef),
    Seat(Uuid),
    User(UserRef),
    Company(CompanyRef),
    /// A group with its members, licenses and assignments.
    Group(GroupRef),
    /// One product as a user sees it.
    UserProduct {
        user: UserRef,
        product: ProductId,
    },
}

/// What an [`AnswerRead`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadValue {
    Product(Product, PoolStatus),
    Seat(Seat),
    User(User),
    Company(Company),
    Group(GroupView),
    UserProduct(UserProductView),
}

/// How the commands of an answered run are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// All or nothing: the first refusal undoes every command and is the result.
    Atomic,
    /// Each under its own savepoint: a refusal undoes only its own command (a batch).
    Each,
    /// As [`RunMode::Each`], then every command undone: what they would do (a dry run). The
    /// answer is still stored.
    DryRun,
}

/// What the commands did, for the renderer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// One per command, in order. Under [`RunMode::Atomic`] all are `Ok`.
    pub results: Vec<Result<Outcome, LedgerError>>,
    /// What the answer's read found, if it asked for one.
    pub read: Option<ReadValue>,
}

impl Ran {
    /// The outcomes of a run whose commands all succeeded.
    pub fn outcomes(self) -> Vec<Outcome> {
        self.results.into_iter().filter_map(Result::ok).collect()
    }
}

/// An answer as it is sent and stored: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// What an answered run returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// Ran now; the answer is stored with the change (unless it is a server error).
    Fresh(Answer),
    /// Ran before under this key: its stored answer, nothing run now.
    Replayed(Answer),
}

impl Answered {
    pub fn answer(&self) -> &Answer {
        match self {
            Answered::Fresh(a) | Answered::Replayed(a) => a,
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
    /// Runs `commands` under an idempotency key and stores the answer `render` makes of them,
    /// all in one transaction (see the module documentation).
    ///
    /// `read` picks, from the commands' results, what the answer shows besides them; it is read
    /// in the same transaction after the commands. `render` gets the results and that read, or
    /// the refusal (a rule refusing a command under [`RunMode::Atomic`], or the read), and
    /// makes the answer. Both may be called more than once (PostgreSQL retries a transaction
    /// that met a serialization failure), so they must be pure. A key stored before answers
    /// its stored answer without calling either; the same key with another request is
    /// refused (`Invalid` on field `Idempotency-Key`).
    pub async fn apply_answered<R, F>(
        &self,
        ctx: &Context,
        request: &IdempotentRequest,
        commands: &[Command],
        mode: RunMode,
        read: R,
        render: F,
    ) -> Result<Answered, LedgerError>
    where
        R: Fn(&[Result<Outcome, LedgerError>]) -> Option<AnswerRead> + Send + Sync,
        F: Fn(Result<Ran, LedgerError>) -> Answer + Send + Sync,
    {
        let answered = self
            .store
            .apply_answered(ctx, request, commands, mode, &read, &render, self.now())
            .await;
        // Before the caller is answered, as on the plain path: a revocation made here is
        // refused by this server's next request.
        self.credentials_changed(ctx.tenant, commands);
        Ok(answered?)
    }

    /// Runs an [`AnswerRead`] on committed state: the answer of a request without a key.
    pub async fn read_answer(&self, tenant: TenantId, read: &AnswerRead) -> QueryResult<ReadValue> {
        Ok(self.store.read_answer(tenant, read, self.now()).await?)
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
}
