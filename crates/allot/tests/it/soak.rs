//! Server-level crash soak (issue 16): the real binary killed with SIGKILL while clients write
//! through the native API, MSP360 (`POST /api/Users`) and SuperOffice REST
//! (`License/AssignThirdPartyLicenses`) at once. Each client records what the server
//! acknowledged; after every restart each acknowledged change must be there, the invariants
//! must hold (`/v1/invariants`, i.e. `Ledger::check_invariants`) and the audit chain must verify
//! (`allot audit verify --db`). SQLite: one process, 10 kills. PostgreSQL: two processes on one
//! database, both killed, 5 times.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::server::{BIN, Server};
use allot_ledger::testing as common;

const PASSWORD: &str = "soak-admin-password";
/// Writers of each kind per round.
const WRITERS: usize = 3;

/// What the server acknowledged, by kind.
#[derive(Default, Clone)]
struct Acked {
    /// Native `POST /v1/users` answered 201: the login.
    native: Vec<String>,
    /// MSP360 `POST /api/Users` answered 200: the user's ID.
    msp360: Vec<String>,
    /// SuperOffice `AssignThirdPartyLicenses` answered the module assigned: the login.
    superoffice: Vec<String>,
}

async fn admin_token(url: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/auth/login"))
        .json(&json!({ "tenant": "default", "login": "admin", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// An answer that is not the success: shed load (429, 503) is waited out and retried by the
/// caller; anything else is a failure of the server's.
async fn shed(r: reqwest::Response, what: &str) {
    let status = r.status();
    if status == 429 || status == 503 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        return;
    }
    panic!(
        "{what} answered {status}: {}",
        r.text().await.unwrap_or_default()
    );
}

/// One writer of one kind against `url` until a request fails (the server is gone). Every id
/// is unique across rounds (`round`, `writer`, a counter).
async fn write_until_killed(
    kind: usize,
    url: String,
    token: String,
    round: usize,
    writer: usize,
    acked: Arc<Mutex<Acked>>,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for n in 0.. {
        let name = format!("r{round}w{writer}k{kind}n{n}");
        match kind {
            0 => {
                let Ok(r) = http
                    .post(format!("{url}/v1/users"))
                    .bearer_auth(&token)
                    .json(&json!({ "login": name }))
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() != 201 {
                    shed(r, "POST /v1/users").await;
                    continue;
                }
                acked.lock().unwrap().native.push(name);
            }
            1 => {
                let Ok(r) = http
                    .post(format!("{url}/api/Users"))
                    .bearer_auth(&token)
                    .json(&json!({ "Email": format!("{name}@soak.test"), "Password": "soak-password", "Enabled": true }))
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() != 200 {
                    shed(r, "POST /api/Users").await;
                    continue;
                }
                let Ok(Value::String(id)) = r.json::<Value>().await else {
                    return;
                };
                acked.lock().unwrap().msp360.push(id.to_lowercase());
            }
            _ => {
                // A SuperOffice associate (a user: its integer id is the AssociateId), then its
                // license through the dialect; only the second answer counts as acknowledged.
                let Ok(r) = http
                    .post(format!("{url}/v1/users"))
                    .bearer_auth(&token)
                    .json(&json!({ "login": name }))
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() != 201 {
                    shed(r, "POST /v1/users (associate)").await;
                    continue;
                }
                let Some(id) = r.json::<Value>().await.ok().and_then(|u| u["id"].as_i64()) else {
                    return;
                };
                let Ok(r) = http
                    .post(format!(
                        "{url}/api/v1/Agents/License/AssignThirdPartyLicenses"
                    ))
                    .header("authorization", format!("SOTicket {token}"))
                    .json(&json!({
                        "AssociateId": id, "ModuleOwner": "soak", "ModuleLicenseNames": ["mod"]
                    }))
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() != 200 {
                    shed(r, "AssignThirdPartyLicenses").await;
                    continue;
                }
                let Ok(body) = r.json::<Value>().await else {
                    return;
                };
                let assigned = body.as_array().is_some_and(|links| {
                    links
                        .iter()
                        .any(|l| l["Name"] == "mod" && l["Assigned"] == true)
                });
                assert!(assigned, "the module was not assigned: {body}");
                acked.lock().unwrap().superoffice.push(name);
            }
        }
    }
}

/// Every acknowledged change is in the store `url` serves, the invariants hold, and the audit
/// chain verifies offline.
async fn check_after_restart(url: &str, db: &str, token: &str, acked: &Acked) {
    let http = reqwest::Client::new();
    let get = |path: String| {
        let http = http.clone();
        let token = token.to_owned();
        async move {
            let r = http.get(path).bearer_auth(token).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let mut logins = HashSet::new();
    let mut after = None::<i64>;
    loop {
        let page = get(match after {
            Some(a) => format!("{url}/v1/users?limit=1000&after={a}"),
            None => format!("{url}/v1/users?limit=1000"),
        })
        .await;
        for u in page["items"].as_array().unwrap() {
            logins.insert(u["login"].as_str().unwrap().to_owned());
        }
        match page["next"].as_i64() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let lost: Vec<&String> = acked
        .native
        .iter()
        .filter(|l| !logins.contains(*l))
        .collect();
    assert!(lost.is_empty(), "acknowledged native users lost: {lost:?}");

    let msp360: Value = get(format!("{url}/api/Users")).await;
    let ids: HashSet<String> = msp360
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["ID"].as_str().unwrap().to_lowercase())
        .collect();
    let lost: Vec<&String> = acked.msp360.iter().filter(|i| !ids.contains(*i)).collect();
    assert!(lost.is_empty(), "acknowledged MSP360 users lost: {lost:?}");

    for login in &acked.superoffice {
        let views = get(format!("{url}/v1/users/{login}/licenses")).await;
        let holds = views.as_array().unwrap().iter().any(|v| {
            v["product"]["owner"] == "soak"
                && v["product"]["name"] == "mod"
                && v["assigned"] == true
        });
        assert!(holds, "acknowledged SuperOffice assignment of {login} lost");
    }

    let invariants = get(format!("{url}/v1/invariants")).await;
    assert_eq!(invariants["violations"], json!([]), "{invariants}");
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify", "--db", db])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audit chain: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `kills` rounds over `processes` servers on `db`: write through all of them, SIGKILL every
/// one mid-write, start them again, check. Answers how many changes were acknowledged.
async fn soak(db: &str, processes: usize, kills: usize) -> (usize, usize, usize) {
    let mut servers = Vec::new();
    for _ in 0..processes {
        servers.push(Server::start(db, Some(PASSWORD)).await);
    }
    let token = admin_token(&servers[0].url).await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/products", servers[0].url))
        .bearer_auth(&token)
        .json(&json!({ "owner": "soak", "name": "mod", "seats": 20000 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let acked = Arc::new(Mutex::new(Acked::default()));
    for round in 0..kills {
        let mut writers = tokio::task::JoinSet::new();
        for writer in 0..WRITERS * processes {
            for kind in 0..3 {
                let url = servers[writer % processes].url.clone();
                writers.spawn(write_until_killed(
                    kind,
                    url,
                    token.clone(),
                    round,
                    writer,
                    acked.clone(),
                ));
            }
        }
        // Kill at a different moment each round, while every kind of writer is mid-flight.
        tokio::time::sleep(Duration::from_millis(800 + (round as u64 * 137) % 700)).await;
        for server in &mut servers {
            server.child.kill().expect("SIGKILL");
            server.child.wait().unwrap();
        }
        while let Some(done) = writers.join_next().await {
            done.unwrap();
        }
        servers.clear();
        for _ in 0..processes {
            servers.push(Server::start(db, Some(PASSWORD)).await);
        }
        // The writers are done; a snapshot, so no lock is held across the checks.
        let snapshot = acked.lock().unwrap().clone();
        check_after_restart(&servers[0].url, db, &token, &snapshot).await;
    }
    for server in servers {
        server.stop();
    }
    let acked = acked.lock().unwrap();
    (
        acked.native.len(),
        acked.msp360.len(),
        acked.superoffice.len(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_server_killed_ten_times_under_native_and_dialect_writes_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("soak.db").display());
    let (native, msp360, superoffice) = soak(&db, 1, 10).await;
    eprintln!(
        "soak sqlite: acknowledged {native} native, {msp360} MSP360, {superoffice} SuperOffice"
    );
    assert!(native > 0 && msp360 > 0 && superoffice > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_postgres_servers_killed_five_times_under_native_and_dialect_writes_lose_nothing() {
    let Some(db) = common::TestDb::postgres().await else {
        return;
    };
    let (native, msp360, superoffice) = soak(&db.url(), 2, 5).await;
    eprintln!(
        "soak postgres: acknowledged {native} native, {msp360} MSP360, {superoffice} SuperOffice"
    );
    assert!(native > 0 && msp360 > 0 && superoffice > 0);
    db.drop_db().await;
}
