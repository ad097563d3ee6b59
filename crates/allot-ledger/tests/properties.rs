//! Property test: random sequences of operations never break the invariants (holders never
//! exceed seats for restricted products, one holder per seat, grants match seats, floating seats
//! only under live sessions, quotas match their charges, audit complete and gap-free). Each case
//! runs in a tenant of its own, on SQLite and (when reachable, always in CI) PostgreSQL.

use allot_ledger::testing as common;

use std::sync::Arc;

use allot_ledger::*;
use common::TestDb;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const USERS: usize = 5;
const PRODUCTS: [&str; 6] = ["user", "web", "plan", "float", "visible", "expiring"];

#[derive(Debug, Clone)]
enum Op {
    Assign(usize, usize),
    Unassign(usize, usize),
    Grant(usize, usize),
    Release(usize),
    Revoke(usize),
    Activate(usize, usize),
    Retire(usize),
    Unretire(usize),
    LogOn(usize),
    LogOff(usize),
    Heartbeat(usize),
    Advance(i64),
    Expire,
    AddSeats(usize, i64),
    RemoveAll(usize),
    Restrict(bool),
    Quota(Option<i64>),
    Mode(usize, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0..USERS;
    let p = 0..PRODUCTS.len();
    let s = 0..12usize;
    prop_oneof![
        4 => (u.clone(), p.clone()).prop_map(|(u, p)| Op::Assign(u, p)),
        2 => (u.clone(), p.clone()).prop_map(|(u, p)| Op::Unassign(u, p)),
        2 => (s.clone(), u.clone()).prop_map(|(s, u)| Op::Grant(s, u)),
        1 => s.clone().prop_map(Op::Release),
        1 => s.clone().prop_map(Op::Revoke),
        1 => (s, 0..3usize).prop_map(|(s, h)| Op::Activate(s, h)),
        1 => u.clone().prop_map(Op::Retire),
        1 => u.clone().prop_map(Op::Unretire),
        2 => u.clone().prop_map(Op::LogOn),
        1 => u.clone().prop_map(Op::LogOff),
        1 => u.clone().prop_map(Op::Heartbeat),
        1 => (1..400i64).prop_map(Op::Advance),
        1 => Just(Op::Expire),
        1 => (p, 1..3i64).prop_map(|(p, n)| Op::AddSeats(p, n)),
        1 => u.clone().prop_map(Op::RemoveAll),
        1 => any::<bool>().prop_map(Op::Restrict),
        1 => proptest::option::of(0..3i64).prop_map(Op::Quota),
        1 => (u, 0..3u8).prop_map(|(u, m)| Op::Mode(u, m)),
    ]
}

struct Case {
    ctx: Context,
    users: Vec<User>,
    products: Vec<Product>,
    leases: Vec<Option<Lease>>,
}

async fn setup(ledger: &Ledger, name: &str) -> Case {
    let tenant = ledger.create_tenant(name, "prop").await.unwrap();
    let ctx = Context::new(tenant.id, "prop");
    let named = |n: &str| ProductRef::named("SuperOffice", n);
    let soon = common::START + time::Duration::seconds(600);
    let mut commands = vec![
        Command::CreateCompany {
            name: "Pooled".into(),
            pool_mode: PoolMode::Company,
        },
        Command::CreateProduct(NewProduct::user("SuperOffice", "user", 2)),
        Command::CreateProduct(NewProduct {
            prerequisite: Some(named("user")),
            ..NewProduct::user("SuperOffice", "web", 1)
        }),
        Command::CreateProduct(NewProduct {
            extra_flags: EXTRA_FLAG_USER_PLAN,
            plan_members: vec![named("web"), named("user")],
            ..NewProduct::user("SuperOffice", "plan", 2)
        }),
        Command::CreateProduct(NewProduct {
            kind: ProductKind::Floating,
            ..NewProduct::user("SuperOffice", "float", 1)
        }),
        Command::CreateProduct(NewProduct {
            unrestricted: true,
            ..NewProduct::user("SuperOffice", "visible", 1)
        }),
        Command::CreateProduct(NewProduct::user("SuperOffice", "expiring", 0)),
        Command::AddSeats(NewSeats {
            expires_at: Some(soon),
            ..NewSeats::plain(named("expiring"), 2)
        }),
        Command::AddSeats(NewSeats {
            pool_company: Some(CompanyRef::Name("Pooled".into())),
            ..NewSeats::plain(named("user"), 1)
        }),
    ];
    for i in 0..USERS {
        commands.push(Command::CreateUser(NewUser {
            company: (i >= 3).then(|| CompanyRef::Name("Pooled".into())),
            license_mode: if i >= 3 {
                LicenseMode::Company
            } else {
                LicenseMode::Manual
            },
            ..NewUser::named(&format!("user{i}"))
        }));
    }
    let mut users = Vec::new();
    for outcome in ledger.apply(&ctx, &commands).await.unwrap() {
        if let Outcome::User(u) = outcome.unwrap() {
            users.push(u);
        }
    }
    let mut products = Vec::new();
    for name in PRODUCTS {
        products.push(ledger.product(ctx.tenant, &named(name)).await.unwrap());
    }
    Case {
        ctx,
        users,
        products,
        leases: vec![None; USERS],
    }
}

async fn seat_at(ledger: &Ledger, tenant: TenantId, index: usize) -> Option<Seat> {
    let seats = ledger.seats(tenant, &SeatFilter::default()).await.unwrap();
    if seats.is_empty() {
        None
    } else {
        Some(seats[index % seats.len()].clone())
    }
}

async fn to_command(ledger: &Ledger, case: &Case, clock: &ManualClock, op: &Op) -> Option<Command> {
    let user = |i: usize| UserRef::Id(case.users[i].id);
    let product = |i: usize| ProductRef::Id(case.products[i].id);
    let tenant = case.ctx.tenant;
    Some(match op {
        Op::Assign(u, p) => Command::Assign {
            user: user(*u),
            product: product(*p),
        },
        Op::Unassign(u, p) => Command::Unassign {
            user: user(*u),
            product: product(*p),
        },
        Op::Grant(s, u) => Command::GrantSeat {
            seat: seat_at(ledger, tenant, *s).await?.id,
            user: user(*u),
        },
        Op::Release(s) => Command::ReleaseSeat {
            seat: seat_at(ledger, tenant, *s).await?.id,
            user: None,
        },
        Op::Revoke(s) => Command::RevokeSeat {
            seat: seat_at(ledger, tenant, *s).await?.id,
            user: None,
        },
        Op::Activate(s, h) => Command::ActivateSeat {
            seat: seat_at(ledger, tenant, *s).await?.id,
            activation: Activation {
                hardware_id: format!("hid{h}"),
                computer_name: "pc".into(),
                operating_system: "os".into(),
            },
            user: None,
        },
        Op::Retire(u) => Command::Retire { user: user(*u) },
        Op::Unretire(u) => Command::Unretire { user: user(*u) },
        Op::LogOn(u) => Command::LogOn {
            user: user(*u),
            client: ClientKind::Windows,
            device: String::new(),
            product: Some(product(3)),
            lease_seconds: 120,
        },
        Op::LogOff(u) => Command::LogOff {
            users: vec![user(*u)],
            client: None,
            reason: EndReason::Logoff,
        },
        Op::Heartbeat(u) => {
            let lease = case.leases[*u].as_ref()?;
            Command::Heartbeat {
                session: lease.session.id,
                lease_token: lease.lease_token.clone(),
                lease_seconds: 120,
            }
        }
        Op::Advance(secs) => {
            clock.advance(time::Duration::seconds(*secs));
            return None;
        }
        Op::Expire => Command::ExpireSessions,
        Op::AddSeats(p, n) => Command::AddSeats(NewSeats::plain(product(*p), *n)),
        Op::RemoveAll(u) => Command::RemoveAllLicenses { user: user(*u) },
        Op::Restrict(r) => Command::EditProduct {
            product: product(4),
            patch: ProductPatch {
                unrestricted: Some(!r),
                ..Default::default()
            },
        },
        Op::Quota(q) => Command::SetCompanyQuota {
            company: CompanyRef::Name("Pooled".into()),
            product: product(0),
            quota: *q,
        },
        Op::Mode(u, m) => Command::EditUser {
            user: user(*u),
            patch: UserPatch {
                license_mode: Some(
                    [
                        LicenseMode::Manual,
                        LicenseMode::Automatic,
                        LicenseMode::Company,
                    ][*m as usize],
                ),
                ..Default::default()
            },
        },
    })
}

async fn audit_len(ledger: &Ledger, tenant: TenantId) -> usize {
    let mut n = 0;
    let mut after = None;
    loop {
        let page = ledger
            .audit(
                tenant,
                &AuditFilter {
                    after_seq: after,
                    limit: Some(1000),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        if page.is_empty() {
            return n;
        }
        n += page.len();
        after = page.last().map(|e| e.seq);
    }
}

async fn run_case(
    ledger: &Ledger,
    clock: &ManualClock,
    name: &str,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let mut case = setup(ledger, name).await;
    let tenant = case.ctx.tenant;
    for (step, op) in ops.iter().enumerate() {
        let Some(command) = to_command(ledger, &case, clock, op).await else {
            continue;
        };
        let before = audit_len(ledger, tenant).await;
        let outcome = ledger.execute(&case.ctx, command.clone()).await;
        let written = audit_len(ledger, tenant).await - before;
        match &outcome {
            // Renewing a lease moves only its end and is deliberately not audited.
            Ok(_) if matches!(command, Command::Heartbeat { .. }) => prop_assert_eq!(written, 0),
            Ok(o) => prop_assert_eq!(
                o.changed() > 0,
                written > 0,
                "step {}: {:?} -> {:?} wrote {} audit records",
                step,
                command,
                o,
                written
            ),
            Err(LedgerError::Store(e)) => {
                return Err(TestCaseError::fail(format!(
                    "store failure at step {step}: {e}"
                )));
            }
            Err(_) => prop_assert_eq!(
                written,
                0,
                "step {}: refused {:?} wrote audit",
                step,
                command
            ),
        }
        if let (Op::LogOn(u), Ok(Outcome::Lease(lease))) = (op, &outcome) {
            case.leases[*u] = Some(lease.clone());
        }
        let violations = ledger.check_invariants(tenant).await.unwrap();
        prop_assert!(
            violations.is_empty(),
            "step {}: {:?} broke {:?}",
            step,
            command,
            violations
        );
        for status in ledger.pool_status(tenant, None).await.unwrap() {
            if !status.unrestricted {
                prop_assert!(status.in_use <= status.total, "step {}: {:?}", step, status);
            }
        }
        // Every seat has at most one holder by construction; check the listing agrees.
        let seats = ledger
            .seats(
                tenant,
                &SeatFilter {
                    limit: Some(1000),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let mut ids: Vec<_> = seats.iter().map(|s| s.id).collect();
        ids.sort();
        ids.dedup();
        prop_assert_eq!(ids.len(), seats.len());
    }
    Ok(())
}

fn run_property(db: TestDb, cases: u32) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let clock = ManualClock::new(common::START);
    let ledger = runtime
        .block_on(Ledger::open(&db.url()))
        .unwrap()
        .with_clock(Arc::new(clock.clone()));
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let counter = std::cell::Cell::new(0u32);
    runner
        .run(&proptest::collection::vec(op(), 1..40), |ops| {
            counter.set(counter.get() + 1);
            runtime.block_on(run_case(
                &ledger,
                &clock,
                &format!("case{}", counter.get()),
                &ops,
            ))
        })
        .unwrap();
    runtime.block_on(async {
        ledger.close().await;
        db.drop_db().await;
    });
}

#[test]
fn sqlite_random_operations_keep_the_invariants() {
    run_property(TestDb::sqlite(), 64);
}

#[test]
fn postgres_random_operations_keep_the_invariants() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = runtime.block_on(TestDb::postgres()) else {
        return;
    };
    drop(runtime);
    run_property(db, 24);
}
