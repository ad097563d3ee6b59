//! Concurrency: many tasks hammering one pool, and two separate pools (as two server processes
//! would) on one PostgreSQL database. Seats must never be over-allocated.

use allot_ledger::testing as common;

use std::sync::Arc;

use allot_ledger::*;
use common::{Fixture, TestDb};

const TASKS: usize = 64;
const SEATS: i64 = 10;

async fn setup(f: &Fixture, kind: ProductKind) -> (Product, Vec<User>) {
    let product = f
        .product(NewProduct {
            kind,
            ..NewProduct::user("SuperOffice", "contended", SEATS)
        })
        .await;
    let commands: Vec<Command> = (0..TASKS)
        .map(|i| Command::CreateUser(NewUser::named(&format!("racer{i}"))))
        .collect();
    let users = f
        .ledger
        .apply(&f.ctx, &commands)
        .await
        .unwrap()
        .into_iter()
        .map(|o| match o {
            Ok(Outcome::User(u)) => u,
            other => panic!("{other:?}"),
        })
        .collect();
    (product, users)
}

/// Runs one command per user on `ledgers` (round-robin), all at once; returns the outcomes.
async fn race(
    ledgers: &[Ledger],
    ctx: &Context,
    users: &[User],
    command: impl Fn(&User) -> Command,
) -> Vec<Result<Outcome, LedgerError>> {
    let barrier = Arc::new(tokio::sync::Barrier::new(users.len()));
    let mut tasks = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let ledger = ledgers[i % ledgers.len()].clone();
        let ctx = ctx.clone();
        let command = command(user);
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            ledger.execute(&ctx, command).await
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("task"));
    }
    outcomes
}

fn tally(outcomes: &[Result<Outcome, LedgerError>], product: &Product) -> usize {
    let mut won = 0;
    for o in outcomes {
        match o {
            Ok(_) => won += 1,
            Err(LedgerError::NoSeatFree { product: p, .. }) if *p == product.id => {}
            Err(e) => panic!("unexpected failure under contention: {e:?}"),
        }
    }
    won
}

async fn assign_race(f: Fixture, ledgers: Vec<Ledger>) {
    let (product, users) = setup(&f, ProductKind::User).await;
    let outcomes = race(&ledgers, &f.ctx, &users, |u| Command::Assign {
        user: UserRef::Id(u.id),
        product: ProductRef::Id(product.id),
    })
    .await;
    assert_eq!(tally(&outcomes, &product), SEATS as usize);
    assert_eq!(f.counts(&product).await, (SEATS, SEATS, 0));
    // And back: everyone lets go at once, from every pool.
    let outcomes = race(&ledgers, &f.ctx, &users, |u| Command::Unassign {
        user: UserRef::Id(u.id),
        product: ProductRef::Id(product.id),
    })
    .await;
    assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    assert_eq!(f.counts(&product).await, (SEATS, 0, SEATS));
    for l in &ledgers[1..] {
        l.close().await;
    }
    f.finish().await;
}

async fn floating_race(f: Fixture) {
    let (product, users) = setup(&f, ProductKind::Floating).await;
    let outcomes = race(std::slice::from_ref(&f.ledger), &f.ctx, &users, |u| {
        Command::LogOn {
            user: UserRef::Id(u.id),
            client: ClientKind::Web,
            device: String::new(),
            product: Some(ProductRef::Id(product.id)),
            lease_seconds: 60,
        }
    })
    .await;
    assert_eq!(tally(&outcomes, &product), SEATS as usize);
    assert_eq!(f.counts(&product).await, (SEATS, SEATS, 0));
    f.finish().await;
}

async fn one_seat_race(f: Fixture) {
    let (product, users) = setup(&f, ProductKind::User).await;
    let seat = f
        .ledger
        .seats(f.tenant.id, &SeatFilter::default())
        .await
        .unwrap()[0]
        .id;
    let outcomes = race(std::slice::from_ref(&f.ledger), &f.ctx, &users, |u| {
        Command::GrantSeat {
            seat,
            user: UserRef::Id(u.id),
        }
    })
    .await;
    let winners = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(winners, 1, "{outcomes:?}");
    for o in &outcomes {
        if let Err(e) = o {
            assert_eq!(*e, LedgerError::WrongHolder { seat });
        }
    }
    assert_eq!(f.counts(&product).await.1, 1);
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_64_tasks_race_for_10_seats() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let ledgers = vec![f.ledger.clone()];
    assign_race(f, ledgers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_64_tasks_race_for_10_seats() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let f = Fixture::new(db).await;
    let ledgers = vec![f.ledger.clone()];
    assign_race(f, ledgers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_pools_race_for_10_seats() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let f = Fixture::new(db).await;
    // A second, independent store instance on the same database: its own pool, like a second
    // server process.
    let second = Ledger::open(&f.db.url()).await.unwrap();
    let ledgers = vec![f.ledger.clone(), second];
    assign_race(f, ledgers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_handles_race_for_10_seats() {
    // Two store instances on one SQLite file: each has its own writer; SQLite's file lock and
    // busy timeout serialise them.
    let f = Fixture::new(TestDb::sqlite()).await;
    let second = Ledger::open(&f.db.url()).await.unwrap();
    let ledgers = vec![f.ledger.clone(), second];
    assign_race(f, ledgers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_floating_seats_under_contention() {
    floating_race(Fixture::new(TestDb::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_floating_seats_under_contention() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    floating_race(Fixture::new(db).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_one_seat_one_winner() {
    one_seat_race(Fixture::new(TestDb::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_one_seat_one_winner() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    one_seat_race(Fixture::new(db).await).await;
}

/// 32 racers on one pool: most activate the seat naming Ann or Bob as the holder, while every
/// fourth moves the seat to the other user (release and grant in one transaction). An activation
/// may only ever succeed for the user who holds the seat when it commits; the computer it
/// registers is bound to that user.
async fn activation_race(f: Fixture) {
    const RACERS: usize = 32;
    const ROUNDS: usize = 4;
    let product = f.user_product("ult", 1).await;
    let (ann, bob) = (f.user("ann").await, f.user("bob").await);
    let seat = f
        .ledger
        .seats(f.tenant.id, &SeatFilter::default())
        .await
        .unwrap()[0]
        .id;
    f.ok(Command::GrantSeat {
        seat,
        user: UserRef::Id(ann.id),
    })
    .await;
    let (mut won, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
        let mut tasks = Vec::new();
        for i in 0..RACERS {
            let (ledger, ctx, barrier) = (f.ledger.clone(), f.ctx.clone(), barrier.clone());
            let named = if (i / 2) % 2 == 0 {
                ann.clone()
            } else {
                bob.clone()
            };
            let hid = format!("hid-{round}-{i}");
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                if i % 4 == 3 {
                    let moved = ledger
                        .apply_all_or_nothing(
                            &ctx,
                            &[
                                Command::ReleaseSeat { seat, user: None },
                                Command::GrantSeat {
                                    seat,
                                    user: UserRef::Id(named.id),
                                },
                            ],
                        )
                        .await;
                    (
                        named,
                        hid,
                        None,
                        moved.map(|_| Outcome::Changed { changed: 1 }),
                    )
                } else {
                    let activation = Activation {
                        hardware_id: hid.clone(),
                        computer_name: "pc".into(),
                        operating_system: "os".into(),
                    };
                    let outcome = ledger
                        .execute(
                            &ctx,
                            Command::ActivateSeat {
                                seat,
                                activation,
                                user: Some(UserRef::Id(named.id)),
                            },
                        )
                        .await;
                    (named, hid, Some(()), outcome)
                }
            }));
        }
        for task in tasks {
            let (named, hid, activating, outcome) = task.await.expect("task");
            if activating.is_none() {
                outcome.unwrap_or_else(|e| panic!("moving the seat failed: {e:?}"));
                continue;
            }
            match outcome {
                Ok(Outcome::Seat(s)) => {
                    won += 1;
                    assert_eq!(s.holder, Some(named.id), "activated for a non-holder");
                    assert_eq!(s.activation.map(|a| a.hardware_id), Some(hid.clone()));
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(LedgerError::WrongHolder { .. }) => refused += 1,
                Err(LedgerError::AlreadyActivated { .. }) => {}
                Err(e) => panic!("unexpected failure under contention: {e:?}"),
            }
            // A computer registered by an activation belongs to the user who named it.
            for c in f.ledger.computers(f.tenant.id, None).await.unwrap() {
                if c.hardware_id == hid {
                    assert_eq!(c.user, Some(named.id), "{c:?}");
                }
            }
        }
    }
    assert!(won > 0 && refused > 0, "won {won}, refused {refused}");
    assert_eq!(f.counts(&product).await.1, 1);
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_32_racers_never_activate_for_a_non_holder() {
    activation_race(Fixture::new(TestDb::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_32_racers_never_activate_for_a_non_holder() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    activation_race(Fixture::new(db).await).await;
}

/// Group commit (SQLite): the racers' commands share transactions (fewer commits than commands),
/// and the ones a rule refuses roll back alone: their neighbours in the same batch still commit.
/// PostgreSQL commits each command alone (`grouped` false): the same outcomes, no batches.
async fn refusals_share_batches_with_winners(f: Fixture, grouped: bool) {
    let (product, users) = setup(&f, ProductKind::User).await;
    let before = f.ledger.commit_stats();
    let outcomes = race(std::slice::from_ref(&f.ledger), &f.ctx, &users, |u| {
        Command::Assign {
            user: UserRef::Id(u.id),
            product: ProductRef::Id(product.id),
        }
    })
    .await;
    let after = f.ledger.commit_stats();
    assert_eq!(tally(&outcomes, &product), SEATS as usize);
    let batches = after.batches - before.batches;
    if grouped {
        assert_eq!(after.commands - before.commands, TASKS as u64);
        assert!(
            batches < TASKS as u64,
            "{TASKS} concurrent commands took {batches} commits: no batching"
        );
    } else {
        assert_eq!((batches, after.commands - before.commands), (0, 0));
    }
    assert_eq!(f.counts(&product).await, (SEATS, SEATS, 0));
    // Every winner's audit record is there, and no loser's.
    let audit = f
        .ledger
        .audit(
            f.tenant.id,
            &AuditFilter {
                limit: Some(1000),
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    let assigned = audit
        .iter()
        .filter(|e| e.action == "license.assign")
        .count();
    assert_eq!(assigned, SEATS as usize, "{audit:?}");
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_refusals_share_batches_with_winners() {
    refusals_share_batches_with_winners(Fixture::new(TestDb::sqlite()).await, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_refusals_share_batches_with_winners() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    refusals_share_batches_with_winners(Fixture::new(db).await, false).await;
}

/// Racers on group assignment: 10 seats held directly by 10 holders, a group licensed with the
/// product, and at once: 30 new users join the group while the 10 holders give their seats up
/// (on `ledgers`, round-robin). Whatever the interleaving: never more holders than seats, every
/// freed seat goes to a waiting member in the same transaction (the invariant checker counts a
/// free seat beside a waiting member as a violation), and members are served in queue order:
/// every served member was queued before every member still waiting.
async fn group_waiting_list_race(f: Fixture, ledgers: Vec<Ledger>) {
    let product = f.user_product("grouped", SEATS).await;
    let group = match f
        .ok(Command::CreateGroup {
            name: "racers".into(),
            uuid: None,
            external_id: None,
        })
        .await
    {
        Outcome::Group(g) => g,
        other => panic!("{other:?}"),
    };
    f.ok(Command::AddGroupLicense {
        group: GroupRef::Id(group.id),
        product: ProductRef::Id(product.id),
    })
    .await;
    let mut holders = Vec::new();
    for i in 0..SEATS {
        let u = f.user(&format!("holder{i}")).await;
        f.assign(&u, &product).await.unwrap();
        holders.push(u);
    }
    let mut joiners = Vec::new();
    for i in 0..30 {
        joiners.push(f.user(&format!("joiner{i}")).await);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(holders.len() + joiners.len()));
    let mut tasks = Vec::new();
    let commands = joiners
        .iter()
        .map(|u| Command::AddGroupMember {
            group: GroupRef::Id(group.id),
            user: UserRef::Id(u.id),
        })
        .chain(holders.iter().map(|u| Command::Unassign {
            user: UserRef::Id(u.id),
            product: ProductRef::Id(product.id),
        }));
    for (i, command) in commands.enumerate() {
        let ledger = ledgers[i % ledgers.len()].clone();
        let ctx = f.ctx.clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            ledger.execute(&ctx, command).await
        }));
    }
    for t in tasks {
        t.await
            .expect("task")
            .expect("every racer's command succeeds");
    }
    assert_eq!(f.counts(&product).await, (SEATS, SEATS, 0));
    let view = f
        .ledger
        .group_view(f.tenant.id, &GroupRef::Id(group.id))
        .await
        .unwrap();
    let served: Vec<i64> = view
        .assignments
        .iter()
        .filter(|a| a.state == AssignmentState::Active)
        .map(|a| a.queue_number)
        .collect();
    let waiting: Vec<i64> = view
        .assignments
        .iter()
        .filter(|a| a.state == AssignmentState::Waiting)
        .map(|a| a.queue_number)
        .collect();
    assert_eq!(served.len() as i64, SEATS);
    assert_eq!(waiting.len(), 30 - SEATS as usize);
    let last_served = served.iter().max().unwrap();
    let first_waiting = waiting.iter().min().unwrap();
    assert!(
        last_served < first_waiting,
        "served out of order: served {served:?}, waiting {waiting:?}"
    );
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_group_members_race_seats_being_freed() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let ledgers = vec![f.ledger.clone()];
    group_waiting_list_race(f, ledgers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_group_members_race_seats_being_freed() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let f = Fixture::new(db).await;
    let ledgers = vec![f.ledger.clone()];
    group_waiting_list_race(f, ledgers).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_pools_group_members_race_seats_being_freed() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let f = Fixture::new(db).await;
    let second = Ledger::open(&f.db.url()).await.unwrap();
    let ledgers = vec![f.ledger.clone(), second];
    group_waiting_list_race(f, ledgers).await;
}
