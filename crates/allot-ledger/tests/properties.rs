//! Property test: random sequences of operations never break the invariants (holders never
//! exceed seats for restricted products, one holder per seat, grants and group assignments
//! match seats, no member waits beside a free seat, floating seats
//! only under live sessions, quotas match their charges, audit complete and gap-free), and the
//! user view's `can_assign` answers exactly whether `Assign` then succeeds. Each case runs in a
//! tenant of its own, on SQLite and (when reachable, always in CI) PostgreSQL.

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
    Join(usize, usize),
    Leave(usize, usize),
    GroupLicense(usize, usize),
    GroupUnlicense(usize, usize),
    Disable(usize),
    Enable(usize),
}

const GROUPS: usize = 2;

/// Mostly assignments, among enough other changes (seats taken and freed, retirement, pool
/// modes, quotas, expiry) to reach the states where `can_assign` could be wrong.
fn assign_heavy_op() -> impl Strategy<Value = Op> {
    let u = 0..USERS;
    let p = 0..PRODUCTS.len();
    let s = 0..12usize;
    prop_oneof![
        8 => (u.clone(), p.clone()).prop_map(|(u, p)| Op::Assign(u, p)),
        2 => (u.clone(), p.clone()).prop_map(|(u, p)| Op::Unassign(u, p)),
        2 => (s.clone(), u.clone()).prop_map(|(s, u)| Op::Grant(s, u)),
        1 => s.prop_map(Op::Release),
        1 => u.clone().prop_map(Op::Retire),
        1 => u.clone().prop_map(Op::Unretire),
        1 => (1..400i64).prop_map(Op::Advance),
        1 => (p, 1..3i64).prop_map(|(p, n)| Op::AddSeats(p, n)),
        1 => u.clone().prop_map(Op::RemoveAll),
        1 => any::<bool>().prop_map(Op::Restrict),
        1 => proptest::option::of(0..3i64).prop_map(Op::Quota),
        1 => (u, 0..3u8).prop_map(|(u, m)| Op::Mode(u, m)),
    ]
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
        1 => (p.clone(), 1..3i64).prop_map(|(p, n)| Op::AddSeats(p, n)),
        1 => u.clone().prop_map(Op::RemoveAll),
        1 => any::<bool>().prop_map(Op::Restrict),
        1 => proptest::option::of(0..3i64).prop_map(Op::Quota),
        1 => (u.clone(), 0..3u8).prop_map(|(u, m)| Op::Mode(u, m)),
        2 => (u.clone(), 0..GROUPS).prop_map(|(u, g)| Op::Join(u, g)),
        1 => (u.clone(), 0..GROUPS).prop_map(|(u, g)| Op::Leave(u, g)),
        1 => (0..GROUPS, p.clone()).prop_map(|(g, p)| Op::GroupLicense(g, p)),
        1 => (0..GROUPS, p).prop_map(|(g, p)| Op::GroupUnlicense(g, p)),
        1 => u.clone().prop_map(Op::Disable),
        1 => u.prop_map(Op::Enable),
    ]
}

/// Mostly group changes among the commands that take, free and add seats, to reach the states
/// where a waiting member could be left beside a free seat or a seat left without a reason.
fn group_heavy_op() -> impl Strategy<Value = Op> {
    let u = 0..USERS;
    // user, web (its prerequisite is user), visible (unrestricted), expiring.
    let p = prop_oneof![Just(0usize), Just(1), Just(4), Just(5)];
    let s = 0..12usize;
    prop_oneof![
        4 => (u.clone(), 0..GROUPS).prop_map(|(u, g)| Op::Join(u, g)),
        2 => (u.clone(), 0..GROUPS).prop_map(|(u, g)| Op::Leave(u, g)),
        2 => (0..GROUPS, p.clone()).prop_map(|(g, p)| Op::GroupLicense(g, p)),
        1 => (0..GROUPS, p.clone()).prop_map(|(g, p)| Op::GroupUnlicense(g, p)),
        2 => (u.clone(), p.clone()).prop_map(|(u, p)| Op::Assign(u, p)),
        2 => (u.clone(), p.clone()).prop_map(|(u, p)| Op::Unassign(u, p)),
        1 => s.clone().prop_map(Op::Release),
        1 => s.prop_map(Op::Revoke),
        1 => u.clone().prop_map(Op::Retire),
        1 => u.clone().prop_map(Op::Unretire),
        1 => u.clone().prop_map(Op::Disable),
        1 => u.clone().prop_map(Op::Enable),
        1 => u.clone().prop_map(Op::RemoveAll),
        1 => (p, 1..3i64).prop_map(|(p, n)| Op::AddSeats(p, n)),
        1 => proptest::option::of(0..3i64).prop_map(Op::Quota),
        1 => (u, 0..3u8).prop_map(|(u, m)| Op::Mode(u, m)),
        1 => (1..400i64).prop_map(Op::Advance),
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
        Command::CreateGroup {
            name: "g0".into(),
            uuid: None,
            external_id: None,
        },
        Command::CreateGroup {
            name: "g1".into(),
            uuid: None,
            external_id: None,
        },
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
        Op::Join(u, g) => Command::AddGroupMember {
            group: GroupRef::Name(format!("g{g}")),
            user: user(*u),
        },
        Op::Leave(u, g) => Command::RemoveGroupMember {
            group: GroupRef::Name(format!("g{g}")),
            user: user(*u),
        },
        Op::GroupLicense(g, p) => Command::AddGroupLicense {
            group: GroupRef::Name(format!("g{g}")),
            product: product(*p),
        },
        Op::GroupUnlicense(g, p) => Command::RemoveGroupLicense {
            group: GroupRef::Name(format!("g{g}")),
            product: product(*p),
        },
        Op::Disable(u) => Command::DisableUser { user: user(*u) },
        Op::Enable(u) => Command::EnableUser { user: user(*u) },
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
        // What the user view says about an assignment just before it is tried.
        let view = match op {
            Op::Assign(u, p) => ledger
                .user_view(tenant, &UserRef::Id(case.users[*u].id))
                .await
                .unwrap()
                .into_iter()
                .find(|v| v.product.id == case.products[*p].id),
            _ => None,
        };
        if let (Op::Assign(u, _), Some(view)) = (op, &view) {
            // The one-product view (what an assign answers) reads only the products around it,
            // and must say exactly what the whole view says of that product.
            let narrow = ledger
                .user_product_view(tenant, &UserRef::Id(case.users[*u].id), view.product.id)
                .await
                .unwrap();
            prop_assert_eq!(&narrow, view, "step {}: the one-product view differs", step);
        }
        let before = audit_len(ledger, tenant).await;
        let outcome = ledger.execute(&case.ctx, command.clone()).await;
        if let Some(view) = &view {
            // `can_assign` means: assigning now gives the user the product. For a product the
            // user already has, it is false (assigning changes nothing or only adds a reason).
            let gave = matches!(&outcome, Ok(o) if o.changed() > 0);
            if view.assigned {
                prop_assert!(!view.can_assign, "step {}: assigned yet can_assign", step);
            } else {
                prop_assert_eq!(
                    view.can_assign,
                    gave,
                    "step {}: the view said can_assign = {} for {}, but {:?} -> {:?}",
                    step,
                    view.can_assign,
                    view.product.full_name(),
                    command,
                    outcome
                );
            }
        }
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
    run_property_with(db, cases, op());
}

fn run_property_with(db: TestDb, cases: u32, op: impl Strategy<Value = Op>) {
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
        .run(&proptest::collection::vec(op, 1..40), |ops| {
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

#[test]
fn sqlite_view_can_assign_agrees_with_assign() {
    run_property_with(TestDb::sqlite(), 64, assign_heavy_op());
}

#[test]
fn postgres_view_can_assign_agrees_with_assign() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = runtime.block_on(TestDb::postgres()) else {
        return;
    };
    drop(runtime);
    run_property_with(db, 24, assign_heavy_op());
}

#[test]
fn sqlite_group_operations_keep_the_invariants() {
    run_property_with(TestDb::sqlite(), 64, group_heavy_op());
}

#[test]
fn postgres_group_operations_keep_the_invariants() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(db) = runtime.block_on(TestDb::postgres()) else {
        return;
    };
    drop(runtime);
    run_property_with(db, 16, group_heavy_op());
}
