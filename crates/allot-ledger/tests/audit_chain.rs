//! The tamper-evident audit chain, on both stores: intact after ordinary and group-committed
//! concurrent commands, and broken (naming the first bad record) after an edit, a removal and
//! a swap made with SQL by someone with database access, who first lifts the append-only
//! trigger of migration 0003.

use allot_ledger::audit_chain::ChainCheck;
use allot_ledger::testing as common;
use allot_ledger::*;
use common::{Fixture, TestDb};

async fn check(f: &Fixture) -> ChainCheck {
    f.ledger
        .verify_audit_chain(f.tenant.id)
        .await
        .expect("verify")
        .expect("known tenant")
}

async fn assert_intact(f: &Fixture) -> i64 {
    match check(f).await {
        ChainCheck::Intact { records, head } => {
            assert_eq!(records, head.seq);
            let now = f.ledger.audit_head(f.tenant.id).await.unwrap().unwrap();
            assert_eq!(now, head);
            assert_eq!(head.hash.as_ref().map(String::len), Some(64));
            records
        }
        broken => panic!("chain should be intact: {broken:?}"),
    }
}

/// Some records in several commits, one of them a group-committed concurrent burst.
async fn fill(f: &Fixture) {
    for i in 0..4 {
        f.user(&format!("solo{i}")).await;
    }
    let batch: Vec<Command> = (0..3)
        .map(|i| Command::CreateUser(NewUser::named(&format!("batch{i}"))))
        .collect();
    f.ledger.apply(&f.ctx, &batch).await.unwrap();
    // Concurrent commands, which the group commit writes in shared transactions.
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (ledger, ctx) = (f.ledger.clone(), f.ctx.clone());
        racers.spawn(async move {
            let user = NewUser::named(&format!("racer{i}"));
            ledger.execute(&ctx, Command::CreateUser(user)).await
        });
    }
    while let Some(outcome) = racers.join_next().await {
        outcome.unwrap().unwrap();
    }
}

/// A connection of the attacker's, with the append-only triggers dropped.
async fn tamper(f: &Fixture, statements: &[&str]) {
    let url = f.db.url();
    let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let lift: &[&str] = if url.starts_with("sqlite") {
        &[
            "DROP TRIGGER audit_events_no_update",
            "DROP TRIGGER audit_events_no_delete",
        ]
    } else {
        &["DROP TRIGGER audit_events_append_only ON audit_events"]
    };
    for s in lift.iter().chain(statements) {
        sqlx::query(sqlx::AssertSqlSafe(s.to_string()))
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

fn tenant_sql(f: &Fixture, s: &str) -> String {
    s.replace("$T", &f.tenant.id.to_string())
}

/// Removes record `seq` (kept aside), checks that verification names it, and puts it back
/// (so the test's closing invariant check, which also sees the gap, passes).
async fn remove_and_put_back(f: &Fixture, seq: i64) {
    let remove = [
        format!(
            "CREATE TABLE kept AS SELECT * FROM audit_events WHERE tenant_id = $T AND seq = {seq}"
        ),
        format!("DELETE FROM audit_events WHERE tenant_id = $T AND seq = {seq}"),
    ]
    .map(|s| tenant_sql(f, &s));
    tamper(f, &remove.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let expected = ChainCheck::Broken {
        seq,
        reason: format!("audit record {seq} was removed"),
    };
    assert_eq!(check(f).await, expected);
    let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&f.db.url())
        .await
        .unwrap();
    sqlx::query("INSERT INTO audit_events SELECT * FROM kept")
        .execute(&mut c)
        .await
        .unwrap();
    assert_intact(f).await;
}

on_both_stores! {
    async fn the_chain_is_intact_after_ordinary_and_concurrent_commands(f: Fixture) {
        let before = assert_intact(&f).await;
        fill(&f).await;
        let after = assert_intact(&f).await;
        assert_eq!(after, before + 15);
    }

    async fn verifying_while_records_are_appended_finds_no_false_break(f: Fixture) {
        // Writers keep appending while the chain is walked again and again: every walk must
        // end intact (it checks up to the head it read first).
        let writer = {
            let (ledger, ctx) = (f.ledger.clone(), f.ctx.clone());
            tokio::spawn(async move {
                for i in 0..60 {
                    let user = NewUser::named(&format!("live{i}"));
                    ledger.execute(&ctx, Command::CreateUser(user)).await.unwrap();
                }
            })
        };
        let mut walks = 0;
        while !writer.is_finished() {
            assert!(matches!(check(&f).await, ChainCheck::Intact { .. }), "walk {walks}");
            walks += 1;
        }
        writer.await.unwrap();
        assert!(walks > 0);
        assert_intact(&f).await;
    }

    async fn an_edited_record_is_named(f: Fixture) {
        fill(&f).await;
        let sql = tenant_sql(&f, "UPDATE audit_events SET actor = 'mallory' WHERE tenant_id = $T AND seq = 5");
        tamper(&f, &[&sql]).await;
        assert_eq!(check(&f).await, ChainCheck::Broken { seq: 5, reason: "audit record 5 was edited".into() });
    }

    async fn an_edited_last_record_is_named(f: Fixture) {
        fill(&f).await;
        let last = assert_intact(&f).await;
        let sql = tenant_sql(&f, &format!("UPDATE audit_events SET detail = '{{}}' WHERE tenant_id = $T AND seq = {last}"));
        tamper(&f, &[&sql]).await;
        assert_eq!(check(&f).await, ChainCheck::Broken { seq: last, reason: format!("audit record {last} was edited") });
    }

    async fn a_removed_record_is_named(f: Fixture) {
        fill(&f).await;
        remove_and_put_back(&f, 7).await;
    }

    async fn a_removed_last_record_is_named(f: Fixture) {
        fill(&f).await;
        let last = assert_intact(&f).await;
        remove_and_put_back(&f, last).await;
    }

    async fn two_swapped_records_are_named(f: Fixture) {
        fill(&f).await;
        let sqls = [
            "UPDATE audit_events SET seq = -1 WHERE tenant_id = $T AND seq = 3",
            "UPDATE audit_events SET seq = 3 WHERE tenant_id = $T AND seq = 4",
            "UPDATE audit_events SET seq = 4 WHERE tenant_id = $T AND seq = -1",
        ]
        .map(|s| tenant_sql(&f, s));
        tamper(&f, &sqls.iter().map(String::as_str).collect::<Vec<_>>()).await;
        assert_eq!(check(&f).await, ChainCheck::Broken { seq: 3, reason: "audit record 3 was edited or reordered".into() });
    }

    async fn records_written_before_the_chain_are_chained_at_open(f: Fixture) {
        fill(&f).await;
        let records = assert_intact(&f).await;
        // As a store migrated to 0007 finds them: no predecessor hashes, no head. The triggers
        // are put back as migration 0003 made them.
        let url = f.db.url();
        let restore: Vec<String> = if url.starts_with("sqlite") {
            vec![
                "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events \
                 BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END".into(),
                "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events \
                 BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END".into(),
            ]
        } else {
            vec!["CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events \
                  FOR EACH ROW EXECUTE FUNCTION allot_audit_append_only()".into()]
        };
        let mut sqls = vec![
            "UPDATE audit_events SET prev_hash = NULL".to_string(),
            "UPDATE tenants SET audit_head = NULL".to_string(),
        ];
        sqls.extend(restore);
        tamper(&f, &sqls.iter().map(String::as_str).collect::<Vec<_>>()).await;
        assert!(matches!(check(&f).await, ChainCheck::Broken { .. }));
        let reopened = Ledger::open(&url).await.unwrap();
        match reopened.verify_audit_chain(f.tenant.id).await.unwrap().unwrap() {
            ChainCheck::Intact { records: n, .. } => assert_eq!(n, records),
            broken => panic!("{broken:?}"),
        }
        reopened.close().await;
        // The trigger is back: the record is still append-only.
        let mut c = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await.unwrap();
        let refused = sqlx::query("UPDATE audit_events SET actor = 'x' WHERE seq = 1").execute(&mut c).await;
        assert!(refused.is_err(), "append-only trigger missing after chaining");
    }
}
