//! Crash safety: a child process applies operations and reports each one the store
//! acknowledged; the parent kills it with SIGKILL mid-stream, reopens the store and checks that
//! every acknowledged operation is there and every invariant holds. Runs on SQLite and (when
//! reachable, always in CI) PostgreSQL.

use allot_ledger::testing as common;

use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use allot_ledger::*;
use common::TestDb;

const CHILD_ENV: &str = "ALLOT_CRASH_CHILD_DB";
/// How many acknowledged operations the parent waits for before it kills the child.
const KILL_AFTER: usize = 400;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    if let Ok(url) = std::env::var(CHILD_ENV) {
        runtime.block_on(child(&url));
        return;
    }
    let mut passed = 0;
    runtime.block_on(async {
        let sqlite = TestDb::sqlite();
        crash_and_recover(&sqlite).await;
        println!("test crash::sqlite_sigkill_mid_stream ... ok");
        passed += 1;
        if let Some(pg) = TestDb::postgres().await {
            crash_and_recover(&pg).await;
            pg.drop_db().await;
            println!("test crash::postgres_sigkill_mid_stream ... ok");
            passed += 1;
        }
    });
    println!("crash: {passed} passed, 0 failed");
}

/// Concurrent writers in the child, so that SQLite's group committer runs batches of several
/// callers when the kill comes.
const CHILD_WRITERS: u64 = 16;

/// The child: endless streams of operations from concurrent writers, each acknowledged on
/// stdout only after its commit returned; now and then the store's commit statistics.
async fn child(url: &str) {
    let ledger = Ledger::open(url).await.expect("child opens store");
    let tenant = ledger.tenant("crash").await.unwrap().expect("tenant");
    for writer in 0..CHILD_WRITERS {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            let mut op = writer;
            loop {
                op += CHILD_WRITERS;
                child_op(&ledger, tenant.id, op).await;
                if op.is_multiple_of(50) {
                    let stats = ledger.commit_stats();
                    println!("STATS {} {}", stats.batches, stats.commands);
                }
            }
        });
    }
    // The writers run until the parent kills the process.
    std::future::pending::<()>().await;
}

async fn child_op(ledger: &Ledger, tenant: TenantId, op: u64) {
    let ctx = Context {
        request_id: Some(format!("op-{op}")),
        ..Context::new(tenant, "crash-child")
    };
    let user = UserRef::Login(format!("u{}", op % 40));
    let product = ProductRef::named(
        "SuperOffice",
        if op.is_multiple_of(3) { "web" } else { "crm" },
    );
    let command = match op % 5 {
        0 => Command::CreateUser(NewUser::named(&format!("extra{op}"))),
        1 | 2 => Command::Assign { user, product },
        3 => Command::Unassign { user, product },
        _ => Command::LogOn {
            user,
            client: ClientKind::Windows,
            device: format!("pc{op}"),
            product: None,
            lease_seconds: 600,
        },
    };
    match ledger.execute(&ctx, command).await {
        // Acknowledged only when the commit returned and something changed (a no-op writes
        // nothing, so there would be nothing to find).
        Ok(outcome) if outcome.changed() > 0 => println!("ACK {op}"),
        Ok(_)
        | Err(LedgerError::NoSeatFree { .. })
        | Err(LedgerError::PrerequisiteMissing { .. }) => {
            println!("NOOP {op}")
        }
        Err(e) => panic!("child op {op} failed: {e:?}"),
    }
}

async fn crash_and_recover(db: &TestDb) {
    let url = db.url();
    {
        let ledger = Ledger::open(&url).await.expect("open");
        let tenant = ledger
            .create_tenant("crash", "setup")
            .await
            .expect("tenant");
        let ctx = Context::new(tenant.id, "setup");
        let mut setup = vec![
            Command::CreateProduct(NewProduct::user("SuperOffice", "crm", 25)),
            Command::CreateProduct(NewProduct {
                prerequisite: Some(ProductRef::named("SuperOffice", "crm")),
                ..NewProduct::user("SuperOffice", "web", 10)
            }),
        ];
        setup.extend((0..40).map(|i| Command::CreateUser(NewUser::named(&format!("u{i}")))));
        for outcome in ledger.apply(&ctx, &setup).await.expect("setup") {
            outcome.expect("setup command");
        }
        ledger.close().await;
    }

    let mut child = Process::new(std::env::current_exe().expect("own executable"))
        .env(CHILD_ENV, &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = BufReader::new(child.stdout.take().expect("child stdout"));
    let mut acked = Vec::new();
    // The child's last commit statistics: (transactions, commands in them).
    let mut grouped = (0u64, 0u64);
    let mut seen = 0;
    let started = Instant::now();
    for line in stdout.lines() {
        let line = line.expect("read child");
        seen += 1;
        if let Some(op) = line.strip_prefix("ACK ") {
            acked.push(op.parse::<u64>().expect("op number"));
        }
        if let Some(stats) = line.strip_prefix("STATS ") {
            let (batches, commands) = stats.split_once(' ').expect("two numbers");
            grouped = (
                batches.parse::<u64>().unwrap(),
                commands.parse::<u64>().unwrap(),
            );
        }
        if seen >= KILL_AFTER {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "child too slow"
        );
    }
    // Child::kill sends SIGKILL: no destructors, no flushing, no clean close of the store.
    child.kill().expect("SIGKILL child");
    let status = child.wait().expect("reap child");
    assert!(
        !status.success(),
        "child must have been killed, got {status:?}"
    );
    assert!(
        acked.len() > 20,
        "too few acknowledged operations: {}",
        acked.len()
    );
    if url.starts_with("sqlite") {
        // The kill came while commands were being committed in shared transactions.
        assert!(
            grouped.1 > grouped.0,
            "no group commit happened in the child: {grouped:?}"
        );
    }

    let ledger = Ledger::open(&url).await.expect("reopen after crash");
    let tenant = ledger
        .tenant("crash")
        .await
        .unwrap()
        .expect("tenant survives");
    let events = ledger
        .audit(
            tenant.id,
            &AuditFilter {
                limit: Some(1000),
                actor: Some("crash-child".into()),
                ..Default::default()
            },
        )
        .await
        .expect("audit");
    let mut more = events.clone();
    let mut after = events.last().map(|e| e.seq);
    while let Some(seq) = after {
        let page = ledger
            .audit(
                tenant.id,
                &AuditFilter {
                    after_seq: Some(seq),
                    limit: Some(1000),
                    actor: Some("crash-child".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        after = page.last().map(|e| e.seq);
        more.extend(page);
    }
    let recorded: std::collections::HashSet<String> =
        more.iter().filter_map(|e| e.request_id.clone()).collect();
    for op in &acked {
        assert!(
            recorded.contains(&format!("op-{op}")),
            "acknowledged operation {op} is missing after the crash"
        );
    }
    let violations = ledger.check_invariants(tenant.id).await.expect("check");
    assert!(
        violations.is_empty(),
        "invariants broken after crash: {violations:#?}"
    );
    let status = ledger.pool_status(tenant.id, None).await.unwrap();
    for s in &status {
        assert!(s.in_use <= s.total, "{s:?}");
    }
    ledger.close().await;
}
