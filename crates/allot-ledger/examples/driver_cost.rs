//! What a SQLite command costs, and how much of it is the driver (issue 12).
//!
//! A command on SQLite runs some twenty statements, and the store sends each through sqlx's
//! `Any` driver, which hands it to the connection's worker thread and waits for the answer. This
//! measures, on one store of the tenant (one product of 6,000 seats, 3,000 users), in
//! CPU time of this process:
//!
//! 1. a real command: `Assign` then `Unassign` of a random user through [`Ledger::execute`],
//!    one after another (each commits alone);
//! 2. the same number of transactions, each of [`STATEMENTS`] cheap statements that seek one
//!    row by its key (half reads of a user, half no-op updates of a seat), sent through sqlx
//!    `Any` the way the store sends its statements;
//! 3. those transactions again through rusqlite with cached prepared statements, on the thread
//!    that owns the connection: the lever the issue names, a writer thread running whole
//!    transactions.
//!
//! So (2) and (3) are the driver's cost per statement, and (1) against (2) shows how much of a
//! command that is. Run with `cargo run --release -p allot-ledger --example driver_cost`
//! (`-- 5000` for more rounds); BENCHMARKS.md records its figures.

use std::time::Instant;

use allot_ledger::testing::{Fixture, TestDb};
use allot_ledger::*;
use rand::{Rng, SeedableRng};
use sqlx::{Connection, Executor};

/// Statements per transaction in (2) and (3): about what an assign runs (see BENCHMARKS.md).
const STATEMENTS: usize = 20;
const SEATS: i64 = 6_000;
const USERS: usize = 3_000;

/// CPU seconds (user + system) this process has used, from /proc (Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .expect("stat fields")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // Linux reports these in USER_HZ, 100 on every mainstream configuration.
    ticks / 100.0
}

fn report(what: &str, cpu: f64, wall: f64, units: usize, unit: &str) {
    println!(
        "{what:<58} {:>8.1} µs CPU / {unit}   ({units} {unit}s, {cpu:.2} s CPU, {wall:.2} s wall)",
        cpu * 1e6 / units as f64
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("rounds: a number"))
        .unwrap_or(2_000);
    let f = Fixture::new(TestDb::sqlite()).await;
    let crm = f.user_product("crm", SEATS).await;
    let mut users = Vec::with_capacity(USERS);
    for chunk in (0..USERS).collect::<Vec<_>>().chunks(500) {
        let commands: Vec<Command> = chunk
            .iter()
            .map(|i| Command::CreateUser(NewUser::named(&format!("user{i}"))))
            .collect();
        for outcome in f.ledger.apply(&f.ctx, &commands).await.expect("users") {
            match outcome.expect("user") {
                Outcome::User(u) => users.push(u),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);

    // (1) The real thing: a command, end to end inside the ledger.
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    for _ in 0..rounds {
        let user = &users[rng.random_range(0..users.len())];
        f.assign(user, &crm).await.expect("assign");
        f.unassign(user, &crm).await.expect("unassign");
    }
    report(
        "ledger: Assign / Unassign, each committed alone",
        cpu_seconds() - cpu,
        wall.elapsed().as_secs_f64(),
        2 * rounds,
        "command",
    );

    let path = match &f.db {
        TestDb::Sqlite(dir) => dir.path().join("allot.db"),
        TestDb::Postgres { .. } => unreachable!("a SQLite fixture"),
    };
    let tenant = f.tenant.id;
    let user_ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let statements = move |rng: &mut rand::rngs::StdRng| {
        (0..STATEMENTS)
            .map(|i| {
                if i % 2 == 0 {
                    (true, user_ids[rng.random_range(0..user_ids.len())])
                } else {
                    (false, rng.random_range(1..=SEATS))
                }
            })
            .collect::<Vec<_>>()
    };
    const READ: &str =
        "SELECT id, login, first_name, last_name FROM users WHERE tenant_id = $1 AND id = $2";
    const WRITE: &str =
        "UPDATE seats SET activation_name = activation_name WHERE tenant_id = $1 AND number = $2";

    // (2) sqlx Any, as the store sends its statements (one connection, as the SQLite writer).
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", path.display());
    let mut conn = sqlx::AnyConnection::connect(&url).await.expect("connect");
    conn.execute("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;")
        .await
        .expect("pragmas");
    let (cpu, wall) = (cpu_seconds(), Instant::now());
    for _ in 0..2 * rounds {
        let mut tx = conn.begin().await.expect("begin");
        for (read, key) in statements(&mut rng) {
            if read {
                sqlx::query(READ)
                    .bind(tenant)
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await
                    .expect("read");
            } else {
                let done = sqlx::query(WRITE)
                    .bind(tenant)
                    .bind(key)
                    .execute(&mut *tx)
                    .await
                    .expect("write");
                assert_eq!(done.rows_affected(), 1, "seat {key}");
            }
        }
        tx.commit().await.expect("commit");
    }
    let sqlx_cpu = cpu_seconds() - cpu;
    report(
        &format!("sqlx Any: {STATEMENTS} key seeks in a transaction"),
        sqlx_cpu,
        wall.elapsed().as_secs_f64(),
        2 * rounds,
        "transaction",
    );
    conn.close().await.expect("close");

    // (3) rusqlite on the thread that owns the connection, statements prepared once.
    let mut rng_thread = rand::rngs::StdRng::seed_from_u64(13);
    let (rusqlite_cpu, wall) = std::thread::spawn(move || {
        let mut conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;")
            .expect("pragmas");
        let (cpu, wall) = (cpu_seconds(), Instant::now());
        for _ in 0..2 * rounds {
            let tx = conn.transaction().expect("begin");
            for (read, key) in statements(&mut rng_thread) {
                if read {
                    let mut read = tx.prepare_cached(READ).expect("prepare");
                    let mut rows = read.query((tenant, key)).expect("read");
                    while let Some(row) = rows.next().expect("row") {
                        let _: (i64, String) = (row.get(0).unwrap(), row.get(1).unwrap());
                    }
                } else {
                    let mut write = tx.prepare_cached(WRITE).expect("prepare");
                    assert_eq!(
                        write.execute((tenant, key)).expect("write"),
                        1,
                        "seat {key}"
                    );
                }
            }
            tx.commit().expect("commit");
        }
        (cpu_seconds() - cpu, wall.elapsed().as_secs_f64())
    })
    .join()
    .expect("rusqlite thread");
    report(
        &format!("rusqlite, cached, own thread: the same {STATEMENTS} seeks"),
        rusqlite_cpu,
        wall,
        2 * rounds,
        "transaction",
    );
    let per_statement = |cpu: f64| cpu * 1e6 / (2 * rounds * STATEMENTS) as f64;
    println!(
        "per statement: sqlx Any {:.1} µs, rusqlite {:.1} µs ({:.1} x)",
        per_statement(sqlx_cpu),
        per_statement(rusqlite_cpu),
        sqlx_cpu / rusqlite_cpu.max(f64::MIN_POSITIVE)
    );
}
