//! Seat lifecycle on both stores: removing free seats, recording when held seats are used, and
//! the harvest that reclaims idle ones (the ledger clock moves a month in a moment), with racers.

use allot_ledger::testing as common;

use std::sync::Arc;

use allot_ledger::*;
use common::{Fixture, TestDb};
use time::Duration;

fn pid(product: &Product) -> ProductRef {
    ProductRef::Id(product.id)
}

fn policy(product: &Product, idle_days: i64, action: HarvestAction) -> Command {
    Command::SetHarvestPolicy {
        product: pid(product),
        policy: Some(HarvestPolicy { idle_days, action }),
    }
}

async fn log_on(f: &Fixture, user: &User) -> Lease {
    match f
        .ok(Command::LogOn {
            user: UserRef::Id(user.id),
            client: ClientKind::Windows,
            device: "pc".into(),
            product: None,
            lease_seconds: 300,
        })
        .await
    {
        Outcome::Lease(lease) => lease,
        other => panic!("unexpected {other:?}"),
    }
}

async fn idle_logins(f: &Fixture) -> Vec<String> {
    f.ledger
        .idle_seats(f.tenant.id)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.login)
        .collect()
}

async fn audit_of(f: &Fixture, action: &str) -> Vec<AuditEvent> {
    f.ledger
        .audit(
            f.tenant.id,
            &AuditFilter {
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action)
        .collect()
}

on_both_stores! {
    async fn removing_seats_takes_free_ones_only_all_or_none(f: Fixture) {
        let crm = f.user_product("crm", 5).await;
        let ann = f.user("ann").await;
        let bob = f.user("bob").await;
        f.assign(&ann, &crm).await.unwrap();
        f.assign(&bob, &crm).await.unwrap();
        let held: Vec<Seat> = [f.seats_of(&ann).await, f.seats_of(&bob).await].concat();
        let removed = f.ok(Command::RemoveSeats { product: pid(&crm), count: 2, pool_company: None }).await;
        assert_eq!(removed, Outcome::Changed { changed: 2 });
        assert_eq!(f.counts(&crm).await, (3, 2, 1));
        // Two asked, one free: refused with how many are free, and nothing removed.
        let e = f.err(Command::RemoveSeats { product: pid(&crm), count: 2, pool_company: None }).await;
        assert!(matches!(e, LedgerError::NotEnoughFreeSeats { free: 1, requested: 2, .. }), "{e:?}");
        assert_eq!(e.code(), "not_enough_free_seats");
        assert_eq!(f.counts(&crm).await, (3, 2, 1));
        // The held seats are still there, still held.
        for seat in &held {
            assert_eq!(f.ledger.seat(f.tenant.id, seat.id).await.unwrap().holder, seat.holder);
        }
        let e = f.err(Command::RemoveSeats { product: pid(&crm), count: 0, pool_company: None }).await;
        assert!(matches!(e, LedgerError::Invalid { field: "count", .. }), "{e:?}");
        let e = f.err(Command::RemoveSeats { product: ProductRef::named("x", "y"), count: 1, pool_company: None }).await;
        assert!(matches!(e, LedgerError::UnknownProduct(_)), "{e:?}");
        f.ok(Command::RemoveSeats { product: pid(&crm), count: 1, pool_company: None }).await;
        assert_eq!(f.counts(&crm).await, (2, 2, 0));
        let records = audit_of(&f, "seats.remove").await;
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].detail["count"], 2);
        assert_eq!(records[0].detail["seats"].as_array().unwrap().len(), 2);
    }

    async fn removing_seats_prefers_expired_ones_and_keeps_to_the_named_pool(f: Fixture) {
        let crm = f.user_product("crm", 2).await;
        let acme = f.company("Acme", PoolMode::Company).await;
        let own = f.add_seats(NewSeats { pool_company: Some(CompanyRef::Id(acme.id)), ..NewSeats::plain(pid(&crm), 2) }).await;
        let expiring = f.add_seats(NewSeats { expires_at: Some(common::START + Duration::days(1)), ..NewSeats::plain(pid(&crm), 1) }).await;
        f.clock.advance(Duration::days(2));
        f.ok(Command::RemoveSeats { product: pid(&crm), count: 1, pool_company: None }).await;
        let e = f.ledger.seat(f.tenant.id, expiring[0].id).await.unwrap_err();
        assert!(matches!(e, LedgerError::UnknownSeat(_)), "the expired seat goes first: {e:?}");
        f.ok(Command::RemoveSeats { product: pid(&crm), count: 2, pool_company: Some(CompanyRef::Id(acme.id)) }).await;
        for seat in &own {
            assert!(f.ledger.seat(f.tenant.id, seat.id).await.is_err());
        }
        // The tenant-wide pool kept its two.
        assert_eq!(f.counts(&crm).await, (2, 0, 2));
    }

    async fn a_month_idle_seat_is_listed_then_released_with_reason_idle(f: Fixture) {
        let crm = f.user_product("crm", 2).await;
        let ann = f.user("ann").await;
        f.assign(&ann, &crm).await.unwrap();
        f.ok(policy(&crm, 30, HarvestAction::Release)).await;
        assert_eq!(f.ok(policy(&crm, 30, HarvestAction::Release)).await, Outcome::Changed { changed: 0 });
        f.clock.advance(Duration::days(29));
        assert!(idle_logins(&f).await.is_empty());
        f.clock.advance(Duration::days(2));
        let idle = f.ledger.idle_seats(f.tenant.id).await.unwrap();
        assert_eq!(idle.len(), 1);
        assert_eq!((idle[0].login.as_str(), idle[0].idle_days, idle[0].policy_idle_days), ("ann", 31, 30));
        assert_eq!(idle[0].last_used_at, common::START);
        assert_eq!(idle[0].product_name, "SuperOffice/crm");
        // A dry run changes nothing.
        let dry = f.ledger.harvest(&f.ctx, true).await.unwrap();
        assert!(!dry[0].released);
        assert!(f.assigned(&ann, &crm).await);
        let done = f.ledger.harvest(&f.ctx, false).await.unwrap();
        assert_eq!(done.len(), 1);
        assert!(done[0].released);
        assert!(!f.assigned(&ann, &crm).await);
        assert_eq!(f.counts(&crm).await, (2, 0, 2));
        let release = audit_of(&f, "seat.release").await;
        assert_eq!(release.len(), 1);
        assert_eq!(release[0].detail["reason"], "idle");
        assert_eq!(release[0].detail["policy_idle_days"], 30);
        assert_eq!(release[0].detail["idle_days"], 31);
        assert_eq!(release[0].seat, Some(idle[0].seat));
        // Nothing left to harvest.
        assert!(f.ledger.harvest(&f.ctx, false).await.unwrap().is_empty());
    }

    async fn log_ons_activations_and_license_files_count_as_use(f: Fixture) {
        let crm = f.user_product("crm", 3).await;
        let ann = f.user("ann").await;
        let bob = f.user("bob").await;
        let cid = f.user("cid").await;
        for u in [&ann, &bob, &cid] {
            f.assign(u, &crm).await.unwrap();
        }
        f.ok(policy(&crm, 30, HarvestAction::Release)).await;
        f.clock.advance(Duration::days(20));
        log_on(&f, &ann).await;
        let seat = f.seats_of(&bob).await[0].id;
        f.ok(Command::ActivateSeat {
            seat,
            activation: Activation { hardware_id: "hw-1".into(), computer_name: "pc".into(), operating_system: "linux".into() },
            user: None,
        }).await;
        f.ledger.user_license(f.tenant.id, &UserRef::Id(cid.id)).await.unwrap();
        f.clock.advance(Duration::days(20));
        // 40 days since taken, 20 since each was used.
        assert!(idle_logins(&f).await.is_empty());
        // Ann's session is still live (its lease lapsed: nobody expired it): live sessions count
        // as use up to their last heartbeat, which was at her log-on.
        f.clock.advance(Duration::days(11));
        let mut idle = idle_logins(&f).await;
        idle.sort();
        assert_eq!(idle, ["ann", "bob", "cid"]);
    }

    async fn heartbeats_write_nothing_to_seats_but_keep_them_in_use(f: Fixture) {
        let crm = f.user_product("crm", 1).await;
        let ann = f.user("ann").await;
        f.assign(&ann, &crm).await.unwrap();
        f.ok(policy(&crm, 30, HarvestAction::Release)).await;
        let lease = log_on(&f, &ann).await;
        // A month of heartbeats every few minutes would be thousands of writes to the seat; the
        // session row they already write is what the harvest reads.
        for _ in 0..40 {
            f.clock.advance(Duration::days(1));
            f.ok(Command::Heartbeat { session: lease.session.id, lease_token: lease.lease_token.clone(), lease_seconds: 300 }).await;
        }
        assert!(idle_logins(&f).await.is_empty(), "a live session's heartbeats are uses");
        // The session ends (log-off): its last heartbeat is kept on the seat.
        f.clock.advance(Duration::hours(2));
        f.ok(Command::EndSession { session: lease.session.id, lease_token: None, reason: EndReason::Logoff }).await;
        f.clock.advance(Duration::days(29));
        assert!(idle_logins(&f).await.is_empty());
        f.clock.advance(Duration::days(1));
        let idle = f.ledger.idle_seats(f.tenant.id).await.unwrap();
        assert_eq!(idle.len(), 1);
        assert_eq!(idle[0].last_used_at, common::START + Duration::days(40));
    }

    async fn uses_within_the_hour_write_nothing(f: Fixture) {
        let crm = f.user_product("crm", 1).await;
        let ann = f.user("ann").await;
        f.assign(&ann, &crm).await.unwrap();
        let use_ann = || Command::RecordUse { user: UserRef::Id(ann.id), seat: None };
        let trail = f.audit_len().await;
        // Taken just now: a use in the same hour writes nothing.
        assert_eq!(f.ok(use_ann()).await, Outcome::Changed { changed: 0 });
        f.clock.advance(Duration::minutes(61));
        assert_eq!(f.ok(use_ann()).await, Outcome::Changed { changed: 1 });
        f.clock.advance(Duration::minutes(59));
        assert_eq!(f.ok(use_ann()).await, Outcome::Changed { changed: 0 });
        f.clock.advance(Duration::minutes(2));
        assert_eq!(f.ok(use_ann()).await, Outcome::Changed { changed: 1 });
        // Not audited: a use changes no holding.
        assert_eq!(f.audit_len().await, trail);
    }

    async fn report_only_policies_and_exempt_users_keep_their_seats(f: Fixture) {
        let crm = f.user_product("crm", 3).await;
        let web = f.user_product("web", 3).await;
        let ann = f.user("ann").await;
        let bob = f.user("bob").await;
        for u in [&ann, &bob] {
            f.assign(u, &crm).await.unwrap();
            f.assign(u, &web).await.unwrap();
        }
        f.ok(policy(&crm, 30, HarvestAction::Release)).await;
        f.ok(policy(&web, 10, HarvestAction::Report)).await;
        f.ok(Command::SetHarvestExempt { user: UserRef::Login("bob".into()), exempt: true }).await;
        assert_eq!(f.ok(Command::SetHarvestExempt { user: UserRef::Login("bob".into()), exempt: true }).await, Outcome::Changed { changed: 0 });
        f.clock.advance(Duration::days(40));
        let done = f.ledger.harvest(&f.ctx, false).await.unwrap();
        // Bob's idle seats are listed with why they stay.
        let summary: Vec<(&str, &str, bool, Option<&str>)> = done
            .iter()
            .map(|s| (s.login.as_str(), s.product_name.as_str(), s.released, s.exempt.as_deref()))
            .collect();
        assert_eq!(summary, [
            ("ann", "SuperOffice/crm", true, None),
            ("bob", "SuperOffice/crm", false, Some("user")),
            ("ann", "SuperOffice/web", false, None),
            ("bob", "SuperOffice/web", false, Some("user")),
        ]);
        assert!(f.assigned(&ann, &web).await);
        assert!(f.assigned(&bob, &crm).await);
        let exempt = f.ledger.harvest_exempt_users(f.tenant.id).await.unwrap();
        assert_eq!(exempt.iter().map(|u| u.login.as_str()).collect::<Vec<_>>(), ["bob"]);
        let policies = f.ledger.harvest_policies(f.tenant.id).await.unwrap();
        assert_eq!(policies.len(), 2);
        f.ok(Command::SetHarvestExempt { user: UserRef::Login("bob".into()), exempt: false }).await;
        f.ok(Command::SetHarvestPolicy { product: pid(&web), policy: None }).await;
        let done = f.ledger.harvest(&f.ctx, false).await.unwrap();
        assert_eq!(done.iter().map(|s| (s.login.as_str(), s.released)).collect::<Vec<_>>(), [("bob", true)]);
        let e = f.err(policy(&crm, 0, HarvestAction::Release)).await;
        assert!(matches!(e, LedgerError::Invalid { field: "idle_days", .. }), "{e:?}");
    }

    async fn members_of_an_exempt_group_keep_their_seats_while_members(f: Fixture) {
        let crm = f.user_product("crm", 3).await;
        let ann = f.user("ann").await;
        let bob = f.user("bob").await;
        for u in [&ann, &bob] {
            f.assign(u, &crm).await.unwrap();
        }
        let Outcome::Group(execs) = f.ok(Command::CreateGroup { name: "Execs".into(), uuid: None, external_id: None }).await else { panic!() };
        let Outcome::Group(board) = f.ok(Command::CreateGroup { name: "Board".into(), uuid: None, external_id: None }).await else { panic!() };
        for g in [&execs, &board] {
            f.ok(Command::AddGroupMember { group: GroupRef::Id(g.id), user: UserRef::Id(ann.id) }).await;
        }
        f.ok(policy(&crm, 30, HarvestAction::Release)).await;
        let exempt = |g: &Group, exempt: bool| Command::SetHarvestExemptGroup { group: GroupRef::Id(g.id), exempt };
        assert_eq!(f.ok(exempt(&execs, true)).await, Outcome::Changed { changed: 1 });
        assert_eq!(f.ok(exempt(&execs, true)).await, Outcome::Changed { changed: 0 });
        f.ok(exempt(&board, true)).await;
        let groups = f.ledger.harvest_exempt_groups(f.tenant.id).await.unwrap();
        assert_eq!(groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["Execs", "Board"]);
        f.clock.advance(Duration::days(31));
        let done = f.ledger.harvest(&f.ctx, false).await.unwrap();
        let summary: Vec<(&str, bool, Option<&str>)> =
            done.iter().map(|s| (s.login.as_str(), s.released, s.exempt.as_deref())).collect();
        // The first exempt group by name is the reason shown.
        assert_eq!(summary, [("ann", false, Some("group:Board")), ("bob", true, None)]);
        assert!(f.assigned(&ann, &crm).await);
        // The reclaim re-decides in its transaction: still exempt through Execs.
        let seat = done[0].seat;
        f.ok(Command::RemoveGroupMember { group: GroupRef::Id(board.id), user: UserRef::Id(ann.id) }).await;
        assert_eq!(f.ok(Command::HarvestSeat { seat }).await, Outcome::Changed { changed: 0 });
        // Execs' exemption is deleted with the group; then the seat goes.
        f.ok(Command::DeleteGroup { group: GroupRef::Id(execs.id) }).await;
        assert_eq!(f.ledger.harvest_exempt_groups(f.tenant.id).await.unwrap().len(), 1);
        assert_eq!(f.ok(Command::HarvestSeat { seat }).await, Outcome::Changed { changed: 1 });
        assert!(!f.assigned(&ann, &crm).await);
        assert_eq!(audit_of(&f, "harvest.exempt_group").await.len(), 2);
        let e = f.err(Command::SetHarvestExemptGroup { group: GroupRef::Name("nobody".into()), exempt: true }).await;
        assert!(matches!(e, LedgerError::UnknownGroup(_)), "{e:?}");
    }

    async fn upserted_users_join_their_groups_made_if_missing(f: Fixture) {
        let crm = f.user_product("crm", 2).await;
        let Outcome::Group(sales) = f.ok(Command::CreateGroup { name: "Sales".into(), uuid: None, external_id: None }).await else { panic!() };
        f.ok(Command::AddGroupLicense { group: GroupRef::Id(sales.id), product: pid(&crm) }).await;
        let ann = || UserUpsert {
            login: "ann".into(),
            groups: vec!["sales".into(), "Support".into()],
            ..Default::default()
        };
        // User created, Support made, two joins: 4; the group license's seat comes along.
        assert_eq!(f.ok(Command::UpsertUser(ann())).await, Outcome::Changed { changed: 4 });
        assert_eq!(f.ok(Command::UpsertUser(ann())).await, Outcome::Changed { changed: 0 });
        let user = f.ledger.user(f.tenant.id, &UserRef::Login("ann".into())).await.unwrap();
        let groups = f.ledger.user_groups(f.tenant.id, user.id).await.unwrap();
        assert_eq!(groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["Sales", "Support"]);
        assert!(f.assigned(&user, &crm).await);
        // Groups not listed are left alone.
        let fewer = UserUpsert { groups: vec![], ..ann() };
        assert_eq!(f.ok(Command::UpsertUser(fewer)).await, Outcome::Changed { changed: 0 });
        assert_eq!(f.ledger.user_groups(f.tenant.id, user.id).await.unwrap().len(), 2);
        let e = f.err(Command::UpsertUser(UserUpsert { login: "bob".into(), groups: vec![" ".into()], ..Default::default() })).await;
        assert!(matches!(e, LedgerError::Invalid { field: "groups", .. }), "{e:?}");
        assert!(f.ledger.user(f.tenant.id, &UserRef::Login("bob".into())).await.is_err());
    }

    async fn a_use_after_the_listing_wins_over_the_harvest(f: Fixture) {
        let crm = f.user_product("crm", 1).await;
        let ann = f.user("ann").await;
        f.assign(&ann, &crm).await.unwrap();
        f.ok(policy(&crm, 30, HarvestAction::Release)).await;
        f.clock.advance(Duration::days(31));
        let idle = f.ledger.idle_seats(f.tenant.id).await.unwrap();
        assert_eq!(idle.len(), 1);
        // Ann logs on between the listing and the reclaim.
        log_on(&f, &ann).await;
        assert_eq!(f.ok(Command::HarvestSeat { seat: idle[0].seat }).await, Outcome::Changed { changed: 0 });
        assert!(f.assigned(&ann, &crm).await);
        // A policy turned to report-only, or an exemption, after the listing also wins.
        f.clock.advance(Duration::days(31));
        f.ok(policy(&crm, 30, HarvestAction::Report)).await;
        assert_eq!(f.ok(Command::HarvestSeat { seat: idle[0].seat }).await, Outcome::Changed { changed: 0 });
        f.ok(policy(&crm, 30, HarvestAction::Release)).await;
        f.ok(Command::SetHarvestExempt { user: UserRef::Id(ann.id), exempt: true }).await;
        assert_eq!(f.ok(Command::HarvestSeat { seat: idle[0].seat }).await, Outcome::Changed { changed: 0 });
        f.ok(Command::SetHarvestExempt { user: UserRef::Id(ann.id), exempt: false }).await;
        // The session (lapsed) ends by expiry; a month later the seat goes.
        f.ok(Command::ExpireSessions).await;
        f.clock.advance(Duration::days(31));
        assert_eq!(f.ok(Command::HarvestSeat { seat: idle[0].seat }).await, Outcome::Changed { changed: 1 });
    }

    async fn removing_a_product_takes_its_policy_along(f: Fixture) {
        let crm = f.product(NewProduct::user("Partner", "crm", 1)).await;
        f.ok(policy(&crm, 30, HarvestAction::Release)).await;
        f.ok(Command::RemoveOwner { owner: "Partner".into() }).await;
        assert!(f.ledger.harvest_policies(f.tenant.id).await.unwrap().is_empty());
    }

    async fn upserting_users_is_idempotent_and_a_dry_run_writes_nothing(f: Fixture) {
        let crm = f.user_product("crm", 2).await;
        let web = f.user_product("web", 2).await;
        let ann = || UserUpsert {
            login: "ann".into(),
            first_name: Some("Ann".into()),
            email: Some("ann@example.com".into()),
            company: Some("Acme".into()),
            licenses: vec![pid(&crm), ProductRef::named("SuperOffice", "web")],
            ..Default::default()
        };
        let trail = f.audit_len().await;
        // A dry run answers what would change, and changes nothing.
        let dry = f.ledger.apply_dry_run(&f.ctx, &[Command::UpsertUser(ann())]).await.unwrap();
        assert_eq!(dry, [Ok(Outcome::Changed { changed: 4 })]);
        assert!(f.ledger.user(f.tenant.id, &UserRef::Login("ann".into())).await.is_err());
        assert!(f.ledger.companies(f.tenant.id).await.unwrap().is_empty());
        assert_eq!(f.audit_len().await, trail);
        // Company made, user created, two licenses assigned: 4 changes; then none.
        assert_eq!(f.ok(Command::UpsertUser(ann())).await, Outcome::Changed { changed: 4 });
        assert_eq!(f.ok(Command::UpsertUser(ann())).await, Outcome::Changed { changed: 0 });
        let user = f.ledger.user(f.tenant.id, &UserRef::Login("ANN".into())).await.unwrap();
        assert_eq!((user.first_name.as_str(), user.email.as_str()), ("Ann", "ann@example.com"));
        assert!(user.company.is_some());
        assert!(f.assigned(&user, &crm).await && f.assigned(&user, &web).await);
        // A changed field is one change; absent fields stay as they are.
        let edited = UserUpsert { email: Some("ann@acme.test".into()), first_name: None, licenses: vec![], ..ann() };
        assert_eq!(f.ok(Command::UpsertUser(edited)).await, Outcome::Changed { changed: 1 });
        let user = f.ledger.user(f.tenant.id, &UserRef::Login("ann".into())).await.unwrap();
        assert_eq!((user.first_name.as_str(), user.email.as_str()), ("Ann", "ann@acme.test"));
        // A bad row is refused whole (its savepoint): no half-made user.
        let bad = UserUpsert { login: "bob".into(), licenses: vec![ProductRef::named("x", "y")], ..Default::default() };
        let e = f.err(Command::UpsertUser(bad)).await;
        assert!(matches!(e, LedgerError::UnknownProduct(_)), "{e:?}");
        assert!(f.ledger.user(f.tenant.id, &UserRef::Login("bob".into())).await.is_err());
        let e = f.err(Command::UpsertUser(UserUpsert { login: " ".into(), ..Default::default() })).await;
        assert!(matches!(e, LedgerError::Invalid { field: "login", .. }), "{e:?}");
    }
}

const USERS: usize = 32;

async fn racers(f: &Fixture) -> Vec<User> {
    let commands: Vec<Command> = (0..USERS)
        .map(|i| Command::CreateUser(NewUser::named(&format!("racer{i}"))))
        .collect();
    let users: Vec<User> = f
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
    users
}

/// Assignments and removals of seats at once: every assignment that succeeded still holds its
/// seat afterwards, and the seats removed plus the seats held never exceed what was bought.
async fn remove_while_assigning(f: Fixture) {
    const SEATS: i64 = 16;
    let product = f.user_product("contended", SEATS).await;
    let users = racers(&f).await;
    let start = Arc::new(tokio::sync::Barrier::new(USERS * 2));
    let mut assigns = Vec::new();
    let mut removals = Vec::new();
    for user in &users {
        let (ledger, ctx, barrier) = (f.ledger.clone(), f.ctx.clone(), start.clone());
        let command = Command::Assign {
            user: UserRef::Id(user.id),
            product: pid(&product),
        };
        assigns.push(tokio::spawn(async move {
            barrier.wait().await;
            ledger.execute(&ctx, command).await
        }));
        let (ledger, ctx, barrier) = (f.ledger.clone(), f.ctx.clone(), start.clone());
        let command = Command::RemoveSeats {
            product: pid(&product),
            count: 1,
            pool_company: None,
        };
        removals.push(tokio::spawn(async move {
            barrier.wait().await;
            ledger.execute(&ctx, command).await
        }));
    }
    let mut assigned = Vec::new();
    for (user, task) in users.iter().zip(assigns) {
        match task.await.unwrap() {
            Ok(_) => assigned.push(user.clone()),
            Err(LedgerError::NoSeatFree { .. }) => {}
            Err(e) => panic!("unexpected failure under contention: {e:?}"),
        }
    }
    let mut removed = 0;
    for task in removals {
        match task.await.unwrap() {
            Ok(outcome) => removed += outcome.changed() as i64,
            Err(LedgerError::NotEnoughFreeSeats { .. }) => {}
            Err(e) => panic!("unexpected failure under contention: {e:?}"),
        }
    }
    assert!(
        !assigned.is_empty() && removed > 0,
        "both sides won some: {} assigned, {removed} removed",
        assigned.len()
    );
    assert_eq!(
        assigned.len() as i64 + removed,
        SEATS,
        "every seat went one way or the other"
    );
    for user in &assigned {
        assert_eq!(
            f.seats_of(user).await.len(),
            1,
            "{} lost its seat",
            user.login
        );
    }
    assert_eq!(
        f.counts(&product).await,
        (SEATS - removed, assigned.len() as i64, 0)
    );
    f.finish().await;
}

/// Harvests racing log-ons of the same users: a seat is only ever released before its holder's
/// log-on (the audit order says which came first), never after it.
async fn harvest_while_logging_on(f: Fixture) {
    let product = f.user_product("contended", USERS as i64).await;
    let users = racers(&f).await;
    for user in &users {
        f.assign(user, &product).await.unwrap();
    }
    f.ok(policy(&product, 30, HarvestAction::Release)).await;
    f.clock.advance(Duration::days(31));
    let idle = f.ledger.idle_seats(f.tenant.id).await.unwrap();
    assert_eq!(idle.len(), USERS);
    let start = Arc::new(tokio::sync::Barrier::new(USERS * 2));
    let mut tasks = Vec::new();
    for (user, seat) in users.iter().zip(&idle) {
        let (ledger, ctx, barrier) = (f.ledger.clone(), f.ctx.clone(), start.clone());
        let harvest = Command::HarvestSeat { seat: seat.seat };
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            ledger.execute(&ctx, harvest).await
        }));
        let (ledger, ctx, barrier) = (f.ledger.clone(), f.ctx.clone(), start.clone());
        let log_on = Command::LogOn {
            user: UserRef::Id(user.id),
            client: ClientKind::Windows,
            device: String::new(),
            product: None,
            lease_seconds: 300,
        };
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            ledger.execute(&ctx, log_on).await
        }));
    }
    for task in tasks {
        task.await.unwrap().expect("no refusal under contention");
    }
    let trail = f
        .ledger
        .audit(
            f.tenant.id,
            &AuditFilter {
                limit: Some(1000),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (mut released, mut kept) = (0, 0);
    for user in &users {
        let logon = trail
            .iter()
            .find(|e| e.action == "session.logon" && e.user == Some(user.id))
            .expect("every log-on succeeded")
            .seq;
        match trail
            .iter()
            .find(|e| e.action == "seat.release" && e.user == Some(user.id))
        {
            Some(release) => {
                assert!(
                    release.seq < logon,
                    "{}: released after a log-on",
                    user.login
                );
                assert_eq!(release.detail["reason"], "idle");
                released += 1;
            }
            None => {
                assert_eq!(f.seats_of(user).await.len(), 1);
                kept += 1;
            }
        }
    }
    assert_eq!(released + kept, USERS);
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_removals_race_assignments() {
    remove_while_assigning(Fixture::new(TestDb::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_removals_race_assignments() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    remove_while_assigning(Fixture::new(db).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_harvests_race_log_ons() {
    harvest_while_logging_on(Fixture::new(TestDb::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_harvests_race_log_ons() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    harvest_while_logging_on(Fixture::new(db).await).await;
}

/// What a command makes when missing (a product's owner; an upsert's company, group and user)
/// may be made by another command at the same moment: every one of them succeeds, and the
/// thing exists once. On PostgreSQL the loser of that race met the winner's row at its insert
/// and answered "already exists"; it now runs again and finds it.
async fn find_or_create_races(f: Fixture) {
    const RACERS: usize = 12;
    let start = Arc::new(tokio::sync::Barrier::new(RACERS * 3));
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let commands = [
            // The same new owner for every product.
            Command::CreateProduct(NewProduct::user("Racing", &format!("product{i}"), 1)),
            // The same new company and group for different users.
            Command::UpsertUser(UserUpsert {
                login: format!("joiner{i}"),
                first_name: None,
                last_name: None,
                email: None,
                company: Some("Newco".into()),
                licenses: Vec::new(),
                groups: vec!["newcomers".into()],
            }),
            // The same new user, from every racer.
            Command::UpsertUser(UserUpsert {
                login: "everyone".into(),
                first_name: Some(format!("Racer {i}")),
                last_name: None,
                email: None,
                company: None,
                licenses: Vec::new(),
                groups: Vec::new(),
            }),
        ];
        for command in commands {
            let (ledger, ctx, barrier) = (f.ledger.clone(), f.ctx.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                let shown = format!("{command:?}");
                (shown, ledger.execute(&ctx, command).await)
            }));
        }
    }
    for task in tasks {
        let (command, outcome) = task.await.unwrap();
        assert!(outcome.is_ok(), "{command} failed: {outcome:?}");
    }
    let tenant = f.tenant.id;
    let companies = f.ledger.companies(tenant).await.unwrap();
    assert_eq!(companies.iter().filter(|c| c.name == "Newco").count(), 1);
    let group = f
        .ledger
        .group_view(tenant, &GroupRef::Name("newcomers".into()))
        .await
        .unwrap();
    assert_eq!(group.members.len(), RACERS, "{group:?}");
    f.ledger
        .user(tenant, &UserRef::Login("everyone".into()))
        .await
        .unwrap();
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_find_or_create_races() {
    find_or_create_races(Fixture::new(TestDb::sqlite()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_find_or_create_races() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    find_or_create_races(Fixture::new(db).await).await;
}
