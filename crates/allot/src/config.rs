//! Server configuration: command-line flags, then environment (`ALLOT_*`), then an optional TOML
//! file, then defaults. Secrets never appear in `Debug` output or logs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Flags and environment for `allot serve` (each unset value falls back to the file, then to
/// the default).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Store URL: sqlite://FILE (embedded, the default: sqlite://allot.db) or postgres://...
    #[arg(long, env = "ALLOT_DB")]
    pub db: Option<String>,
    /// Address of the API listener [default: 127.0.0.1:8080]
    #[arg(long, env = "ALLOT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address of the Prometheus metrics listener, or "off" [default: 127.0.0.1:9898]
    #[arg(long, env = "ALLOT_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// TOML configuration file
    #[arg(long, env = "ALLOT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Password for the `admin` login created on an empty store (generated when unset)
    #[arg(long, env = "ALLOT_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Seconds a request may take before it is answered 408 [default: 30]
    #[arg(long, env = "ALLOT_REQUEST_TIMEOUT")]
    pub request_timeout: Option<u64>,
    /// Largest request body accepted, in bytes [default: 1048576]
    #[arg(long, env = "ALLOT_MAX_BODY")]
    pub max_body: Option<usize>,
    /// Requests handled at once; more are shed with 503 [default: 512]
    #[arg(long, env = "ALLOT_MAX_CONCURRENCY")]
    pub max_concurrency: Option<usize>,
    /// Open client connections at most; more wait in the listen backlog. Keep it below the
    /// descriptor limit (`ulimit -n`) [default: 4096]
    #[arg(long, env = "ALLOT_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a client has to send a request's headers, and a keep-alive connection may sit
    /// idle [default: 10]
    #[arg(long, env = "ALLOT_HEADER_TIMEOUT")]
    pub header_timeout: Option<u64>,
    /// Seconds requests in flight get to finish after SIGTERM/SIGINT before the server exits
    /// [default: 20]
    #[arg(long, env = "ALLOT_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<u64>,
    /// Requests per second allowed from one client address (0: no limit) [default: 1000]
    #[arg(long, env = "ALLOT_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// Seconds between runs of the idle-seat harvest over every tenant (0: never; `allot
    /// harvest` still runs it by hand) [default: 3600]
    #[arg(long, env = "ALLOT_HARVEST_INTERVAL")]
    pub harvest_interval: Option<u64>,
    /// Hours a token from /v1/auth/login lives [default: 12]
    #[arg(long, env = "ALLOT_TOKEN_TTL_HOURS")]
    pub token_ttl_hours: Option<i64>,
    /// Seconds a bearer token, once checked against the store, is accepted without asking it
    /// again (0: ask on every request). A token revoked through this server, or through another
    /// on the same PostgreSQL (which notifies it), is refused at once; one changed where no
    /// notification reaches (by hand in the database), within this time [default: 5]
    #[arg(long, env = "ALLOT_TOKEN_CACHE_SECONDS")]
    pub token_cache_seconds: Option<u64>,
    /// Log as JSON lines instead of text
    #[arg(long, env = "ALLOT_LOG_JSON")]
    pub log_json: Option<bool>,
    /// SQLite durability: "full" (every acknowledged change survives power loss) or "normal"
    /// (survives a crash of the process; the last commits may be lost on power loss) [default: full]
    #[arg(long, env = "ALLOT_SQLITE_SYNC")]
    pub sqlite_sync: Option<SqliteSync>,
    /// 32 bytes in base64 that seal the license-signing keys in the store (ChaCha20-Poly1305)
    #[arg(
        long = "license-key",
        env = "ALLOT_LICENSE_KEY",
        hide_env_values = true
    )]
    pub license_key_encryption_key: Option<String>,
    /// Mark the console's cookies `Secure` (the console is reached over HTTPS) [default: false]
    #[arg(long, env = "ALLOT_CONSOLE_SECURE_COOKIE")]
    pub console_secure_cookie: Option<bool>,
    /// Trust `X-Forwarded-Proto` from the proxy in front: `https` there marks the console's
    /// cookies `Secure` [default: false]
    #[arg(long, env = "ALLOT_TRUST_FORWARDED_PROTO")]
    pub trust_forwarded_proto: Option<bool>,
    /// Let webhooks reach loopback, private, link-local and other internal addresses (refused
    /// by default: an endpoint URL must not turn the server into a probe of its own network)
    #[arg(long, env = "ALLOT_WEBHOOKS_ALLOW_PRIVATE")]
    pub webhooks_allow_private: Option<bool>,
    /// Seconds to wait before each retry of a failed webhook delivery, comma-separated
    /// [default: 5,300,1800,7200,18000,36000]
    #[arg(long, env = "ALLOT_WEBHOOKS_RETRY_SCHEDULE")]
    pub webhooks_retry_schedule: Option<String>,
    /// Seconds an endpoint may keep failing before it is disabled [default: 432000, 5 days]
    #[arg(long, env = "ALLOT_WEBHOOKS_DISABLE_AFTER")]
    pub webhooks_disable_after: Option<u64>,
    /// Seconds a webhook delivery may take (connect to last byte) [default: 10]
    #[arg(long, env = "ALLOT_WEBHOOKS_TIMEOUT")]
    pub webhooks_timeout: Option<u64>,
    /// Milliseconds between the delivery worker's looks for due deliveries [default: 500]
    #[arg(long, env = "ALLOT_WEBHOOKS_POLL_MS")]
    pub webhooks_poll_ms: Option<u64>,
    /// Seconds a webhook delivery that ended (delivered, or failed for good) is kept before the
    /// worker deletes it (0: kept forever) [default: 604800, 7 days]
    #[arg(long, env = "ALLOT_WEBHOOKS_RETENTION")]
    pub webhooks_retention: Option<u64>,
    /// Seconds the usage history keeps its minute points (hours and days are kept forever;
    /// 0: minutes kept forever too) [default: 604800, 7 days]
    #[arg(long, env = "ALLOT_USAGE_MINUTES_RETENTION")]
    pub usage_minutes_retention: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    Full,
    Normal,
}

/// The optional TOML file: the same keys as the flags, with underscores.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    db: Option<String>,
    listen: Option<SocketAddr>,
    metrics_listen: Option<String>,
    admin_password: Option<String>,
    request_timeout: Option<u64>,
    max_body: Option<usize>,
    max_concurrency: Option<usize>,
    max_connections: Option<usize>,
    header_timeout: Option<u64>,
    shutdown_grace: Option<u64>,
    rate_limit: Option<u32>,
    harvest_interval: Option<u64>,
    token_ttl_hours: Option<i64>,
    token_cache_seconds: Option<u64>,
    log_json: Option<bool>,
    sqlite_sync: Option<SqliteSync>,
    license_key_encryption_key: Option<String>,
    console_secure_cookie: Option<bool>,
    trust_forwarded_proto: Option<bool>,
    webhooks_allow_private: Option<bool>,
    webhooks_retry_schedule: Option<String>,
    webhooks_disable_after: Option<u64>,
    webhooks_timeout: Option<u64>,
    webhooks_poll_ms: Option<u64>,
    webhooks_retention: Option<u64>,
    usage_minutes_retention: Option<u64>,
    superoffice: Option<SuperOfficeConfig>,
    scim: Option<ScimConfig>,
    msp360: Option<Msp360Config>,
}

/// `[superoffice]` in the TOML file: how the SuperOffice NetServer dialect behaves per tenant.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuperOfficeConfig {
    /// Tenants that behave as SuperOffice Online: every REST and SOAP call must carry a
    /// registered application token (`SO-AppToken` / the SOAP `ApplicationToken` header).
    /// On-site tenants (all others) accept any token or none.
    #[serde(default)]
    pub online_tenants: Vec<String>,
    /// Registered application tokens, as lowercase hex SHA-256 digests (the tokens themselves
    /// never appear in the configuration): `printf %s TOKEN | sha256sum`.
    #[serde(default)]
    pub app_token_hashes: Vec<String>,
    /// The server's public base URL (`https://allot.example.com`), used for the services'
    /// addresses in WSDLs. Unset, the address is built from the request's `Host` when that is
    /// a plain host[:port], else `localhost`.
    #[serde(default)]
    pub public_url: Option<String>,
}

impl SuperOfficeConfig {
    pub fn is_online(&self, tenant: &str) -> bool {
        self.online_tenants
            .iter()
            .any(|t| t.eq_ignore_ascii_case(tenant))
    }
}

/// `[scim]` in the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// The server's public base URL (`https://allot.example.com`), used for SCIM's
    /// `meta.location` and members' `$ref`. Unset, they are built from the request's `Host`
    /// when that is a plain host[:port], else relative (`/scim/v2/...`).
    #[serde(default)]
    pub public_url: Option<String>,
}

/// A `Host` header that is a plain host name or IP literal with an optional port (no user info,
/// path or markup): only such a header is put into an address the server hands out.
pub fn plain_host(host: &str) -> bool {
    host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        && host.parse::<axum::http::uri::Authority>().is_ok_and(|a| {
            // A port, if any, is a number (the parser lets `:99999x` through as no port).
            let after_ip6 = host.rsplit(']').next().unwrap_or(host);
            !after_ip6.contains(':') || a.port_u16().is_some()
        })
}

/// A configured public base URL: an http(s) URL with a host and no query.
fn check_public_url(key: &str, url: &str) -> anyhow::Result<()> {
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|e| anyhow::anyhow!("{key} {url:?}: {e}"))?;
    let web = matches!(uri.scheme_str(), Some("http" | "https"));
    if !web || uri.authority().is_none() || uri.query().is_some() || url.contains(['"', '<', '>']) {
        anyhow::bail!("{key} {url:?}: an http(s) URL such as https://allot.example.com");
    }
    Ok(())
}

/// `[msp360]` in the TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Msp360Config {
    /// Tenants whose failed `Provider/Login` answers 403 (as later MSP360 clients expect)
    /// instead of the documented 400 `invalid_grant`.
    #[serde(default)]
    pub forbidden_on_bad_login: Vec<String>,
}

/// A secret string: shown as `<redacted>` in every debug print.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Resolved settings.
#[derive(Clone)]
pub struct Settings {
    pub db: Secret,
    pub listen: SocketAddr,
    pub metrics_listen: Option<SocketAddr>,
    pub admin_password: Option<Secret>,
    pub request_timeout: Duration,
    pub max_body: usize,
    pub max_concurrency: usize,
    /// Open client connections at most (below the descriptor limit).
    pub max_connections: usize,
    /// Time to send a request's headers; also how long a keep-alive connection may idle.
    pub header_timeout: Duration,
    /// Time requests in flight get to finish at shutdown.
    pub shutdown_grace: Duration,
    /// Requests per second per client address (bursts of twice that); 0 disables.
    pub rate_limit: u32,
    /// How often the server runs the idle-seat harvest; `None` never.
    pub harvest_interval: Option<Duration>,
    pub token_ttl: time::Duration,
    /// How long a checked bearer token is accepted without a store read; zero: never.
    pub token_cache: Duration,
    pub log_json: bool,
    pub sqlite_sync: SqliteSync,
    /// Seals the license-signing keys at rest; without it they are stored unencrypted.
    pub license_key_encryption_key: Option<Secret>,
    /// The console's cookies are `Secure` (it is served over HTTPS).
    pub console_secure_cookie: bool,
    /// `X-Forwarded-Proto: https` from the proxy in front marks the console's cookies `Secure`.
    pub trust_forwarded_proto: bool,
    pub webhooks: WebhookSettings,
    /// How long the usage history keeps minute points; `None` forever.
    pub usage_minutes_retention: Option<Duration>,
    pub superoffice: SuperOfficeConfig,
    pub scim: ScimConfig,
    pub msp360: Msp360Config,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("db", &redact_url(self.db.expose()))
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("admin_password", &self.admin_password)
            .field("request_timeout", &self.request_timeout)
            .field("max_body", &self.max_body)
            .field("max_concurrency", &self.max_concurrency)
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("rate_limit", &self.rate_limit)
            .field("harvest_interval", &self.harvest_interval)
            .field("token_ttl", &self.token_ttl)
            .field("token_cache", &self.token_cache)
            .field("log_json", &self.log_json)
            .field("sqlite_sync", &self.sqlite_sync)
            .field(
                "license_key_encryption_key",
                &self.license_key_encryption_key,
            )
            .field("console_secure_cookie", &self.console_secure_cookie)
            .field("trust_forwarded_proto", &self.trust_forwarded_proto)
            .field("webhooks", &self.webhooks)
            .field("usage_minutes_retention", &self.usage_minutes_retention)
            .field("superoffice", &self.superoffice)
            .field("scim", &self.scim)
            .field("msp360", &self.msp360)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            db: Secret::new("sqlite://allot.db"),
            listen: ([127, 0, 0, 1], 8080).into(),
            metrics_listen: Some(([127, 0, 0, 1], 9898).into()),
            admin_password: None,
            request_timeout: Duration::from_secs(30),
            max_body: 1024 * 1024,
            max_concurrency: 512,
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(20),
            rate_limit: 1000,
            harvest_interval: Some(Duration::from_secs(3600)),
            token_ttl: time::Duration::hours(12),
            token_cache: Duration::from_secs(5),
            log_json: false,
            sqlite_sync: SqliteSync::Full,
            license_key_encryption_key: None,
            console_secure_cookie: false,
            trust_forwarded_proto: false,
            webhooks: WebhookSettings::default(),
            usage_minutes_retention: Some(Duration::from_secs(7 * 86_400)),
            superoffice: SuperOfficeConfig::default(),
            scim: ScimConfig::default(),
            msp360: Msp360Config::default(),
        }
    }
}

/// Hides the password of a database URL (`postgres://user:secret@host` -> `user:<redacted>@`).
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:<redacted>@{host}");
    }
    url.to_owned()
}

impl Settings {
    pub fn store_options(&self) -> allot_ledger::StoreOptions {
        allot_ledger::StoreOptions {
            sqlite_full_sync: self.sqlite_sync == SqliteSync::Full,
            ..Default::default()
        }
    }

    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Settings> {
        let file: FileConfig = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        Self::combine(args, file)
    }

    /// Settings from flags over the text of a TOML file (what `--config` names). Pure (reads
    /// no file, no environment): the fuzz target reads configuration files through it.
    pub fn from_toml(args: &ServeArgs, text: &str) -> anyhow::Result<Settings> {
        let file: FileConfig = toml::from_str(text)?;
        Self::combine(args, file)
    }

    fn combine(args: &ServeArgs, file: FileConfig) -> anyhow::Result<Settings> {
        let d = Settings::default();
        let metrics = args.metrics_listen.clone().or(file.metrics_listen);
        let metrics_listen = match metrics.as_deref() {
            None => d.metrics_listen,
            Some("off") | Some("") => None,
            Some(addr) => Some(
                addr.parse()
                    .map_err(|e| anyhow::anyhow!("metrics_listen {addr:?}: {e}"))?,
            ),
        };
        let settings = Settings {
            db: args.db.clone().or(file.db).map(Secret::new).unwrap_or(d.db),
            listen: args.listen.or(file.listen).unwrap_or(d.listen),
            metrics_listen,
            admin_password: args
                .admin_password
                .clone()
                .or(file.admin_password)
                .map(Secret::new),
            request_timeout: args
                .request_timeout
                .or(file.request_timeout)
                .map(Duration::from_secs)
                .unwrap_or(d.request_timeout),
            max_body: args.max_body.or(file.max_body).unwrap_or(d.max_body),
            max_concurrency: args
                .max_concurrency
                .or(file.max_concurrency)
                .unwrap_or(d.max_concurrency),
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(d.max_connections),
            header_timeout: args
                .header_timeout
                .or(file.header_timeout)
                .map(Duration::from_secs)
                .unwrap_or(d.header_timeout),
            shutdown_grace: args
                .shutdown_grace
                .or(file.shutdown_grace)
                .map(Duration::from_secs)
                .unwrap_or(d.shutdown_grace),
            rate_limit: args.rate_limit.or(file.rate_limit).unwrap_or(d.rate_limit),
            harvest_interval: match args.harvest_interval.or(file.harvest_interval) {
                Some(0) => None,
                Some(seconds) => Some(Duration::from_secs(seconds)),
                None => d.harvest_interval,
            },
            token_ttl: args
                .token_ttl_hours
                .or(file.token_ttl_hours)
                .map(time::Duration::hours)
                .unwrap_or(d.token_ttl),
            token_cache: args
                .token_cache_seconds
                .or(file.token_cache_seconds)
                .map(Duration::from_secs)
                .unwrap_or(d.token_cache),
            log_json: args.log_json.or(file.log_json).unwrap_or(d.log_json),
            sqlite_sync: args
                .sqlite_sync
                .or(file.sqlite_sync)
                .unwrap_or(d.sqlite_sync),
            license_key_encryption_key: args
                .license_key_encryption_key
                .clone()
                .or(file.license_key_encryption_key)
                .map(Secret::new),
            console_secure_cookie: args
                .console_secure_cookie
                .or(file.console_secure_cookie)
                .unwrap_or(d.console_secure_cookie),
            trust_forwarded_proto: args
                .trust_forwarded_proto
                .or(file.trust_forwarded_proto)
                .unwrap_or(d.trust_forwarded_proto),
            webhooks: WebhookSettings {
                allow_private: args
                    .webhooks_allow_private
                    .or(file.webhooks_allow_private)
                    .unwrap_or(d.webhooks.allow_private),
                retry: allot_ledger::webhooks::RetryPolicy {
                    schedule: match args
                        .webhooks_retry_schedule
                        .clone()
                        .or(file.webhooks_retry_schedule)
                    {
                        Some(text) => parse_schedule(&text)?,
                        None => d.webhooks.retry.schedule.clone(),
                    },
                    disable_after: args
                        .webhooks_disable_after
                        .or(file.webhooks_disable_after)
                        .map(Duration::from_secs)
                        .unwrap_or(d.webhooks.retry.disable_after),
                },
                timeout: args
                    .webhooks_timeout
                    .or(file.webhooks_timeout)
                    .map(Duration::from_secs)
                    .unwrap_or(d.webhooks.timeout),
                poll: args
                    .webhooks_poll_ms
                    .or(file.webhooks_poll_ms)
                    .map(Duration::from_millis)
                    .unwrap_or(d.webhooks.poll),
                retention: match args.webhooks_retention.or(file.webhooks_retention) {
                    Some(0) => None,
                    Some(seconds) => Some(Duration::from_secs(seconds)),
                    None => d.webhooks.retention,
                },
            },
            usage_minutes_retention: match args
                .usage_minutes_retention
                .or(file.usage_minutes_retention)
            {
                Some(0) => None,
                Some(seconds) => Some(Duration::from_secs(seconds)),
                None => d.usage_minutes_retention,
            },
            superoffice: file.superoffice.unwrap_or_default(),
            scim: file.scim.unwrap_or_default(),
            msp360: file.msp360.unwrap_or_default(),
        };
        if settings.max_concurrency == 0 || settings.max_body == 0 || settings.max_connections == 0
        {
            anyhow::bail!("max_concurrency, max_connections and max_body must be positive");
        }
        if let Some(url) = &settings.superoffice.public_url {
            check_public_url("superoffice.public_url", url)?;
        }
        if let Some(url) = &settings.scim.public_url {
            check_public_url("scim.public_url", url)?;
        }
        if settings.webhooks.timeout.is_zero() || settings.webhooks.poll.is_zero() {
            anyhow::bail!("webhooks_timeout and webhooks_poll_ms must be positive");
        }
        if settings.header_timeout.is_zero() {
            anyhow::bail!("header_timeout must be positive");
        }
        if settings.token_ttl <= time::Duration::ZERO {
            anyhow::bail!("token_ttl_hours must be positive");
        }
        settings.key_vault()?;
        Ok(settings)
    }

    /// What seals the license-signing keys: the configured key, or none.
    pub fn key_vault(&self) -> anyhow::Result<allot_ledger::keys::KeyVault> {
        key_vault(self.license_key_encryption_key.as_ref().map(Secret::expose))
    }
}

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Loopback, private and link-local addresses may be reached (tests, closed networks).
    pub allow_private: bool,
    pub retry: allot_ledger::webhooks::RetryPolicy,
    /// The time-out of every delivery.
    pub timeout: Duration,
    /// How often the worker looks for due deliveries.
    pub poll: Duration,
    /// How long ended deliveries are kept; `None` forever.
    pub retention: Option<Duration>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            allow_private: false,
            retry: allot_ledger::webhooks::RetryPolicy::default(),
            timeout: Duration::from_secs(10),
            poll: Duration::from_millis(500),
            retention: Some(Duration::from_secs(7 * 86_400)),
        }
    }
}

/// `5,300,1800`: seconds (fractions allowed, for tests) before each retry.
fn parse_schedule(text: &str) -> anyhow::Result<Vec<Duration>> {
    text.split(',')
        .map(|part| {
            let part = part.trim();
            part.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "webhooks_retry_schedule: {part:?} is not a number of seconds \
                         (expected e.g. 5,300,1800)"
                    )
                })
        })
        .collect()
}

/// A key vault from `license_key_encryption_key` (`--license-key`, `ALLOT_LICENSE_KEY`).
pub fn key_vault(key: Option<&str>) -> anyhow::Result<allot_ledger::keys::KeyVault> {
    match key {
        None => Ok(allot_ledger::keys::KeyVault::plain()),
        Some(text) => allot_ledger::keys::KeyVault::from_base64(text).map_err(|e| {
            anyhow::anyhow!(
                "{e} (set with --license-key, ALLOT_LICENSE_KEY or license_key_encryption_key)"
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("allot.toml");
        std::fs::write(
            &path,
            "db = \"postgres://u:hunter2@db/allot\"\nlisten = \"0.0.0.0:9000\"\nmax_body = 42\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path),
            listen: Some("127.0.0.1:7000".parse().unwrap()),
            admin_password: Some("s3cret-pass".into()),
            ..Default::default()
        };
        let s = Settings::resolve(&args).unwrap();
        assert_eq!(s.listen.port(), 7000);
        assert_eq!(s.max_body, 42);
        assert_eq!(s.request_timeout, Duration::from_secs(30));
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("s3cret-pass"), "{shown}");
        assert!(
            shown.contains("postgres://u:<redacted>@db/allot"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("allot.toml");
        std::fs::write(&path, "listen_port = 1\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..Default::default()
        };
        assert!(Settings::resolve(&args).is_err());
        let args = ServeArgs {
            metrics_listen: Some("nowhere".into()),
            ..Default::default()
        };
        assert!(Settings::resolve(&args).is_err());
        let args = ServeArgs {
            metrics_listen: Some("off".into()),
            ..Default::default()
        };
        assert_eq!(Settings::resolve(&args).unwrap().metrics_listen, None);
    }
}
