//! Test fixtures (feature `testing`) for this crate's tests and the adapters' tests: a fresh
//! store on SQLite (temp file) or PostgreSQL (a database of its own), a tenant, a hand-moved
//! clock and small helpers. Creating and dropping databases needs SQL, which is why this lives
//! here and not in the adapters' test code.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::*;
use sqlx::{Connection, Executor};
use time::macros::datetime;

/// Where the tests find PostgreSQL. In CI (CI=true) it must be reachable: a test that needs it
/// fails instead of skipping.
pub fn pg_admin_url() -> String {
    std::env::var("ALLOT_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A throw-away store: a temp SQLite file, or a fresh PostgreSQL database.
pub enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres { admin: String, name: String },
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestDb {
    pub fn sqlite() -> TestDb {
        TestDb::Sqlite(tempfile::tempdir().expect("temp dir"))
    }

    /// A new PostgreSQL database, or `None` (outside CI) when no server answers.
    pub async fn postgres() -> Option<TestDb> {
        sqlx::any::install_default_drivers();
        let admin = pg_admin_url();
        let mut conn = match sqlx::AnyConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(e) if !in_ci() => {
                eprintln!(
                    "PostgreSQL not reachable at {admin} ({e}); skipping the PostgreSQL half"
                );
                return None;
            }
            Err(e) => panic!("CI=true but PostgreSQL is not reachable at {admin}: {e}"),
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        sweep_old_databases(&mut conn, now).await;
        let name = format!(
            "allot_t_{now}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        Some(TestDb::Postgres { admin, name })
    }

    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => format!("sqlite://{}", dir.path().join("allot.db").display()),
            TestDb::Postgres { admin, name } => {
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
                format!("{base}/{name}")
            }
        }
    }

    /// Drops a PostgreSQL test database (SQLite's temp dir goes with the value).
    pub async fn drop_db(&self) {
        if let TestDb::Postgres { admin, name } = self
            && let Ok(mut conn) = sqlx::AnyConnection::connect(admin).await
        {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
            conn.close().await.ok();
        }
    }
}

/// Fault injection on PostgreSQL for crash tests: a window, held open, between a change and
/// the write of its Idempotency-Key answer.
impl TestDb {
    /// From now on every write of an Idempotency-Key answer (an update that sets its status)
    /// sleeps for a minute before it is made.
    pub async fn stall_idempotent_answers(&self) {
        let mut conn = sqlx::AnyConnection::connect(&self.url())
            .await
            .expect("connect");
        conn.execute(
            "CREATE FUNCTION allot_test_stall() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_sleep(60); RETURN NEW; END $$; \
             CREATE TRIGGER allot_test_stall BEFORE UPDATE ON idempotency_keys FOR EACH ROW \
             WHEN (NEW.status IS NOT NULL) EXECUTE FUNCTION allot_test_stall();",
        )
        .await
        .expect("install the stall");
        conn.close().await.ok();
    }

    /// The backend stalled in writing an answer, if one is.
    pub async fn stalled_answer_backend(&self) -> Option<i32> {
        let mut conn = sqlx::AnyConnection::connect(&self.url()).await.ok()?;
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND state = 'active' AND query LIKE 'UPDATE idempotency_keys SET status%'",
        )
        .fetch_optional(&mut conn)
        .await
        .ok()
        .flatten();
        conn.close().await.ok();
        pid
    }

    /// Ends the stalled backend as the death of its client process would (its open
    /// transaction rolls back; what it committed before stays), and removes the stall.
    pub async fn end_stall(&self, pid: i32) {
        let mut conn = sqlx::AnyConnection::connect(&self.url())
            .await
            .expect("connect");
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&mut conn)
            .await
            .expect("terminate");
        conn.execute(
            "DROP TRIGGER allot_test_stall ON idempotency_keys; DROP FUNCTION allot_test_stall();",
        )
        .await
        .expect("remove the stall");
        conn.close().await.ok();
    }
}

/// Test databases left behind by runs that panicked, older than two hours, are dropped.
async fn sweep_old_databases(conn: &mut sqlx::AnyConnection, now: i64) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE datname LIKE 'allot_t_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for name in names {
        let stamp = name.split('_').nth(2).and_then(|s| s.parse::<i64>().ok());
        if stamp.is_some_and(|t| t < now - 7200) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut *conn)
            .await;
        }
    }
}

pub const START: time::OffsetDateTime = datetime!(2026-11-23 09:00 UTC);

/// A ledger on a fresh store with one tenant and a manual clock.
pub struct Fixture {
    pub db: TestDb,
    pub ledger: Ledger,
    pub clock: ManualClock,
    pub tenant: Tenant,
    pub ctx: Context,
}

impl Fixture {
    pub async fn new(db: TestDb) -> Fixture {
        let clock = ManualClock::new(START);
        // The racer tests queue dozens of commands on one product's rows; on a CI machine
        // that runs other test binaries and builds beside them, the last in the queue can wait
        // longer for a connection than a server's default 5 s (and would be told "busy"). What
        // they test is the outcome of every command, not how long it waited.
        let options = StoreOptions {
            acquire_timeout: std::time::Duration::from_secs(60),
            ..StoreOptions::default()
        };
        let ledger = Ledger::open_with(&db.url(), &options)
            .await
            .expect("open store")
            .with_clock(Arc::new(clock.clone()));
        let tenant = ledger
            .create_tenant("acme", "test")
            .await
            .expect("create tenant");
        let ctx = Context::new(tenant.id, "admin");
        Fixture {
            db,
            ledger,
            clock,
            tenant,
            ctx,
        }
    }

    pub async fn exec(&self, command: Command) -> Result<Outcome, LedgerError> {
        self.ledger.execute(&self.ctx, command).await
    }

    pub async fn ok(&self, command: Command) -> Outcome {
        let shown = format!("{command:?}");
        self.exec(command)
            .await
            .unwrap_or_else(|e| panic!("{shown} failed: {e:?}"))
    }

    pub async fn err(&self, command: Command) -> LedgerError {
        let shown = format!("{command:?}");
        match self.exec(command).await {
            Ok(outcome) => panic!("{shown} succeeded with {outcome:?}, expected an error"),
            Err(e) => e,
        }
    }

    pub async fn product(&self, new: NewProduct) -> Product {
        match self.ok(Command::CreateProduct(new)).await {
            Outcome::Product(p) => p,
            other => panic!("unexpected {other:?}"),
        }
    }

    pub async fn user_product(&self, name: &str, seats: i64) -> Product {
        self.product(NewProduct::user("SuperOffice", name, seats))
            .await
    }

    pub async fn user(&self, login: &str) -> User {
        self.user_with(NewUser::named(login)).await
    }

    pub async fn user_with(&self, new: NewUser) -> User {
        match self.ok(Command::CreateUser(new)).await {
            Outcome::User(u) => u,
            other => panic!("unexpected {other:?}"),
        }
    }

    pub async fn company(&self, name: &str, pool_mode: PoolMode) -> Company {
        match self
            .ok(Command::CreateCompany {
                name: name.into(),
                pool_mode,
            })
            .await
        {
            Outcome::Company(c) => c,
            other => panic!("unexpected {other:?}"),
        }
    }

    pub async fn add_seats(&self, new: NewSeats) -> Vec<Seat> {
        match self.ok(Command::AddSeats(new)).await {
            Outcome::Seats { seats } => seats,
            other => panic!("unexpected {other:?}"),
        }
    }

    pub async fn assign(&self, user: &User, product: &Product) -> Result<Outcome, LedgerError> {
        self.exec(Command::Assign {
            user: UserRef::Id(user.id),
            product: ProductRef::Id(product.id),
        })
        .await
    }

    pub async fn unassign(&self, user: &User, product: &Product) -> Result<Outcome, LedgerError> {
        self.exec(Command::Unassign {
            user: UserRef::Id(user.id),
            product: ProductRef::Id(product.id),
        })
        .await
    }

    pub async fn status(&self, product: &Product) -> PoolStatus {
        self.ledger
            .pool_status(self.tenant.id, Some(product.id))
            .await
            .expect("pool status")
            .remove(0)
    }

    /// (total, in_use, free)
    pub async fn counts(&self, product: &Product) -> (i64, i64, i64) {
        let s = self.status(product).await;
        (s.total, s.in_use, s.free)
    }

    pub async fn view(&self, user: &User, product: &Product) -> UserProductView {
        self.ledger
            .user_view(self.tenant.id, &UserRef::Id(user.id))
            .await
            .expect("user view")
            .into_iter()
            .find(|v| v.product.id == product.id)
            .expect("product in view")
    }

    pub async fn assigned(&self, user: &User, product: &Product) -> bool {
        self.view(user, product).await.assigned
    }

    pub async fn seats_of(&self, user: &User) -> Vec<Seat> {
        self.ledger
            .seats(
                self.tenant.id,
                &SeatFilter {
                    holder: Some(user.id),
                    ..Default::default()
                },
            )
            .await
            .expect("seats")
    }

    pub async fn audit_len(&self) -> usize {
        self.ledger
            .audit(
                self.tenant.id,
                &AuditFilter {
                    limit: Some(1000),
                    ..Default::default()
                },
            )
            .await
            .expect("audit")
            .len()
    }

    pub async fn assert_invariants(&self) {
        let violations = self
            .ledger
            .check_invariants(self.tenant.id)
            .await
            .expect("check invariants");
        assert!(violations.is_empty(), "invariants broken: {violations:#?}");
    }

    /// Checks the invariants, closes the store and drops its database.
    pub async fn finish(self) {
        self.assert_invariants().await;
        self.ledger.close().await;
        self.db.drop_db().await;
    }
}

/// Runs a test body against a fresh fixture on SQLite and, in a second test, on PostgreSQL.
#[macro_export]
macro_rules! on_both_stores {
    ($(async fn $name:ident($f:ident: Fixture) $body:block)+) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let $f = Fixture::new(TestDb::sqlite()).await;
                    $body
                    $f.finish().await;
                }
            )+
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = TestDb::postgres().await else { return };
                    let $f = Fixture::new(db).await;
                    $body
                    $f.finish().await;
                }
            )+
        }
    };
}
