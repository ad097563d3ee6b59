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
const KILL_AFTER: usize = 150;

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

/// The child: an endless stream of operations, each acknowledged on stdout only after commit.
async fn child(url: &str) {
    let ledger = Ledger::open(url).await.expect("child opens store");
    let tenant = ledger.tenant("crash").await.unwrap().expect("tenant");
    let mut op = 0u64;
    loop {
        op += 1;
        let ctx = Context {
            request_id: Some(format!("op-{op}")),
            ..Context::new(tenant.id, "crash-child")
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
    let mut seen = 0;
    let started = Instant::now();
    for line in stdout.lines() {
        let line = line.expect("read child");
        seen += 1;
        if let Some(op) = line.strip_prefix("ACK ") {
            acked.push(op.parse::<u64>().expect("op number"));
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
