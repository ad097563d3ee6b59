//! The store's connections and transactions.
//!
//! Every op takes a [`Conn`] and sends its statements through sqlx's `Executor` with the `Any`
//! database, so both engines run literally the same SQL. Behind that one face are two drivers:
//!
//! - **sqlx** pools for PostgreSQL and for an in-memory SQLite store;
//! - **the store's own rusqlite connections** ([`OwnConnection`]) for a SQLite file: one writer
//!   and a few read-only readers. sqlx-sqlite hands every statement to a worker thread and back
//!   through a channel; measured, that hop costs 46 µs of CPU per statement against 1.4 µs for a
//!   cached statement run in place (`examples/driver_cost.rs`, BENCHMARKS.md), and a command
//!   runs about twenty statements. Here a statement runs on the calling thread, prepared once
//!   and cached, and its rows come back as sqlx `AnyRow`s, so the ops cannot tell the
//!   difference.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_core::future::BoxFuture;
use futures_core::stream::BoxStream;
use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::types::ValueRef;
use sqlx::any::{
    AnyArguments, AnyQueryResult, AnyRow, AnyStatement, AnyTransactionManager, AnyTypeInfo,
    AnyTypeInfoKind, AnyValue,
};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Either, Execute, Executor, SqlSafeStr, SqlStr};
use sqlx_core::any::{AnyColumn, AnyValueKind};
use sqlx_core::ext::ustr::UStr;
use sqlx_core::transaction::TransactionManager;
use tokio::sync::{Mutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use super::Backend;
use crate::error::StoreError;

/// Statements kept prepared on the writer's connection: more than the store has distinct
/// statements on its write paths, so none is prepared twice.
const STATEMENT_CACHE: usize = 512;

/// A statement slower than this is logged as a warning (as sqlx does for its own).
const SLOW_STATEMENT: Duration = Duration::from_secs(1);

/// Where the store's writes go.
#[derive(Clone)]
pub(crate) enum Writer {
    /// PostgreSQL's pool, or an in-memory SQLite database's one connection (shared with its
    /// readers, so it has to be sqlx's).
    Pool(AnyPool),
    /// An SQLite file's single writer connection.
    Own {
        conn: Arc<Mutex<OwnConnection>>,
        acquire_timeout: Duration,
        /// The database's URL, for sqlx's migrator, which runs on a connection of its own.
        url: String,
    },
}

impl Writer {
    /// The write connection; waits for it at most the store's acquire timeout.
    pub async fn acquire(&self) -> Result<Conn, StoreError> {
        match self {
            Writer::Pool(pool) => Ok(Conn::Pooled(pool.acquire().await.map_err(busy_on_timeout)?)),
            Writer::Own {
                conn,
                acquire_timeout,
                ..
            } => {
                let guard = tokio::time::timeout(*acquire_timeout, conn.clone().lock_owned())
                    .await
                    .map_err(|_| StoreError::Busy)?;
                // A transaction left open (its future dropped between statements) must not
                // swallow the next caller's writes.
                let mut guard = guard;
                if !guard.conn.is_autocommit() {
                    let _ = guard.batch("ROLLBACK");
                }
                Ok(Conn::Own(guard))
            }
        }
    }

    pub async fn close(&self) {
        if let Writer::Pool(pool) = self {
            pool.close().await;
        }
    }
}

/// Where the store's reads go.
#[derive(Clone)]
pub(crate) enum Readers {
    /// PostgreSQL's pool, or an in-memory SQLite database's one connection.
    Pool(AnyPool),
    /// An SQLite file's read-only connections, driven in place like the writer's.
    Own(Arc<OwnReaders>),
}

/// SQLite's read-only connections: opened as they are first needed, at most `size` at once.
pub(crate) struct OwnReaders {
    idle: std::sync::Mutex<Vec<OwnConnection>>,
    permits: Arc<Semaphore>,
    acquire_timeout: Duration,
    path: PathBuf,
}

/// What every reader connection runs once: WAL lets it read while the writer writes.
const READER_SETUP: &str =
    "PRAGMA query_only = ON; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;";

impl Readers {
    pub fn own(path: PathBuf, size: u32, acquire_timeout: Duration) -> Readers {
        Readers::Own(Arc::new(OwnReaders {
            idle: std::sync::Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size.max(1) as usize)),
            acquire_timeout,
            path,
        }))
    }

    /// A reader connection; waits for one at most the store's acquire timeout.
    pub async fn acquire(&self) -> Result<Conn, StoreError> {
        match self {
            Readers::Pool(pool) => Ok(Conn::Pooled(pool.acquire().await.map_err(busy_on_timeout)?)),
            Readers::Own(readers) => {
                let permit = tokio::time::timeout(
                    readers.acquire_timeout,
                    readers.permits.clone().acquire_owned(),
                )
                .await
                .map_err(|_| StoreError::Busy)?
                .map_err(|_| StoreError::Closed)?;
                let idle = readers.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let conn = match idle {
                    Some(conn) => conn,
                    None => OwnConnection::open(&readers.path, READER_SETUP)?,
                };
                Ok(Conn::Read(ReadGuard {
                    conn: Some(conn),
                    home: readers.clone(),
                    _permit: permit,
                }))
            }
        }
    }

    pub async fn close(&self) {
        match self {
            Readers::Pool(pool) => pool.close().await,
            Readers::Own(readers) => {
                readers.permits.close();
                readers
                    .idle
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
            }
        }
    }
}

/// A reader connection lent out; it goes back to the idle ones when dropped.
pub(crate) struct ReadGuard {
    conn: Option<OwnConnection>,
    home: Arc<OwnReaders>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for ReadGuard {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        // A read transaction left open would pin an old snapshot: end it, or drop the
        // connection if that fails.
        if !conn.conn.is_autocommit() && conn.batch("ROLLBACK").is_err() {
            return;
        }
        if !self.home.permits.is_closed() {
            self.home
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
        }
    }
}

fn busy_on_timeout(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut => StoreError::Busy,
        other => StoreError::Database(other),
    }
}

/// One connection of the store, to pass to the ops as `&mut Conn`.
pub(crate) enum Conn {
    Pooled(PoolConnection<Any>),
    /// The SQLite writer's own connection.
    Own(OwnedMutexGuard<OwnConnection>),
    /// One of SQLite's own reader connections.
    Read(ReadGuard),
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Conn::Pooled(_) => f.write_str("Conn::Pooled"),
            Conn::Own(_) => f.write_str("Conn::Own"),
            Conn::Read(_) => f.write_str("Conn::Read"),
        }
    }
}

impl From<PoolConnection<Any>> for Conn {
    fn from(conn: PoolConnection<Any>) -> Self {
        Conn::Pooled(conn)
    }
}

impl Conn {
    /// The store's own SQLite connection underneath, if it is one.
    fn own(&mut self) -> Option<&mut OwnConnection> {
        match self {
            Conn::Pooled(_) => None,
            Conn::Own(guard) => Some(&mut **guard),
            Conn::Read(guard) => guard.conn.as_mut(),
        }
    }

    /// Starts a write transaction. SQLite's is IMMEDIATE: it takes the write lock up front, as
    /// a deferred transaction that read first could not wait for the lock later and would fail
    /// with SQLITE_BUSY.
    pub async fn begin(&mut self, backend: Backend) -> Result<Tx<'_>, sqlx::Error> {
        match self.own() {
            None => {
                let Conn::Pooled(c) = self else {
                    unreachable!("a connection is sqlx's or the store's own")
                };
                let statement = match backend {
                    Backend::Sqlite => Some("BEGIN IMMEDIATE".into_sql_str()),
                    Backend::Postgres => None,
                };
                AnyTransactionManager::begin(c, statement).await?;
            }
            Some(c) => c.batch("BEGIN IMMEDIATE")?,
        }
        Ok(Tx {
            conn: self,
            open: true,
        })
    }
}

/// A transaction on a [`Conn`]; rolled back when dropped unless committed.
pub(crate) struct Tx<'a> {
    conn: &'a mut Conn,
    open: bool,
}

impl Tx<'_> {
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        match &mut *self.conn {
            Conn::Pooled(c) => AnyTransactionManager::commit(c).await?,
            // The commit is where SQLite syncs to disk; off the async worker when it can be.
            own => {
                let c = own.own().expect("not a pooled connection");
                off_the_runtime(|| c.batch("COMMIT"))?
            }
        }
        self.open = false;
        Ok(())
    }

    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        match &mut *self.conn {
            Conn::Pooled(c) => AnyTransactionManager::rollback(c).await?,
            own => own
                .own()
                .expect("not a pooled connection")
                .batch("ROLLBACK")?,
        }
        self.open = false;
        Ok(())
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        match &mut *self.conn {
            // sqlx rolls back before the connection's next use.
            Conn::Pooled(c) => AnyTransactionManager::start_rollback(c),
            own => {
                let c = own.own().expect("not a pooled connection");
                if let Err(e) = c.batch("ROLLBACK") {
                    tracing::warn!(error = %e, "rolling back a dropped transaction failed");
                }
            }
        }
    }
}

impl Deref for Tx<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn
    }
}

/// Runs a blocking call (an fsync) so that the async worker's other tasks move to another
/// worker meanwhile; on a single-threaded runtime (tests) it simply runs.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// One of a SQLite file's connections, driven in place: no worker thread, statements cached.
pub(crate) struct OwnConnection {
    conn: rusqlite::Connection,
    /// The column names of each cached statement, as sqlx rows carry them, so a row costs no
    /// name allocations.
    columns: sqlx_core::HashMap<String, Arc<ColumnNames>>,
}

/// Column names beyond which the cache of them is dropped and refilled: more distinct
/// statements than the store has, so it only bounds statements built at run time.
const COLUMN_NAMES_CACHE: usize = 2 * STATEMENT_CACHE;

/// A statement's column names, and the name-to-ordinal index every `AnyRow` shares.
struct ColumnNames {
    names: Vec<UStr>,
    index: Arc<sqlx_core::HashMap<UStr, usize>>,
}

impl ColumnNames {
    fn of(statement: &rusqlite::Statement<'_>) -> ColumnNames {
        let names: Vec<UStr> = statement
            .column_names()
            .into_iter()
            .map(|name| UStr::from(name.to_owned()))
            .collect();
        let index = Arc::new(
            names
                .iter()
                .enumerate()
                .map(|(i, name)| (name.clone(), i))
                .collect(),
        );
        ColumnNames { names, index }
    }
}

impl OwnConnection {
    /// Opens the database file, creating it if needed, with `setup` run once (pragmas).
    pub fn open(path: &std::path::Path, setup: &str) -> Result<OwnConnection, StoreError> {
        let conn = rusqlite::Connection::open(path).map_err(database_error)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let mut own = OwnConnection {
            conn,
            columns: sqlx_core::HashMap::default(),
        };
        own.batch(setup).map_err(StoreError::Database)?;
        Ok(own)
    }

    /// Runs statements without parameters, discarding any rows.
    fn batch(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        self.run(sql, None).map(|_| ())
    }

    /// Runs a query the ops built with sqlx (`sqlx::query(…).bind(…)`).
    fn run_query<'q>(
        &mut self,
        mut query: impl Execute<'q, Any>,
    ) -> Result<(Vec<AnyRow>, u64), sqlx::Error> {
        let arguments = query.take_arguments().map_err(sqlx::Error::Encode)?;
        self.run(query.sql().as_str(), arguments)
    }

    /// Runs `sql`: with `arguments`, one statement, prepared once and cached; without, any
    /// number of statements (as sqlx's simple protocol allows). Returns the rows and the rows
    /// the statements changed.
    fn run(
        &mut self,
        sql: &str,
        arguments: Option<AnyArguments>,
    ) -> Result<(Vec<AnyRow>, u64), sqlx::Error> {
        let started = Instant::now();
        let result = match arguments {
            Some(arguments) => {
                let mut statement = self.conn.prepare_cached(sql).map_err(database_error)?;
                bind(&mut statement, arguments)?;
                let names = match self.columns.get(sql) {
                    Some(names) if names.names.len() == statement.column_count() => names.clone(),
                    _ => {
                        if self.columns.len() >= COLUMN_NAMES_CACHE {
                            self.columns.clear();
                        }
                        let names = Arc::new(ColumnNames::of(&statement));
                        self.columns.insert(sql.to_owned(), names.clone());
                        names
                    }
                };
                let rows = collect_rows(&mut statement, &names)?;
                let changed = changes(&self.conn, &statement);
                Ok((rows, changed))
            }
            None => {
                let mut rows = Vec::new();
                let mut changed = 0;
                let mut statements = rusqlite::Batch::new(&self.conn, sql);
                while let Some(mut statement) = statements.next().map_err(database_error)? {
                    let names = ColumnNames::of(&statement);
                    rows.extend(collect_rows(&mut statement, &names)?);
                    changed += changes(&self.conn, &statement);
                }
                Ok((rows, changed))
            }
        };
        log_statement(sql, started.elapsed(), &result);
        result
    }
}

fn changes(conn: &rusqlite::Connection, statement: &rusqlite::Statement<'_>) -> u64 {
    if statement.readonly() {
        0
    } else {
        conn.changes()
    }
}

/// Logs every statement at debug level (`ALLOT_LOG=allot_ledger::sql=debug`) the way sqlx logs
/// its own, so the query-plan test and an operator see the writer's statements too.
fn log_statement(sql: &str, elapsed: Duration, result: &Result<(Vec<AnyRow>, u64), sqlx::Error>) {
    let (rows_returned, rows_affected) = match result {
        Ok((rows, changed)) => (rows.len(), *changed),
        Err(_) => (0, 0),
    };
    // The fields are evaluated only when the event is enabled, so a disabled log costs nothing
    // per statement.
    let summary = || sql.split_whitespace().take(4).collect::<Vec<_>>().join(" ");
    let elapsed_secs = elapsed.as_secs_f64();
    if elapsed >= SLOW_STATEMENT {
        tracing::warn!(
            target: "allot_ledger::sql",
            summary = summary(),
            db.statement = sql,
            rows_affected,
            rows_returned,
            elapsed_secs,
            "slow statement"
        );
    } else {
        tracing::debug!(
            target: "allot_ledger::sql",
            summary = summary(),
            db.statement = sql,
            rows_affected,
            rows_returned,
            elapsed_secs,
        );
    }
}

/// Binds sqlx's arguments. The SQL numbers its parameters (`$1`, `$2`, …, the same text
/// PostgreSQL runs); SQLite names those `$1` and may meet them in any order or more than once.
fn bind(
    statement: &mut rusqlite::Statement<'_>,
    arguments: AnyArguments,
) -> Result<(), sqlx::Error> {
    let values = arguments.values.0;
    for index in 1..=statement.parameter_count() {
        let position = statement
            .parameter_name(index)
            .and_then(|name| name.get(1..))
            .and_then(|number| number.parse::<usize>().ok())
            .unwrap_or(index);
        let value = values.get(position - 1).ok_or_else(|| {
            sqlx::Error::Protocol(format!(
                "statement expects parameter {position}, {} bound",
                values.len()
            ))
        })?;
        let result = match value {
            AnyValueKind::Null(_) => statement.raw_bind_parameter(index, rusqlite::types::Null),
            AnyValueKind::Bool(b) => statement.raw_bind_parameter(index, *b as i64),
            AnyValueKind::SmallInt(i) => statement.raw_bind_parameter(index, *i as i64),
            AnyValueKind::Integer(i) => statement.raw_bind_parameter(index, *i as i64),
            AnyValueKind::BigInt(i) => statement.raw_bind_parameter(index, *i),
            AnyValueKind::Real(r) => statement.raw_bind_parameter(index, *r as f64),
            AnyValueKind::Double(d) => statement.raw_bind_parameter(index, *d),
            AnyValueKind::Text(t) => statement.raw_bind_parameter(index, t.as_str()),
            AnyValueKind::TextSlice(t) => statement.raw_bind_parameter(index, &**t),
            AnyValueKind::Blob(b) => statement.raw_bind_parameter(index, b.as_slice()),
            other => {
                return Err(sqlx::Error::Protocol(format!(
                    "cannot bind {other:?} on SQLite"
                )));
            }
        };
        result.map_err(database_error)?;
    }
    Ok(())
}

/// Steps the statement to its end, turning each row into an `AnyRow`: integers as `BigInt`,
/// reals as `Double`, text and blobs as they are: what sqlx-sqlite's `Any` rows hold.
fn collect_rows(
    statement: &mut rusqlite::Statement<'_>,
    names: &ColumnNames,
) -> Result<Vec<AnyRow>, sqlx::Error> {
    let width = names.names.len();
    let mut rows = statement.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(database_error)? {
        let column_names = names.index.clone();
        let mut columns = Vec::with_capacity(width);
        let mut values = Vec::with_capacity(width);
        for (ordinal, name) in names.names.iter().enumerate() {
            let kind = match row.get_ref(ordinal).map_err(database_error)? {
                ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
                ValueRef::Integer(i) => AnyValueKind::BigInt(i),
                ValueRef::Real(r) => AnyValueKind::Double(r),
                ValueRef::Text(t) => {
                    AnyValueKind::Text(Arc::new(String::from_utf8_lossy(t).into_owned()))
                }
                ValueRef::Blob(b) => AnyValueKind::Blob(Arc::new(b.to_vec())),
            };
            columns.push(AnyColumn {
                ordinal,
                name: name.clone(),
                type_info: AnyTypeInfo {
                    kind: type_kind(&kind),
                },
            });
            values.push(AnyValue { kind });
        }
        out.push(AnyRow {
            column_names,
            columns,
            values,
        });
    }
    Ok(out)
}

fn type_kind(value: &AnyValueKind) -> AnyTypeInfoKind {
    match value {
        AnyValueKind::BigInt(_) => AnyTypeInfoKind::BigInt,
        AnyValueKind::Double(_) => AnyTypeInfoKind::Double,
        AnyValueKind::Text(_) => AnyTypeInfoKind::Text,
        AnyValueKind::Blob(_) => AnyTypeInfoKind::Blob,
        _ => AnyTypeInfoKind::Null,
    }
}

/// An SQLite error in the shape sqlx gives its own, so the store classifies it the same way
/// (a unique violation, a busy database).
#[derive(Debug)]
struct SqliteFailure {
    message: String,
    /// SQLite's extended result code.
    code: i32,
    code_text: String,
}

impl fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SqliteFailure {}

impl sqlx::error::DatabaseError for SqliteFailure {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(std::borrow::Cow::Borrowed(&self.code_text))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use rusqlite::ffi;
        use sqlx::error::ErrorKind;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => ErrorKind::CheckViolation,
            _ => ErrorKind::Other,
        }
    }
}

fn database_error(e: rusqlite::Error) -> sqlx::Error {
    match e {
        rusqlite::Error::SqliteFailure(failure, message) => {
            sqlx::Error::Database(Box::new(SqliteFailure {
                message: message.unwrap_or_else(|| failure.to_string()),
                code: failure.extended_code,
                code_text: failure.extended_code.to_string(),
            }))
        }
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// What the ops see: sqlx's `Executor` over either driver.
impl<'c> Executor<'c> for &'c mut Conn {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Conn::Pooled(c) => (&mut **c).fetch_many(query),
            own => {
                let c = own.own().expect("not a pooled connection");
                let result = c.run_query(query);
                let items: Vec<Result<Either<AnyQueryResult, AnyRow>, sqlx::Error>> = match result {
                    Ok((rows, rows_affected)) => rows
                        .into_iter()
                        .map(|row| Ok(Either::Right(row)))
                        .chain(std::iter::once(Ok(Either::Left(AnyQueryResult {
                            rows_affected,
                            last_insert_id: None,
                        }))))
                        .collect(),
                    Err(e) => vec![Err(e)],
                };
                Box::pin(futures_util::stream::iter(items))
            }
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<AnyRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        match self {
            Conn::Pooled(c) => (&mut **c).fetch_optional(query),
            own => {
                let c = own.own().expect("not a pooled connection");
                let result = c.run_query(query).map(|(rows, _)| rows.into_iter().next());
                Box::pin(std::future::ready(result))
            }
        }
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            Conn::Pooled(c) => (&mut **c).prepare_with(sql, parameters),
            _ => Box::pin(std::future::ready(Err(sqlx::Error::Protocol(
                "the store's own SQLite connections do not hand out prepared statements".into(),
            )))),
        }
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<Any>, sqlx::Error>>
    where
        'c: 'e,
    {
        match self {
            Conn::Pooled(c) => (&mut **c).describe(sql),
            _ => Box::pin(std::future::ready(Err(sqlx::Error::Protocol(
                "the store's own SQLite connections do not describe statements".into(),
            )))),
        }
    }
}
