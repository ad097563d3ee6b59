//! The write path's cost must not grow with the tenant: every statement a hot command runs has
//! to seek by an index, never walk a whole table of seats, users, grants or audit records.
//!
//! The test records the SQL the store sends (sqlx and the SQLite writer log each statement as a tracing event) while
//! the hot commands and queries run on a SQLite store of a few thousand seats, then asks SQLite
//! for each statement's plan (`EXPLAIN QUERY PLAN`) and fails on any full scan of a table that
//! grows with the tenant, and on any count over a product's whole pool of seats.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};

use allot_ledger::testing::{Fixture, TestDb};
use allot_ledger::*;
use sqlx::{Connection, Row, SqliteConnection};
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};

/// Tables whose size follows the tenant's; a full scan of one makes a command's cost grow with
/// the ledger.
const GROWING: &[&str] = &[
    "seats",
    "users",
    "grants",
    "audit_events",
    "sessions",
    "computers",
    "tokens",
    "logins",
    "products",
];

/// Statements seen since the last `take`.
static STATEMENTS: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();

struct StatementRecorder(Arc<Mutex<Vec<String>>>);

#[derive(Default)]
struct StatementFields {
    summary: String,
    statement: String,
}

impl Visit for StatementFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => self.summary = value.to_owned(),
            "db.statement" => self.statement = value.to_owned(),
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "summary" => self.summary = text.trim_matches('"').to_owned(),
            "db.statement" => self.statement = text,
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for StatementRecorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: LayerContext<'_, S>) {
        // sqlx logs the readers' statements; the SQLite writer's own connection logs its own.
        if !matches!(
            event.metadata().target(),
            "sqlx::query" | "allot_ledger::sql"
        ) {
            return;
        }
        let mut fields = StatementFields::default();
        event.record(&mut fields);
        // sqlx logs the whole statement only when it differs from the short summary.
        let sql = if fields.statement.trim().is_empty() {
            fields.summary
        } else {
            fields.statement
        };
        self.0.lock().unwrap().push(sql.trim().to_owned());
    }
}

fn recorder() -> Arc<Mutex<Vec<String>>> {
    STATEMENTS
        .get_or_init(|| {
            let seen = Arc::new(Mutex::new(Vec::new()));
            let subscriber = tracing_subscriber::registry()
                .with(StatementRecorder(seen.clone()))
                .with(
                    tracing_subscriber::filter::Targets::new()
                        .with_target("sqlx::query", tracing::Level::TRACE)
                        .with_target("allot_ledger::sql", tracing::Level::TRACE),
                );
            tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
            seen
        })
        .clone()
}

fn take() -> Vec<String> {
    std::mem::take(&mut *recorder().lock().unwrap())
}

/// The plan lines of every recorded statement that scans a growing table.
/// With `pool_counts_only`, only counts over a whole pool are reported.
async fn full_scans(db: &str, statements: &[String], pool_counts_only: bool) -> Vec<String> {
    let mut conn = SqliteConnection::connect(&format!("{db}?mode=ro"))
        .await
        .expect("read-only connection");
    let distinct: BTreeSet<&String> = statements.iter().collect();
    let mut found = Vec::new();
    for sql in distinct {
        let head = sql.trim_start().to_ascii_uppercase();
        if !["SELECT", "UPDATE", "DELETE", "INSERT", "WITH"]
            .iter()
            .any(|k| head.starts_with(k))
        {
            continue;
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("EXPLAIN of {sql}: {e}"));
        for row in rows {
            let detail: String = row.get("detail");
            // Sorting a pool to pick one seat costs as much as the pool is large.
            if pool_counts_only {
                if counts_a_pool(&detail, sql) {
                    found.push(format!("{detail}\n    in: {}", one_line(sql)));
                }
                continue;
            }
            if detail.starts_with("USE TEMP B-TREE FOR ORDER BY") && writes_seats(sql) {
                found.push(format!("{detail}\n    in: {}", one_line(sql)));
            }
            if std::env::var_os("ALLOT_SHOW_PLANS").is_some() {
                eprintln!("{detail}    <- {}", one_line(sql));
            }
            if scans_growing_table(&detail, sql) || counts_a_pool(&detail, sql) {
                found.push(format!("{detail}\n    in: {}", one_line(sql)));
            }
        }
    }
    found
}

/// `SCAN seats`, `SCAN s` (an alias of seats) or `SCAN seats USING INDEX ...` (a whole index
/// walked), or a `SEARCH` constrained by nothing but the tenant, or the tenant and a cursor on
/// the key (every row of the tenant walked, or all those after the cursor): any of them over a
/// growing table. Any other `SEARCH` is a seek and passes.
fn scans_growing_table(detail: &str, sql: &str) -> bool {
    let rest = if let Some(rest) = detail.strip_prefix("SCAN ") {
        rest
    } else if let Some(rest) = detail.strip_prefix("SEARCH ")
        && (detail.ends_with("(tenant_id=?)") || detail.ends_with("(tenant_id=? AND number>?)"))
    {
        rest
    } else {
        return false;
    };
    let name = rest.split_whitespace().next().unwrap_or_default();
    let table = table_of_alias(sql, name).unwrap_or(name);
    GROWING.contains(&table)
}

/// A count over a product's seats (all of them, or all its free or held ones): its cost grows
/// with the pool. Pool counts come from the trigger-kept counters (`pool_usage`, `pool_free`);
/// what is counted over seats must be narrower (one user's seats, the expired ones).
fn counts_a_pool(detail: &str, sql: &str) -> bool {
    let Some(rest) = detail.strip_prefix("SEARCH ") else {
        return false;
    };
    let name = rest.split_whitespace().next().unwrap_or_default();
    let table = table_of_alias(sql, name).unwrap_or(name);
    table == "seats"
        && sql.to_ascii_lowercase().contains("count(")
        && (detail.ends_with("(tenant_id=? AND product_id=?)")
            || detail.ends_with("(tenant_id=? AND product_id=? AND holder_id=?)"))
}

/// The table that `alias` names in `sql` (`FROM seats s`, `JOIN users AS u`).
fn table_of_alias<'a>(sql: &'a str, alias: &str) -> Option<&'a str> {
    let words: Vec<&str> = sql
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .filter(|w| !w.is_empty())
        .collect();
    words.windows(3).find_map(|w| {
        let aliased = w[1].eq_ignore_ascii_case("AS") && w[2] == alias;
        let bare = w[1] == alias && GROWING.contains(&w[0]);
        (aliased || bare).then_some(w[0])
    })
}

fn writes_seats(sql: &str) -> bool {
    let head = one_line(sql).to_ascii_uppercase();
    head.starts_with("UPDATE SEATS") || head.starts_with("DELETE FROM SEATS")
}

fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn user_ref(u: &User) -> UserRef {
    UserRef::Id(u.id)
}

#[tokio::test]
async fn hot_statements_seek_by_index() {
    recorder();
    let db = TestDb::sqlite();
    let url = db.url();
    let f = Fixture::new(db).await;
    // A tenant big enough that a scan and a seek are planned differently: a few products,
    // thousands of seats, hundreds of users, some of them holding seats.
    let crm = f.user_product("crm", 2000).await;
    let web = f
        .product(NewProduct {
            prerequisite: Some(ProductRef::Id(crm.id)),
            ..NewProduct::user("SuperOffice", "web", 1000)
        })
        .await;
    let floating = f
        .product(NewProduct {
            kind: ProductKind::Floating,
            ..NewProduct::user("SuperOffice", "float", 200)
        })
        .await;
    let tiny = f.user_product("tiny", 1).await;
    let mut users = Vec::new();
    for i in 0..300 {
        users.push(f.user(&format!("user{i}")).await);
    }
    for u in users.iter().take(150) {
        f.assign(u, &crm).await.expect("assign");
    }
    // Seats and a product that expire a minute from now: the next command after that lapses
    // them in the usage history (`ops::usage::lapse_expired`).
    let soon = f.clock.now() + time::Duration::minutes(1);
    f.add_seats(NewSeats {
        expires_at: Some(soon),
        ..NewSeats::plain(ProductRef::Id(crm.id), 100)
    })
    .await;
    f.product(NewProduct {
        expires_at: Some(soon + time::Duration::seconds(1)),
        ..NewProduct::user("SuperOffice", "old", 50)
    })
    .await;
    // SQLite plans from statistics once they exist; a server that has run a while has them.
    let ann = &users[7];
    let bob = &users[200];
    take();

    // The hot commands, as the API and the dialects issue them; the first after the expiries
    // sweeps them.
    f.clock.advance(time::Duration::minutes(2));
    f.ok(Command::ExpireSessions).await;
    f.assign(ann, &web).await.expect("assign web");
    f.unassign(ann, &web).await.expect("unassign web");
    f.assign(bob, &crm).await.expect("assign crm");
    // A refusal explains itself with the pool's counts.
    f.assign(ann, &tiny).await.expect("assign tiny");
    f.assign(bob, &tiny)
        .await
        .expect_err("no seat of tiny left");
    let seat = f.seats_of(bob).await[0].id;
    f.ok(Command::ReleaseSeat {
        seat,
        user: Some(user_ref(bob)),
    })
    .await;
    f.ok(Command::GrantSeat {
        seat,
        user: user_ref(bob),
    })
    .await;
    f.ok(Command::RevokeSeat { seat, user: None }).await;
    f.ok(Command::GrantSeat {
        seat,
        user: user_ref(bob),
    })
    .await;
    let lease = match f
        .ok(Command::LogOn {
            user: user_ref(ann),
            client: ClientKind::Web,
            device: "ann-pc".into(),
            product: Some(ProductRef::Id(floating.id)),
            lease_seconds: 300,
        })
        .await
    {
        Outcome::Lease(lease) => lease,
        other => panic!("unexpected {other:?}"),
    };
    f.ok(Command::Heartbeat {
        session: lease.session.id,
        lease_token: lease.lease_token.clone(),
        lease_seconds: 300,
    })
    .await;
    f.ok(Command::EndSession {
        session: lease.session.id,
        lease_token: Some(lease.lease_token),
        reason: EndReason::Logoff,
    })
    .await;
    f.ok(Command::LogOff {
        users: vec![user_ref(bob)],
        client: None,
        reason: EndReason::Logoff,
    })
    .await;
    // The reads every request or answer makes.
    f.ledger.user(f.tenant.id, &user_ref(ann)).await.unwrap();
    f.ledger
        .pool_status(f.tenant.id, Some(crm.id))
        .await
        .unwrap();
    f.ledger.seat(f.tenant.id, seat).await.unwrap();
    f.ledger.live_token(&"0".repeat(64)).await.unwrap();
    // A page of one product's seats, as `GET /v1/seats?product=…` and the CLI page through them.
    f.ledger
        .seats(
            f.tenant.id,
            &SeatFilter {
                product: Some(crm.id),
                after_number: Some(500),
                limit: Some(100),
                ..SeatFilter::default()
            },
        )
        .await
        .unwrap();

    let statements = take();
    // The answers of an assign (native) and of a SuperOffice third-party call: their pool
    // counts come from the counters. (They still read the tenant's list of products, which
    // grows with the products, not with the seats or users.)
    f.ledger
        .user_product_view(f.tenant.id, &user_ref(ann), crm.id)
        .await
        .unwrap();
    f.ledger
        .user_owner_view(f.tenant.id, &user_ref(bob), "SuperOffice")
        .await
        .unwrap();
    let answers = take();
    let pool_counts = full_scans(&url, &answers, true).await;
    assert!(
        pool_counts.is_empty(),
        "{} answer statements count a whole pool:\n{}",
        pool_counts.len(),
        pool_counts.join("\n")
    );
    assert!(
        statements.len() > 20,
        "too few statements recorded: {statements:?}"
    );
    let scans = full_scans(&url, &statements, false).await;
    assert!(
        scans.is_empty(),
        "{} hot statements scan a table that grows with the tenant:\n{}",
        scans.len(),
        scans.join("\n")
    );
    f.finish().await;
}
