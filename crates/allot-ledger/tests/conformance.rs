//! The store conformance suite: every ledger rule, run the same way against SQLite and
//! PostgreSQL. Each test ends by checking every invariant of the tenant (`Fixture::finish`).

use allot_ledger::testing as common;

use allot_ledger::*;
use common::{Fixture, TestDb};
use time::Duration;

fn by_id(user: &User) -> UserRef {
    UserRef::Id(user.id)
}

fn pid(product: &Product) -> ProductRef {
    ProductRef::Id(product.id)
}

on_both_stores! {
    async fn products_carry_their_seats_and_names_are_unique_per_owner(f: Fixture) {
        let crm = f.user_product("crm", 3).await;
        assert_eq!(f.counts(&crm).await, (3, 0, 3));
        let dup = f.err(Command::CreateProduct(NewProduct::user("SUPEROFFICE", "CRM", 1))).await;
        assert!(matches!(dup, LedgerError::AlreadyExists { what: "product", .. }), "{dup:?}");
        // The same module name under another owner is another product.
        let other = f.product(NewProduct::user("Partner", "crm", 1)).await;
        assert_ne!(other.id, crm.id);
        let found = f.ledger.product(f.tenant.id, &ProductRef::named("superoffice", "Crm")).await.unwrap();
        assert_eq!(found.id, crm.id);
        let seats = f.add_seats(NewSeats::plain(pid(&crm), 2)).await;
        assert_eq!(seats.len(), 2);
        assert_eq!(f.counts(&crm).await, (5, 0, 5));
        // Seat numbers are tenant-wide and sequential.
        let all = f.ledger.seats(f.tenant.id, &SeatFilter::default()).await.unwrap();
        let numbers: Vec<i64> = all.iter().map(|s| s.number).collect();
        assert_eq!(numbers, (1..=6).collect::<Vec<_>>());
    }

    async fn bad_input_gets_typed_errors(f: Fixture) {
        let e = f.err(Command::CreateProduct(NewProduct::user("SuperOffice", "  ", 1))).await;
        assert!(matches!(e, LedgerError::Invalid { field: "name", .. }), "{e:?}");
        let e = f.err(Command::CreateProduct(NewProduct::user("SuperOffice", "x", -1))).await;
        assert!(matches!(e, LedgerError::Invalid { field: "count", .. }), "{e:?}");
        let e = f.err(Command::CreateUser(NewUser::named("bad\u{7}login"))).await;
        assert!(matches!(e, LedgerError::Invalid { field: "login", .. }), "{e:?}");
        let e = f.err(Command::Assign { user: UserRef::Login("nobody".into()), product: ProductRef::Id(99) }).await;
        assert!(matches!(e, LedgerError::UnknownUser(_)), "{e:?}");
        let u = f.user("ann").await;
        let e = f.err(Command::Assign { user: by_id(&u), product: ProductRef::named("x", "y") }).await;
        assert!(matches!(e, LedgerError::UnknownProduct(_)), "{e:?}");
        let e = f.err(Command::GrantSeat { seat: uuid::Uuid::new_v4(), user: by_id(&u) }).await;
        assert!(matches!(e, LedgerError::UnknownSeat(_)), "{e:?}");
        let e = f.err(Command::LogOn { user: by_id(&u), client: ClientKind::Web, device: String::new(), product: None, lease_seconds: 0 }).await;
        assert!(matches!(e, LedgerError::Invalid { field: "lease_seconds", .. }), "{e:?}");
        // Failed commands leave no audit record.
        assert_eq!(f.audit_len().await, 3); // tenant.create, signing_key.create, user.create
    }

    async fn users_have_stable_integer_ids_and_uuids(f: Fixture) {
        let a = f.user("ann").await;
        let b = f.user_with(NewUser { id: Some(621), ..NewUser::named("bob") }).await;
        let c = f.user("cid").await;
        assert_eq!((a.id, b.id, c.id), (1, 621, 622));
        assert_ne!(a.uuid, b.uuid);
        let e = f.err(Command::CreateUser(NewUser { id: Some(621), ..NewUser::named("dup") })).await;
        assert!(matches!(e, LedgerError::AlreadyExists { .. }), "{e:?}");
        let e = f.err(Command::CreateUser(NewUser::named("ANN"))).await;
        assert!(matches!(e, LedgerError::AlreadyExists { what: "user", .. }), "{e:?}");
        for r in [UserRef::Id(621), UserRef::Uuid(b.uuid), UserRef::Login("BOB".into())] {
            assert_eq!(f.ledger.user(f.tenant.id, &r).await.unwrap().id, 621);
        }
        let edited = f.ok(Command::EditUser { user: by_id(&a), patch: UserPatch { email: Some("ann@example.com".into()), ..Default::default() } }).await;
        assert!(matches!(edited, Outcome::User(ref u) if u.email == "ann@example.com"));
        // Editing to what is already there changes nothing.
        let same = f.ok(Command::EditUser { user: by_id(&a), patch: UserPatch { email: Some("ann@example.com".into()), ..Default::default() } }).await;
        assert_eq!(same, Outcome::Changed { changed: 0 });
    }

    async fn assign_takes_a_seat_and_is_idempotent(f: Fixture) {
        let crm = f.user_product("crm", 2).await;
        let ann = f.user("ann").await;
        let before = f.audit_len().await;
        assert!(f.assign(&ann, &crm).await.unwrap().changed() > 0);
        assert_eq!(f.counts(&crm).await, (2, 1, 1));
        assert!(f.assigned(&ann, &crm).await);
        assert_eq!(f.audit_len().await, before + 1);
        // Again: the outcome holds, nothing changes, nothing is audited.
        assert_eq!(f.assign(&ann, &crm).await.unwrap(), Outcome::Changed { changed: 0 });
        assert_eq!(f.counts(&crm).await, (2, 1, 1));
        assert_eq!(f.audit_len().await, before + 1);
        assert!(f.unassign(&ann, &crm).await.unwrap().changed() > 0);
        assert_eq!(f.counts(&crm).await, (2, 0, 2));
        assert!(!f.assigned(&ann, &crm).await);
        assert_eq!(f.unassign(&ann, &crm).await.unwrap(), Outcome::Changed { changed: 0 });
    }

    async fn restricted_products_never_exceed_their_seats(f: Fixture) {
        let crm = f.user_product("crm", 2).await;
        let users = [f.user("a").await, f.user("b").await, f.user("c").await];
        f.assign(&users[0], &crm).await.unwrap();
        f.assign(&users[1], &crm).await.unwrap();
        let e = f.assign(&users[2], &crm).await.unwrap_err();
        assert!(matches!(e, LedgerError::NoSeatFree { product: p, .. } if p == crm.id));
        // The refusal names the product and the counts, not a numeric id.
        assert_eq!(e.to_string(), "no free seat of SuperOffice/crm (2 of 2 in use)");
        assert_eq!(f.counts(&crm).await, (2, 2, 0));
        assert!(!f.view(&users[2], &crm).await.can_assign);
        f.unassign(&users[0], &crm).await.unwrap();
        assert!(f.view(&users[2], &crm).await.can_assign);
        f.assign(&users[2], &crm).await.unwrap();
    }

    async fn unrestricted_products_may_be_assigned_past_their_total(f: Fixture) {
        let vis = f.product(NewProduct { unrestricted: true, ..NewProduct::user("SuperOffice", "visible-for", 1) }).await;
        let users = [f.user("a").await, f.user("b").await, f.user("c").await];
        for u in &users {
            f.assign(u, &vis).await.unwrap();
        }
        assert_eq!(f.counts(&vis).await, (1, 3, 0));
        assert!(f.view(&users[0], &vis).await.assigned);
        // Cannot become restricted while over-assigned.
        let e = f.err(Command::EditProduct { product: pid(&vis), patch: ProductPatch { unrestricted: Some(false), ..Default::default() } }).await;
        assert_eq!(e, LedgerError::OverAllocated { held: 3, total: 1 });
        f.unassign(&users[1], &vis).await.unwrap();
        f.unassign(&users[2], &vis).await.unwrap();
        // Overflow seats vanish when released; only bought seats remain.
        assert_eq!(f.counts(&vis).await, (1, 1, 0));
        assert_eq!(f.ledger.seats(f.tenant.id, &SeatFilter { product: Some(vis.id), ..Default::default() }).await.unwrap().len(), 1);
        f.ok(Command::EditProduct { product: pid(&vis), patch: ProductPatch { unrestricted: Some(false), ..Default::default() } }).await;
        assert!(matches!(f.assign(&users[1], &vis).await.unwrap_err(), LedgerError::NoSeatFree { product: p, .. } if p == vis.id));
    }

    async fn prerequisites_come_first_and_take_their_dependents_along(f: Fixture) {
        let user = f.user_product("user", 5).await;
        let windows = f.product(NewProduct { prerequisite: Some(pid(&user)), ..NewProduct::user("SuperOffice", "windows", 5) }).await;
        let travel = f.product(NewProduct { prerequisite: Some(pid(&windows)), ..NewProduct::user("SuperOffice", "travel", 5) }).await;
        let web = f.product(NewProduct { prerequisite: Some(pid(&user)), ..NewProduct::user("SuperOffice", "web", 5) }).await;
        let ann = f.user("ann").await;
        assert_eq!(f.assign(&ann, &windows).await.unwrap_err(), LedgerError::PrerequisiteMissing { product: windows.id, name: "SuperOffice/windows".into(), prerequisite: user.id, prerequisite_name: "SuperOffice/user".into() });
        assert_eq!(f.assign(&ann, &windows).await.unwrap_err().to_string(), "SuperOffice/windows requires SuperOffice/user first");
        assert!(!f.view(&ann, &windows).await.can_assign);
        f.assign(&ann, &user).await.unwrap();
        assert!(f.view(&ann, &windows).await.can_assign);
        f.assign(&ann, &windows).await.unwrap();
        f.assign(&ann, &travel).await.unwrap();
        f.assign(&ann, &web).await.unwrap();
        assert_eq!(f.seats_of(&ann).await.len(), 4);
        // Taking `user` away takes windows, travel (through windows) and web.
        f.unassign(&ann, &user).await.unwrap();
        assert!(f.seats_of(&ann).await.is_empty());
        for p in [&user, &windows, &travel, &web] {
            assert_eq!(f.counts(p).await, (5, 0, 5), "{}", p.name);
        }
        // A cycle of prerequisites is refused.
        let e = f.err(Command::EditProduct { product: pid(&user), patch: ProductPatch { prerequisite: Some(Some(pid(&travel))), ..Default::default() } }).await;
        assert!(matches!(e, LedgerError::Invalid { field: "prerequisite", .. }), "{e:?}");
    }

    async fn site_products_need_no_assignment(f: Fixture) {
        let site = f.product(NewProduct { kind: ProductKind::Site, ..NewProduct::user("SuperOffice", "site", 0) }).await;
        let addon = f.product(NewProduct { prerequisite: Some(pid(&site)), ..NewProduct::user("SuperOffice", "addon", 1) }).await;
        let ann = f.user("ann").await;
        assert!(f.assigned(&ann, &site).await);
        assert!(!f.view(&ann, &site).await.can_assign);
        assert_eq!(f.assign(&ann, &site).await.unwrap(), Outcome::Changed { changed: 0 });
        assert_eq!(f.unassign(&ann, &site).await.unwrap(), Outcome::Changed { changed: 0 });
        // A site prerequisite is always met.
        f.assign(&ann, &addon).await.unwrap();
        // A site product may count bought seats, but they are never handed out.
        let seats = f.add_seats(NewSeats::plain(pid(&site), 2)).await;
        assert_eq!(f.counts(&site).await, (2, 0, 2));
        let e = f.err(Command::GrantSeat { seat: seats[0].id, user: by_id(&ann) }).await;
        assert!(matches!(e, LedgerError::WrongKind { kind: ProductKind::Site, .. }), "{e:?}");
    }

    async fn user_plans_bring_their_set_and_take_only_what_nothing_else_grants(f: Fixture) {
        let user = f.user_product("user", 10).await;
        let web = f.product(NewProduct { hidden: true, prerequisite: Some(pid(&user)), ..NewProduct::user("SuperOffice", "web", 10) }).await;
        let quote = f.product(NewProduct { hidden: true, ..NewProduct::user("SuperOffice", "quote-cal", 10) }).await;
        let plan = f.product(NewProduct {
            extra_flags: EXTRA_FLAG_USER_PLAN,
            plan_members: vec![pid(&web), pid(&user), pid(&quote)],
            ..NewProduct::user("SuperOffice", "ten-sales", 3)
        }).await;
        assert!(plan.is_user_plan());
        assert_eq!(plan.plan_members.len(), 3);
        let ann = f.user("ann").await;
        // Members are granted in prerequisite order (user before web) although listed after.
        f.assign(&ann, &plan).await.unwrap();
        for p in [&plan, &user, &web, &quote] {
            assert!(f.assigned(&ann, p).await, "{}", p.name);
        }
        // quote-cal is also assigned directly: it stays when the plan goes.
        f.assign(&ann, &quote).await.unwrap();
        assert_eq!(f.counts(&quote).await.1, 1);
        f.unassign(&ann, &plan).await.unwrap();
        assert!(!f.assigned(&ann, &plan).await);
        assert!(!f.assigned(&ann, &user).await);
        assert!(!f.assigned(&ann, &web).await);
        assert!(f.assigned(&ann, &quote).await);
        // Members only belong to user plans.
        let e = f.err(Command::CreateProduct(NewProduct { plan_members: vec![pid(&web)], ..NewProduct::user("SuperOffice", "not-a-plan", 1) })).await;
        assert!(matches!(e, LedgerError::Invalid { field: "plan_members", .. }), "{e:?}");
    }

    async fn a_plan_with_no_member_seat_left_is_refused_whole(f: Fixture) {
        let web = f.user_product("web", 1).await;
        let plan = f.product(NewProduct { extra_flags: 1, plan_members: vec![pid(&web)], ..NewProduct::user("SuperOffice", "plan", 5) }).await;
        let (ann, bob) = (f.user("ann").await, f.user("bob").await);
        assert!(f.view(&ann, &plan).await.can_assign);
        f.assign(&ann, &plan).await.unwrap();
        // The view agrees: the plan has seats, its member has none, so it cannot be assigned.
        assert!(!f.view(&bob, &plan).await.can_assign);
        assert!(matches!(f.assign(&bob, &plan).await.unwrap_err(), LedgerError::NoSeatFree { product: p, .. } if p == web.id));
        // Nothing of the refused assignment remains.
        assert!(f.seats_of(&bob).await.is_empty());
        assert_eq!(f.counts(&plan).await, (5, 1, 4));
    }

    async fn a_plan_member_needs_its_prerequisite_for_the_view_and_the_command_alike(f: Fixture) {
        let base = f.user_product("base", 5).await;
        let addon = f.product(NewProduct { prerequisite: Some(pid(&base)), ..NewProduct::user("SuperOffice", "addon", 5) }).await;
        // A plan of the add-on alone: its member's prerequisite is neither held nor in the plan.
        let plan = f.product(NewProduct { extra_flags: 1, plan_members: vec![pid(&addon)], ..NewProduct::user("SuperOffice", "plan", 5) }).await;
        let ann = f.user("ann").await;
        assert!(!f.view(&ann, &plan).await.can_assign);
        let e = f.assign(&ann, &plan).await.unwrap_err();
        assert_eq!(e.to_string(), "SuperOffice/addon requires SuperOffice/base first");
        f.assign(&ann, &base).await.unwrap();
        assert!(f.view(&ann, &plan).await.can_assign);
        f.assign(&ann, &plan).await.unwrap();
        assert!(f.assigned(&ann, &addon).await);
        // A plan that brings the prerequisite along needs nothing held first.
        let full = f.product(NewProduct { extra_flags: 1, plan_members: vec![pid(&addon), pid(&base)], ..NewProduct::user("SuperOffice", "full", 5) }).await;
        let bob = f.user("bob").await;
        assert!(f.view(&bob, &full).await.can_assign);
        f.assign(&bob, &full).await.unwrap();
        assert!(f.assigned(&bob, &addon).await && f.assigned(&bob, &base).await);
    }

    async fn expired_seats_and_products_grant_nothing(f: Fixture) {
        let crm = f.user_product("crm", 0).await;
        let soon = common::START + Duration::hours(1);
        f.add_seats(NewSeats { expires_at: Some(soon), ..NewSeats::plain(pid(&crm), 1) }).await;
        let (ann, bob) = (f.user("ann").await, f.user("bob").await);
        f.assign(&ann, &crm).await.unwrap();
        assert!(f.assigned(&ann, &crm).await);
        f.clock.advance(Duration::hours(2));
        assert!(!f.assigned(&ann, &crm).await);
        assert_eq!(f.counts(&crm).await, (0, 0, 0));
        assert!(matches!(f.assign(&bob, &crm).await.unwrap_err(), LedgerError::NoSeatFree { product: p, .. } if p == crm.id));
        // Ann's assignment is no longer effective, so assigning again needs a live seat.
        assert!(matches!(f.assign(&ann, &crm).await.unwrap_err(), LedgerError::NoSeatFree { product: p, .. } if p == crm.id));
        let fresh = f.add_seats(NewSeats::plain(pid(&crm), 1)).await;
        f.assign(&ann, &crm).await.unwrap();
        assert!(f.assigned(&ann, &crm).await);
        let expired_seat = f.ledger.seats(f.tenant.id, &SeatFilter { product: Some(crm.id), ..Default::default() }).await.unwrap()
            .into_iter().find(|s| s.id != fresh[0].id).unwrap();
        f.ok(Command::ReleaseSeat { seat: expired_seat.id, user: None }).await;
        let e = f.err(Command::GrantSeat { seat: expired_seat.id, user: UserRef::Id(bob.id) }).await;
        assert_eq!(e, LedgerError::SeatExpired(expired_seat.id));
        // A product that expires stops granting entirely.
        let trial = f.product(NewProduct { expires_at: Some(common::START + Duration::hours(3)), trial: true, ..NewProduct::user("SuperOffice", "trial", 3) }).await;
        f.assign(&bob, &trial).await.unwrap();
        f.clock.advance(Duration::hours(2));
        assert!(!f.assigned(&bob, &trial).await);
        assert_eq!(f.counts(&trial).await, (0, 0, 0));
        assert_eq!(f.assign(&ann, &trial).await.unwrap_err(), LedgerError::ProductExpired { product: trial.id, name: "SuperOffice/trial".into() });
        assert_eq!(f.assign(&ann, &trial).await.unwrap_err().to_string(), "product SuperOffice/trial has expired");
    }

    async fn floating_seats_follow_sessions_and_leases(f: Fixture) {
        let float = f.product(NewProduct { kind: ProductKind::Floating, ..NewProduct::user("SuperOffice", "float", 1) }).await;
        let (ann, bob) = (f.user("ann").await, f.user("bob").await);
        let logon = |u: &User| Command::LogOn { user: by_id(u), client: ClientKind::Windows, device: "pc".into(), product: Some(pid(&float)), lease_seconds: 60 };
        let Outcome::Lease(lease) = f.ok(logon(&ann)).await else { panic!() };
        assert!(lease.seat.is_some());
        assert_eq!(f.counts(&float).await, (1, 1, 0));
        assert!(matches!(f.err(logon(&bob)).await, LedgerError::NoSeatFree { product: p, .. } if p == float.id));
        // Floating products are not assigned.
        assert!(matches!(f.assign(&bob, &float).await.unwrap_err(), LedgerError::WrongKind { .. }));
        // A heartbeat within the lease keeps the seat.
        f.clock.advance(Duration::seconds(50));
        let hb = |token: &str| Command::Heartbeat { session: lease.session.id, lease_token: token.into(), lease_seconds: 60 };
        f.ok(hb(&lease.lease_token)).await;
        assert_eq!(f.err(hb("not-the-token")).await, LedgerError::BadLeaseToken);
        f.clock.advance(Duration::seconds(50));
        assert!(matches!(f.err(logon(&bob)).await, LedgerError::NoSeatFree { product: p, .. } if p == float.id));
        // The lease lapses; Bob takes the seat; Ann's session can never renew.
        f.clock.advance(Duration::seconds(61));
        let Outcome::Lease(bobs) = f.ok(logon(&bob)).await else { panic!() };
        assert_eq!(bobs.seat, lease.seat);
        assert_eq!(f.err(hb(&lease.lease_token)).await, LedgerError::LeaseLost);
        let ended = f.ledger.session(f.tenant.id, lease.session.id).await.unwrap();
        assert_eq!(ended.end_reason, Some(EndReason::Expiry));
        // Log-off frees the seat.
        let Outcome::Changed { changed } = f.ok(Command::LogOff { users: vec![by_id(&bob)], client: None, reason: EndReason::Logoff }).await else { panic!() };
        assert_eq!(changed, 1);
        assert_eq!(f.counts(&float).await, (1, 0, 1));
        // A lapsed session that nobody displaced may still renew.
        let Outcome::Lease(again) = f.ok(logon(&ann)).await else { panic!() };
        f.clock.advance(Duration::seconds(120));
        f.ok(Command::Heartbeat { session: again.session.id, lease_token: again.lease_token.clone(), lease_seconds: 60 }).await;
        // The reaper ends lapsed sessions.
        f.clock.advance(Duration::seconds(120));
        assert_eq!(f.ok(Command::ExpireSessions).await, Outcome::Changed { changed: 1 });
        assert_eq!(f.counts(&float).await, (1, 0, 1));
    }

    async fn log_off_by_client_kind(f: Fixture) {
        let ann = f.user("ann").await;
        for client in [ClientKind::Windows, ClientKind::Web, ClientKind::Windows] {
            f.ok(Command::LogOn { user: by_id(&ann), client, device: String::new(), product: None, lease_seconds: 600 }).await;
        }
        assert_eq!(f.ledger.live_sessions(f.tenant.id, Some(ann.id), Some(ClientKind::Windows), None, None).await.unwrap().len(), 2);
        let out = f.ok(Command::LogOff { users: vec![by_id(&ann)], client: Some(ClientKind::Windows), reason: EndReason::Admin }).await;
        assert_eq!(out, Outcome::Changed { changed: 2 });
        let live = f.ledger.live_sessions(f.tenant.id, Some(ann.id), None, None, None).await.unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].client, ClientKind::Web);
        let out = f.ok(Command::LogOff { users: vec![by_id(&ann)], client: Some(ClientKind::Windows), reason: EndReason::Admin }).await;
        assert_eq!(out, Outcome::Changed { changed: 0 });
        let e = f.err(Command::LogOff { users: vec![UserRef::Id(999)], client: None, reason: EndReason::Admin }).await;
        assert!(matches!(e, LedgerError::UnknownUser(_)));
    }

    async fn retired_users_hold_nothing_and_cannot_log_on(f: Fixture) {
        let crm = f.user_product("crm", 2).await;
        let float = f.product(NewProduct { kind: ProductKind::Floating, ..NewProduct::user("SuperOffice", "float", 1) }).await;
        let ann = f.user("ann").await;
        f.assign(&ann, &crm).await.unwrap();
        f.ok(Command::LogOn { user: by_id(&ann), client: ClientKind::Web, device: String::new(), product: Some(pid(&float)), lease_seconds: 600 }).await;
        assert!(f.ok(Command::Retire { user: by_id(&ann) }).await.changed() >= 3);
        assert!(f.seats_of(&ann).await.is_empty());
        assert!(f.ledger.live_sessions(f.tenant.id, Some(ann.id), None, None, None).await.unwrap().is_empty());
        assert_eq!(f.counts(&crm).await, (2, 0, 2));
        assert_eq!(f.counts(&float).await, (1, 0, 1));
        assert_eq!(f.assign(&ann, &crm).await.unwrap_err(), LedgerError::Retired(ann.id));
        let e = f.err(Command::LogOn { user: by_id(&ann), client: ClientKind::Web, device: String::new(), product: None, lease_seconds: 60 }).await;
        assert_eq!(e, LedgerError::Retired(ann.id));
        assert_eq!(f.ok(Command::Retire { user: by_id(&ann) }).await, Outcome::Changed { changed: 0 });
        assert!(!f.view(&ann, &crm).await.can_assign);
        f.ok(Command::Unretire { user: by_id(&ann) }).await;
        f.assign(&ann, &crm).await.unwrap();
    }

    async fn delete_user_retires_releases_and_frees_the_login_in_one_command(f: Fixture) {
        let user = f.user_product("user", 2).await;
        let web = f.product(NewProduct { prerequisite: Some(pid(&user)), ..NewProduct::user("SuperOffice", "web", 1) }).await;
        let float = f.product(NewProduct { kind: ProductKind::Floating, ..NewProduct::user("SuperOffice", "float", 1) }).await;
        let ann = f.user("ann").await;
        f.assign(&ann, &user).await.unwrap();
        f.assign(&ann, &web).await.unwrap();
        f.ok(Command::LogOn { user: by_id(&ann), client: ClientKind::Web, device: String::new(), product: Some(pid(&float)), lease_seconds: 600 }).await;
        let before = f.audit_len().await;
        // 1 (the user) + 2 seats freed + 1 session ended.
        assert_eq!(f.ok(Command::DeleteUser { user: UserRef::Login("ANN".into()) }).await, Outcome::Changed { changed: 4 });
        let gone = f.ledger.user(f.tenant.id, &by_id(&ann)).await.unwrap();
        assert!(gone.retired);
        assert_eq!(gone.login, format!("ann (deleted {})", ann.uuid));
        assert!(f.seats_of(&ann).await.is_empty());
        assert!(f.ledger.live_sessions(f.tenant.id, Some(ann.id), None, None, None).await.unwrap().is_empty());
        assert_eq!(f.counts(&user).await, (2, 0, 2));
        assert_eq!(f.counts(&web).await, (1, 0, 1));
        assert_eq!(f.counts(&float).await, (1, 0, 1));
        // One user.delete record, written with the seat releases and the session's end.
        let events = f.ledger.audit(f.tenant.id, &AuditFilter { after_seq: Some(before as i64), ..Default::default() }).await.unwrap();
        let deletes: Vec<_> = events.iter().filter(|e| e.action == "user.delete").collect();
        assert_eq!(deletes.len(), 1, "{events:#?}");
        assert_eq!(deletes[0].user, Some(ann.id));
        assert_eq!(deletes[0].detail["before"]["login"], "ann");
        assert_eq!(deletes[0].detail["seats_freed"], 2);
        assert!(!events.iter().any(|e| e.action == "user.retire" || e.action == "user.edit"));
        // The name is free for a new user; the old row is still found by id and uuid.
        let again = f.user("ann").await;
        assert_ne!(again.id, ann.id);
        assert_eq!(f.ledger.user(f.tenant.id, &UserRef::Uuid(ann.uuid)).await.unwrap().id, ann.id);
        // Deleting twice changes nothing; the deleted user can be given nothing.
        assert_eq!(f.ok(Command::DeleteUser { user: by_id(&ann) }).await, Outcome::Changed { changed: 0 });
        assert_eq!(f.assign(&ann, &user).await.unwrap_err(), LedgerError::Retired(ann.id));
        let e = f.err(Command::DeleteUser { user: UserRef::Id(999) }).await;
        assert!(matches!(e, LedgerError::UnknownUser(_)), "{e:?}");
    }

    async fn deleting_a_retired_user_still_frees_its_login(f: Fixture) {
        let bob = f.user("bob").await;
        f.ok(Command::Retire { user: by_id(&bob) }).await;
        assert_eq!(f.ok(Command::DeleteUser { user: by_id(&bob) }).await, Outcome::Changed { changed: 1 });
        f.user("bob").await;
    }

    async fn a_tenant_and_its_admin_login_are_created_together_or_not_at_all(f: Fixture) {
        let admin = |login: &str| Command::CreateLogin { login: login.into(), password_hash: "$argon2id$stub".into(), role: Role::Admin, user: None };
        // The login part fails: no tenant is left behind, and the name stays free.
        let e = f.ledger.create_tenant_with("beta", "op", None, &[admin("bad\u{7}login")]).await.unwrap_err();
        assert!(matches!(e, LedgerError::Invalid { field: "login", .. }), "{e:?}");
        assert_eq!(f.ledger.tenant("beta").await.unwrap(), None);
        // The second of two setup commands fails: neither the tenant nor the first login stays.
        let e = f.ledger.create_tenant_with("beta", "op", None, &[admin("root"), admin("ROOT")]).await.unwrap_err();
        assert!(matches!(e, LedgerError::AlreadyExists { .. }), "{e:?}");
        assert_eq!(f.ledger.tenant("beta").await.unwrap(), None);
        assert_eq!(f.ledger.tenants().await.unwrap().len(), 1);
        // Success: both, audited in order with the request id.
        let (beta, outcomes) = f.ledger.create_tenant_with("beta", "op", Some("req-1".into()), &[admin("root")]).await.unwrap();
        assert!(matches!(&outcomes[..], [Outcome::Login(l)] if l.login == "root"), "{outcomes:?}");
        let login = f.ledger.login(beta.id, "root").await.unwrap().expect("admin login");
        assert_eq!(login.info.role, Role::Admin);
        let events = f.ledger.audit(beta.id, &AuditFilter::default()).await.unwrap();
        let actions: Vec<_> = events.iter().map(|e| (e.seq, e.action.as_str(), e.actor.as_str())).collect();
        assert_eq!(actions[0], (1, "tenant.create", "op"));
        assert_eq!(actions[1], (2, "signing_key.create", "op"));
        assert_eq!((actions[2].0, actions[2].1, actions[2].2), (3, "login.create", "op"));
        assert_eq!(events[2].request_id.as_deref(), Some("req-1"));
        assert!(f.ledger.check_invariants(beta.id).await.unwrap().is_empty());
        // A name taken is refused before anything is written.
        let e = f.ledger.create_tenant_with("beta", "op", None, &[admin("other")]).await.unwrap_err();
        assert!(matches!(e, LedgerError::AlreadyExists { what: "tenant", .. }), "{e:?}");
        assert!(f.ledger.login(beta.id, "other").await.unwrap().is_none());
    }

    async fn retiring_a_user_revokes_its_credentials_and_refuses_its_logins(f: Fixture) {
        let ann = f.user("ann").await;
        let bob = f.user("bob").await;
        for (login, role, user) in [("ann", Role::User, &ann), ("ann-admin", Role::Admin, &ann), ("bob", Role::User, &bob)] {
            f.ok(Command::CreateLogin { login: login.into(), password_hash: "h".into(), role, user: Some(by_id(user)) }).await;
        }
        let issue = |hash: &str, role: Role, login: &str, user: &User| Command::IssueToken {
            token_hash: hash.into(),
            role,
            login: login.into(),
            user: Some(user.id),
            label: "t".into(),
            expires_at: f.ledger.now_time() + Duration::hours(1),
        };
        for (hash, role, login, user) in [("t-ann", Role::User, "ann", &ann), ("t-ann-admin", Role::Admin, "ann-admin", &ann), ("t-bob", Role::User, "bob", &bob)] {
            f.ok(issue(hash, role, login, user)).await;
        }
        let live = |hash: &'static str| {
            let ledger = f.ledger.clone();
            async move { ledger.live_token(hash).await.unwrap().is_some() }
        };
        assert!(live("t-ann").await && live("t-ann-admin").await);
        let out = f.ok(Command::Retire { user: by_id(&ann) }).await;
        assert_eq!(out, Outcome::Changed { changed: 3 }, "the flag and two tokens");
        assert!(!live("t-ann").await && !live("t-ann-admin").await);
        assert!(live("t-bob").await, "other users keep theirs");
        let revoked: Vec<_> = f.ledger.tokens(f.tenant.id).await.unwrap().into_iter().filter(|t| t.revoked_at.is_some()).map(|t| t.login).collect();
        assert_eq!(revoked.len(), 2, "{revoked:?}");
        // Its logins, admin or not, are refused; nothing new is issued to it.
        assert!(f.ledger.login(f.tenant.id, "ann").await.unwrap().is_none());
        assert!(f.ledger.login(f.tenant.id, "ANN-admin").await.unwrap().is_none());
        assert!(f.ledger.login(f.tenant.id, "bob").await.unwrap().is_some());
        assert_eq!(f.err(issue("t-ann-2", Role::User, "ann", &ann)).await, LedgerError::Retired(ann.id));
        let retire = f.ledger.audit(f.tenant.id, &AuditFilter::default()).await.unwrap().into_iter().find(|e| e.action == "user.retire").unwrap();
        assert_eq!(retire.detail["tokens_revoked"], 2);
        // Unretiring opens the logins again but the old credentials stay revoked.
        f.ok(Command::Unretire { user: by_id(&ann) }).await;
        assert!(!live("t-ann").await && !live("t-ann-admin").await);
        assert!(f.ledger.login(f.tenant.id, "ann").await.unwrap().is_some());
        f.ok(issue("t-ann-3", Role::User, "ann", &ann)).await;
        assert!(live("t-ann-3").await);
    }

    async fn remove_all_licenses_frees_everything_the_user_holds(f: Fixture) {
        let a = f.user_product("a", 2).await;
        let b = f.user_product("b", 2).await;
        let ann = f.user("ann").await;
        f.assign(&ann, &a).await.unwrap();
        f.assign(&ann, &b).await.unwrap();
        let out = f.ok(Command::RemoveAllLicenses { user: by_id(&ann) }).await;
        assert_eq!(out, Outcome::Changed { changed: 2 });
        assert!(f.seats_of(&ann).await.is_empty());
        assert_eq!(f.ok(Command::RemoveAllLicenses { user: by_id(&ann) }).await, Outcome::Changed { changed: 0 });
    }

    async fn grant_release_and_revoke_individual_seats(f: Fixture) {
        let ult = f.product(NewProduct::user("MSP360", "Ultimate", 0)).await;
        let seats = f.add_seats(NewSeats { transaction_id: Some("tx-1".into()), ..NewSeats::plain(pid(&ult), 3) }).await;
        let manual = f.user("manual").await;
        let auto = f.user_with(NewUser { license_mode: LicenseMode::Automatic, ..NewUser::named("auto") }).await;
        let s0 = seats[0].id;
        let Outcome::Seat(granted) = f.ok(Command::GrantSeat { seat: s0, user: by_id(&manual) }).await else { panic!() };
        assert_eq!(granted.holder, Some(manual.id));
        assert_eq!(granted.transaction_id.as_deref(), Some("tx-1"));
        assert_eq!(f.ok(Command::GrantSeat { seat: s0, user: by_id(&manual) }).await, Outcome::Changed { changed: 0 });
        assert_eq!(f.err(Command::GrantSeat { seat: s0, user: by_id(&auto) }).await, LedgerError::WrongHolder { seat: s0 });
        assert_eq!(f.err(Command::ReleaseSeat { seat: s0, user: Some(by_id(&auto)) }).await, LedgerError::WrongHolder { seat: s0 });
        // Activation, then revoke: a manual user keeps the seat, the computer goes.
        let pc = Activation { hardware_id: "HID-1".into(), computer_name: "PC1".into(), operating_system: "Windows".into() };
        f.ok(Command::ActivateSeat { seat: s0, activation: pc.clone(), user: None }).await;
        assert_eq!(f.ledger.seat(f.tenant.id, s0).await.unwrap().activation, Some(pc.clone()));
        f.ok(Command::RevokeSeat { seat: s0, user: Some(by_id(&manual)) }).await;
        let after = f.ledger.seat(f.tenant.id, s0).await.unwrap();
        assert_eq!((after.holder, after.activation), (Some(manual.id), None));
        assert_eq!(f.ok(Command::RevokeSeat { seat: s0, user: None }).await, Outcome::Changed { changed: 0 });
        // An automatic user loses the seat on revoke.
        let s1 = seats[1].id;
        f.ok(Command::GrantSeat { seat: s1, user: by_id(&auto) }).await;
        f.ok(Command::ActivateSeat { seat: s1, activation: Activation { hardware_id: "HID-2".into(), ..pc.clone() }, user: None }).await;
        f.ok(Command::RevokeSeat { seat: s1, user: None }).await;
        let after = f.ledger.seat(f.tenant.id, s1).await.unwrap();
        assert_eq!((after.holder, after.activation), (None, None));
        // Release frees entirely; releasing a free seat changes nothing.
        f.ok(Command::ReleaseSeat { seat: s0, user: Some(by_id(&manual)) }).await;
        assert_eq!(f.ledger.seat(f.tenant.id, s0).await.unwrap().holder, None);
        assert_eq!(f.ok(Command::ReleaseSeat { seat: s0, user: None }).await, Outcome::Changed { changed: 0 });
        assert_eq!(f.counts(&ult).await, (3, 0, 3));
        let free = f.ledger.seats(f.tenant.id, &SeatFilter { product: Some(ult.id), available: Some(true), ..Default::default() }).await.unwrap();
        assert_eq!(free.len(), 3);
    }

    async fn company_mode_revoke_follows_the_company_pool(f: Fixture) {
        let ult = f.product(NewProduct::user("MSP360", "Ultimate", 0)).await;
        let global = f.company("Global Co", PoolMode::Global).await;
        let pooled = f.company("Pooled Co", PoolMode::Company).await;
        let g = f.user_with(NewUser { company: Some(CompanyRef::Id(global.id)), license_mode: LicenseMode::Company, ..NewUser::named("g") }).await;
        let p = f.user_with(NewUser { company: Some(CompanyRef::Name("pooled co".into())), license_mode: LicenseMode::Company, ..NewUser::named("p") }).await;
        let gs = f.add_seats(NewSeats::plain(pid(&ult), 1)).await[0].id;
        let ps = f.add_seats(NewSeats { pool_company: Some(CompanyRef::Id(pooled.id)), ..NewSeats::plain(pid(&ult), 1) }).await[0].id;
        f.ok(Command::GrantSeat { seat: gs, user: by_id(&g) }).await;
        f.ok(Command::GrantSeat { seat: ps, user: by_id(&p) }).await;
        f.ok(Command::RevokeSeat { seat: gs, user: None }).await;
        f.ok(Command::RevokeSeat { seat: ps, user: None }).await;
        assert_eq!(f.ledger.seat(f.tenant.id, gs).await.unwrap().holder, None);
        assert_eq!(f.ledger.seat(f.tenant.id, ps).await.unwrap().holder, Some(p.id));
    }

    async fn company_pools_and_quotas_bound_what_their_users_take(f: Fixture) {
        let ult = f.user_product("ult", 2).await; // two tenant-wide seats
        let pooled = f.company("Pooled", PoolMode::Company).await;
        let other = f.company("Other", PoolMode::Company).await;
        let own = f.add_seats(NewSeats { pool_company: Some(CompanyRef::Id(pooled.id)), ..NewSeats::plain(pid(&ult), 1) }).await;
        let theirs = f.add_seats(NewSeats { pool_company: Some(CompanyRef::Id(other.id)), ..NewSeats::plain(pid(&ult), 1) }).await;
        let member = |login: &str| NewUser { company: Some(CompanyRef::Id(pooled.id)), license_mode: LicenseMode::Company, ..NewUser::named(login) };
        let (a, b, c) = (f.user_with(member("a")).await, f.user_with(member("b")).await, f.user_with(member("c")).await);
        let outsider = f.user("outsider").await;
        // A: the company's own seat.
        f.assign(&a, &ult).await.unwrap();
        assert_eq!(f.seats_of(&a).await[0].id, own[0].id);
        // B: no own seat left and no quota: refused although tenant-wide seats are free.
        assert!(matches!(f.assign(&b, &ult).await.unwrap_err(), LedgerError::NoSeatFree { product: p, .. } if p == ult.id));
        f.ok(Command::SetCompanyQuota { company: CompanyRef::Id(pooled.id), product: pid(&ult), quota: Some(1) }).await;
        assert!(f.view(&b, &ult).await.can_assign);
        f.assign(&b, &ult).await.unwrap();
        assert_eq!(f.seats_of(&b).await[0].pool_company, None);
        assert!(matches!(f.assign(&c, &ult).await.unwrap_err(), LedgerError::QuotaExhausted { product: p, .. } if p == ult.id));
        assert!(!f.view(&c, &ult).await.can_assign);
        // A quota below what is in use is refused.
        let e = f.err(Command::SetCompanyQuota { company: CompanyRef::Id(pooled.id), product: pid(&ult), quota: Some(0) }).await;
        assert_eq!(e, LedgerError::OverAllocated { held: 1, total: 0 });
        // Another company's seat is out of reach, for members and outsiders alike.
        assert!(matches!(f.err(Command::GrantSeat { seat: theirs[0].id, user: by_id(&c) }).await, LedgerError::WrongPool { .. }));
        assert!(matches!(f.err(Command::GrantSeat { seat: theirs[0].id, user: by_id(&outsider) }).await, LedgerError::WrongPool { .. }));
        // Releasing B's seat gives the quota back.
        f.unassign(&b, &ult).await.unwrap();
        f.assign(&c, &ult).await.unwrap();
        f.unassign(&c, &ult).await.unwrap();
        f.ok(Command::SetCompanyQuota { company: CompanyRef::Id(pooled.id), product: pid(&ult), quota: None }).await;
        // The outsider takes from the tenant-wide pool.
        f.assign(&outsider, &ult).await.unwrap();
        assert_eq!(f.seats_of(&outsider).await[0].pool_company, None);
        let e = f.err(Command::CreateCompany { name: "POOLED".into(), pool_mode: PoolMode::Global }).await;
        assert!(matches!(e, LedgerError::AlreadyExists { what: "company", .. }));
    }

    async fn deleting_a_company_detaches_members_and_drops_its_quotas(f: Fixture) {
        let ult = f.user_product("ult", 2).await;
        // A company with seats in its own pool cannot be deleted: nothing changes.
        let owning = f.company("Owning", PoolMode::Company).await;
        f.add_seats(NewSeats { pool_company: Some(CompanyRef::Id(owning.id)), ..NewSeats::plain(pid(&ult), 1) }).await;
        let e = f.err(Command::DeleteCompany { company: CompanyRef::Uuid(owning.uuid) }).await;
        assert!(matches!(e, LedgerError::Invalid { field: "company", .. }), "{e:?}");
        assert!(f.ledger.company(f.tenant.id, &CompanyRef::Id(owning.id)).await.is_ok());
        // A company whose member holds a seat charged to its quota.
        let pooled = f.company("Pooled", PoolMode::Company).await;
        let member = NewUser { company: Some(CompanyRef::Id(pooled.id)), license_mode: LicenseMode::Company, ..NewUser::named("m") };
        let m = f.user_with(member).await;
        f.ok(Command::SetCompanyQuota { company: CompanyRef::Id(pooled.id), product: pid(&ult), quota: Some(1) }).await;
        f.assign(&m, &ult).await.unwrap();
        f.ok(Command::DeleteCompany { company: CompanyRef::Uuid(pooled.uuid) }).await;
        let e = f.ledger.company(f.tenant.id, &CompanyRef::Id(pooled.id)).await.unwrap_err();
        assert!(matches!(e, LedgerError::UnknownCompany(_)), "{e:?}");
        // The member stays, out of the company, and keeps its seat (no longer charged).
        let m = f.ledger.user(f.tenant.id, &by_id(&m)).await.unwrap();
        assert_eq!(m.company, None);
        assert_eq!(f.seats_of(&m).await.len(), 1);
        assert_eq!(f.seats_of(&m).await[0].pool_company, None);
        // Gone means gone: a second delete is refused, and the name is free again.
        let e = f.err(Command::DeleteCompany { company: CompanyRef::Uuid(pooled.uuid) }).await;
        assert!(matches!(e, LedgerError::UnknownCompany(_)), "{e:?}");
        f.company("pooled", PoolMode::Global).await;
    }

    async fn removing_an_owner_takes_its_products_from_every_holder(f: Fixture) {
        let base = NewProduct::user("Acme", "base", 2);
        let base = f.product(base).await;
        let mut addon = NewProduct::user("Acme", "addon", 1);
        addon.prerequisite = Some(pid(&base));
        let addon = f.product(addon).await;
        let mut floating = NewProduct::user("Acme", "float", 1);
        floating.kind = ProductKind::Floating;
        f.product(floating).await;
        // Another owner's plan brings an Acme module along; its own module must survive.
        let own = f.user_product("own", 2).await;
        let mut plan = NewProduct::user("Other", "plan", 2);
        plan.extra_flags = EXTRA_FLAG_USER_PLAN;
        plan.plan_members = vec![pid(&base), pid(&own)];
        let plan = f.product(plan).await;
        let (ann, bob) = (f.user("ann").await, f.user("bob").await);
        f.assign(&ann, &base).await.unwrap();
        f.assign(&ann, &addon).await.unwrap();
        f.assign(&bob, &plan).await.unwrap();
        let lease = f
            .ok(Command::LogOn {
                user: by_id(&ann),
                client: ClientKind::Web,
                device: "d".into(),
                product: Some(ProductRef::named("Acme", "float")),
                lease_seconds: 60,
            })
            .await;
        let Outcome::Lease(lease) = lease else { panic!("{lease:?}") };
        let audit_before = f.audit_len().await;
        f.ok(Command::RemoveOwner { owner: "acme".into() }).await;
        for name in ["base", "addon", "float"] {
            let e = f.ledger.product(f.tenant.id, &ProductRef::named("Acme", name)).await.unwrap_err();
            assert!(matches!(e, LedgerError::UnknownProduct(_)), "{name}: {e:?}");
        }
        assert!(f.seats_of(&ann).await.is_empty());
        // Bob keeps his plan and its other member; the floating session ended with its seat.
        assert!(f.assigned(&bob, &plan).await && f.assigned(&bob, &own).await);
        let session = f.ledger.session(f.tenant.id, lease.session.id).await.unwrap();
        assert!(session.ended_at.is_some());
        assert!(f.audit_len().await > audit_before);
        let e = f.err(Command::RemoveOwner { owner: "Acme".into() }).await;
        assert!(matches!(e, LedgerError::UnknownProduct(_)), "{e:?}");
        // The owner's name can be used again.
        f.user_product("fresh", 1).await;
        f.product(NewProduct::user("Acme", "base", 1)).await;
    }

    async fn activation_rules(f: Fixture) {
        let ult = f.user_product("ult", 3).await;
        let (ann, bob) = (f.user("ann").await, f.user("bob").await);
        let seats = f.ledger.seats(f.tenant.id, &SeatFilter { product: Some(ult.id), ..Default::default() }).await.unwrap();
        let pc = |hid: &str| Activation { hardware_id: hid.into(), computer_name: "pc".into(), operating_system: "Linux".into() };
        assert_eq!(f.err(Command::ActivateSeat { seat: seats[0].id, activation: pc("A"), user: None }).await, LedgerError::NotHeld(seats[0].id));
        f.ok(Command::GrantSeat { seat: seats[0].id, user: by_id(&ann) }).await;
        f.ok(Command::GrantSeat { seat: seats[1].id, user: by_id(&ann) }).await;
        f.ok(Command::GrantSeat { seat: seats[2].id, user: by_id(&bob) }).await;
        // A named user must be the holder: Bob cannot activate Ann's seat, nor anyone a free one.
        assert_eq!(f.err(Command::ActivateSeat { seat: seats[0].id, activation: pc("A"), user: Some(by_id(&bob)) }).await, LedgerError::WrongHolder { seat: seats[0].id });
        assert!(f.ledger.computers(f.tenant.id, None).await.unwrap().is_empty());
        f.ok(Command::ActivateSeat { seat: seats[0].id, activation: pc("A"), user: Some(UserRef::Login("ann".into())) }).await;
        assert_eq!(f.ok(Command::ActivateSeat { seat: seats[0].id, activation: pc("A"), user: None }).await, Outcome::Changed { changed: 0 });
        assert_eq!(f.err(Command::ActivateSeat { seat: seats[0].id, activation: pc("B"), user: None }).await, LedgerError::AlreadyActivated { seat: seats[0].id });
        // One seat of a product per computer.
        assert_eq!(f.err(Command::ActivateSeat { seat: seats[1].id, activation: pc("A"), user: None }).await, LedgerError::ComputerHasSeat("A".into()));
        // Ann's computer is not Bob's.
        assert_eq!(f.err(Command::ActivateSeat { seat: seats[2].id, activation: pc("A"), user: None }).await, LedgerError::ComputerOfAnotherUser("A".into()));
        // Handing the computer to Bob clears Ann's activation on it.
        f.ok(Command::RegisterComputer { hardware_id: "A".into(), name: "pc".into(), operating_system: "Linux".into(), user: Some(by_id(&bob)) }).await;
        assert_eq!(f.ledger.seat(f.tenant.id, seats[0].id).await.unwrap().activation, None);
        f.ok(Command::ActivateSeat { seat: seats[2].id, activation: pc("A"), user: None }).await;
        let activated = f.ledger.seats(f.tenant.id, &SeatFilter { activated: Some(true), ..Default::default() }).await.unwrap();
        assert_eq!(activated.len(), 1);
        assert_eq!(f.ledger.computers(f.tenant.id, Some(bob.id)).await.unwrap().len(), 1);
    }

    async fn tenants_are_isolated(f: Fixture) {
        let crm = f.user_product("crm", 1).await;
        let ann = f.user("ann").await;
        f.assign(&ann, &crm).await.unwrap();
        let other = f.ledger.create_tenant("globex", "test").await.unwrap();
        let octx = Context::new(other.id, "admin");
        let e = f.ledger.execute(&octx, Command::Assign { user: UserRef::Id(ann.id), product: ProductRef::Id(crm.id) }).await.unwrap_err();
        assert!(matches!(e, LedgerError::UnknownUser(_)), "{e:?}");
        let e = f.ledger.execute(&octx, Command::ReleaseSeat { seat: f.seats_of(&ann).await[0].id, user: None }).await.unwrap_err();
        assert!(matches!(e, LedgerError::UnknownSeat(_)), "{e:?}");
        // Same names, separate products, users, counters and counts.
        let Outcome::Product(p2) = f.ledger.execute(&octx, Command::CreateProduct(NewProduct::user("SuperOffice", "crm", 5))).await.unwrap() else { panic!() };
        let Outcome::User(u2) = f.ledger.execute(&octx, Command::CreateUser(NewUser::named("ann"))).await.unwrap() else { panic!() };
        assert_eq!((p2.id, u2.id), (1, 1));
        f.ledger.execute(&octx, Command::Assign { user: UserRef::Id(u2.id), product: ProductRef::Id(p2.id) }).await.unwrap();
        let s2 = f.ledger.pool_status(other.id, None).await.unwrap();
        assert_eq!((s2[0].total, s2[0].in_use), (5, 1));
        assert_eq!(f.counts(&crm).await, (1, 1, 0));
        assert!(f.ledger.check_invariants(other.id).await.unwrap().is_empty());
        assert_eq!(f.ledger.audit(other.id, &AuditFilter::default()).await.unwrap().len(), 5); // with signing_key.create
        assert!(matches!(f.ledger.create_tenant("globex", "test").await, Err(LedgerError::AlreadyExists { .. })));
    }

    async fn a_batch_commits_together_with_an_outcome_per_command(f: Fixture) {
        let crm = f.user_product("crm", 1).await;
        let (ann, bob) = (f.user("ann").await, f.user("bob").await);
        let before = f.audit_len().await;
        let outcomes = f.ledger.apply(&f.ctx, &[
            Command::Assign { user: by_id(&ann), product: pid(&crm) },
            Command::Assign { user: by_id(&bob), product: pid(&crm) },
            Command::CreateUser(NewUser::named("cid")),
            Command::Assign { user: UserRef::Login("cid".into()), product: ProductRef::named("nobody", "nothing") },
        ]).await.unwrap();
        assert!(outcomes[0].is_ok());
        assert!(matches!(outcomes[1], Err(LedgerError::NoSeatFree { product: p, .. }) if p == crm.id));
        assert!(matches!(outcomes[2], Ok(Outcome::User(_))));
        assert!(matches!(outcomes[3], Err(LedgerError::UnknownProduct(_))));
        assert_eq!(f.audit_len().await, before + 2);
        assert_eq!(f.counts(&crm).await, (1, 1, 0));
    }

    async fn an_all_or_nothing_batch_commits_whole_or_not_at_all(f: Fixture) {
        let crm = f.user_product("crm", 1).await;
        let before = f.audit_len().await;
        let e = f.ledger.apply_all_or_nothing(&f.ctx, &[
            Command::CreateUser(NewUser::named("ann")),
            Command::Assign { user: UserRef::Login("ann".into()), product: pid(&crm) },
            Command::CreateUser(NewUser::named("ANN")),
        ]).await.unwrap_err();
        assert!(matches!(e, LedgerError::AlreadyExists { what: "user", .. }), "{e:?}");
        assert!(f.ledger.user(f.tenant.id, &UserRef::Login("ann".into())).await.is_err());
        assert_eq!(f.counts(&crm).await, (1, 0, 1));
        assert_eq!(f.audit_len().await, before);
        let outcomes = f.ledger.apply_all_or_nothing(&f.ctx, &[
            Command::CreateUser(NewUser::named("ann")),
            Command::Assign { user: UserRef::Login("ann".into()), product: pid(&crm) },
        ]).await.unwrap();
        assert_eq!(outcomes.len(), 2);
        assert_eq!(f.counts(&crm).await, (1, 1, 0));
    }

    async fn audit_is_gap_free_and_searchable(f: Fixture) {
        let crm = f.user_product("crm", 2).await;
        let ann = f.user("ann").await;
        let ctx = Context { request_id: Some("req-42".into()), ..Context::new(f.tenant.id, "operator") };
        f.ledger.execute(&ctx, Command::Assign { user: by_id(&ann), product: pid(&crm) }).await.unwrap();
        f.clock.advance(Duration::minutes(5));
        f.unassign(&ann, &crm).await.unwrap();
        let all = f.ledger.audit(f.tenant.id, &AuditFilter::default()).await.unwrap();
        let seqs: Vec<i64> = all.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=all.len() as i64).collect::<Vec<_>>());
        let by_actor = f.ledger.audit(f.tenant.id, &AuditFilter { actor: Some("operator".into()), ..Default::default() }).await.unwrap();
        assert_eq!(by_actor.len(), 1);
        assert_eq!(by_actor[0].action, "license.assign");
        assert_eq!(by_actor[0].request_id.as_deref(), Some("req-42"));
        assert_eq!(by_actor[0].user, Some(ann.id));
        assert_eq!(by_actor[0].product, Some(crm.id));
        assert!(by_actor[0].seat.is_some());
        assert_eq!(by_actor[0].detail["after"]["assigned"], true);
        let for_user = f.ledger.audit(f.tenant.id, &AuditFilter { user: Some(ann.id), ..Default::default() }).await.unwrap();
        let actions: Vec<&str> = for_user.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["user.create", "license.assign", "seat.release", "license.unassign"]);
        let since = rules::to_micros(common::START + Duration::minutes(1));
        let later = f.ledger.audit(f.tenant.id, &AuditFilter { since: Some(since), ..Default::default() }).await.unwrap();
        assert_eq!(later.len(), 2);
        let page = f.ledger.audit(f.tenant.id, &AuditFilter { after_seq: Some(3), limit: Some(2), ..Default::default() }).await.unwrap();
        assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
    }

    async fn the_database_refuses_to_rewrite_the_audit_trail(f: Fixture) {
        use sqlx::Connection;
        f.user("ann").await;
        let mut conn = sqlx::AnyConnection::connect(&f.db.url()).await.unwrap();
        let update = sqlx::query("UPDATE audit_events SET actor = 'mallory'").execute(&mut conn).await;
        assert!(update.is_err(), "an audit record was rewritten");
        let delete = sqlx::query("DELETE FROM audit_events").execute(&mut conn).await;
        assert!(delete.is_err(), "audit records were deleted");
        conn.close().await.unwrap();
        assert_eq!(f.audit_len().await, 3);
    }

    async fn a_token_is_live_until_it_expires_or_is_revoked(f: Fixture) {
        let issue = |hash: &str, hours: i64| Command::IssueToken {
            token_hash: rules::hash_token(hash),
            role: Role::Admin,
            login: "admin".into(),
            user: None,
            label: String::new(),
            expires_at: f.clock.now() + Duration::hours(hours),
        };
        let Outcome::Token(short) = f.ok(issue("short", 1)).await else { panic!("no token") };
        let Outcome::Token(long) = f.ok(issue("long", 24)).await else { panic!("no token") };
        let state = |secret: &'static str| {
            let ledger = f.ledger.clone();
            async move { ledger.token_state(&rules::hash_token(secret)).await.unwrap() }
        };
        assert_eq!(state("short").await, TokenState::Live(short.clone()));
        assert_eq!(state("nobody").await, TokenState::Unknown);
        f.ok(Command::RevokeToken { id: long.id }).await;
        assert_eq!(state("long").await, TokenState::Revoked);
        // The expiry instant itself is already too late.
        f.clock.advance(Duration::hours(1));
        assert_eq!(state("short").await, TokenState::Expired);
        assert_eq!(f.ledger.live_token(&rules::hash_token("short")).await.unwrap(), None);
        f.clock.advance(Duration::hours(30));
        assert_eq!(state("long").await, TokenState::Revoked, "revoked stays revoked past its expiry");
    }

    async fn cached_tokens_end_at_once_here_and_when_notified_or_within_the_cache_time_elsewhere(f: Fixture) {
        // `here` is a server's ledger with its token cache; `f.ledger` plays another process on
        // the same store.
        let here = Ledger::open(&f.db.url()).await.unwrap()
            .with_clock(std::sync::Arc::new(f.clock.clone()))
            .with_token_cache(std::time::Duration::from_secs(3600));
        let ann = f.user("ann").await;
        let issue = |hash: &str, user: Option<&User>, hours: i64| Command::IssueToken {
            token_hash: rules::hash_token(hash),
            role: if user.is_some() { Role::User } else { Role::Admin },
            login: user.map_or("admin".into(), |u| u.login.clone()),
            user: user.map(|u| u.id),
            label: String::new(),
            expires_at: f.clock.now() + Duration::hours(hours),
        };
        let mut tokens = Vec::new();
        for (secret, user, hours) in [("elsewhere", None, 24), ("here", None, 24), ("ann", Some(&ann), 24), ("short", None, 1)] {
            let Outcome::Token(t) = f.ok(issue(secret, user, hours)).await else { panic!("no token") };
            tokens.push(t);
        }
        let state = |ledger: &Ledger, secret: &'static str| {
            let ledger = ledger.clone();
            async move { ledger.token_state(&rules::hash_token(secret)).await.unwrap() }
        };
        // On PostgreSQL the cache serves once its feed of other processes' changes listens.
        for _ in 0..250 {
            if here.token_cache_serving() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(here.token_cache_serving(), "the token cache never listened");
        for (secret, t) in ["elsewhere", "here", "ann", "short"].into_iter().zip(&tokens) {
            assert_eq!(state(&here, secret).await, TokenState::Live(t.clone()));
        }
        f.ok(Command::RevokeToken { id: tokens[0].id }).await;
        assert_eq!(state(&f.ledger, "elsewhere").await, TokenState::Revoked);
        if matches!(f.db, TestDb::Postgres { .. }) {
            // Revoked by another process on PostgreSQL: its commit notifies this one, whose
            // cache (an hour long) forgets the tenant's tokens within moments.
            let mut refused = false;
            for _ in 0..250 {
                if state(&here, "elsewhere").await == TokenState::Revoked {
                    refused = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert!(refused, "a revocation by another process was not seen within 5 s");
            // The cache still serves the tenant's other tokens, read again.
            assert_eq!(state(&here, "ann").await, TokenState::Live(tokens[2].clone()));
        } else {
            // Another process on one SQLite file: no feed, so accepted here until the cache
            // time has passed (the documented bound), while that process refuses it at once.
            assert_eq!(state(&here, "elsewhere").await, TokenState::Live(tokens[0].clone()));
        }
        // Revoked through this process (a clone of it, as every request handler holds): refused
        // at once, and so is every token of a user disabled here.
        let ctx = Context::new(f.tenant.id, "admin");
        here.clone().execute(&ctx, Command::RevokeToken { id: tokens[1].id }).await.unwrap();
        assert_eq!(state(&here, "here").await, TokenState::Revoked);
        here.execute(&ctx, Command::DisableUser { user: by_id(&ann) }).await.unwrap();
        assert_eq!(state(&here, "ann").await, TokenState::Revoked);
        // The command cleared the tenant's cached tokens: the other process's revocation shows too.
        assert_eq!(state(&here, "elsewhere").await, TokenState::Revoked);
        // A cached token still expires on time.
        f.clock.advance(Duration::hours(1));
        assert_eq!(state(&here, "short").await, TokenState::Expired);
        here.close().await;
        // A short cache time: a revocation elsewhere shows here once it has passed.
        let brief = Ledger::open(&f.db.url()).await.unwrap()
            .with_clock(std::sync::Arc::new(f.clock.clone()))
            .with_token_cache(std::time::Duration::from_millis(50));
        let Outcome::Token(t) = f.ok(issue("brief", None, 24)).await else { panic!("no token") };
        assert_eq!(state(&brief, "brief").await, TokenState::Live(t.clone()));
        f.ok(Command::RevokeToken { id: t.id }).await;
        tokio::time::sleep(std::time::Duration::from_millis(120)).await;
        assert_eq!(state(&brief, "brief").await, TokenState::Revoked);
        brief.close().await;
    }

    async fn reopening_the_store_keeps_everything(f: Fixture) {
        let crm = f.user_product("crm", 2).await;
        let ann = f.user("ann").await;
        f.assign(&ann, &crm).await.unwrap();
        // Migrations are idempotent; a second instance sees the committed state.
        let again = Ledger::open(&f.db.url()).await.unwrap();
        let tenant = again.tenant("acme").await.unwrap().unwrap();
        let status = again.pool_status(tenant.id, Some(crm.id)).await.unwrap();
        assert_eq!((status[0].total, status[0].in_use), (2, 1));
        again.close().await;
    }

    async fn users_are_found_by_login_name_or_email_company_and_state(f: Fixture) {
        let acme = f.company("Acme", PoolMode::Global).await;
        let ann = f.user_with(NewUser { first_name: "Ann".into(), last_name: "Smith".into(), email: "ann@acme.example".into(), company: Some(CompanyRef::Id(acme.id)), ..NewUser::named("ann") }).await;
        let bob = f.user_with(NewUser { email: "bob@other.example".into(), ..NewUser::named("bob_1") }).await;
        let cid = f.user_with(NewUser { first_name: "Cid".into(), last_name: "Smithers".into(), ..NewUser::named("cid") }).await;
        f.ok(Command::Retire { user: by_id(&cid) }).await;
        let (ledger, tenant) = (&f.ledger, f.tenant.id);
        let find = |search: UserSearch| async move {
            ledger.find_users(tenant, &search).await.unwrap().iter().map(|u| u.login.clone()).collect::<Vec<_>>()
        };
        let text = |t: &str| UserSearch { text: Some(t.into()), ..Default::default() };
        assert_eq!(find(text("SMITH")).await, ["ann", "cid"]);
        assert_eq!(find(text("ann smith")).await, ["ann"]);
        assert_eq!(find(text("acme.example")).await, ["ann"]);
        // LIKE's wildcards in the text are literal: `_` matches only an underscore.
        assert_eq!(find(text("b_1")).await, ["bob_1"]);
        assert_eq!(find(text("an_")).await, Vec::<String>::new());
        assert_eq!(find(text("%")).await, Vec::<String>::new());
        assert_eq!(find(UserSearch { company: Some(acme.id), ..Default::default() }).await, ["ann"]);
        assert_eq!(find(UserSearch { retired: Some(true), ..Default::default() }).await, ["cid"]);
        assert_eq!(find(UserSearch { retired: Some(false), text: Some("  ".into()), ..Default::default() }).await, ["ann", "bob_1"]);
        assert_eq!(find(UserSearch { after_id: Some(ann.id), limit: Some(1), ..Default::default() }).await, ["bob_1"]);
        assert_eq!(bob.id, ann.id + 1);
    }

    async fn company_pools_show_quotas_and_own_seats(f: Fixture) {
        let ult = f.user_product("ult", 2).await;
        let std = f.user_product("std", 1).await;
        let unrelated = f.user_product("other", 1).await;
        let pooled = f.company("Pooled", PoolMode::Company).await;
        f.add_seats(NewSeats { pool_company: Some(CompanyRef::Id(pooled.id)), ..NewSeats::plain(pid(&ult), 2) }).await;
        f.ok(Command::SetCompanyQuota { company: CompanyRef::Id(pooled.id), product: pid(&std), quota: Some(1) }).await;
        let member = f.user_with(NewUser { company: Some(CompanyRef::Id(pooled.id)), license_mode: LicenseMode::Company, ..NewUser::named("m") }).await;
        f.assign(&member, &ult).await.unwrap();
        f.assign(&member, &std).await.unwrap();
        let pools = f.ledger.company_pools(f.tenant.id, &CompanyRef::Name("pooled".into())).await.unwrap();
        let shown: Vec<_> = pools.iter().map(|p| (p.product, p.quota, p.quota_used, p.own_total, p.own_in_use, p.own_free)).collect();
        assert_eq!(shown, [(ult.id, None, 0, 2, 1, 1), (std.id, Some(1), 1, 0, 0, 0)]);
        assert!(pools.iter().all(|p| p.product != unrelated.id && p.company == pooled.id));
        let e = f.ledger.company_pools(f.tenant.id, &CompanyRef::Id(999)).await.unwrap_err();
        assert!(matches!(e, LedgerError::UnknownCompany(_)), "{e:?}");
    }

    async fn what_expires_soon_is_listed_by_time_with_seats_held(f: Fixture) {
        let crm = f.user_product("crm", 1).await;
        let soon = common::START + Duration::days(10);
        let later = common::START + Duration::days(40);
        let batch = f.add_seats(NewSeats { expires_at: Some(soon), ..NewSeats::plain(pid(&crm), 2) }).await;
        f.add_seats(NewSeats { expires_at: Some(later), ..NewSeats::plain(pid(&crm), 1) }).await;
        let trial = f.product(NewProduct { expires_at: Some(common::START + Duration::days(20)), ..NewProduct::user("SuperOffice", "trial", 3) }).await;
        let ann = f.user("ann").await;
        f.ok(Command::GrantSeat { seat: batch[0].id, user: by_id(&ann) }).await;
        let within = f.ledger.expiring(f.tenant.id, Duration::days(30)).await.unwrap();
        let shown: Vec<_> = within.iter().map(|e| (e.product, e.at, e.whole_product, e.seats, e.held)).collect();
        assert_eq!(shown, [(crm.id, soon, false, 2, 1), (trial.id, common::START + Duration::days(20), true, 3, 0)]);
        // Thirty days on, the first batch has gone and the later one is near.
        f.clock.advance(Duration::days(30));
        let within = f.ledger.expiring(f.tenant.id, Duration::days(30)).await.unwrap();
        let shown: Vec<_> = within.iter().map(|e| (e.product, e.at, e.seats)).collect();
        assert_eq!(shown, [(crm.id, later, 1)]);
    }

    async fn the_newest_audit_records_come_first_and_filtered(f: Fixture) {
        let crm = f.user_product("crm", 3).await;
        let ann = f.user("ann").await;
        let bob = f.user("bob").await;
        f.assign(&ann, &crm).await.unwrap();
        f.assign(&bob, &crm).await.unwrap();
        f.unassign(&ann, &crm).await.unwrap();
        let all = f.ledger.audit(f.tenant.id, &AuditFilter { limit: Some(1000), ..Default::default() }).await.unwrap();
        let latest = f.ledger.audit_latest(f.tenant.id, &AuditFilter { limit: Some(2), ..Default::default() }).await.unwrap();
        let newest: Vec<i64> = all.iter().rev().take(2).map(|e| e.seq).collect();
        assert_eq!(latest.iter().map(|e| e.seq).collect::<Vec<_>>(), newest);
        assert_eq!(latest[0], *all.last().unwrap());
        let anns = f.ledger.audit_latest(f.tenant.id, &AuditFilter { user: Some(ann.id), product: Some(crm.id), ..Default::default() }).await.unwrap();
        assert_eq!(anns.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), ["license.unassign", "seat.release", "license.assign"], "{anns:?}");
    }
}
