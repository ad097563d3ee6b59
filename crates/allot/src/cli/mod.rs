//! The `allot` command: `serve`, `migrate`, `init`, `bench`, and admin commands that talk to a
//! running server (`--url`/`ALLOT_URL`, `--token`/`ALLOT_TOKEN`). Human tables by default,
//! `--json` for scripts (JSON lines, decoded from and printed as the API's own types).

pub mod client;
pub(crate) mod import;
mod output;
pub mod session;
mod verify;

pub use output::json_line;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::api::dto::{Changed, IssuedToken, Page, ProductWithStatus};
use crate::config::{ServeArgs, Settings};
use allot_ledger::{
    AuditEvent, Command, Company, Context, Group, GroupView, IdleSeat, Ledger, Outcome, PoolStatus,
    ProductHarvestPolicy, Role, Seat, Session, User, UserProductView,
};
use client::{Client, segment};
use output::Output;

#[derive(Debug, Parser)]
#[command(
    name = "allot",
    version,
    about = "License-seat server and its admin client"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Args, Clone)]
pub struct Remote {
    /// Server base URL [default: the one of `allot login`, else http://127.0.0.1:8080]
    #[arg(long, env = "ALLOT_URL", global = true)]
    pub url: Option<String>,
    /// API token
    #[arg(long, env = "ALLOT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print JSON lines (one object a line, a list one item a line) instead of tables
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the server
    Serve(ServeArgs),
    /// Apply the store's migrations and exit
    /// Apply the store's migrations (and give every tenant a license-signing key) and exit
    Migrate {
        #[arg(long, env = "ALLOT_DB", default_value = "sqlite://allot.db")]
        db: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
        /// 32 bytes in base64 sealing the license-signing keys
        #[arg(long, env = "ALLOT_LICENSE_KEY", hide_env_values = true)]
        license_key: Option<String>,
    },
    /// Create a tenant with an admin login; prints a new admin token as its last line
    Init {
        #[arg(long, env = "ALLOT_DB", default_value = "sqlite://allot.db")]
        db: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        admin: String,
        #[arg(long, env = "ALLOT_INIT_PASSWORD", hide_env_values = true)]
        password: String,
        /// Token lifetime in hours
        #[arg(long, default_value_t = 720)]
        ttl_hours: i64,
        /// Print JSON ({tenant, admin, token}) instead of text
        #[arg(long)]
        json: bool,
        /// 32 bytes in base64 sealing the license-signing keys
        #[arg(long, env = "ALLOT_LICENSE_KEY", hide_env_values = true)]
        license_key: Option<String>,
    },
    /// Issue a server-wide operator token (creates tenants); prints it as its last line
    OperatorToken {
        #[arg(long, env = "ALLOT_DB", default_value = "sqlite://allot.db")]
        db: String,
        #[arg(long, default_value_t = 720)]
        ttl_hours: i64,
        /// Print JSON ({token, id, role, expires_at}) instead of the bare token
        #[arg(long)]
        json: bool,
    },
    /// Log in with a password (asked without echo) and keep the token for the other commands
    /// in the user's configuration directory, readable by the user only
    Login {
        /// The tenant's name
        #[arg(long, default_value = "default")]
        tenant: String,
        #[arg(long)]
        login: String,
        /// Read the password from the first line of standard input instead of asking
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke the kept token and forget it
    Logout {
        #[command(flatten)]
        remote: Remote,
    },
    /// Tenants (an operator token)
    Tenant {
        #[command(subcommand)]
        command: TenantCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Password logins of the tenant
    Logins {
        #[command(subcommand)]
        command: LoginsCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// API tokens of the tenant
    Tokens {
        #[command(subcommand)]
        command: TokensCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Create or update users from a CSV or JSON-lines file (matched by login), with their
    /// company and direct licenses; bad rows reported by row, field and reason
    Import {
        /// users.csv (header: login,first_name,last_name,email,company,licenses) or users.jsonl
        file: std::path::PathBuf,
        /// Report what would change without writing anything
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Products (module licenses)
    Product {
        #[command(subcommand)]
        command: ProductCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Seats of a product
    Seats {
        #[command(subcommand)]
        command: SeatsCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Users (associates)
    User {
        #[command(subcommand)]
        command: UserCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Groups of users and the licenses given to them
    Groups {
        #[command(subcommand)]
        command: GroupsCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Companies
    Company {
        #[command(subcommand)]
        command: CompanyCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Give a user a seat of a product
    Assign(UserProduct),
    /// Take a product away from a user
    Unassign(UserProduct),
    /// Give one seat to a user
    Grant(UserSeat),
    /// Free a seat entirely
    Release(UserSeat),
    /// Clear a seat's activation (and its holder for automatic users)
    Revoke(UserSeat),
    /// Live sessions
    Sessions {
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// End a user's sessions
    Logoff {
        #[arg(long)]
        user: String,
        #[arg(long, value_enum)]
        client: Option<Client_>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Every pool: Total, InUse, Free
    Status {
        #[command(flatten)]
        remote: Remote,
    },
    /// A product's usage history: a table of points and a sparkline of seats held at peak
    Usage {
        /// The product: owner/name or id
        #[arg(long)]
        product: String,
        /// How far back: 30m, 24h, 7d, 8w, or a YYYY-MM-DD / RFC 3339 time
        #[arg(long, default_value = "7d")]
        since: String,
        /// Width of a point [default: minute up to 6 hours back, hour up to 60 days, else day]
        #[arg(long, value_enum)]
        step: Option<Step>,
        /// Print CSV with a header row instead of a table
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// The audit trail
    #[command(args_conflicts_with_subcommands = true)]
    Audit {
        #[command(subcommand)]
        check: Option<AuditCmd>,
        /// RFC 3339 time or YYYY-MM-DD
        #[arg(long)]
        since: Option<String>,
        /// Keep printing new events
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Idle seats: list what the harvest would reclaim and why, or reclaim it now; policies
    /// and exemptions
    #[command(args_conflicts_with_subcommands = true)]
    Harvest {
        #[command(subcommand)]
        command: Option<HarvestCmd>,
        /// Only list what would be reclaimed
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// License-signing keys: rotate, list
    Keys {
        #[command(subcommand)]
        command: KeysCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Webhook endpoints (Standard Webhooks): add, list, show, update, remove, test, deliveries
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCmd,
        #[command(flatten)]
        remote: Remote,
    },
    /// Check a license file offline and print its claims
    Verify(verify::VerifyArgs),
    /// Load-test a server and check the invariants afterwards
    Bench(crate::bench::BenchArgs),
    /// Write a consistent copy of a SQLite store to a new file, while the server runs
    Backup {
        /// Store URL (sqlite://...; for PostgreSQL use pg_dump, see docs/operations.md)
        #[arg(long, env = "ALLOT_DB")]
        db: String,
        /// The backup file to create
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// Load a backup file into a store (refused when the store holds data, unless --force)
    Restore {
        /// The backup file (made by allot backup)
        #[arg(long)]
        from: std::path::PathBuf,
        /// Store URL to restore into
        #[arg(long, env = "ALLOT_DB")]
        db: String,
        /// Replace what the store holds
        #[arg(long)]
        force: bool,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Copy a whole store into another (sqlite:// to postgres:// or back), verified
    Copy {
        /// Source store URL
        #[arg(long)]
        from: String,
        /// Target store URL (must be empty unless --force)
        #[arg(long)]
        to: String,
        /// Replace what the target holds
        #[arg(long)]
        force: bool,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Walk a store's tamper-evident audit chains (no server needed) and name the first record
    /// edited, removed or reordered; exits non-zero on a break
    Verify {
        /// Store URL, as for serve
        #[arg(long, env = "ALLOT_DB")]
        db: String,
        /// Only this tenant (by name) [default: every tenant]
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Creates a tenant with its first admin login (the password asked, or --password-stdin)
    Add {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "admin")]
        admin: String,
        #[arg(long)]
        password_stdin: bool,
    },
    List,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LoginRole {
    Admin,
    Reader,
    User,
    /// An identity provider's SCIM client (tokens only: `/scim/v2` and nothing else)
    Scim,
}

impl LoginRole {
    fn as_str(self) -> &'static str {
        match self {
            LoginRole::Admin => "admin",
            LoginRole::Reader => "reader",
            LoginRole::User => "user",
            LoginRole::Scim => "scim",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum LoginsCmd {
    /// Creates a password login (the password asked, or --password-stdin)
    Add {
        #[arg(long)]
        login: String,
        #[arg(long, value_enum)]
        role: LoginRole,
        /// For the user role: the user it acts as (id, UUID or login)
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
    List,
    /// Sets a login's password (revoking its tokens)
    Passwd {
        #[arg(long)]
        login: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokensCmd {
    /// Issues a token; prints it (shown once) as its last line
    Add {
        #[arg(long, value_enum)]
        role: LoginRole,
        /// For the user role: the user it acts as (id, UUID or login)
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value = "")]
        label: String,
        /// Lifetime in hours [default: 720]
        #[arg(long)]
        ttl_hours: Option<i64>,
    },
    List,
    Revoke {
        #[arg(long)]
        id: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum HarvestCmd {
    /// Sets a product's policy: seats unused for --idle-days are released (or only reported)
    Policy {
        /// owner/module or id
        #[arg(long)]
        product: String,
        #[arg(long)]
        idle_days: i64,
        /// Only list idle seats, never release them
        #[arg(long)]
        report_only: bool,
    },
    /// Removes a product's policy
    Clear {
        #[arg(long)]
        product: String,
    },
    /// Every product's policy
    Policies,
    /// Exempts a user's seats, or a group's members' seats, from the harvest (--undo ends the
    /// exemption)
    Exempt {
        #[arg(long, required_unless_present = "group", conflicts_with = "group")]
        user: Option<String>,
        /// A group's id, UUID or name: its members' seats stay while they are members
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        undo: bool,
    },
    /// The exempt users (with --groups: the exempt groups)
    Exempted {
        #[arg(long)]
        groups: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Add a new signing key (it signs from now on; older keys still verify)
    Rotate,
    /// The public keys (JWK Set) of a tenant
    List {
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCmd {
    /// Register an endpoint; prints its signing secret once
    Add {
        /// Where deliveries go (`--url` is the server's)
        #[arg(id = "hook_url", long = "hook-url")]
        url: String,
        /// Event types, comma-separated or repeated [default: every event]
        #[arg(long = "event", value_delimiter = ',')]
        events: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    List,
    Show {
        id: String,
    },
    Update {
        id: String,
        /// A new address for deliveries
        #[arg(id = "hook_url", long = "hook-url")]
        url: Option<String>,
        /// Replaces the event types (comma-separated or repeated)
        #[arg(long = "event", value_delimiter = ',')]
        events: Option<Vec<String>>,
        #[arg(long)]
        description: Option<String>,
        /// Enable again (also forgets its failures)
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
    Remove {
        id: String,
    },
    /// Queue a webhook.test event for the endpoint
    Test {
        id: String,
    },
    /// The endpoint's deliveries, newest first
    Deliveries {
        id: String,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "lowercase")]
pub enum Client_ {
    Windows,
    Web,
    Mobile,
    Api,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    User,
    Site,
    Floating,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Pool {
    Global,
    Company,
    Custom,
}

#[derive(Debug, Subcommand)]
pub enum ProductCmd {
    Add {
        #[arg(long)]
        owner: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 0)]
        seats: i64,
        #[arg(long, value_enum, default_value = "user")]
        kind: Kind,
        #[arg(long)]
        unrestricted: bool,
        /// Module (of the same owner) or owner/module
        #[arg(long)]
        prerequisite: Option<String>,
        /// Makes a user plan bringing these modules: m1,m2,...
        #[arg(long, value_delimiter = ',')]
        plan: Vec<String>,
        #[arg(long)]
        hidden: bool,
        #[arg(long)]
        trial: bool,
        /// RFC 3339 time or YYYY-MM-DD
        #[arg(long)]
        expires: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// List price of one seat for 30 days, e.g. 12.50 (at most four decimal places);
        /// with --currency
        #[arg(long, requires = "currency")]
        price: Option<String>,
        /// ISO 4217 code of --price, e.g. EUR
        #[arg(long, requires = "price")]
        currency: Option<String>,
    },
    List,
    /// Sets (or with --clear removes) a product's list price of one seat for 30 days: the
    /// usage history then says what the unused seats cost
    Price {
        /// owner/module or id
        #[arg(long)]
        product: String,
        /// Amount for one seat and 30 days, e.g. 12.50 (at most four decimal places)
        #[arg(long, required_unless_present = "clear", requires = "currency")]
        amount: Option<String>,
        /// ISO 4217 code, e.g. EUR
        #[arg(long, requires = "amount")]
        currency: Option<String>,
        /// Removes the price
        #[arg(long, conflicts_with_all = ["amount", "currency"])]
        clear: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SeatsCmd {
    Add {
        /// owner/module or id
        #[arg(long)]
        product: String,
        #[arg(long)]
        count: i64,
        /// The company whose own pool gets the seats: its name or id
        #[arg(long)]
        company: Option<String>,
        #[arg(long)]
        transaction: Option<String>,
    },
    /// Removes free seats (never a held one): all of --count, or none
    Remove {
        /// owner/module or id
        #[arg(long)]
        product: String,
        #[arg(long)]
        count: i64,
        /// The company whose own pool loses the seats: its name or id
        #[arg(long)]
        company: Option<String>,
    },
    List {
        #[arg(long)]
        product: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        available: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    Add {
        #[arg(long)]
        login: String,
        /// Full name ("First Last")
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        /// The user's company: its name or id
        #[arg(long)]
        company: Option<String>,
        /// Integer id (SuperOffice AssociateId)
        #[arg(long)]
        id: Option<i64>,
        /// Also create a login (role user) with this password
        #[arg(long)]
        password: Option<String>,
    },
    List,
    /// A user's view of every product
    Licenses {
        #[arg(long)]
        user: String,
    },
    Retire {
        #[arg(long)]
        user: String,
    },
    Unretire {
        #[arg(long)]
        user: String,
    },
    /// Disable a user: seats released (unless the tenant keeps them), logins and tokens refused
    Disable {
        #[arg(long)]
        user: String,
    },
    /// Enable a disabled user again
    Enable {
        #[arg(long)]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupsCmd {
    Add {
        #[arg(long)]
        name: String,
    },
    List,
    /// A group's members, licenses and each member's assignment state
    Show {
        /// id, UUID or name
        #[arg(long)]
        group: String,
    },
    Remove {
        #[arg(long)]
        group: String,
    },
    Members {
        #[command(subcommand)]
        command: GroupMembersCmd,
    },
    Licenses {
        #[command(subcommand)]
        command: GroupLicensesCmd,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupMembersCmd {
    Add {
        #[arg(long)]
        group: String,
        #[arg(long)]
        user: String,
    },
    Remove {
        #[arg(long)]
        group: String,
        #[arg(long)]
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupLicensesCmd {
    Add {
        #[arg(long)]
        group: String,
        /// owner/module or id
        #[arg(long)]
        product: String,
    },
    Remove {
        #[arg(long)]
        group: String,
        #[arg(long)]
        product: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CompanyCmd {
    Add {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        pool: Pool,
    },
    List,
}

#[derive(Debug, Args)]
pub struct UserProduct {
    #[arg(long)]
    pub user: String,
    /// owner/module or id
    #[arg(long)]
    pub product: String,
    #[command(flatten)]
    pub remote: Remote,
}

#[derive(Debug, Args)]
pub struct UserSeat {
    #[arg(long)]
    pub user: String,
    #[arg(long)]
    pub seat: uuid::Uuid,
    #[command(flatten)]
    pub remote: Remote,
}

/// Runs a parsed command line; `Err` is printed by `main` and exits non-zero.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Serve(args) => serve(args).await,
        Cmd::Audit {
            check: Some(AuditCmd::Verify { db, tenant }),
            remote,
            ..
        } => verify_audit(&db, tenant.as_deref(), remote.json).await,
        Cmd::Migrate {
            db,
            json,
            license_key,
        } => {
            let ledger = Ledger::open(&db)
                .await?
                .with_key_vault(crate::config::key_vault(license_key.as_deref())?);
            // Tenants made before license files existed get their first signing key.
            let mut made = 0;
            for tenant in ledger.tenants().await? {
                made += ledger
                    .ensure_signing_key(&Context::new(tenant.id, "migrate"))
                    .await? as usize;
            }
            ledger.close().await;
            let db = crate::config::redact_url(&db);
            if json {
                output::json_line(
                    &serde_json::json!({ "migrated": db, "signing_keys_made": made }),
                );
            } else {
                println!("migrations applied to {db}");
                if made > 0 {
                    println!("signing keys made for {made} tenant(s)");
                }
            }
            Ok(())
        }
        Cmd::Init {
            db,
            tenant,
            admin,
            password,
            ttl_hours,
            json,
            license_key,
        } => {
            let vault = crate::config::key_vault(license_key.as_deref())?;
            init(&db, &tenant, &admin, &password, ttl_hours, json, vault).await
        }
        Cmd::Verify(args) => verify::run(args).await,
        Cmd::Backup { db, to } => {
            let ledger = Ledger::open(&db).await?;
            let started = std::time::Instant::now();
            let done = ledger.backup_to(&to).await;
            ledger.close().await;
            done?;
            println!(
                "backed up {} to {} in {} ms",
                crate::config::redact_url(&db),
                to.display(),
                started.elapsed().as_millis()
            );
            Ok(())
        }
        Cmd::Restore {
            from,
            db,
            force,
            json,
        } => {
            if !from.is_file() {
                anyhow::bail!("no backup file at {}", from.display());
            }
            let source = format!("sqlite://{}", from.display());
            copy_store(&source, &db, force, json).await
        }
        Cmd::Copy {
            from,
            to,
            force,
            json,
        } => copy_store(&from, &to, force, json).await,
        Cmd::OperatorToken {
            db,
            ttl_hours,
            json,
        } => {
            let ledger = Ledger::open(&db).await?;
            let (token, hash) = crate::auth::new_token();
            let expires = ledger.now_time() + time::Duration::hours(ttl_hours.clamp(1, 24 * 366));
            let info = ledger.issue_operator_token(&hash, "cli", expires).await?;
            ledger.close().await;
            if json {
                output::json_line(&IssuedToken {
                    token,
                    id: info.id,
                    role: info.role,
                    expires_at: info.expires_at,
                });
            } else {
                println!("{token}");
            }
            Ok(())
        }
        Cmd::Bench(args) => crate::bench::run(args).await,
        other => admin(other).await,
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(&args)?;
    crate::telemetry::init(settings.log_json);
    tracing::info!(?settings, "starting");
    let listener = crate::server::listen(settings.listen, "--listen or ALLOT_LISTEN").await?;
    crate::server::serve(settings, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// `allot copy` and `allot restore`: every table of one store into another, verified there
/// (rows equal, invariants, audit chains) before it reports.
async fn copy_store(from: &str, to: &str, force: bool, json: bool) -> anyhow::Result<()> {
    let source = Ledger::open(from).await?;
    let target = Ledger::open(to).await?;
    let report = source.copy_to(&target, force).await;
    source.close().await;
    target.close().await;
    let report = report?;
    let (from, to) = (
        crate::config::redact_url(from),
        crate::config::redact_url(to),
    );
    if json {
        output::json_line(&serde_json::json!({
            "from": from, "to": to, "tenants_verified": report.tenants,
            "rows": report.rows.iter().map(|(t, n)| (t.clone(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
        }));
    } else {
        for (table, rows) in &report.rows {
            println!("{table:<18} {rows}");
        }
        println!(
            "copied {from} to {to}: rows equal, invariants and audit chains of {} tenant(s) verified",
            report.tenants
        );
    }
    Ok(())
}

/// `allot audit verify`: every tenant's chain (or one), straight from the store.
async fn verify_audit(db: &str, tenant: Option<&str>, json: bool) -> anyhow::Result<()> {
    use allot_ledger::audit_chain::ChainCheck;
    let ledger = Ledger::open(db).await?;
    let tenants = match tenant {
        Some(name) => vec![
            ledger
                .tenant(name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no tenant {name:?} in this store"))?,
        ],
        None => ledger.tenants().await?,
    };
    let mut broken = 0;
    for t in tenants {
        let Some(check) = ledger.verify_audit_chain(t.id).await? else {
            continue;
        };
        match check {
            ChainCheck::Intact { records, head } => {
                if json {
                    output::json_line(&serde_json::json!({
                        "tenant": t.name, "intact": true, "records": records, "head": head,
                    }));
                } else {
                    println!(
                        "{}: intact, {records} records, head {} at seq {}",
                        t.name,
                        head.hash.as_deref().unwrap_or("-"),
                        head.seq
                    );
                }
            }
            ChainCheck::Broken { seq, reason } => {
                broken += 1;
                if json {
                    output::json_line(&serde_json::json!({
                        "tenant": t.name, "intact": false, "seq": seq, "reason": reason,
                    }));
                } else {
                    println!("{}: BROKEN at record {seq}: {reason}", t.name);
                }
            }
        }
    }
    ledger.close().await;
    anyhow::ensure!(broken == 0, "{broken} audit chain(s) broken");
    Ok(())
}

async fn init(
    db: &str,
    tenant: &str,
    admin: &str,
    password: &str,
    ttl_hours: i64,
    json: bool,
    vault: allot_ledger::keys::KeyVault,
) -> anyhow::Result<()> {
    let ledger = Ledger::open(db).await?.with_key_vault(vault);
    let passwords = crate::auth::Passwords::new(1);
    let hash = passwords.hash(password).await?;
    let (token, token_hash) = crate::auth::new_token();
    let expires_at = ledger.now_time() + time::Duration::hours(ttl_hours.clamp(1, 24 * 366));
    let setup = [
        Command::CreateLogin {
            login: admin.to_owned(),
            password_hash: hash,
            role: Role::Admin,
            user: None,
        },
        Command::IssueToken {
            token_hash,
            role: Role::Admin,
            login: admin.to_owned(),
            user: None,
            label: "init".into(),
            expires_at,
        },
    ];
    // A new tenant is created with its admin login and token in one transaction; an existing
    // one gets another admin.
    let (created, outcomes) = match ledger.tenant(tenant).await? {
        Some(t) => {
            let outcomes = ledger
                .apply_all_or_nothing(&Context::new(t.id, "init"), &setup)
                .await?;
            (t, outcomes)
        }
        None => {
            ledger
                .create_tenant_with(tenant, "init", None, &setup)
                .await?
        }
    };
    ledger.close().await;
    if json {
        let Some(Outcome::Token(info)) = outcomes.last() else {
            anyhow::bail!("the store answered no token");
        };
        output::json_line(&serde_json::json!({
            "tenant": created,
            "admin": admin,
            "token": IssuedToken {
                token,
                id: info.id,
                role: info.role,
                expires_at: info.expires_at,
            },
        }));
        return Ok(());
    }
    println!(
        "tenant {:?} (id {}) has admin login {admin:?}; admin token:",
        created.name, created.id
    );
    println!("{token}");
    Ok(())
}

fn remote_of(cmd: &Cmd) -> Option<&Remote> {
    match cmd {
        Cmd::Product { remote, .. }
        | Cmd::Seats { remote, .. }
        | Cmd::User { remote, .. }
        | Cmd::Company { remote, .. }
        | Cmd::Groups { remote, .. }
        | Cmd::Sessions { remote, .. }
        | Cmd::Logoff { remote, .. }
        | Cmd::Status { remote }
        | Cmd::Keys { remote, .. }
        | Cmd::Harvest { remote, .. }
        | Cmd::Login { remote, .. }
        | Cmd::Logout { remote }
        | Cmd::Tenant { remote, .. }
        | Cmd::Logins { remote, .. }
        | Cmd::Tokens { remote, .. }
        | Cmd::Import { remote, .. }
        | Cmd::Webhooks { remote, .. }
        | Cmd::Audit { remote, .. }
        | Cmd::Usage { remote, .. } => Some(remote),
        Cmd::Assign(a) | Cmd::Unassign(a) => Some(&a.remote),
        Cmd::Grant(s) | Cmd::Release(s) | Cmd::Revoke(s) => Some(&s.remote),
        _ => None,
    }
}

/// A point's width for `allot usage`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Step {
    Minute,
    Hour,
    Day,
}

/// `30m`, `24h`, `7d`, `8w` back from `now`, or a date / RFC 3339 time.
pub fn parse_since(text: &str, now: time::OffsetDateTime) -> anyhow::Result<time::OffsetDateTime> {
    let text = text.trim();
    if let Some(unit) = text.chars().last()
        && let Ok(n) = text[..text.len() - unit.len_utf8()].parse::<i64>()
        && n > 0
    {
        let span = match unit {
            'm' => time::Duration::minutes(n),
            'h' => time::Duration::hours(n),
            'd' => time::Duration::days(n),
            'w' => time::Duration::weeks(n),
            _ => anyhow::bail!("{text:?}: the unit is one of m, h, d, w"),
        };
        return now
            .checked_sub(span)
            .ok_or_else(|| anyhow::anyhow!("{text:?} is too far back"));
    }
    let stamp = parse_time(text)?;
    Ok(time::OffsetDateTime::parse(
        &stamp,
        &time::format_description::well_known::Rfc3339,
    )?)
}

/// Parses RFC 3339 or a plain date (midnight UTC).
pub fn parse_time(text: &str) -> anyhow::Result<String> {
    use time::format_description::well_known::Rfc3339;
    if time::OffsetDateTime::parse(text, &Rfc3339).is_ok() {
        return Ok(text.to_owned());
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(text, &format)
        .map_err(|_| anyhow::anyhow!("{text:?}: expected YYYY-MM-DD or an RFC 3339 time"))?;
    Ok(date.midnight().assume_utc().format(&Rfc3339)?)
}

/// Reads every page of a paged list (`{items, next}`); `path` may already carry a query.
async fn fetch_all<T: serde::de::DeserializeOwned>(
    client: &Client,
    path: &str,
) -> anyhow::Result<Vec<T>> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut all = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let page_path = match after {
            Some(a) => format!("{path}{sep}limit=1000&after={a}"),
            None => format!("{path}{sep}limit=1000"),
        };
        let page: Page<T> = client.get(&page_path).await?;
        all.extend(page.items);
        after = page.next;
        if after.is_none() {
            return Ok(all);
        }
    }
}

fn product_path(product: &str) -> String {
    segment(product)
}

async fn admin(cmd: Cmd) -> anyhow::Result<()> {
    let remote = remote_of(&cmd)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("not an admin command"))?;
    // The token of `allot login` serves only the server it came from.
    let saved = session::load();
    let url = remote
        .url
        .clone()
        .or_else(|| saved.as_ref().map(|s| s.url.clone()))
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let token = remote.token.clone().or_else(|| {
        saved
            .as_ref()
            .filter(|s| s.url.trim_end_matches('/') == url.trim_end_matches('/'))
            .map(|s| s.token.clone())
    });
    let client = Client::new(&url, token);
    let out = Output { json: remote.json };
    match cmd {
        Cmd::Login {
            tenant,
            login,
            password_stdin,
            ..
        } => {
            let password = session::read_password("Password: ", password_stdin)?;
            let issued: IssuedToken = Client::new(&url, None)
                .post(
                    "/v1/auth/login",
                    &json!({ "tenant": tenant, "login": login, "password": password }),
                )
                .await?;
            let path = session::save(&session::Saved {
                url: url.clone(),
                tenant: tenant.clone(),
                login: login.clone(),
                token: issued.token,
                id: issued.id,
                expires_at: issued.expires_at,
            })?;
            if out.json {
                output::json_line(&json!({
                    "url": url, "tenant": tenant, "login": login, "role": issued.role,
                    "expires_at": issued.expires_at, "file": path,
                }));
            } else {
                println!(
                    "logged in to {url} as {login} ({tenant}, {}); token kept in {}",
                    issued.role,
                    path.display()
                );
            }
        }
        Cmd::Logout { .. } => logout(&url, saved, &out).await?,
        Cmd::Import { file, dry_run, .. } => import::run(&client, &file, dry_run, out.json).await?,
        Cmd::Tenant { command, .. } => tenant_admin(&client, &out, command).await?,
        Cmd::Logins { command, .. } => logins_admin(&client, &out, command).await?,
        Cmd::Tokens { command, .. } => tokens_admin(&client, &out, command).await?,
        Cmd::Product {
            command:
                ProductCmd::Add {
                    owner,
                    name,
                    seats,
                    kind,
                    unrestricted,
                    prerequisite,
                    plan,
                    hidden,
                    trial,
                    expires,
                    description,
                    price,
                    currency,
                },
            ..
        } => {
            let qualify = |m: &str| {
                if m.contains('/') {
                    m.to_owned()
                } else {
                    format!("{owner}/{m}")
                }
            };
            let body = json!({
                "owner": owner, "name": name, "seats": seats, "description": description,
                "kind": match kind { Kind::User => "user", Kind::Site => "site", Kind::Floating => "floating" },
                "unrestricted": unrestricted, "hidden": hidden, "trial": trial,
                "prerequisite": prerequisite.as_deref().map(qualify),
                "plan_members": plan.iter().map(|m| qualify(m)).collect::<Vec<_>>(),
                "extra_flags": if plan.is_empty() { 0 } else { 1 },
                "expires_at": expires.as_deref().map(parse_time).transpose()?,
                "seat_price_per_30_days": price.map(|amount| json!({ "amount": amount, "currency": currency })),
            });
            let created: ProductWithStatus = client.post("/v1/products", &body).await?;
            out.products(&[created]);
        }
        Cmd::Product {
            command: ProductCmd::List,
            ..
        } => {
            let list: Vec<ProductWithStatus> = fetch_all(&client, "/v1/products").await?;
            out.products(&list);
        }
        Cmd::Product {
            command:
                ProductCmd::Price {
                    product,
                    amount,
                    currency,
                    clear,
                },
            ..
        } => {
            let price = match (clear, amount) {
                (true, _) | (false, None) => Value::Null,
                (false, Some(amount)) => json!({ "amount": amount, "currency": currency }),
            };
            let updated: ProductWithStatus = client
                .request(
                    reqwest::Method::PATCH,
                    &format!("/v1/products/{}", product_path(&product)),
                    Some(&json!({ "seat_price_per_30_days": price })),
                )
                .await?;
            out.products(&[updated]);
        }
        Cmd::Seats {
            command:
                SeatsCmd::Add {
                    product,
                    count,
                    company,
                    transaction,
                },
            ..
        } => {
            let body = json!({ "count": count, "company": company.as_deref().map(company_key), "transaction_id": transaction });
            let seats: Vec<Seat> = client
                .post(
                    &format!("/v1/products/{}/seats", product_path(&product)),
                    &body,
                )
                .await?;
            out.seats(&seats);
        }
        Cmd::Seats {
            command:
                SeatsCmd::Remove {
                    product,
                    count,
                    company,
                },
            ..
        } => {
            let changed: Changed = client
                .post(
                    &format!("/v1/products/{}/seats/remove", product_path(&product)),
                    &json!({ "count": count, "company": company.as_deref().map(company_key) }),
                )
                .await?;
            out.changed(&changed);
        }
        Cmd::Harvest {
            command: None,
            dry_run,
            ..
        } => {
            let idle: Vec<IdleSeat> = client
                .post(&format!("/v1/harvest?dry_run={dry_run}"), &json!({}))
                .await?;
            out.idle_seats(&idle);
        }
        Cmd::Harvest {
            command: Some(command),
            ..
        } => harvest_admin(&client, &out, command).await?,
        Cmd::Seats {
            command:
                SeatsCmd::List {
                    product,
                    user,
                    available,
                },
            ..
        } => {
            let mut query: Vec<(String, String)> = Vec::new();
            if let Some(p) = product {
                query.push(("product".into(), p));
            }
            if let Some(u) = user {
                query.push(("user".into(), u));
            }
            if available {
                query.push(("available".into(), "true".into()));
            }
            let qs = query
                .iter()
                .map(|(k, v)| format!("{k}={}", segment(v)))
                .collect::<Vec<_>>()
                .join("&");
            let path = if qs.is_empty() {
                "/v1/seats".to_owned()
            } else {
                format!("/v1/seats?{qs}")
            };
            let all: Vec<Seat> = fetch_all(&client, &path).await?;
            out.seats(&all);
        }
        Cmd::User {
            command:
                UserCmd::Add {
                    login,
                    name,
                    email,
                    company,
                    id,
                    password,
                },
            ..
        } => {
            let (first, last) = match name.as_deref().map(str::trim) {
                Some(full) => match full.rsplit_once(' ') {
                    Some((f, l)) => (f.to_owned(), l.to_owned()),
                    None => (full.to_owned(), String::new()),
                },
                None => (String::new(), String::new()),
            };
            let body = json!({ "login": login, "first_name": first, "last_name": last, "email": email.unwrap_or_default(),
                "company": company.as_deref().map(company_key), "id": id, "password": password });
            let user: User = client.post("/v1/users", &body).await?;
            out.users(&[user]);
        }
        Cmd::User {
            command: UserCmd::List,
            ..
        } => {
            let all: Vec<User> = fetch_all(&client, "/v1/users").await?;
            out.users(&all);
        }
        Cmd::User {
            command: UserCmd::Licenses { user },
            ..
        } => {
            let views: Vec<UserProductView> = client
                .get(&format!("/v1/users/{}/licenses", segment(&user)))
                .await?;
            out.views(&views);
        }
        Cmd::User {
            command: UserCmd::Retire { user },
            ..
        } => user_action(&client, &out, &user, "retire").await?,
        Cmd::User {
            command: UserCmd::Unretire { user },
            ..
        } => user_action(&client, &out, &user, "unretire").await?,
        Cmd::User {
            command: UserCmd::Disable { user },
            ..
        } => user_action(&client, &out, &user, "disable").await?,
        Cmd::User {
            command: UserCmd::Enable { user },
            ..
        } => user_action(&client, &out, &user, "enable").await?,
        Cmd::Groups { command, .. } => groups(&client, &out, command).await?,
        Cmd::Company {
            command: CompanyCmd::Add { name, pool },
            ..
        } => {
            let pool = match pool {
                Pool::Global => "global",
                Pool::Company => "company",
                Pool::Custom => "custom",
            };
            let company: Company = client
                .post("/v1/companies", &json!({ "name": name, "pool_mode": pool }))
                .await?;
            out.companies(&[company]);
        }
        Cmd::Company {
            command: CompanyCmd::List,
            ..
        } => {
            let list: Vec<Company> = fetch_all(&client, "/v1/companies").await?;
            out.companies(&list);
        }
        Cmd::Assign(a) => {
            let view: UserProductView = client
                .post(
                    &format!("/v1/users/{}/assignments", segment(&a.user)),
                    &json!({ "product": a.product }),
                )
                .await?;
            out.views(&[view]);
        }
        Cmd::Unassign(a) => {
            let view: UserProductView = client
                .delete(&format!(
                    "/v1/users/{}/assignments/{}",
                    segment(&a.user),
                    product_path(&a.product)
                ))
                .await?;
            out.views(&[view]);
        }
        Cmd::Grant(s) => {
            let seat: Seat = client
                .post(
                    &format!("/v1/seats/{}/grant", s.seat),
                    &json!({ "user": s.user }),
                )
                .await?;
            out.seats(&[seat]);
        }
        Cmd::Release(s) => {
            let seat: Seat = client
                .post(
                    &format!("/v1/seats/{}/release", s.seat),
                    &json!({ "user": s.user }),
                )
                .await?;
            out.seats(&[seat]);
        }
        Cmd::Revoke(s) => {
            let seat: Seat = client
                .post(
                    &format!("/v1/seats/{}/revoke", s.seat),
                    &json!({ "user": s.user }),
                )
                .await?;
            out.seats(&[seat]);
        }
        Cmd::Sessions { user, .. } => {
            let path = match user {
                Some(u) => format!("/v1/sessions?user={}", segment(&u)),
                None => "/v1/sessions".into(),
            };
            let list: Vec<Session> = fetch_all(&client, &path).await?;
            out.sessions(&list);
        }
        Cmd::Logoff {
            user, client: kind, ..
        } => {
            let kind = kind.map(|k| match k {
                Client_::Windows => "windows",
                Client_::Web => "web",
                Client_::Mobile => "mobile",
                Client_::Api => "api",
            });
            let changed: Changed = client
                .post(
                    "/v1/sessions/logoff",
                    &json!({ "users": [user], "client": kind }),
                )
                .await?;
            out.changed(&changed);
        }
        Cmd::Status { .. } => {
            let pools: Vec<PoolStatus> = fetch_all(&client, "/v1/pools").await?;
            out.status(&pools);
        }
        Cmd::Usage {
            product,
            since,
            step,
            csv,
            ..
        } => {
            let now = time::OffsetDateTime::now_utc();
            let from = parse_since(&since, now)?;
            let step = step.unwrap_or(if now - from <= time::Duration::hours(6) {
                Step::Minute
            } else if now - from <= time::Duration::days(60) {
                Step::Hour
            } else {
                Step::Day
            });
            let step = match step {
                Step::Minute => "minute",
                Step::Hour => "hour",
                Step::Day => "day",
            };
            let from = from.format(&time::format_description::well_known::Rfc3339)?;
            let path = format!(
                "/v1/products/{}/usage?from={}&step={step}",
                product_path(&product),
                segment(&from)
            );
            let usage: crate::api::v1::usage::ProductUsage = client.get(&path).await?;
            if csv {
                let text = crate::api::v1::usage::usage_csv(std::slice::from_ref(&usage))?;
                print!("{}", String::from_utf8_lossy(&text));
            } else {
                out.usage(&usage);
            }
        }
        Cmd::Audit { check: Some(_), .. } => anyhow::bail!("not an admin command"),
        Cmd::Audit { since, follow, .. } => {
            let since = since.as_deref().map(parse_time).transpose()?;
            audit(&client, &out, since.as_deref(), follow).await?;
        }
        Cmd::Keys { command, .. } => {
            let keys: Value = match command {
                KeysCmd::Rotate => client.post("/v1/keys", &json!({})).await?,
                KeysCmd::List { tenant } => {
                    client
                        .get(&format!("/v1/keys?tenant={}", segment(&tenant)))
                        .await?
                }
            };
            // A JWK (rotate) or a JWK Set (list): each key on a line of its own.
            let list = match keys["keys"].as_array() {
                Some(list) => list.clone(),
                None => vec![keys],
            };
            if out.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for key in &list {
                    println!(
                        "{} {} {}",
                        key["kid"].as_str().unwrap_or_default(),
                        key["crv"].as_str().unwrap_or_default(),
                        key["x"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        Cmd::Webhooks { command, .. } => webhooks(&client, &out, command).await?,
        Cmd::Serve(_)
        | Cmd::Migrate { .. }
        | Cmd::Init { .. }
        | Cmd::OperatorToken { .. }
        | Cmd::Verify(_)
        | Cmd::Backup { .. }
        | Cmd::Restore { .. }
        | Cmd::Copy { .. }
        | Cmd::Bench(_) => {
            anyhow::bail!("not an admin command")
        }
    }
    Ok(())
}

const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Revokes the kept token (a login without the admin role cannot revoke tokens: its token then
/// lapses at its expiry) and removes the file.
async fn logout(url: &str, saved: Option<session::Saved>, out: &Output) -> anyhow::Result<()> {
    let Some(saved) = saved else {
        if out.json {
            output::json_line(&json!({ "logged_out": false, "revoked": false }));
        } else {
            println!("not logged in");
        }
        return Ok(());
    };
    let client = Client::new(&saved.url, Some(saved.token.clone()));
    let revoked = match client
        .delete::<Changed>(&format!("/v1/tokens/{}", saved.id))
        .await
    {
        Ok(_) => true,
        Err(e) => {
            eprintln!(
                "allot: the token was not revoked ({e}); it lapses at {}",
                saved.expires_at
            );
            false
        }
    };
    session::remove()?;
    if out.json {
        output::json_line(&json!({ "logged_out": true, "revoked": revoked }));
    } else {
        println!("logged out of {url}");
    }
    Ok(())
}

async fn tenant_admin(client: &Client, out: &Output, command: TenantCmd) -> anyhow::Result<()> {
    match command {
        TenantCmd::Add {
            name,
            admin,
            password_stdin,
        } => {
            let password = session::read_password(
                &format!("Password for {admin} of {name}: "),
                password_stdin,
            )?;
            let tenant: allot_ledger::Tenant = client
                .post(
                    "/v1/tenants",
                    &json!({ "name": name, "admin_login": admin, "admin_password": password }),
                )
                .await?;
            out.tenants(&[tenant]);
        }
        TenantCmd::List => {
            let list: Vec<allot_ledger::Tenant> = fetch_all(client, "/v1/tenants").await?;
            out.tenants(&list);
        }
    }
    Ok(())
}

async fn logins_admin(client: &Client, out: &Output, command: LoginsCmd) -> anyhow::Result<()> {
    match command {
        LoginsCmd::Add {
            login,
            role,
            user,
            password_stdin,
        } => {
            let password =
                session::read_password(&format!("Password for {login}: "), password_stdin)?;
            let info: allot_ledger::LoginInfo = client
                .post(
                    "/v1/logins",
                    &json!({ "login": login, "password": password, "role": role.as_str(),
                             "user": user.as_deref().map(company_key) }),
                )
                .await?;
            out.logins(&[info]);
        }
        LoginsCmd::List => {
            let list: Vec<allot_ledger::LoginInfo> = client.get("/v1/logins").await?;
            out.logins(&list);
        }
        LoginsCmd::Passwd {
            login,
            password_stdin,
        } => {
            let password =
                session::read_password(&format!("New password for {login}: "), password_stdin)?;
            let changed: Changed = client
                .put(
                    &format!("/v1/logins/{}/password", segment(&login)),
                    &json!({ "password": password }),
                )
                .await?;
            out.changed(&changed);
        }
    }
    Ok(())
}

async fn tokens_admin(client: &Client, out: &Output, command: TokensCmd) -> anyhow::Result<()> {
    match command {
        TokensCmd::Add {
            role,
            user,
            label,
            ttl_hours,
        } => {
            let issued: IssuedToken = client
                .post(
                    "/v1/tokens",
                    &json!({ "role": role.as_str(), "user": user.as_deref().map(company_key),
                             "label": label, "ttl_hours": ttl_hours }),
                )
                .await?;
            if out.json {
                output::json_line(&issued);
            } else {
                println!(
                    "token {} ({}, expires {}):",
                    issued.id, issued.role, issued.expires_at
                );
                println!("{}", issued.token);
            }
        }
        TokensCmd::List => {
            let list: Vec<allot_ledger::TokenInfo> = client.get("/v1/tokens").await?;
            out.tokens(&list);
        }
        TokensCmd::Revoke { id } => {
            let changed: Changed = client.delete(&format!("/v1/tokens/{id}")).await?;
            out.changed(&changed);
        }
    }
    Ok(())
}

async fn harvest_admin(client: &Client, out: &Output, command: HarvestCmd) -> anyhow::Result<()> {
    match command {
        HarvestCmd::Policy {
            product,
            idle_days,
            report_only,
        } => {
            let action = if report_only { "report" } else { "release" };
            let changed: Changed = client
                .put(
                    &format!("/v1/products/{}/harvest-policy", product_path(&product)),
                    &json!({ "idle_days": idle_days, "action": action }),
                )
                .await?;
            out.changed(&changed);
        }
        HarvestCmd::Clear { product } => {
            let changed: Changed = client
                .delete(&format!(
                    "/v1/products/{}/harvest-policy",
                    product_path(&product)
                ))
                .await?;
            out.changed(&changed);
        }
        HarvestCmd::Policies => {
            let list: Vec<ProductHarvestPolicy> = client.get("/v1/harvest/policies").await?;
            out.harvest_policies(&list);
        }
        HarvestCmd::Exempt { user, group, undo } => {
            let path = match (user, group) {
                (_, Some(group)) => format!("/v1/groups/{}/harvest-exempt", segment(&group)),
                (Some(user), None) => format!("/v1/users/{}/harvest-exempt", segment(&user)),
                (None, None) => anyhow::bail!("name --user or --group"),
            };
            let changed: Changed = if undo {
                client.delete(&path).await?
            } else {
                client.put(&path, &json!({})).await?
            };
            out.changed(&changed);
        }
        HarvestCmd::Exempted { groups: false } => {
            let list: Vec<User> = client.get("/v1/harvest/exempt").await?;
            out.users(&list);
        }
        HarvestCmd::Exempted { groups: true } => {
            let list: Vec<Group> = client.get("/v1/harvest/exempt-groups").await?;
            out.groups(&list);
        }
    }
    Ok(())
}

/// Prints the audit trail from the start (or `since`); with `follow`, keeps polling for new
/// events. A follower that loses the server (a restart, say) says so on stderr, retries with
/// back-off, and resumes after the last event it printed: no event twice, none skipped.
async fn audit(
    client: &Client,
    out: &Output,
    since: Option<&str>,
    follow: bool,
) -> anyhow::Result<()> {
    const FIRST_WAIT: std::time::Duration = std::time::Duration::from_millis(250);
    const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
    let mut after: Option<i64> = None;
    let mut wait = FIRST_WAIT;
    let mut lost = false;
    let mut answered = false;
    loop {
        let mut path = "/v1/audit?limit=1000".to_owned();
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        if let Some(s) = since {
            path.push_str(&format!("&since={}", segment(s)));
        }
        let page: Page<AuditEvent> = match client.get(&path).await {
            Ok(page) => page,
            // Only a follower that has reached the server once retries: a wrong URL or token
            // at the start is an error, not a wait.
            Err(e) if follow && answered && e.is_transient() => {
                let resume = after.map_or_else(|| "the start".to_owned(), |a| format!("event {a}"));
                eprintln!(
                    "allot: lost the server ({e}); reconnecting in {:.1}s, resuming after {resume}",
                    wait.as_secs_f64()
                );
                lost = true;
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_WAIT);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        answered = true;
        if lost {
            eprintln!("allot: reconnected; following again");
            lost = false;
        }
        wait = FIRST_WAIT;
        if let Some(last) = page.items.last() {
            after = Some(last.seq);
        }
        out.audit(&page.items);
        if page.next.is_none() {
            if !follow {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

/// `--company` as the API takes it: a number is the company's id, anything else its name (or
/// UUID).
fn company_key(text: &str) -> Value {
    match text.trim().parse::<i64>() {
        Ok(id) => Value::from(id),
        Err(_) => Value::from(text.trim()),
    }
}

/// `allot user retire|unretire|disable|enable`: one POST to the user's action route.
async fn user_action(
    client: &Client,
    out: &Output,
    user: &str,
    action: &str,
) -> anyhow::Result<()> {
    let changed: Changed = client
        .post(&format!("/v1/users/{}/{action}", segment(user)), &json!({}))
        .await?;
    out.changed(&changed);
    Ok(())
}

/// `allot groups ...`
async fn groups(client: &Client, out: &Output, command: GroupsCmd) -> anyhow::Result<()> {
    let path = |group: &str| format!("/v1/groups/{}", segment(group));
    match command {
        GroupsCmd::Add { name } => {
            let group: Group = client.post("/v1/groups", &json!({ "name": name })).await?;
            out.groups(&[group]);
        }
        GroupsCmd::List => {
            let all: Vec<Group> = fetch_all(client, "/v1/groups").await?;
            out.groups(&all);
        }
        GroupsCmd::Show { group } => {
            let view: GroupView = client.get(&path(&group)).await?;
            out.group(&view);
        }
        GroupsCmd::Remove { group } => {
            let changed: Changed = client.delete(&path(&group)).await?;
            out.changed(&changed);
        }
        GroupsCmd::Members {
            command: GroupMembersCmd::Add { group, user },
        } => {
            let view: GroupView = client
                .post(
                    &format!("{}/members", path(&group)),
                    &json!({ "user": user }),
                )
                .await?;
            out.group(&view);
        }
        GroupsCmd::Members {
            command: GroupMembersCmd::Remove { group, user },
        } => {
            let view: GroupView = client
                .delete(&format!("{}/members/{}", path(&group), segment(&user)))
                .await?;
            out.group(&view);
        }
        GroupsCmd::Licenses {
            command: GroupLicensesCmd::Add { group, product },
        } => {
            let view: GroupView = client
                .post(
                    &format!("{}/licenses", path(&group)),
                    &json!({ "product": product }),
                )
                .await?;
            out.group(&view);
        }
        GroupsCmd::Licenses {
            command: GroupLicensesCmd::Remove { group, product },
        } => {
            let view: GroupView = client
                .delete(&format!(
                    "{}/licenses/{}",
                    path(&group),
                    product_path(&product)
                ))
                .await?;
            out.group(&view);
        }
    }
    Ok(())
}

/// `allot webhooks ...`: each answer in the API's own shape (`--json`: one object a line).
async fn webhooks(client: &Client, out: &Output, command: WebhooksCmd) -> anyhow::Result<()> {
    let endpoint_line = |e: &Value| {
        let events = match e["events"].as_array() {
            Some(list) if !list.is_empty() => list
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(","),
            _ => "*".to_owned(),
        };
        let state = if e["enabled"] == true {
            "enabled"
        } else {
            "disabled"
        };
        println!(
            "{} {state} {} {events} {}",
            e["id"].as_str().unwrap_or_default(),
            e["url"].as_str().unwrap_or_default(),
            e["description"].as_str().unwrap_or_default()
        );
    };
    let print = |value: &Value, human: &dyn Fn(&Value)| {
        if out.json {
            output::json_line(value);
        } else {
            human(value);
        }
    };
    match command {
        WebhooksCmd::Add {
            url,
            events,
            description,
        } => {
            let created: Value = client
                .post(
                    "/v1/webhooks",
                    &json!({ "url": url, "events": events, "description": description }),
                )
                .await?;
            print(&created, &|c| {
                endpoint_line(c);
                println!(
                    "secret: {} (shown once; the receiver verifies signatures with it)",
                    c["secret"].as_str().unwrap_or_default()
                );
            });
        }
        WebhooksCmd::List => {
            let list: Value = client.get("/v1/webhooks").await?;
            for e in list["items"].as_array().into_iter().flatten() {
                print(e, &endpoint_line);
            }
        }
        WebhooksCmd::Show { id } => {
            let e: Value = client
                .get(&format!("/v1/webhooks/{}", segment(&id)))
                .await?;
            print(&e, &endpoint_line);
        }
        WebhooksCmd::Update {
            id,
            url,
            events,
            description,
            enable,
            disable,
        } => {
            let mut patch = serde_json::Map::new();
            if let Some(url) = url {
                patch.insert("url".into(), json!(url));
            }
            if let Some(events) = events {
                patch.insert("events".into(), json!(events));
            }
            if let Some(description) = description {
                patch.insert("description".into(), json!(description));
            }
            if enable || disable {
                patch.insert("enabled".into(), json!(enable));
            }
            let e: Value = client
                .request(
                    reqwest::Method::PATCH,
                    &format!("/v1/webhooks/{}", segment(&id)),
                    Some(&Value::Object(patch)),
                )
                .await?;
            print(&e, &endpoint_line);
        }
        WebhooksCmd::Remove { id } => {
            let changed: Changed = client
                .delete(&format!("/v1/webhooks/{}", segment(&id)))
                .await?;
            out.changed(&changed);
        }
        WebhooksCmd::Test { id } => {
            let queued: Value = client
                .post(&format!("/v1/webhooks/{}/test", segment(&id)), &json!({}))
                .await?;
            print(&queued, &|q| {
                println!("queued {}", q["event_id"].as_str().unwrap_or_default())
            });
        }
        WebhooksCmd::Deliveries { id, limit } => {
            let list: Value = client
                .get(&format!(
                    "/v1/webhooks/{}/deliveries?limit={limit}",
                    segment(&id)
                ))
                .await?;
            for d in list["items"].as_array().into_iter().flatten() {
                print(d, &|d| {
                    println!(
                        "{} {} {} attempts={} last={} at={}",
                        d["event_id"].as_str().unwrap_or_default(),
                        d["event_type"].as_str().unwrap_or_default(),
                        d["status"].as_str().unwrap_or_default(),
                        d["attempts"],
                        d["last_status_code"],
                        d["last_attempt_at"].as_str().unwrap_or("-"),
                    )
                });
            }
        }
    }
    Ok(())
}
