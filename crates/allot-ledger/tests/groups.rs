//! Groups, group licenses, the waiting list and disabled users, on both stores. Each test ends
//! with every invariant checked (`Fixture::finish`), among them "no member waits while a seat it
//! may take is free" and "every held seat has a reason".

use allot_ledger::testing as common;

use allot_ledger::*;
use common::{Fixture, TestDb};

fn by_id(user: &User) -> UserRef {
    UserRef::Id(user.id)
}

fn pid(product: &Product) -> ProductRef {
    ProductRef::Id(product.id)
}

fn gid(group: &Group) -> GroupRef {
    GroupRef::Id(group.id)
}

async fn group(f: &Fixture, name: &str) -> Group {
    match f
        .ok(Command::CreateGroup {
            name: name.into(),
            uuid: None,
            external_id: None,
        })
        .await
    {
        Outcome::Group(g) => g,
        other => panic!("{other:?}"),
    }
}

async fn join(f: &Fixture, g: &Group, u: &User) {
    f.ok(Command::AddGroupMember {
        group: gid(g),
        user: by_id(u),
    })
    .await;
}

async fn license(f: &Fixture, g: &Group, p: &Product) {
    f.ok(Command::AddGroupLicense {
        group: gid(g),
        product: pid(p),
    })
    .await;
}

/// The state (and reason) of `user`'s assignment of `product` through `g`.
async fn state(f: &Fixture, g: &Group, u: &User, p: &Product) -> (AssignmentState, Option<String>) {
    let view = f.ledger.group_view(f.tenant.id, &gid(g)).await.unwrap();
    let a = view
        .assignments
        .iter()
        .find(|a| a.user == u.id && a.product == p.id)
        .unwrap_or_else(|| panic!("no assignment of {} for {}", p.name, u.login));
    (a.state, a.reason.clone())
}

async fn reasons(f: &Fixture, u: &User, p: &Product) -> Vec<String> {
    f.view(u, p).await.reasons
}

/// A product with one seat, held directly by `holder`; `waiter` waits for it in group `g`.
async fn one_seat_and_a_waiter(f: &Fixture) -> (Product, Group, User, User) {
    let p = f.user_product("crm", 1).await;
    let holder = f.user("holder").await;
    f.assign(&holder, &p).await.unwrap();
    let waiter = f.user("waiter").await;
    let g = group(f, "sales").await;
    license(f, &g, &p).await;
    join(f, &g, &waiter).await;
    assert_eq!(
        state(f, &g, &waiter, &p).await,
        (AssignmentState::Waiting, Some("no_free_seat".into()))
    );
    (p, g, holder, waiter)
}

/// The waiter got the seat, in the same transaction as the command that freed it.
async fn served(f: &Fixture, g: &Group, waiter: &User, p: &Product) {
    assert_eq!(
        state(f, g, waiter, p).await,
        (AssignmentState::Active, None)
    );
    assert!(f.assigned(waiter, p).await);
    assert_eq!(reasons(f, waiter, p).await, vec!["group:sales".to_owned()]);
    let give = f
        .ledger
        .audit(
            f.tenant.id,
            &AuditFilter {
                user: Some(waiter.id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        give.iter().any(|e| e.action == "group.seat.give"),
        "{give:?}"
    );
    f.assert_invariants().await;
}

on_both_stores! {
    async fn groups_are_created_renamed_and_deleted_with_typed_errors(f: Fixture) {
        let g = group(&f, "Sales").await;
        let e = f.err(Command::CreateGroup { name: "sales".into(), uuid: None, external_id: None }).await;
        assert!(matches!(e, LedgerError::AlreadyExists { what: "group", .. }), "{e:?}");
        let e = f.err(Command::CreateGroup { name: " \t".into(), uuid: None, external_id: None }).await;
        assert!(matches!(e, LedgerError::Invalid { field: "name", .. }), "{e:?}");
        let other = group(&f, "Support").await;
        let e = f.err(Command::RenameGroup { group: gid(&other), name: "SALES".into() }).await;
        assert!(matches!(e, LedgerError::AlreadyExists { .. }), "{e:?}");
        let renamed = f.ok(Command::RenameGroup { group: gid(&g), name: "Field sales".into() }).await;
        assert!(matches!(renamed, Outcome::Group(Group { ref name, .. }) if name == "Field sales"));
        let found = f.ledger.group(f.tenant.id, &GroupRef::Name("field SALES".into())).await.unwrap();
        assert_eq!(found.id, g.id);
        let found = f.ledger.group(f.tenant.id, &GroupRef::Uuid(g.uuid)).await.unwrap();
        assert_eq!(found.id, g.id);
        let listed = f.ledger.groups(f.tenant.id, None, None).await.unwrap();
        assert_eq!(listed.iter().map(|g| g.id).collect::<Vec<_>>(), vec![g.id, other.id]);
        f.ok(Command::DeleteGroup { group: gid(&g) }).await;
        let e = f.err(Command::DeleteGroup { group: gid(&g) }).await;
        assert!(matches!(e, LedgerError::UnknownGroup(_)), "{e:?}");
        assert_eq!(e.code(), "unknown_group");
        let u = f.user("ann").await;
        let e = f.err(Command::AddGroupMember { group: gid(&g), user: by_id(&u) }).await;
        assert!(matches!(e, LedgerError::UnknownGroup(_)), "{e:?}");
        // A chosen UUID is kept (SCIM clients name their groups).
        let chosen = uuid::Uuid::new_v4();
        let Outcome::Group(with_uuid) = f.ok(Command::CreateGroup { name: "x".into(), uuid: Some(chosen), external_id: None }).await else { panic!() };
        assert_eq!(with_uuid.uuid, chosen);
    }

    async fn members_get_seats_first_come_first_served(f: Fixture) {
        let p = f.user_product("crm", 2).await;
        let g = group(&f, "sales").await;
        license(&f, &g, &p).await;
        let users = [f.user("a").await, f.user("b").await, f.user("c").await, f.user("d").await];
        for u in &users {
            join(&f, &g, u).await;
        }
        // Joining twice changes nothing.
        assert_eq!(f.ok(Command::AddGroupMember { group: gid(&g), user: by_id(&users[0]) }).await, Outcome::Changed { changed: 0 });
        assert_eq!(state(&f, &g, &users[0], &p).await.0, AssignmentState::Active);
        assert_eq!(state(&f, &g, &users[1], &p).await.0, AssignmentState::Active);
        assert_eq!(state(&f, &g, &users[2], &p).await, (AssignmentState::Waiting, Some("no_free_seat".into())));
        assert_eq!(state(&f, &g, &users[3], &p).await.0, AssignmentState::Waiting);
        assert_eq!(f.counts(&p).await, (2, 2, 0));
        // The user's view shows the waiting state beside the product.
        let view = f.view(&users[2], &p).await;
        assert!(!view.assigned);
        assert!(view.reasons.is_empty());
        assert_eq!(view.groups.len(), 1);
        assert_eq!(view.groups[0].state, AssignmentState::Waiting);
        // a leaves: c (first in line) gets its seat, d still waits.
        f.ok(Command::RemoveGroupMember { group: gid(&g), user: by_id(&users[0]) }).await;
        assert!(!f.assigned(&users[0], &p).await);
        assert_eq!(state(&f, &g, &users[2], &p).await.0, AssignmentState::Active);
        assert_eq!(state(&f, &g, &users[3], &p).await.0, AssignmentState::Waiting);
        // Leaving twice changes nothing.
        assert_eq!(f.ok(Command::RemoveGroupMember { group: gid(&g), user: by_id(&users[0]) }).await, Outcome::Changed { changed: 0 });
        // Two more seats: d gets one, one stays free.
        f.add_seats(NewSeats::plain(pid(&p), 2)).await;
        assert_eq!(state(&f, &g, &users[3], &p).await.0, AssignmentState::Active);
        assert_eq!(f.counts(&p).await, (4, 3, 1));
        let view = f.ledger.group_view(f.tenant.id, &gid(&g)).await.unwrap();
        assert_eq!(view.members.len(), 3);
        assert_eq!(view.licenses.len(), 1);
        assert_eq!(view.licenses[0].product_name, "SuperOffice/crm");
    }

    async fn a_license_added_later_queues_members_in_joining_order(f: Fixture) {
        let p = f.user_product("crm", 1).await;
        let g = group(&f, "sales").await;
        let a = f.user("a").await;
        let b = f.user("b").await;
        join(&f, &g, &b).await;
        join(&f, &g, &a).await;
        license(&f, &g, &p).await;
        assert_eq!(state(&f, &g, &b, &p).await.0, AssignmentState::Active);
        assert_eq!(state(&f, &g, &a, &p).await.0, AssignmentState::Waiting);
        // Removing the license frees b's seat; nobody waits for it any more.
        f.ok(Command::RemoveGroupLicense { group: gid(&g), product: pid(&p) }).await;
        assert_eq!(f.counts(&p).await, (1, 0, 1));
        assert!(f.ledger.group_view(f.tenant.id, &gid(&g)).await.unwrap().assignments.is_empty());
        // Only user products, and no plans, go to groups.
        let site = f.product(NewProduct { kind: ProductKind::Site, ..NewProduct::user("SuperOffice", "site", 0) }).await;
        let e = f.err(Command::AddGroupLicense { group: gid(&g), product: pid(&site) }).await;
        assert!(matches!(e, LedgerError::WrongKind { .. }), "{e:?}");
        let plan = f.product(NewProduct { extra_flags: EXTRA_FLAG_USER_PLAN, plan_members: vec![pid(&p)], ..NewProduct::user("SuperOffice", "plan", 1) }).await;
        let e = f.err(Command::AddGroupLicense { group: gid(&g), product: pid(&plan) }).await;
        assert!(matches!(e, LedgerError::Invalid { field: "product", .. }), "{e:?}");
    }

    async fn direct_and_group_reasons_coexist_and_the_seat_goes_with_the_last(f: Fixture) {
        let p = f.user_product("crm", 1).await;
        let g = group(&f, "sales").await;
        license(&f, &g, &p).await;
        let u = f.user("ann").await;
        f.assign(&u, &p).await.unwrap();
        join(&f, &g, &u).await;
        assert_eq!(state(&f, &g, &u, &p).await.0, AssignmentState::Active);
        assert_eq!(reasons(&f, &u, &p).await, vec!["direct".to_owned(), "group:sales".to_owned()]);
        assert_eq!(f.seats_of(&u).await.len(), 1);
        // The direct reason goes; the group still explains the seat.
        f.unassign(&u, &p).await.unwrap();
        assert!(f.assigned(&u, &p).await);
        assert_eq!(reasons(&f, &u, &p).await, vec!["group:sales".to_owned()]);
        // Unassigning what only a group gives changes nothing.
        assert_eq!(f.unassign(&u, &p).await.unwrap(), Outcome::Changed { changed: 0 });
        // Direct again (no second seat), then the group goes: the direct reason keeps it.
        f.assign(&u, &p).await.unwrap();
        assert_eq!(f.seats_of(&u).await.len(), 1);
        f.ok(Command::RemoveGroupMember { group: gid(&g), user: by_id(&u) }).await;
        assert_eq!(reasons(&f, &u, &p).await, vec!["direct".to_owned()]);
        // Last reason gone: the seat is free.
        f.unassign(&u, &p).await.unwrap();
        assert_eq!(f.counts(&p).await, (1, 0, 1));
        // Deleting a group releases what it alone explained.
        join(&f, &g, &u).await;
        assert!(f.assigned(&u, &p).await);
        f.ok(Command::DeleteGroup { group: gid(&g) }).await;
        assert!(!f.assigned(&u, &p).await);
        assert!(f.ledger.user_groups(f.tenant.id, u.id).await.unwrap().is_empty());
    }

    async fn missing_prerequisites_are_an_error_until_the_prerequisite_is_held(f: Fixture) {
        let base = f.user_product("user", 5).await;
        let web = f.product(NewProduct { prerequisite: Some(pid(&base)), ..NewProduct::user("SuperOffice", "web", 5) }).await;
        let g = group(&f, "web users").await;
        license(&f, &g, &web).await;
        let u = f.user("ann").await;
        join(&f, &g, &u).await;
        assert_eq!(state(&f, &g, &u, &web).await, (AssignmentState::Error, Some("prerequisite_missing".into())));
        // The prerequisite arrives: the group's product follows in the same transaction.
        f.assign(&u, &base).await.unwrap();
        assert_eq!(state(&f, &g, &u, &web).await.0, AssignmentState::Active);
        assert!(f.assigned(&u, &web).await);
        // It goes: the dependent goes too, and the assignment says why.
        f.unassign(&u, &base).await.unwrap();
        assert!(!f.assigned(&u, &web).await);
        assert_eq!(state(&f, &g, &u, &web).await, (AssignmentState::Error, Some("prerequisite_missing".into())));
        // A group giving the prerequisite too brings both.
        license(&f, &g, &base).await;
        assert!(f.assigned(&u, &base).await);
        assert!(f.assigned(&u, &web).await);
    }

    // Every command that frees a seat or adds seats serves the waiting list in its own
    // transaction: one test per path.
    async fn add_seats_serves_the_waiting_list(f: Fixture) {
        let (p, g, _, waiter) = one_seat_and_a_waiter(&f).await;
        f.add_seats(NewSeats::plain(pid(&p), 1)).await;
        served(&f, &g, &waiter, &p).await;
    }

    async fn unassign_serves_the_waiting_list(f: Fixture) {
        let (p, g, holder, waiter) = one_seat_and_a_waiter(&f).await;
        f.unassign(&holder, &p).await.unwrap();
        served(&f, &g, &waiter, &p).await;
    }

    async fn release_and_revoke_serve_the_waiting_list(f: Fixture) {
        let (p, g, holder, waiter) = one_seat_and_a_waiter(&f).await;
        let seat = f.seats_of(&holder).await[0].id;
        f.ok(Command::ReleaseSeat { seat, user: None }).await;
        served(&f, &g, &waiter, &p).await;
        // Revoke frees the seat of an automatic taker: the next in line gets it.
        let auto = f.user_with(NewUser { license_mode: LicenseMode::Automatic, ..NewUser::named("auto") }).await;
        f.ok(Command::RemoveGroupMember { group: gid(&g), user: by_id(&waiter) }).await;
        f.assign(&auto, &p).await.unwrap();
        join(&f, &g, &waiter).await;
        assert_eq!(state(&f, &g, &waiter, &p).await.0, AssignmentState::Waiting);
        let seat = f.seats_of(&auto).await[0].id;
        f.ok(Command::RevokeSeat { seat, user: None }).await;
        served(&f, &g, &waiter, &p).await;
    }

    async fn releasing_a_group_seat_puts_its_holder_back_in_line(f: Fixture) {
        let (p, g, holder, waiter) = one_seat_and_a_waiter(&f).await;
        f.unassign(&holder, &p).await.unwrap();
        served(&f, &g, &waiter, &p).await;
        join(&f, &g, &holder).await;
        // The admin frees the waiter's group seat: the holder, first in line, gets it; the
        // waiter queues again behind it.
        let seat = f.seats_of(&waiter).await[0].id;
        f.ok(Command::ReleaseSeat { seat, user: None }).await;
        assert_eq!(state(&f, &g, &holder, &p).await.0, AssignmentState::Active);
        assert_eq!(state(&f, &g, &waiter, &p).await.0, AssignmentState::Waiting);
    }

    async fn remove_all_licenses_retire_and_delete_serve_the_waiting_list(f: Fixture) {
        let (p, g, holder, waiter) = one_seat_and_a_waiter(&f).await;
        f.ok(Command::RemoveAllLicenses { user: by_id(&holder) }).await;
        served(&f, &g, &waiter, &p).await;
        let second = f.user("second").await;
        join(&f, &g, &second).await;
        f.ok(Command::Retire { user: by_id(&waiter) }).await;
        assert_eq!(state(&f, &g, &second, &p).await.0, AssignmentState::Active);
        // The retired member stays in the group, blocked; unretiring queues it again.
        assert_eq!(state(&f, &g, &waiter, &p).await, (AssignmentState::Error, Some("user_retired".into())));
        f.ok(Command::Unretire { user: by_id(&waiter) }).await;
        assert_eq!(state(&f, &g, &waiter, &p).await.0, AssignmentState::Waiting);
        f.ok(Command::DeleteUser { user: by_id(&second) }).await;
        assert_eq!(state(&f, &g, &waiter, &p).await.0, AssignmentState::Active);
        let view = f.ledger.group_view(f.tenant.id, &gid(&g)).await.unwrap();
        assert!(view.members.iter().all(|m| m.user != second.id), "a deleted user leaves its groups");
    }

    async fn group_changes_serve_the_waiting_list(f: Fixture) {
        let (p, g, holder, waiter) = one_seat_and_a_waiter(&f).await;
        // The holder's seat comes from another group: removing that license frees it.
        f.unassign(&holder, &p).await.unwrap();
        served(&f, &g, &waiter, &p).await;
        let other = group(&f, "other").await;
        license(&f, &other, &p).await;
        join(&f, &other, &holder).await;
        assert_eq!(state(&f, &other, &holder, &p).await.0, AssignmentState::Waiting);
        f.ok(Command::RemoveGroupLicense { group: gid(&g), product: pid(&p) }).await;
        assert_eq!(state(&f, &other, &holder, &p).await.0, AssignmentState::Active);
        license(&f, &g, &p).await;
        assert_eq!(state(&f, &g, &waiter, &p).await.0, AssignmentState::Waiting);
        f.ok(Command::DeleteGroup { group: gid(&other) }).await;
        assert_eq!(state(&f, &g, &waiter, &p).await.0, AssignmentState::Active);
    }

    async fn unrestricting_a_product_and_raising_a_quota_serve_the_waiting_list(f: Fixture) {
        let (p, g, _, waiter) = one_seat_and_a_waiter(&f).await;
        f.ok(Command::EditProduct { product: pid(&p), patch: ProductPatch { unrestricted: Some(true), ..Default::default() } }).await;
        served(&f, &g, &waiter, &p).await;
        // A company-pool member waits on its company's quota until it is raised.
        let q = f.user_product("quota", 2).await; // one goes to the waiter, in the group too
        let co = f.company("acme", PoolMode::Company).await;
        f.ok(Command::SetCompanyQuota { company: CompanyRef::Id(co.id), product: pid(&q), quota: Some(0) }).await;
        let member = f.user_with(NewUser { company: Some(CompanyRef::Id(co.id)), license_mode: LicenseMode::Company, ..NewUser::named("member") }).await;
        license(&f, &g, &q).await;
        join(&f, &g, &member).await;
        assert_eq!(state(&f, &g, &member, &q).await, (AssignmentState::Waiting, Some("quota_exhausted".into())));
        f.ok(Command::SetCompanyQuota { company: CompanyRef::Id(co.id), product: pid(&q), quota: Some(1) }).await;
        assert_eq!(state(&f, &g, &member, &q).await.0, AssignmentState::Active);
    }

    async fn disabling_releases_seats_refuses_logins_and_tokens_and_enabling_requeues(f: Fixture) {
        let (p, g, holder, waiter) = one_seat_and_a_waiter(&f).await;
        let other = f.user_product("other", 1).await;
        license(&f, &g, &other).await;
        assert!(f.assigned(&waiter, &other).await);
        f.ok(Command::CreateLogin { login: "holder".into(), password_hash: "$argon2id$x".into(), role: Role::User, user: Some(by_id(&holder)) }).await;
        f.ok(Command::IssueToken { token_hash: "a".repeat(64), role: Role::User, login: "holder".into(), user: Some(holder.id), label: String::new(), expires_at: common::START + time::Duration::days(1) }).await;
        assert!(f.ledger.login(f.tenant.id, "holder").await.unwrap().is_some());
        let out = f.ok(Command::DisableUser { user: by_id(&holder) }).await;
        assert!(out.changed() >= 3, "{out:?}"); // flag, seat, token
        // Seat released (the waiter has it now), login refused, token revoked, user kept.
        served(&f, &g, &waiter, &p).await;
        assert!(f.ledger.login(f.tenant.id, "holder").await.unwrap().is_none());
        assert!(f.ledger.live_token(&"a".repeat(64)).await.unwrap().is_none());
        let kept = f.ledger.user(f.tenant.id, &by_id(&holder)).await.unwrap();
        assert!(kept.disabled && !kept.retired);
        // Disabled users are given nothing and cannot log on or get a token.
        let e = f.assign(&holder, &other).await.unwrap_err();
        assert_eq!(e, LedgerError::Disabled(holder.id));
        assert_eq!(e.code(), "user_disabled");
        let e = f.err(Command::LogOn { user: by_id(&holder), client: ClientKind::Web, device: String::new(), product: None, lease_seconds: 60 }).await;
        assert_eq!(e, LedgerError::Disabled(holder.id));
        let e = f.err(Command::IssueToken { token_hash: "b".repeat(64), role: Role::User, login: "holder".into(), user: Some(holder.id), label: String::new(), expires_at: common::START + time::Duration::days(1) }).await;
        assert_eq!(e, LedgerError::Disabled(holder.id));
        // A disabled member of a group is blocked, not queued.
        join(&f, &g, &holder).await;
        assert_eq!(state(&f, &g, &holder, &p).await, (AssignmentState::Error, Some("user_disabled".into())));
        assert_eq!(f.ok(Command::DisableUser { user: by_id(&holder) }).await, Outcome::Changed { changed: 0 });
        // Enabled: logins work again, the old token stays revoked, group assignments queue.
        f.ok(Command::EnableUser { user: by_id(&holder) }).await;
        assert!(f.ledger.login(f.tenant.id, "holder").await.unwrap().is_some());
        assert!(f.ledger.live_token(&"a".repeat(64)).await.unwrap().is_none());
        assert_eq!(state(&f, &g, &holder, &p).await.0, AssignmentState::Waiting);
        f.add_seats(NewSeats::plain(pid(&other), 1)).await;
        assert_eq!(state(&f, &g, &holder, &other).await.0, AssignmentState::Active);
        assert_eq!(f.ok(Command::EnableUser { user: by_id(&holder) }).await, Outcome::Changed { changed: 0 });
    }

    async fn a_tenant_can_keep_disabled_users_seats(f: Fixture) {
        let (p, g, holder, waiter) = one_seat_and_a_waiter(&f).await;
        assert!(!f.ledger.disabled_keep_seats(f.tenant.id).await.unwrap());
        f.ok(Command::SetDisabledKeepSeats { keep: true }).await;
        assert!(f.ledger.disabled_keep_seats(f.tenant.id).await.unwrap());
        f.ok(Command::DisableUser { user: by_id(&holder) }).await;
        assert!(f.assigned(&holder, &p).await, "seats kept");
        assert_eq!(state(&f, &g, &waiter, &p).await.0, AssignmentState::Waiting);
        // A disabled waiting member stops waiting even when seats are kept.
        f.ok(Command::DisableUser { user: by_id(&waiter) }).await;
        assert_eq!(state(&f, &g, &waiter, &p).await, (AssignmentState::Error, Some("user_disabled".into())));
        // Retiring a disabled user frees what it kept; the seat goes down the line.
        f.ok(Command::Retire { user: by_id(&holder) }).await;
        assert!(!f.assigned(&holder, &p).await);
        assert_eq!(f.counts(&p).await, (1, 0, 1));
    }

    // Found by the property test: a member leaving its company's pool is served from the new one.
    async fn a_member_changing_pool_is_served_from_the_new_one(f: Fixture) {
        let p = f.user_product("crm", 1).await;
        let co = f.company("acme", PoolMode::Company).await;
        let g = group(&f, "sales").await;
        license(&f, &g, &p).await;
        let member = f.user_with(NewUser { company: Some(CompanyRef::Id(co.id)), license_mode: LicenseMode::Company, ..NewUser::named("member") }).await;
        join(&f, &g, &member).await;
        assert_eq!(state(&f, &g, &member, &p).await.0, AssignmentState::Waiting);
        f.ok(Command::EditUser { user: by_id(&member), patch: UserPatch { license_mode: Some(LicenseMode::Manual), ..Default::default() } }).await;
        assert_eq!(state(&f, &g, &member, &p).await.0, AssignmentState::Active);
    }

    // Found by the property test: removing all of a user's licenses takes the group product
    // whose (direct) prerequisite went, and says why.
    async fn removing_a_prerequisite_takes_the_group_product_that_needs_it(f: Fixture) {
        let base = f.user_product("user", 5).await;
        let web = f.product(NewProduct { prerequisite: Some(pid(&base)), ..NewProduct::user("SuperOffice", "web", 5) }).await;
        let g = group(&f, "web users").await;
        let u = f.user("ann").await;
        join(&f, &g, &u).await;
        f.assign(&u, &base).await.unwrap();
        license(&f, &g, &web).await;
        assert!(f.assigned(&u, &web).await);
        f.ok(Command::RemoveAllLicenses { user: by_id(&u) }).await;
        assert!(!f.assigned(&u, &web).await);
        assert_eq!(state(&f, &g, &u, &web).await, (AssignmentState::Error, Some("prerequisite_missing".into())));
    }

    async fn setting_members_and_editing_follow_licenses_and_apply_all_or_nothing(f: Fixture) {
        let crm = f.user_product("crm", 2).await;
        let ann = f.user("ann").await;
        let bob = f.user("bob").await;
        let cid = f.user("cid").await;
        let Outcome::Group(g) = f
            .ok(Command::CreateGroup { name: "Sales".into(), uuid: None, external_id: Some("okta-1".into()) })
            .await
        else {
            panic!()
        };
        assert_eq!(g.external_id.as_deref(), Some("okta-1"));
        assert_eq!(g.modified_at, g.created_at);
        license(&f, &g, &crm).await;
        let set = |users: Vec<&User>| Command::SetGroupMembers {
            group: gid(&g),
            users: users.into_iter().map(by_id).collect(),
        };
        // Two join and take both seats; then the members become bob and cid: ann leaves and
        // frees her seat, cid joins and takes it, in one command.
        f.ok(set(vec![&ann, &bob, &ann])).await;
        assert!(f.assigned(&ann, &crm).await && f.assigned(&bob, &crm).await);
        f.clock.advance(time::Duration::minutes(1));
        f.ok(set(vec![&bob, &cid])).await;
        assert!(!f.assigned(&ann, &crm).await);
        assert!(f.assigned(&bob, &crm).await && f.assigned(&cid, &crm).await);
        assert_eq!(f.ok(set(vec![&cid, &bob])).await, Outcome::Changed { changed: 0 });
        let after = f.ledger.group(f.tenant.id, &gid(&g)).await.unwrap();
        assert!(after.modified_at > after.created_at, "membership changes touch the group");
        // An unknown user refuses the whole command: nobody left.
        let e = f
            .err(Command::SetGroupMembers { group: gid(&g), users: vec![UserRef::Login("nobody".into())] })
            .await;
        assert!(matches!(e, LedgerError::UnknownUser(_)), "{e:?}");
        assert!(f.assigned(&bob, &crm).await);
        // Several commands all or nothing (a SCIM PATCH): the refusal of the last undoes the
        // first.
        let batch = [
            Command::RemoveGroupMember { group: gid(&g), user: by_id(&bob) },
            Command::EditGroup { group: gid(&g), name: Some("Renamed".into()), external_id: None },
            Command::AddGroupMember { group: gid(&g), user: UserRef::Login("nobody".into()) },
        ];
        assert!(f.ledger.apply_all_or_nothing(&f.ctx, &batch).await.is_err());
        assert!(f.assigned(&bob, &crm).await);
        assert_eq!(f.ledger.group(f.tenant.id, &gid(&g)).await.unwrap().name, "Sales");
        // Edits: name and external id; nothing new is changed 0-like (the group answered).
        let Outcome::Group(edited) = f
            .ok(Command::EditGroup { group: gid(&g), name: Some("Sales EU".into()), external_id: Some(None) })
            .await
        else {
            panic!()
        };
        assert_eq!((edited.name.as_str(), edited.external_id.as_deref()), ("Sales EU", None));
        let found = f.ledger.groups_by_external_id(f.tenant.id, "okta-1").await.unwrap();
        assert!(found.is_empty());
        f.ok(Command::EditGroup { group: gid(&g), name: None, external_id: Some(Some("okta-2".into())) }).await;
        let found = f.ledger.groups_by_external_id(f.tenant.id, "okta-2").await.unwrap();
        assert_eq!(found.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["Sales EU"]);
        assert!(f.ledger.groups_by_external_id(f.tenant.id, "OKTA-2").await.unwrap().is_empty());
        // Members by UUID for a page of groups.
        let members = f.ledger.group_member_uuids(f.tenant.id, g.id, g.id).await.unwrap();
        let mut expected = vec![(g.id, bob.uuid), (g.id, cid.uuid)];
        expected.sort();
        let mut members = members;
        members.sort();
        assert_eq!(members, expected);
        let e = f.err(Command::EditGroup { group: gid(&g), name: Some(" ".into()), external_id: None }).await;
        assert!(matches!(e, LedgerError::Invalid { field: "name", .. }), "{e:?}");
        let edits: Vec<_> = f
            .ledger
            .audit(f.tenant.id, &AuditFilter { limit: Some(1000), ..Default::default() })
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "group.edit")
            .collect();
        assert_eq!(edits.len(), 2);
    }
}

/// A product's first group license, added while its last seat is freed (PostgreSQL, where the
/// two commands run at once): neither may leave the other's work undone, a free seat beside a
/// waiting member. Without the key-share lock in `lock_waiting_list` the invariant check
/// caught this within a few rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_first_group_license_racing_a_freed_seat_never_leaves_a_member_waiting() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let f = Fixture::new(db).await;
    for round in 0..40 {
        let p = f.user_product(&format!("race{round}"), 1).await;
        let holder = f.user(&format!("holder{round}")).await;
        let waiter = f.user(&format!("waiter{round}")).await;
        f.assign(&holder, &p).await.unwrap();
        let g = group(&f, &format!("g{round}")).await;
        join(&f, &g, &waiter).await;
        let (add, free) = tokio::join!(
            f.ledger.execute(
                &f.ctx,
                Command::AddGroupLicense {
                    group: gid(&g),
                    product: pid(&p),
                },
            ),
            f.ledger.execute(
                &f.ctx,
                Command::Unassign {
                    user: by_id(&holder),
                    product: pid(&p),
                },
            ),
        );
        add.unwrap();
        free.unwrap();
        assert_eq!(
            f.ledger.check_invariants(f.tenant.id).await.unwrap(),
            Vec::<String>::new(),
            "round {round}"
        );
        assert_eq!(
            state(&f, &g, &waiter, &p).await.0,
            AssignmentState::Active,
            "round {round}"
        );
    }
    f.finish().await;
}
