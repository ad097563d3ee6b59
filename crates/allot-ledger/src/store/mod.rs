//! The store: the only place SQL lives. One implementation serves SQLite and PostgreSQL, written
//! against sqlx's `Executor` over the `Any` database, so both stores run literally the same
//! statements; the few places where the engines differ are branches on [`Backend`]. PostgreSQL
//! and in-memory SQLite run on sqlx pools; a SQLite file runs on the store's own rusqlite
//! connections with cached statements ([`conn`]), because sqlx-sqlite's per-statement hand-off
//! to a worker thread cost some thirty times the statement itself.
//!
//! Writes: SQLite has a single writer connection (writes are serialised, so no request ever
//! meets SQLITE_BUSY) and a separate pool of read-only connections (WAL lets them read while the
//! writer writes). PostgreSQL has one pool; invariants hold there through conditional updates,
//! row locks and constraints, and transactions that meet a serialization failure or deadlock are
//! retried whole.

mod chain;
mod conn;
mod copy;
mod group;
mod history;
mod idempotency;
mod keys;
mod maintenance;
pub(crate) mod notify;
mod ops;
mod overview;
mod queries;
mod webhooks;

pub(crate) use conn::{Conn, Readers, Tx, Writer};
pub(crate) use copy::copied_tables;
pub use copy::{Cell, TableContent};
pub use group::CommitStats;
pub(crate) use ops::AttemptRecord;
pub use overview::UserSearch;
pub use queries::{AuditFilter, SeatFilter};

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, Connection, Executor};

use conn::OwnConnection;

use crate::command::{Command, Context, Outcome};
use crate::error::{LedgerError, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Tuning for opening a store; the defaults suit a 2-core server.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// PostgreSQL pool size.
    pub max_connections: u32,
    /// SQLite read-only pool size.
    pub sqlite_readers: u32,
    /// How long a request waits for a connection before the store reports itself busy.
    pub acquire_timeout: Duration,
    /// SQLite `synchronous=FULL` (every commit reaches the disk) instead of NORMAL.
    pub sqlite_full_sync: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 10,
            sqlite_readers: 4,
            acquire_timeout: Duration::from_secs(5),
            sqlite_full_sync: true,
        }
    }
}

pub struct Store {
    backend: Backend,
    writer: Writer,
    reader: Readers,
    /// SQLite's group committer. PostgreSQL commits each command in its own transaction, side
    /// by side on several connections: a batch there either deadlocks against other batches
    /// (each command ends on its tenant's audit counter while holding user and seat rows) or,
    /// with the tenant locked first, runs every statement's round trip one after another
    /// (measured: 380 against 465 ops/s, BENCHMARKS.md).
    group: Option<group::GroupCommit>,
    /// PostgreSQL: where [`Store::listen_credentials`] connects its own session.
    postgres_url: Option<String>,
}

/// Attempts at a transaction that PostgreSQL aborted as a serialization failure or deadlock.
const MAX_ATTEMPTS: usize = 8;

/// Failure inside one command: a rule said no (the command's outcome), or the store failed
/// (the whole batch fails).
pub(crate) enum OpError {
    Rule(LedgerError),
    Store(StoreError),
}

impl From<LedgerError> for OpError {
    fn from(e: LedgerError) -> Self {
        OpError::Rule(e)
    }
}

impl From<sqlx::Error> for OpError {
    fn from(e: sqlx::Error) -> Self {
        OpError::Store(StoreError::Database(e))
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        OpError::Store(e)
    }
}

pub(crate) type OpResult<T> = Result<T, OpError>;

/// Everything a command needs besides its connection.
pub(crate) struct Env<'a> {
    pub ctx: &'a Context,
    pub now: i64,
    pub backend: Backend,
    /// Audit records of the running command, written when it completes.
    pending_audit: std::sync::Mutex<Vec<ops::PendingAudit>>,
    /// Products whose seats were freed or added, or whose waiting list grew, during the
    /// command: their waiting lists are served before it completes (`ops::groups::settle`).
    noted: std::sync::Mutex<Vec<crate::model::ProductId>>,
}

impl<'a> Env<'a> {
    pub fn new(ctx: &'a Context, now: i64, backend: Backend) -> Self {
        Env {
            ctx,
            now,
            backend,
            pending_audit: std::sync::Mutex::new(Vec::new()),
            noted: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// A seat of `product` was freed or added, or a member queued for it: its waiting list is
    /// served before the command completes.
    pub fn note_seats_changed(&self, product: crate::model::ProductId) {
        let mut noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
        if !noted.contains(&product) {
            noted.push(product);
        }
    }

    pub fn take_noted(&self) -> Vec<crate::model::ProductId> {
        std::mem::take(&mut *self.noted.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn pending_audit(&self) -> std::sync::MutexGuard<'_, Vec<ops::PendingAudit>> {
        self.pending_audit.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn tenant(&self) -> i64 {
        self.ctx.tenant
    }

    /// Row-lock clause for picking a free seat: PostgreSQL skips seats another transaction is
    /// taking right now instead of queueing behind it; SQLite has one writer and no such clause.
    pub fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }

    /// Share lock on a row read to decide a write (PostgreSQL); SQLite's single writer needs none.
    pub fn share_lock(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR SHARE",
            Backend::Sqlite => "",
        }
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the store at `url`: `sqlite:path` /
    /// `sqlite://path` or `postgres://...`.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let store = if url.starts_with("sqlite:") {
            Self::open_sqlite(url, options).await?
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::open_postgres(url, options).await?
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_owned()));
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn open_sqlite(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let url = if url.contains('?') || in_memory {
            url.to_owned()
        } else {
            format!("{url}?mode=rwc")
        };
        let connect = AnyConnectOptions::from_str(&url)?;
        let sync = if options.sqlite_full_sync {
            "FULL"
        } else {
            "NORMAL"
        };
        let writer_setup = format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON; \
             PRAGMA busy_timeout = 10000;"
        );
        let (writer, reader) = if in_memory {
            // One connection holds the whole database, so it both writes and reads, through
            // sqlx. It is never closed for idleness (the database would vanish).
            let pool = AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .acquire_timeout(options.acquire_timeout)
                .after_connect(move |conn, _| {
                    let setup = writer_setup.clone();
                    Box::pin(async move {
                        conn.execute(sqlx::AssertSqlSafe(setup)).await?;
                        Ok(())
                    })
                })
                .connect_with(connect)
                .await?;
            (Writer::Pool(pool.clone()), Readers::Pool(pool))
        } else {
            // One writer connection, the store's own: every write transaction queues for it
            // instead of failing with SQLITE_BUSY. WAL lets the readers read meanwhile.
            let path = sqlx::sqlite::SqliteConnectOptions::from_str(&url)?
                .get_filename()
                .to_owned();
            let own = OwnConnection::open(&path, &writer_setup)?;
            let reader = Readers::own(path, options.sqlite_readers, options.acquire_timeout);
            let writer = Writer::Own {
                conn: std::sync::Arc::new(tokio::sync::Mutex::new(own)),
                acquire_timeout: options.acquire_timeout,
                url,
            };
            (writer, reader)
        };
        Ok(Store {
            postgres_url: None,
            backend: Backend::Sqlite,
            // One connection writes: one committer, whose batches are the group commits.
            group: Some(group::GroupCommit::start(
                writer.clone(),
                Backend::Sqlite,
                1,
            )),
            writer,
            reader,
        })
    }

    async fn open_postgres(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect(url)
            .await?;
        Ok(Store {
            backend: Backend::Postgres,
            postgres_url: Some(url.to_owned()),
            group: None,
            writer: Writer::Pool(pool.clone()),
            reader: Readers::Pool(pool),
        })
    }

    /// Whether this is an SQLite file (one process owns it) rather than PostgreSQL.
    pub(crate) fn is_sqlite(&self) -> bool {
        self.backend == Backend::Sqlite
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        match &self.writer {
            Writer::Pool(pool) => migrator.run(pool).await?,
            // sqlx's migrator runs on a connection of its own, then closes it.
            Writer::Own { url, .. } => {
                let mut conn = AnyConnection::connect(url).await?;
                conn.execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;")
                    .await?;
                migrator.run(&mut conn).await?;
                conn.close().await?;
            }
        }
        self.chain_unchained_audit().await
    }

    /// A reader connection, to pass to queries that take a [`Conn`].
    pub(crate) async fn read_conn(&self) -> Result<Conn, StoreError> {
        self.reader.acquire().await
    }

    /// The write connection (on SQLite, the only one).
    pub(crate) async fn write_conn(&self) -> Result<Conn, StoreError> {
        self.writer.acquire().await
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// Is the database reachable?
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&mut self.read_conn().await?)
            .await?;
        Ok(())
    }

    /// Applies a batch of commands in one transaction. Each command runs under its own
    /// savepoint, so one that a rule refuses leaves no trace while the others still commit.
    /// An infrastructure failure aborts the whole batch: then nothing of it is applied.
    pub async fn apply(
        &self,
        ctx: &Context,
        commands: &[Command],
        now: i64,
    ) -> Result<Vec<Result<Outcome, LedgerError>>, StoreError> {
        match &self.group {
            // SQLite: shared with other callers' commands (group commit).
            Some(group) => group.apply(ctx.clone(), commands.to_vec(), now).await,
            None => self.apply_with(ctx, commands, now, false).await,
        }
    }

    /// Runs commands as [`Store::apply`] does, each with its own outcome, then rolls the whole
    /// transaction back: what they would do, with nothing applied (an import's `--dry-run`).
    pub async fn apply_dry_run(
        &self,
        ctx: &Context,
        commands: &[Command],
        now: i64,
    ) -> Result<Vec<Result<Outcome, LedgerError>>, StoreError> {
        let items: Vec<Item<'_>> = commands
            .iter()
            .map(|command| Item { ctx, command, now })
            .collect();
        transact(&self.writer, self.backend, &items, false, false).await
    }

    /// Like [`Store::apply`], but the first command a rule refuses rolls the whole batch back:
    /// the result then holds outcomes up to and including that refusal, and nothing committed.
    pub async fn apply_all_or_nothing(
        &self,
        ctx: &Context,
        commands: &[Command],
        now: i64,
    ) -> Result<Vec<Result<Outcome, LedgerError>>, StoreError> {
        self.apply_with(ctx, commands, now, true).await
    }

    async fn apply_with(
        &self,
        ctx: &Context,
        commands: &[Command],
        now: i64,
        atomic: bool,
    ) -> Result<Vec<Result<Outcome, LedgerError>>, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.apply_once(ctx, commands, now, atomic).await {
                Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                    // Back off a little, with jitter, so the contenders don't collide again.
                    let jitter = rand::random::<u64>() % (5 * attempt as u64);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                other => return other,
            }
        }
    }

    async fn apply_once(
        &self,
        ctx: &Context,
        commands: &[Command],
        now: i64,
        atomic: bool,
    ) -> Result<Vec<Result<Outcome, LedgerError>>, StoreError> {
        let items: Vec<Item<'_>> = commands
            .iter()
            .map(|command| Item { ctx, command, now })
            .collect();
        transact(&self.writer, self.backend, &items, atomic, true).await
    }

    pub fn commit_stats(&self) -> CommitStats {
        self.group.as_ref().map(|g| g.stats()).unwrap_or_default()
    }

    /// Applies one command. On SQLite it goes through the group committer: it shares a
    /// transaction (and so a commit, one fsync) with the commands of other callers queued at the
    /// same moment, each under its own savepoint, and is answered only after that transaction
    /// has committed.
    pub async fn execute(
        &self,
        ctx: Context,
        command: Command,
        now: i64,
    ) -> Result<Outcome, LedgerError> {
        self.apply(&ctx, std::slice::from_ref(&command), now)
            .await?
            .pop()
            .unwrap_or_else(|| Err(StoreError::Corrupt("no outcome".into()).into()))
    }

    /// Runs one write transaction that is not a tenant command: creating a tenant, with the
    /// commands that set it up; nothing is committed unless every part succeeds.
    pub(crate) async fn create_tenant(
        &self,
        name: &str,
        by: &Context,
        now: i64,
        setup: &[Command],
        vault: &crate::keys::KeyVault,
    ) -> Result<Result<(i64, Vec<Outcome>), LedgerError>, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin(self.backend).await?;
        match ops::create_tenant(&mut tx, name, by, now, self.backend, setup, vault).await {
            Ok(created) => {
                tx.commit().await?;
                Ok(Ok(created))
            }
            Err(OpError::Rule(e)) => Ok(Err(e)),
            Err(OpError::Store(e)) => Err(e),
        }
    }
}

impl Store {
    /// Records a server-wide operator token (no tenant, so no tenant audit trail).
    pub async fn issue_operator_token(
        &self,
        info: &crate::model::TokenInfo,
        token_hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.write_conn().await?;
        match ops::insert_token(&mut conn, info, token_hash, now).await {
            Ok(()) => Ok(()),
            Err(OpError::Store(e)) => Err(e),
            Err(OpError::Rule(e)) => Err(StoreError::Corrupt(e.to_string())),
        }
    }
}

/// One command of a transaction, with the context and time it runs under.
pub(crate) struct Item<'a> {
    pub ctx: &'a Context,
    pub command: &'a Command,
    pub now: i64,
}

/// Runs `items` in one write transaction. Unless `atomic` (or there is only one), each command
/// runs under its own savepoint, so one that a rule refuses leaves no trace while the others
/// still commit; with `atomic`, the first refusal rolls everything back. A store failure fails
/// the whole transaction, and nothing of it is applied. Without `commit`, the transaction is
/// rolled back at the end (a dry run).
pub(crate) async fn transact(
    writer: &Writer,
    backend: Backend,
    items: &[Item<'_>],
    atomic: bool,
    commit: bool,
) -> Result<Vec<Result<Outcome, LedgerError>>, StoreError> {
    let mut conn = writer.acquire().await?;
    let mut tx = conn.begin(backend).await?;
    // A lone command on SQLite still gets a savepoint (free there), so a refusal for want of a
    // seat is counted in the same transaction; on PostgreSQL it would cost two round trips on
    // every command, so there a refusal is counted in a transaction of its own afterwards.
    let single = atomic || (items.len() == 1 && backend == Backend::Postgres);
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        let env = Env::new(item.ctx, item.now, backend);
        if !single {
            tx.execute("SAVEPOINT allot_command").await?;
        }
        let result = match ops::execute(&mut tx, &env, item.command).await {
            Ok(outcome) => ops::finish_command(&mut tx, &env).await.map(|()| outcome),
            Err(e) => Err(e),
        };
        match result {
            Ok(outcome) => {
                if !single {
                    tx.execute("RELEASE SAVEPOINT allot_command").await?;
                }
                outcomes.push(Ok(outcome));
            }
            Err(OpError::Rule(rule)) => {
                if single {
                    tx.rollback().await?;
                    record_denial_alone(&mut conn, backend, &env, &rule).await;
                    outcomes.push(Err(rule));
                    return Ok(outcomes);
                }
                tx.execute("ROLLBACK TO SAVEPOINT allot_command").await?;
                tx.execute("RELEASE SAVEPOINT allot_command").await?;
                // The refusal outlives the rollback of what the command did.
                if let Some(product) = ops::denied_product(&rule) {
                    ops::record_denial(&mut tx, &env, product)
                        .await
                        .map_err(op_store_error)?;
                }
                outcomes.push(Err(rule));
            }
            // Dropping the transaction rolls it back.
            Err(OpError::Store(e)) => return Err(e),
        }
    }
    if commit {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(outcomes)
}

/// Counts a refusal for want of a seat in a transaction of its own, after the refused command's
/// transaction was rolled back. Best effort: the refusal is the caller's answer either way, so a
/// failure here is logged and does not change it.
pub(crate) async fn record_denial_alone(
    conn: &mut Conn,
    backend: Backend,
    env: &Env<'_>,
    rule: &LedgerError,
) {
    let Some(product) = ops::denied_product(rule) else {
        return;
    };
    let result: Result<(), StoreError> = async {
        let mut tx = conn.begin(backend).await?;
        ops::record_denial(&mut tx, env, product)
            .await
            .map_err(op_store_error)?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, product, "refusal not recorded in the usage history");
    }
}

/// A store failure from a statement that no rule can refuse.
fn op_store_error(e: OpError) -> StoreError {
    match e {
        OpError::Store(e) => e,
        OpError::Rule(rule) => StoreError::Corrupt(rule.to_string()),
    }
}

/// Is this a unique-constraint violation?
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation)
                || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}
