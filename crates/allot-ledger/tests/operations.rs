//! Whole-store operations: the copy covers every table the migrations make, copies SQLite to
//! PostgreSQL and back with every row equal (ids, audit chain, keys), and an online backup
//! taken under concurrent writes is a consistent store that restores.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use allot_ledger::audit_chain::ChainCheck;
use allot_ledger::testing as common;
use allot_ledger::*;
use common::{Fixture, TestDb};

/// A tenant with something in every table: owners, companies and quotas, users, products with
/// a prerequisite pointing at a later product and a plan, seats (tenant and company pools),
/// grants, a computer, a session, logins and tokens, signing keys, license settings, an
/// idempotency record.
async fn fill(f: &Fixture) {
    let crm = f.user_product("crm", 5).await;
    let web = f.user_product("web", 3).await;
    // An older product whose prerequisite is a newer one, more than one INSERT's rows later
    // (the copy writes such references after the table's rows).
    let mut last = web.clone();
    for i in 0..110 {
        last = f.user_product(&format!("filler{i}"), 1).await;
    }
    f.ok(Command::EditProduct {
        product: ProductRef::Id(crm.id),
        patch: ProductPatch {
            prerequisite: Some(Some(ProductRef::Id(last.id))),
            ..Default::default()
        },
    })
    .await;
    f.product(NewProduct {
        extra_flags: EXTRA_FLAG_USER_PLAN,
        plan_members: vec![ProductRef::Id(crm.id)],
        ..NewProduct::user("SuperOffice", "plan", 1)
    })
    .await;
    let float = f
        .product(NewProduct {
            kind: ProductKind::Floating,
            ..NewProduct::user("Acme", "float", 2)
        })
        .await;
    let acme = f.company("Acme Corp", PoolMode::Company).await;
    f.ok(Command::SetCompanyQuota {
        company: CompanyRef::Id(acme.id),
        product: ProductRef::Id(web.id),
        quota: Some(2),
    })
    .await;
    f.add_seats(NewSeats {
        pool_company: Some(CompanyRef::Id(acme.id)),
        ..NewSeats::plain(ProductRef::Id(web.id), 2)
    })
    .await;
    let ann = f.user("ann").await;
    let bob = f
        .user_with(NewUser {
            company: Some(CompanyRef::Id(acme.id)),
            ..NewUser::named("bob")
        })
        .await;
    f.assign(&ann, &web).await.unwrap();
    f.assign(&ann, &last).await.unwrap();
    f.assign(&ann, &crm).await.unwrap();
    f.assign(&bob, &web).await.unwrap();
    f.ok(Command::RegisterComputer {
        hardware_id: "hw-1".into(),
        name: "pc".into(),
        operating_system: "linux".into(),
        user: Some(UserRef::Id(ann.id)),
    })
    .await;
    f.ok(Command::LogOn {
        user: UserRef::Id(bob.id),
        client: ClientKind::Windows,
        device: "pc".into(),
        product: Some(ProductRef::Id(float.id)),
        lease_seconds: 600,
    })
    .await;
    f.ok(Command::CreateLogin {
        login: "admin".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role: Role::Admin,
        user: Some(UserRef::Id(ann.id)),
    })
    .await;
    f.ok(Command::IssueToken {
        token_hash: "a".repeat(64),
        role: Role::Admin,
        login: "admin".into(),
        user: Some(ann.id),
        label: "cli".into(),
        expires_at: common::START + time::Duration::days(1),
    })
    .await;
    f.ok(Command::SetLicenseValidity { seconds: 3600 }).await;
    f.ledger
        .issue_operator_token(
            &"b".repeat(64),
            "op",
            common::START + time::Duration::days(1),
        )
        .await
        .unwrap();
    let request = idempotency::IdempotentRequest {
        principal: "admin:admin".into(),
        key: "key-1".into(),
        fingerprint: "fp".into(),
    };
    f.ledger
        .apply_answered(
            &f.ctx,
            &request,
            &[Command::CreateUser(NewUser::named("carl"))],
            idempotency::RunMode::Atomic,
            |_| None,
            |_| idempotency::Answer {
                status: 201,
                body: "{}".into(),
            },
        )
        .await
        .unwrap();
    // Webhooks: an endpoint, and a delivery queued by the next change it subscribes to; a
    // server secret (the keyed-hash key made on first use).
    f.ledger
        .create_webhook(&f.ctx, "https://hooks.example.com/allot", "crm", &[])
        .await
        .unwrap();
    let dan = f.user("dan").await;
    f.ledger.hash_key("idempotency").await.unwrap();
    // Groups: a group holding a license, a member served and one waiting for a seat.
    let Outcome::Group(team) = f
        .ok(Command::CreateGroup {
            name: "team".into(),
            uuid: None,
            external_id: Some("okta-team".into()),
        })
        .await
    else {
        panic!("a group was expected")
    };
    let teamware = f.user_product("teamware", 1).await;
    f.ok(Command::AddGroupLicense {
        group: GroupRef::Id(team.id),
        product: ProductRef::Id(teamware.id),
    })
    .await;
    for member in [&dan, &ann] {
        f.ok(Command::AddGroupMember {
            group: GroupRef::Id(team.id),
            user: UserRef::Id(member.id),
        })
        .await;
    }
    // Harvest: a policy and an exempt user.
    f.ok(Command::SetHarvestPolicy {
        product: ProductRef::Id(web.id),
        policy: Some(HarvestPolicy {
            idle_days: 30,
            action: HarvestAction::Report,
        }),
    })
    .await;
    f.ok(Command::SetHarvestExempt {
        user: UserRef::Id(bob.id),
        exempt: true,
    })
    .await;
    f.ok(Command::SetHarvestExemptGroup {
        group: GroupRef::Id(team.id),
        exempt: true,
    })
    .await;
    f.ledger.create_tenant("beta", "op").await.unwrap();
}

async fn verified(ledger: &Ledger) -> usize {
    let tenants = ledger.tenants().await.unwrap();
    for t in &tenants {
        assert_eq!(
            ledger.check_invariants(t.id).await.unwrap(),
            Vec::<String>::new()
        );
        match ledger.verify_audit_chain(t.id).await.unwrap() {
            Some(ChainCheck::Intact { records, .. }) => assert!(records > 0),
            other => panic!("tenant {}: {other:?}", t.name),
        }
    }
    tenants.len()
}

async fn schema_is_covered(db: TestDb) {
    let ledger = Ledger::open(&db.url()).await.unwrap();
    let mut copied = Ledger::copied_tables();
    copied.sort_unstable();
    assert_eq!(
        ledger.schema_tables().await.unwrap(),
        copied,
        "a table of the schema is missing from store/copy.rs TABLES (or TABLES names one \
         the schema lacks): add it there, parents first"
    );
    ledger.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn the_copy_covers_every_table_of_the_schema_sqlite() {
    schema_is_covered(TestDb::sqlite()).await;
}

#[tokio::test]
async fn the_copy_covers_every_table_of_the_schema_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    schema_is_covered(db).await;
}

#[tokio::test]
async fn copy_sqlite_to_postgres_and_back_keeps_every_row() {
    let Some(pg) = TestDb::postgres().await else {
        return;
    };
    let f = Fixture::new(TestDb::sqlite()).await;
    fill(&f).await;
    let original = f.ledger.contents().await.unwrap();
    for table in &original {
        assert!(!table.rows.is_empty(), "fill leaves {} empty", table.table);
    }

    let on_pg = Ledger::open(&pg.url()).await.unwrap();
    let report = f.ledger.copy_to(&on_pg, false).await.unwrap();
    assert_eq!(report.tenants, 2);
    assert_eq!(on_pg.contents().await.unwrap(), original);
    assert_eq!(verified(&on_pg).await, 2);

    // A non-empty target is refused unless replaced, and replacing leaves the same rows.
    let refused = f.ledger.copy_to(&on_pg, false).await.unwrap_err();
    assert!(
        matches!(refused, LedgerError::Invalid { field: "to", .. }),
        "{refused:?}"
    );
    f.ledger.copy_to(&on_pg, true).await.unwrap();
    assert_eq!(on_pg.contents().await.unwrap(), original);

    // New rows on the copy take fresh ids (PostgreSQL's identities moved past the copied ones)
    // and extend the copied audit chain.
    let beta = on_pg.tenant("beta").await.unwrap().unwrap();
    let ctx = Context::new(beta.id, "admin");
    on_pg
        .execute(&ctx, Command::CreateProduct(NewProduct::user("X", "y", 1)))
        .await
        .unwrap();
    on_pg.create_tenant("gamma", "op").await.unwrap();
    assert_eq!(verified(&on_pg).await, 3);

    // And back to a fresh SQLite store: every row equal to PostgreSQL's.
    let back_db = TestDb::sqlite();
    let back = Ledger::open(&back_db.url()).await.unwrap();
    on_pg.copy_to(&back, false).await.unwrap();
    assert_eq!(
        back.contents().await.unwrap(),
        on_pg.contents().await.unwrap()
    );
    assert_eq!(verified(&back).await, 3);

    // Replacing a SQLite store's rows lifts its append-only audit triggers only meanwhile.
    f.ledger.copy_to(&back, true).await.unwrap();
    assert_eq!(back.contents().await.unwrap(), original);
    assert_eq!(verified(&back).await, 2);

    back.close().await;
    on_pg.close().await;
    pg.drop_db().await;
    f.finish().await;
}

#[tokio::test]
async fn a_backup_taken_under_concurrent_writes_restores_to_a_consistent_store() {
    let f = Fixture::new(TestDb::sqlite()).await;
    fill(&f).await;
    let web = f
        .ledger
        .product(
            f.tenant.id,
            &ProductRef::Name {
                owner: "SuperOffice".into(),
                name: "web".into(),
            },
        )
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let (ledger, ctx, stop) = (f.ledger.clone(), f.ctx.clone(), stop.clone());
        let web = ProductRef::Id(web.id);
        writers.spawn(async move {
            let mut done = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let user = NewUser::named(&format!("w{w}-{done}"));
                let Outcome::User(u) = ledger
                    .execute(&ctx, Command::CreateUser(user))
                    .await
                    .unwrap()
                else {
                    panic!()
                };
                let user = UserRef::Id(u.id);
                let _ = ledger
                    .execute(&ctx, Command::AddSeats(NewSeats::plain(web.clone(), 1)))
                    .await
                    .unwrap();
                ledger
                    .execute(
                        &ctx,
                        Command::Assign {
                            user,
                            product: web.clone(),
                        },
                    )
                    .await
                    .unwrap();
                done += 1;
            }
            done
        });
    }
    // A second handle on the same file, as `allot backup` is another process beside the server.
    let dir = tempfile::tempdir().unwrap();
    let backup_handle = Ledger::open(&f.db.url()).await.unwrap();
    let mut backups = Vec::new();
    for i in 0..3 {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let path = dir.path().join(format!("backup-{i}.db"));
        backup_handle.backup_to(&path).await.unwrap();
        // A backup goes to a new file only.
        assert!(backup_handle.backup_to(&path).await.is_err());
        backups.push(path);
    }
    stop.store(true, Ordering::Relaxed);
    let mut written = 0;
    while let Some(done) = writers.join_next().await {
        written += done.unwrap();
    }
    assert!(
        written > 0,
        "the writers wrote nothing while the backups ran"
    );
    backup_handle.close().await;

    let mut users_seen = Vec::new();
    for path in &backups {
        let url = format!("sqlite://{}", path.display());
        let backup = Ledger::open(&url).await.unwrap();
        assert_eq!(verified(&backup).await, 2);
        // Restore: into an empty store, verified there; the rows are the backup's.
        let restored_db = TestDb::sqlite();
        let restored = Ledger::open(&restored_db.url()).await.unwrap();
        backup.copy_to(&restored, false).await.unwrap();
        assert_eq!(
            restored.contents().await.unwrap(),
            backup.contents().await.unwrap()
        );
        users_seen.push(
            restored
                .users(f.tenant.id, None, Some(10_000))
                .await
                .unwrap()
                .len(),
        );
        restored.close().await;
        backup.close().await;
    }
    // Taken while writers went on: later backups hold more.
    assert!(
        users_seen.windows(2).all(|w| w[0] <= w[1]),
        "{users_seen:?}"
    );
    f.finish().await;
}

#[tokio::test]
async fn postgres_stores_are_backed_up_with_pg_dump() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let ledger = Ledger::open(&db.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = ledger
        .backup_to(&dir.path().join("x.db"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("pg_dump"), "{e}");
    ledger.close().await;
    db.drop_db().await;
}
