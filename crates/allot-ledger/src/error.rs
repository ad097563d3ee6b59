//! Errors. [`LedgerError`] is the one error the ledger's public surface answers with: a rule
//! saying no (typed, matchable, one per reason, so every adapter can map it to its own error
//! shape), or [`LedgerError::Store`] when the store failed. `StoreError` is the store's own,
//! private account of the latter; it never leaves the crate.

use crate::model::{ProductId, ProductKind, UserId};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("unknown tenant {0:?}")]
    UnknownTenant(String),
    #[error("unknown user {0}")]
    UnknownUser(String),
    #[error("unknown product {0}")]
    UnknownProduct(String),
    #[error("unknown company {0}")]
    UnknownCompany(String),
    #[error("unknown seat {0}")]
    UnknownSeat(Uuid),
    #[error("unknown session {0}")]
    UnknownSession(Uuid),
    #[error("unknown token {0}")]
    UnknownToken(Uuid),
    #[error("unknown webhook endpoint {0:?}")]
    UnknownWebhook(String),
    #[error("{what} {name:?} already exists")]
    AlreadyExists { what: &'static str, name: String },
    /// Names the product (`owner/name`) and its counts, so the message needs no look-up.
    #[error("no free seat of {name} ({in_use} of {total} in use)")]
    NoSeatFree {
        product: ProductId,
        name: String,
        in_use: i64,
        total: i64,
    },
    /// Seat removal takes free seats only; `free` says how many there are.
    #[error("only {free} free seat(s) of {name} to remove, {requested} asked")]
    NotEnoughFreeSeats {
        product: ProductId,
        name: String,
        free: i64,
        requested: i64,
    },
    #[error("the company's quota for {name} is used up")]
    QuotaExhausted { product: ProductId, name: String },
    /// Names both products (`owner/name`), like `NoSeatFree`.
    #[error("{name} requires {prerequisite_name} first")]
    PrerequisiteMissing {
        product: ProductId,
        name: String,
        prerequisite: ProductId,
        prerequisite_name: String,
    },
    #[error("user {0} is retired")]
    Retired(UserId),
    #[error("user {0} is disabled")]
    Disabled(UserId),
    #[error("unknown group {0}")]
    UnknownGroup(String),
    #[error("seat {seat} is held by another user")]
    WrongHolder { seat: Uuid },
    #[error("seat {0} is not held by anyone")]
    NotHeld(Uuid),
    #[error("seat {0} has expired")]
    SeatExpired(Uuid),
    #[error("product {name} has expired")]
    ProductExpired { product: ProductId, name: String },
    #[error("seat {seat} is not in a pool user {user} may take from")]
    WrongPool { seat: Uuid, user: UserId },
    #[error("a {kind} product cannot be {action}")]
    WrongKind {
        kind: ProductKind,
        action: &'static str,
    },
    #[error("seat {seat} is activated on another computer")]
    AlreadyActivated { seat: Uuid },
    #[error("computer {0:?} already has a seat of this product")]
    ComputerHasSeat(String),
    #[error("computer {0:?} belongs to another user")]
    ComputerOfAnotherUser(String),
    #[error("the session's lease is lost: its seat went to another session, or it has ended")]
    LeaseLost,
    #[error("the lease token does not match")]
    BadLeaseToken,
    #[error("{held} seats are held, more than the {total} a restricted product would allow")]
    OverAllocated { held: i64, total: i64 },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The store failed while running this operation: nothing of it was applied.
    #[error("store failure: {0}")]
    Store(String),
}

impl LedgerError {
    /// The store failed (unreachable, overloaded, corrupt): not a rule's answer, nothing was
    /// applied, and the same request may succeed later.
    pub fn is_store_failure(&self) -> bool {
        matches!(self, LedgerError::Store(_))
    }

    /// A stable machine-readable code (used by the native API's error body).
    pub fn code(&self) -> &'static str {
        match self {
            LedgerError::UnknownTenant(_) => "unknown_tenant",
            LedgerError::UnknownUser(_) => "unknown_user",
            LedgerError::UnknownProduct(_) => "unknown_product",
            LedgerError::UnknownCompany(_) => "unknown_company",
            LedgerError::UnknownSeat(_) => "unknown_seat",
            LedgerError::UnknownSession(_) => "unknown_session",
            LedgerError::UnknownToken(_) => "unknown_token",
            LedgerError::UnknownWebhook(_) => "unknown_webhook",
            LedgerError::AlreadyExists { .. } => "already_exists",
            LedgerError::NoSeatFree { .. } => "no_seat_free",
            LedgerError::NotEnoughFreeSeats { .. } => "not_enough_free_seats",
            LedgerError::QuotaExhausted { .. } => "quota_exhausted",
            LedgerError::PrerequisiteMissing { .. } => "prerequisite_missing",
            LedgerError::Retired(_) => "retired",
            LedgerError::Disabled(_) => "user_disabled",
            LedgerError::UnknownGroup(_) => "unknown_group",
            LedgerError::WrongHolder { .. } => "wrong_holder",
            LedgerError::NotHeld(_) => "not_held",
            LedgerError::SeatExpired(_) => "seat_expired",
            LedgerError::ProductExpired { .. } => "product_expired",
            LedgerError::WrongPool { .. } => "wrong_pool",
            LedgerError::WrongKind { .. } => "wrong_kind",
            LedgerError::AlreadyActivated { .. } => "already_activated",
            LedgerError::ComputerHasSeat(_) => "computer_has_seat",
            LedgerError::ComputerOfAnotherUser(_) => "computer_of_another_user",
            LedgerError::LeaseLost => "lease_lost",
            LedgerError::BadLeaseToken => "bad_lease_token",
            LedgerError::OverAllocated { .. } => "over_allocated",
            LedgerError::Invalid { .. } => "invalid",
            LedgerError::Store(_) => "store_failure",
        }
    }
}

/// Infrastructure failure: the database is unreachable, a migration failed, a transaction could
/// not be committed. Nothing of the batch that met it was applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("unsupported store URL {0:?} (expected sqlite:... or postgres://...)")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("the store is busy; try again")]
    Busy,
    /// A row changed between two reads of one command; the transaction is retried.
    #[error("contended; try again")]
    Contended,
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The store was closed (the server is shutting down) before the command was applied.
    #[error("the store is closed")]
    Closed,
    /// An operation this kind of store does not offer.
    #[error("{0}")]
    Unsupported(&'static str),
}

impl StoreError {
    /// PostgreSQL serialization failure or deadlock: the whole transaction may simply be retried.
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            StoreError::Contended => true,
            StoreError::Database(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("40001") | Some("40P01"))
            }
            _ => false,
        }
    }
}

impl From<StoreError> for LedgerError {
    fn from(e: StoreError) -> Self {
        LedgerError::Store(e.to_string())
    }
}
