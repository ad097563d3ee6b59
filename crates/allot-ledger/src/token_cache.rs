//! Live bearer tokens remembered for a short time, so authenticating a request needs no store
//! read (issue 12).
//!
//! Only live tokens are kept, by the SHA-256 they are looked up with, together with what the
//! store said of them; each use re-checks their expiry against the ledger's clock. A token is
//! forgotten:
//! - `ttl` after it was read from the store: the bound for a change the feed below cannot see
//!   (a token revoked by hand in the database, or by another process on one SQLite file);
//! - on PostgreSQL, when any process commits a command that may change credentials: each such
//!   command notifies the tenant at its commit, and a session of this process listens
//!   (`store/notify.rs`). While that session is down the cache serves nothing, so a missed
//!   notification cannot keep a revoked token alive;
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::model::{TenantId, TokenInfo};

/// Most tokens remembered at once; beyond it, stale entries are dropped, then all of them.
const CAPACITY: usize = 10_000;

pub(crate) struct TokenCache {
    ttl: Duration,
    /// False while a feed of other processes' changes is needed and not listening: nothing is
    /// served or kept then.
    trusted: AtomicBool,
    inner: Mutex<Inner>,
    /// The task listening for other processes' changes, stopped with the cache.
    watch: Mutex<Option<tokio::task::JoinHandle<()>>>,
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
            trusted: AtomicBool::new(true),
            inner: Mutex::new(Inner {
                generation: 0,
                entries: HashMap::new(),
            }),
            watch: Mutex::new(None),
        }
    }

    /// Whether remembering tokens is worth a feed of changes (a zero `ttl` keeps none).
    pub(crate) fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    pub(crate) fn serving(&self) -> bool {
        self.enabled() && self.trusted.load(Ordering::SeqCst)
    }

    /// From now on, serve nothing until [`TokenCache::trust`]: changes made elsewhere are
    /// reported by `watch`, which is not listening yet.
    pub(crate) fn distrust(&self) {
        self.trusted.store(false, Ordering::SeqCst);
        self.forget_all();
    }

    /// The feed of changes listens: what is read from now on may be kept.
    pub(crate) fn trust(&self) {
        self.forget_all();
        self.trusted.store(true, Ordering::SeqCst);
    }

    /// Keeps the task feeding this cache, stopped when the cache goes.
    pub(crate) fn set_watch(&self, task: tokio::task::JoinHandle<()>) {
        if let Some(old) = self
            .watch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task)
        {
            old.abort();
        }
    }

    /// Stops the feed (the store is closing).
    pub(crate) fn stop(&self) {
        if let Some(task) = self.watch.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }

    fn forget_all(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.clear();
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token with this hash as last read, if that was less than `ttl` ago.
    pub(crate) fn get(&self, hash: &str) -> Option<TokenInfo> {
        if self.ttl.is_zero() || !self.trusted.load(Ordering::SeqCst) {
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
        if self.ttl.is_zero() || !self.trusted.load(Ordering::SeqCst) {
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

impl Drop for TokenCache {
    fn drop(&mut self) {
        self.stop();
    }
}
