//! Authentication: who is calling, and with which role. Every credential form (password login,
//! API token; later SuperOffice tickets, Basic, MSP360 bearer tokens) is a small adapter that
//! ends in the same [`Principal`].
//!
//! Secrets: passwords are argon2id-hashed off the async runtime with bounded parallelism; API
//! tokens are random, shown once, and stored and looked up only by their SHA-256 (so no secret
//! is ever compared in application code). Failed password checks are throttled per login and
//! per client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;
use uuid::Uuid;

use allot_ledger::{Ledger, Role, TenantId, UserId, rules};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `None` only for the operator.
    pub tenant: Option<TenantId>,
    pub role: Role,
    pub login: String,
    /// The ledger user a `user`-role credential acts as.
    pub user: Option<UserId>,
    pub token: Option<Uuid>,
}

impl Principal {
    pub fn can_read(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Reader)
    }
    pub fn can_write(&self) -> bool {
        self.role == Role::Admin
    }
    /// May this principal act on `user`'s own sessions and licenses?
    pub fn is_self(&self, user: UserId) -> bool {
        self.role == Role::User && self.user == Some(user)
    }
}

/// Prefix that makes allot tokens recognisable (in logs scrubbers, secret scanners).
pub const TOKEN_PREFIX: &str = "allot_";

/// A fresh random API token and its stored hash.
pub fn new_token() -> (String, String) {
    let token = format!("{TOKEN_PREFIX}{}", rules::new_lease_token());
    let hash = rules::hash_token(&token);
    (token, hash)
}

/// Shortest password accepted for a login.
pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 1024;

/// argon2id hashing and verification on the blocking pool, at most `permits` at a time so a
/// burst of logins cannot starve the server's cores.
#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
}

impl Passwords {
    pub fn new(permits: usize) -> Self {
        Passwords {
            permits: Arc::new(Semaphore::new(permits.max(1))),
        }
    }

    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        if password.chars().count() < MIN_PASSWORD || password.len() > MAX_PASSWORD {
            anyhow::bail!("a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters");
        }
        let _permit = self.permits.acquire().await?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
        })
        .await?
    }

    pub async fn verify(&self, hash: &str, password: &str) -> bool {
        if password.len() > MAX_PASSWORD {
            return false;
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let (hash, password) = (hash.to_owned(), password.to_owned());
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
}

/// Failed-attempt bookkeeping for one key.
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Brute-force protection: after `free` failures for a key (a login, or a client address), each
/// further failure locks the key for twice as long as the last, up to `max_lock`. A success
/// clears the key; failures are forgotten after `forget` without one.
pub struct Throttle {
    entries: Mutex<HashMap<String, Failures>>,
    free: u32,
    max_lock: Duration,
    forget: Duration,
}

impl Throttle {
    pub fn new(free: u32) -> Self {
        Throttle {
            entries: Mutex::new(HashMap::new()),
            free,
            max_lock: Duration::from_secs(15 * 60),
            forget: Duration::from_secs(30 * 60),
        }
    }

    /// `Err(retry_after)` while the key is locked.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = entries.get(key)
            && let Some(until) = f.locked_until
            && until > now
        {
            return Err(until - now);
        }
        // Opportunistic cleanup keeps the map bounded by recent failures.
        if entries.len() > 10_000 {
            let forget = self.forget;
            entries.retain(|_, f| now.duration_since(f.last) < forget);
        }
        Ok(())
    }

    pub fn failure(&self, key: &str) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let f = entries.entry(key.to_owned()).or_insert(Failures {
            count: 0,
            last: now,
            locked_until: None,
        });
        if now.duration_since(f.last) > self.forget {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
        if f.count > self.free {
            let exponent = (f.count - self.free - 1).min(16);
            let lock = Duration::from_secs(1u64 << exponent).min(self.max_lock);
            f.locked_until = Some(now + lock);
        }
    }

    pub fn success(&self, key: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Why authentication failed, for the dialect to phrase in its own error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// A wrong login or password (or no such login).
    Unauthorized,
    /// A bearer token that is not (or no longer) accepted, and why.
    BadToken(TokenRefusal),
    /// Too many failures: try again after this long.
    Throttled(Duration),
    /// The store could not be asked.
    Unavailable,
}

/// Why a bearer token was refused. Telling these apart reveals nothing to its holder beyond
/// what the token itself shows, and tells a person what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// No token has this hash (mistyped, or from another server).
    Unknown,
    Expired,
    Revoked,
}

/// The one place credentials turn into principals.
#[derive(Clone)]
pub struct Authenticator {
    pub ledger: Ledger,
    pub passwords: Passwords,
    by_login: Arc<Throttle>,
    by_address: Arc<Throttle>,
}

impl Authenticator {
    pub fn new(ledger: Ledger, passwords: Passwords) -> Self {
        Authenticator {
            ledger,
            passwords,
            by_login: Arc::new(Throttle::new(5)),
            by_address: Arc::new(Throttle::new(20)),
        }
    }

    /// A bearer API token.
    pub async fn token(&self, token: &str) -> Result<Principal, AuthError> {
        use allot_ledger::TokenState;
        if token.is_empty() || token.len() > 256 {
            return Err(AuthError::BadToken(TokenRefusal::Unknown));
        }
        let hash = rules::hash_token(token);
        match self.ledger.token_state(&hash).await {
            Ok(TokenState::Live(info)) => Ok(Principal {
                tenant: info.tenant,
                role: info.role,
                login: info.login,
                user: info.user,
                token: Some(info.id),
            }),
            Ok(TokenState::Unknown) => Err(AuthError::BadToken(TokenRefusal::Unknown)),
            Ok(TokenState::Expired) => Err(AuthError::BadToken(TokenRefusal::Expired)),
            Ok(TokenState::Revoked) => Err(AuthError::BadToken(TokenRefusal::Revoked)),
            Err(_) => Err(AuthError::Unavailable),
        }
    }

    /// A tenant login and password, throttled per login and per client address. Unknown logins
    /// cost the same argon2 verification as known ones, so timing does not reveal which exist.
    pub async fn password(
        &self,
        tenant: TenantId,
        login: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let login_key = format!("{tenant}:{}", rules::name_key(login));
        let address_key = client.map(|a| a.to_string());
        self.by_login
            .check(&login_key)
            .map_err(AuthError::Throttled)?;
        if let Some(key) = &address_key {
            self.by_address.check(key).map_err(AuthError::Throttled)?;
        }
        let record = self
            .ledger
            .login(tenant, login)
            .await
            .map_err(|_| AuthError::Unavailable)?;
        let hash = record
            .as_ref()
            .map(|r| r.password_hash.as_str())
            .unwrap_or(DUMMY_HASH);
        let verified = self.passwords.verify(hash, password).await;
        let Some(record) = record.filter(|_| verified) else {
            self.by_login.failure(&login_key);
            if let Some(key) = &address_key {
                self.by_address.failure(key);
            }
            return Err(AuthError::Unauthorized);
        };
        self.by_login.success(&login_key);
        Ok(Principal {
            tenant: Some(tenant),
            role: record.info.role,
            login: record.info.login,
            user: record.info.user,
            token: None,
        })
    }
}

/// A credential just issued to a principal: the secret (shown to its holder once) and what the
/// store recorded.
#[derive(Debug, Clone)]
pub struct Issued {
    pub secret: String,
    pub info: allot_ledger::TokenInfo,
}

impl Authenticator {
    /// Issues a bearer credential for an authenticated principal of `tenant`, in the dialect's
    /// own format: `prefix` followed by 256 random bits as hex (`7T:` for SuperOffice tickets,
    /// nothing for MSP360 tokens). It is stored by its SHA-256 like every API token, so
    /// [`Authenticator::token`] accepts it and changing the login's password revokes it.
    pub async fn issue(
        &self,
        principal: &Principal,
        tenant: TenantId,
        prefix: &str,
        label: &str,
        lifetime: time::Duration,
        request_id: Option<String>,
    ) -> Result<Issued, allot_ledger::LedgerError> {
        use allot_ledger::{Command, Context, Outcome};
        let secret = format!("{prefix}{}", rules::new_lease_token());
        let ctx = Context {
            tenant,
            actor: principal.login.clone(),
            request_id,
        };
        let outcome = self
            .ledger
            .execute(
                &ctx,
                Command::IssueToken {
                    token_hash: rules::hash_token(&secret),
                    role: principal.role,
                    login: principal.login.clone(),
                    user: principal.user,
                    label: label.to_owned(),
                    expires_at: self.ledger.now_time() + lifetime,
                },
            )
            .await?;
        match outcome {
            Outcome::Token(info) => Ok(Issued { secret, info }),
            other => Err(allot_ledger::LedgerError::Invalid {
                field: "token",
                reason: format!("unexpected outcome {other:?}"),
            }),
        }
    }
}

/// A valid argon2id hash of a random password nobody knows, verified against when the login
/// does not exist.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Dh1i3/Qk0T2sTjv0q0x6Vf1Yy1RJQ9m3rQ2mZr6b1bY";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_locks_after_free_failures_and_doubles() {
        let t = Throttle::new(2);
        for _ in 0..2 {
            t.failure("k");
            assert!(t.check("k").is_ok());
        }
        t.failure("k");
        let first = t.check("k").unwrap_err();
        assert!(first <= Duration::from_secs(1));
        t.failure("k");
        let second = t.check("k").unwrap_err();
        assert!(second > Duration::from_secs(1) && second <= Duration::from_secs(2));
        assert!(t.check("other").is_ok());
        t.success("k");
        assert!(t.check("k").is_ok());
    }

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let (a, ha) = new_token();
        let (b, _) = new_token();
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_ne!(a, b);
        assert_eq!(ha, rules::hash_token(&a));
        assert_ne!(ha, a);
    }

    #[tokio::test]
    async fn passwords_hash_with_argon2id_and_verify() {
        let p = Passwords::new(1);
        let hash = p.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(p.verify(&hash, "correct horse").await);
        assert!(!p.verify(&hash, "wrong horse").await);
        assert!(p.hash("short").await.is_err());
        // The decoy hash parses, so unknown logins take the same path as known ones.
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!p.verify(DUMMY_HASH, "anything").await);
    }
}
