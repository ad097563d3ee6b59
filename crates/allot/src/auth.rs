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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::PasswordHasher;
use argon2::password_hash::phc::PasswordHash;
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

/// An `Authorization` header as its scheme and credentials, both trimmed (`None`: no space
/// between them). Schemes are compared case-insensitively by the callers.
pub fn split_authorization(header: &str) -> Option<(&str, &str)> {
    let (scheme, credentials) = header.trim().split_once(' ')?;
    Some((scheme, credentials.trim()))
}

/// The token of `Authorization: Bearer <token>` (`None`: another scheme, or no token).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = split_authorization(header)?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The login and password of `Authorization: Basic base64(login:password)` credentials.
pub fn decode_basic(encoded: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (login, password) = text.split_once(':')?;
    Some((login.to_owned(), password.to_owned()))
}

/// A SuperOffice ticket as sent: trimmed, without the UTF-8 byte-order mark Java clients are
/// told to put before it.
pub fn ticket_text(ticket: &str) -> &str {
    ticket.trim().trim_start_matches('\u{feff}')
}

/// `name=value` pairs of `Cookie` headers, names and values trimmed.
pub fn cookie_pairs<'a>(headers: impl IntoIterator<Item = &'a str>) -> Vec<(String, String)> {
    headers
        .into_iter()
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Shortest password accepted for a login.
pub const MIN_PASSWORD: usize = 8;
/// Longest password, in characters (at most 4 KiB of UTF-8 to hash).
pub const MAX_PASSWORD: usize = 1024;

/// Password verifications queued beyond the running ones before further attempts are answered
/// "busy" (with a Retry-After) instead of piling up.
pub const VERIFY_QUEUE: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

/// argon2id hashing and verification on a small pool of dedicated threads (one per core), so a
/// burst of logins can neither starve the server's cores nor grow memory: each argon2 run needs
/// about 19 MiB, and the same few threads reuse it instead of every blocking-pool thread
/// keeping its own malloc arena. Verifications beyond [`VERIFY_QUEUE`] waiting are refused.
#[derive(Clone)]
pub struct Passwords {
    jobs: tokio::sync::mpsc::Sender<Job>,
    verifications: Arc<AtomicU64>,
}

/// The hashing pool is full: try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl Passwords {
    pub fn new(threads: usize) -> Self {
        Self::with_queue(threads, VERIFY_QUEUE)
    }

    pub fn with_queue(threads: usize, queue: usize) -> Self {
        let (jobs, rx) = tokio::sync::mpsc::channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            // The workers end when the last `Passwords` clone (the sender) is dropped.
            std::thread::Builder::new()
                .name(format!("allot-argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).blocking_recv();
                        match job {
                            Some(job) => job(),
                            None => break,
                        }
                    }
                })
                .expect("spawning a password hashing thread");
        }
        Passwords {
            jobs,
            verifications: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many argon2 verifications have run (a test and metrics hook).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Runs `f` on the pool; `wait` says whether to wait for room in the queue or refuse.
    async fn run<T: Send + 'static>(
        &self,
        wait: bool,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        if wait {
            self.jobs.send(job).await.map_err(|_| Busy)?;
        } else {
            self.jobs.try_send(job).map_err(|_| Busy)?;
        }
        rx.await.map_err(|_| Busy)
    }

    /// Hashes a new password (waits for room: only authenticated callers set passwords).
    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let chars = password.chars().count();
        if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&chars) {
            anyhow::bail!("a password has {MIN_PASSWORD} to {MAX_PASSWORD} characters");
        }
        let password = password.to_owned();
        self.run(true, move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
        })
        .await
        .map_err(|_| anyhow::anyhow!("password hashing is unavailable"))?
    }

    /// Checks a password against a stored hash; `Err(Busy)` when the queue is full.
    pub async fn check(&self, hash: &str, password: &str) -> Result<bool, Busy> {
        // Characters, as when it was set (the OpenAPI schema's maxLength counts them too).
        if password.len() > 4 * MAX_PASSWORD || password.chars().count() > MAX_PASSWORD {
            return Ok(false);
        }
        let (hash, password) = (hash.to_owned(), password.to_owned());
        let counter = self.verifications.clone();
        self.run(false, move || {
            counter.fetch_add(1, Ordering::Relaxed);
            verify_reusing_memory(&hash, password.as_bytes())
        })
        .await
    }

    /// As [`Passwords::check`], a full queue counting as a mismatch.
    pub async fn verify(&self, hash: &str, password: &str) -> bool {
        self.check(hash, password).await.unwrap_or(false)
    }
}

/// Largest argon2 memory a stored hash may ask for (64 MiB, in 1 KiB blocks).
const MAX_BLOCKS: usize = 64 * 1024;

thread_local! {
    /// Each hashing thread's argon2 working memory, allocated once and reused: allocating it per
    /// check left every thread's malloc arena holding it (hundreds of MB after a login flood).
    static MEMORY: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// argon2 verification of a PHC string (`Argon2::verify_password`'s steps) in the thread's
/// reused memory; the outputs are compared in constant time (`Output`'s `PartialEq`).
fn verify_reusing_memory(hash: &str, password: &[u8]) -> bool {
    use argon2::password_hash::phc::Output;
    use argon2::{Algorithm, Params, Version};
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = parsed
        .version
        .map(Version::try_from)
        .unwrap_or(Ok(Version::default()))
    else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        return false;
    }
    let mut out = [0u8; Output::MAX_LENGTH];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, argon2::Block::default());
        }
        Argon2::new(algorithm, version, params)
            .hash_password_into_with_memory(password, salt.as_ref(), out, &mut memory[..blocks])
            .is_ok()
            && Output::new(out).is_ok_and(|computed| computed == *expected)
    })
}

/// Failed-attempt bookkeeping for one key.
struct Failures {
    count: u32,
    /// Attempts admitted whose password check has not finished yet.
    pending: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Brute-force protection: after `free` failures for a key (a login, or a client address), each
/// further failure locks the key for twice as long as the last, up to `max_lock`. A success
/// clears the key; failures are forgotten after `forget` without one.
///
/// An attempt is admitted ([`Throttle::begin`]) before its password is checked, counting the
/// attempts still in flight, so concurrent attempts get no more checks than sequential ones:
/// `free + 1` until the first lock, then one per expired lock.
pub struct Throttle {
    entries: Mutex<HashMap<String, Failures>>,
    free: u32,
    max_lock: Duration,
    forget: Duration,
}

/// An admitted attempt. Dropped without an outcome (the caller went away mid-check), it
/// counts as a failure: the check may have run.
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    key: String,
    done: bool,
}

impl Attempt<'_> {
    pub fn failed(mut self) {
        self.done = true;
        self.throttle.finish(&self.key, Some(false));
    }
    pub fn succeeded(mut self) {
        self.done = true;
        self.throttle.finish(&self.key, Some(true));
    }
    /// The password was not checked after all: the attempt does not count.
    pub fn release(mut self) {
        self.done = true;
        self.throttle.finish(&self.key, None);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.throttle.finish(&self.key, Some(false));
        }
    }
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

    /// Admits one password check for `key`, or `Err(retry_after)` while the key is locked or
    /// the checks it may still have are all in flight.
    pub fn begin(&self, key: &str) -> Result<Attempt<'_>, Duration> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        // Opportunistic cleanup keeps the map bounded by recent failures.
        if entries.len() > 10_000 {
            let forget = self.forget;
            entries.retain(|_, f| f.pending > 0 || now.duration_since(f.last) < forget);
        }
        let f = entries.entry(key.to_owned()).or_insert(Failures {
            count: 0,
            pending: 0,
            last: now,
            locked_until: None,
        });
        if f.pending == 0 && now.duration_since(f.last) > self.forget {
            f.count = 0;
            f.locked_until = None;
        }
        if let Some(until) = f.locked_until
            && until > now
        {
            return Err(until - now);
        }
        let allowed = if f.count <= self.free {
            self.free + 1 - f.count
        } else {
            1
        };
        if f.pending >= allowed {
            // The outcome of those in flight decides; ask again shortly.
            return Err(Duration::from_secs(1));
        }
        f.pending += 1;
        f.last = now;
        Ok(Attempt {
            throttle: self,
            key: key.to_owned(),
            done: false,
        })
    }

    fn finish(&self, key: &str, outcome: Option<bool>) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let Some(f) = entries.get_mut(key) else {
            return;
        };
        f.pending = f.pending.saturating_sub(1);
        match outcome {
            None => {}
            Some(true) => {
                f.count = 0;
                f.locked_until = None;
            }
            Some(false) => {
                f.count += 1;
                f.last = now;
                if f.count > self.free {
                    let exponent = (f.count - self.free - 1).min(16);
                    let lock = Duration::from_secs(1u64 << exponent).min(self.max_lock);
                    f.locked_until = Some(now + lock);
                }
            }
        }
        if f.pending == 0 && f.count == 0 {
            entries.remove(key);
        }
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
    /// Too many password checks are queued: try again after this long.
    Busy(Duration),
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
        // Both keys admit the attempt before the password is checked (see `Throttle`).
        let by_login = self
            .by_login
            .begin(&login_key)
            .map_err(AuthError::Throttled)?;
        let by_address = match client.map(|a| self.by_address.begin(&a.to_string())) {
            Some(Err(wait)) => {
                by_login.release();
                return Err(AuthError::Throttled(wait));
            }
            Some(Ok(attempt)) => Some(attempt),
            None => None,
        };
        let release = |by_login: Attempt<'_>, by_address: Option<Attempt<'_>>| {
            by_login.release();
            if let Some(a) = by_address {
                a.release();
            }
        };
        let record = match self.ledger.login(tenant, login).await {
            Ok(record) => record,
            Err(_) => {
                release(by_login, by_address);
                return Err(AuthError::Unavailable);
            }
        };
        let hash = record
            .as_ref()
            .map(|r| r.password_hash.as_str())
            .unwrap_or(DUMMY_HASH);
        let verified = match self.passwords.check(hash, password).await {
            Ok(verified) => verified,
            Err(Busy) => {
                release(by_login, by_address);
                return Err(AuthError::Busy(Duration::from_secs(1)));
            }
        };
        let Some(record) = record.filter(|_| verified) else {
            by_login.failed();
            if let Some(a) = by_address {
                a.failed();
            }
            return Err(AuthError::Unauthorized);
        };
        by_login.succeeded();
        // A success does not clear the address: others may be guessed from it.
        if let Some(a) = by_address {
            a.release();
        }
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
        for _ in 0..3 {
            t.begin("k").unwrap().failed();
        }
        let first = t.begin("k").err().unwrap();
        assert!(first <= Duration::from_secs(1));
        assert!(t.begin("other").is_ok());
        let t = Throttle::new(0);
        t.begin("k").unwrap().failed();
        t.entries.lock().unwrap().get_mut("k").unwrap().locked_until = None;
        t.begin("k").unwrap().failed();
        let second = t.begin("k").err().unwrap();
        assert!(second > Duration::from_secs(1) && second <= Duration::from_secs(2));
        t.entries.lock().unwrap().get_mut("k").unwrap().locked_until = None;
        t.begin("k").unwrap().succeeded();
        assert!(t.begin("k").is_ok());
    }

    #[test]
    fn throttle_admits_no_more_concurrent_checks_than_sequential_ones() {
        let t = Throttle::new(2);
        let held: Vec<_> = (0..3).map(|_| t.begin("k").unwrap()).collect();
        // Three checks in flight are all that two free failures and a locking one allow.
        assert_eq!(t.begin("k").err(), Some(Duration::from_secs(1)));
        // A released attempt (never checked) gives its place back; a dropped one counts.
        let mut held = held.into_iter();
        held.next().unwrap().release();
        let again = t.begin("k").unwrap();
        drop(held);
        again.failed();
        assert!(t.begin("k").is_err(), "three failures lock");
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_beyond_the_queue_are_refused_not_piled_up() {
        let p = Passwords::with_queue(1, 2);
        let hash = p.hash("correct horse").await.unwrap();
        let checks: Vec<_> = (0..20)
            .map(|_| {
                let (p, hash) = (p.clone(), hash.clone());
                tokio::spawn(async move { p.check(&hash, "wrong horse").await })
            })
            .collect();
        let mut busy = 0;
        for c in checks {
            match c.await.unwrap() {
                Ok(verified) => assert!(!verified),
                Err(Busy) => busy += 1,
            }
        }
        // One running and two queued at most; the rest were answered at once.
        assert!(busy >= 17, "{busy} of 20 refused");
        assert!(p.verifications() <= 3, "{}", p.verifications());
        assert!(p.check(&hash, "correct horse").await.unwrap());
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

    /// The length bounds count characters, as the OpenAPI schema's minLength/maxLength do: a
    /// 1024-character password of multi-byte characters is set and then verifies.
    #[tokio::test]
    async fn password_length_counts_characters() {
        let p = Passwords::new(1);
        let longest = "é".repeat(MAX_PASSWORD);
        let hash = p.hash(&longest).await.unwrap();
        assert!(p.verify(&hash, &longest).await);
        assert!(p.hash(&"é".repeat(MAX_PASSWORD + 1)).await.is_err());
        assert!(p.hash(&"é".repeat(MIN_PASSWORD)).await.is_ok());
    }
}
