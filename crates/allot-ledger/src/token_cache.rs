//! Live bearer tokens remembered for a short time, so authenticating a request needs no store
//! read (issue 12).
//!
//! Only live tokens are kept, by the SHA-256 they are looked up with, together with what the
//! store said of them; each use re-checks their expiry against the ledger's clock. A token is
//! forgotten:
//! - `ttl` after it was read from the store: a token revoked by another process sharing the
//!   store (or by hand in the database) stops working here within `ttl`;
//! - at once when this process commits a command that may change credentials
//!   ([`crate::Command::may_change_credentials`]: revoking a token, a new password, retiring,
//!   disabling or deleting a user, ...): every token of that tenant is dropped after the commit
//!   and before the command's caller is answered, so a revocation made through this process is
//!   seen by its next request.
//!
//! A read that began before such a drop is not cached afterwards (a generation counter), so a
//! lookup racing a revocation cannot put the revoked token back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::{TenantId, TokenInfo};

/// Most tokens remembered at once; beyond it, stale entries are dropped, then all of them.
const CAPACITY: usize = 10_000;

pub(crate) struct TokenCache {
    ttl: Duration,
    inner: Mutex<Inner>,
}

struct Inner {
    /// Bumped by every invalidation: a lookup that read the store under an older generation
    /// is not cached.
    generation: u64,
    entries: HashMap<String, (Instant, TokenInfo)>,
}

impl TokenCache {
    /// A cache keeping tokens for `ttl`; a zero `ttl` keeps none.
    pub(crate) fn new(ttl: Duration) -> Self {
        TokenCache {
            ttl,
            inner: Mutex::new(Inner {
                generation: 0,
                entries: HashMap::new(),
            }),
        }
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token with this hash as last read, if that was less than `ttl` ago.
    pub(crate) fn get(&self, hash: &str) -> Option<TokenInfo> {
        if self.ttl.is_zero() {
            return None;
        }
        let inner = self.lock();
        let (read_at, info) = inner.entries.get(hash)?;
        (read_at.elapsed() < self.ttl).then(|| info.clone())
    }

    /// The generation to hand to [`TokenCache::put`] for a store read that starts now.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Remembers a live token read from the store, unless credentials changed since the read
    /// began (`generation`).
    pub(crate) fn put(&self, generation: u64, hash: &str, info: TokenInfo, read_at: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.entries.len() >= CAPACITY {
            let ttl = self.ttl;
            inner.entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if inner.entries.len() >= CAPACITY {
                inner.entries.clear();
            }
        }
        inner.entries.insert(hash.to_owned(), (read_at, info));
    }

    /// Forgets every token of `tenant` (operator tokens, which belong to none, with `None`).
    pub(crate) fn forget_tenant(&self, tenant: Option<TenantId>) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.retain(|_, (_, info)| info.tenant != tenant);
    }
}
