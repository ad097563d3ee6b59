//! Webhooks end to end: the real binary delivers to a receiver written only from the Standard
//! Webhooks specification (Python, verifying every delivery with the PyPI `standardwebhooks`
//! package). Signatures verify; a receiver that fails twice gets the event on the third attempt;
//! a refused change is never delivered; a SIGKILL between commit and delivery still delivers
//! after the restart; the SSRF guard refuses internal addresses unless allowed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{BIN, Server, free_port, python};

fn cli(server_url: &str, token: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .env("ALLOT_URL", server_url)
        .env("ALLOT_TOKEN", token)
        .output()
        .expect("run allot");
    assert!(
        out.status.success(),
        "allot {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const PASSWORD: &str = "webhooks-password";

struct Receiver {
    child: Child,
    port: u16,
    log: PathBuf,
    secret: PathBuf,
}

impl Receiver {
    fn start(dir: &Path, port: u16, fail_first: u32) -> Receiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/webhook_receiver.py");
        let log = dir.join("received.jsonl");
        let secret = dir.join("secret");
        let child = Command::new(python())
            .arg(script)
            .args([
                port.to_string(),
                secret.display().to_string(),
                log.display().to_string(),
                fail_first.to_string(),
            ])
            .spawn()
            .expect("start the receiver");
        // Up when it accepts a connection.
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "receiver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Receiver {
            child,
            port,
            log,
            secret,
        }
    }

    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until `done` holds for the received lines.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let lines = self.lines();
            if done(&lines) {
                return lines;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "waited for {what}; got {lines:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(dir: &Path, allow_private: bool) -> PathBuf {
    let path = dir.join("allot.toml");
    std::fs::write(
        &path,
        format!(
            "webhooks_allow_private = {allow_private}\nwebhooks_retry_schedule = \"0.3,0.3,0.3\"\n\
             webhooks_poll_ms = 100\nwebhooks_timeout = 5\n"
        ),
    )
    .unwrap();
    path
}

async fn admin_token(url: &str) -> String {
    let answer: Value = reqwest::Client::new()
        .post(format!("{url}/v1/auth/login"))
        .json(&json!({ "tenant": "default", "login": "admin", "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["token"].as_str().unwrap().to_owned()
}

async fn post(url: &str, token: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{url}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Registers the receiver for every event and hands it the secret.
async fn register(server: &Server, token: &str, receiver: &Receiver) -> String {
    let (status, created) = post(
        &server.url,
        token,
        "/v1/webhooks",
        json!({
            "url": format!("http://127.0.0.1:{}/hook", receiver.port),
            "description": "the Python receiver",
        }),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{created}");
    std::fs::write(&receiver.secret, secret).unwrap();
    created["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn deliveries_verify_retry_and_skip_refused_changes() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), free_port(), 2);
    let db = format!("sqlite://{}", dir.path().join("allot.db").display());
    let server = Server::start_with(&db, Some(PASSWORD), Some(&config(dir.path(), true))).await;
    let token = admin_token(&server.url).await;
    let endpoint = register(&server, &token, &receiver).await;

    let (s, _) = post(
        &server.url,
        &token,
        "/v1/products",
        json!({ "owner": "SuperOffice", "name": "crm", "seats": 1 }),
    )
    .await;
    assert_eq!(s, 201);
    for login in ["ann", "bob"] {
        let (s, body) = post(&server.url, &token, "/v1/users", json!({ "login": login })).await;
        assert_eq!(s, 201, "{body}");
    }
    let (s, _) = post(
        &server.url,
        &token,
        "/v1/users/ann/assignments",
        json!({ "product": "SuperOffice/crm" }),
    )
    .await;
    assert!(s == 200 || s == 201, "{s}");
    // Refused (no seat left): nothing to deliver.
    let (s, _) = post(
        &server.url,
        &token,
        "/v1/users/bob/assignments",
        json!({ "product": "SuperOffice/crm" }),
    )
    .await;
    assert_eq!(s, 409);
    let expected = [
        "pool.changed",
        "user.created",
        "user.created",
        "seat.assigned",
        "pool.exhausted",
    ];
    let lines = receiver
        .wait_for("every event delivered", |lines| {
            lines.iter().filter(|l| l["status"] == 204).count() >= expected.len()
        })
        .await;
    // Every attempt verified with the spec's own library; each event was answered 500 twice
    // and delivered on the third attempt, in the order of the changes.
    assert!(lines.iter().all(|l| l["verified"] == true), "{lines:#?}");
    let delivered: Vec<&Value> = lines.iter().filter(|l| l["status"] == 204).collect();
    assert!(
        delivered.iter().all(|l| l["attempt"] == 3),
        "{delivered:#?}"
    );
    let types: Vec<&str> = delivered
        .iter()
        .map(|l| l["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, expected);
    assert_eq!(
        delivered[3]["data"]["detail"]["seats"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Nothing more arrives (the refused assignment has no event).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.lines().len(), lines.len());
    // The deliveries list says the same.
    let list: Value = reqwest::Client::new()
        .get(format!("{}/v1/webhooks/{endpoint}/deliveries", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), expected.len(), "{list}");
    assert!(
        items.iter().all(|d| d["status"] == "delivered"
            && d["attempts"] == 3
            && d["last_status_code"] == 204),
        "{list}"
    );
    // The CLI shows the same, in the API's shapes with --json.
    let shown = cli(
        &server.url,
        &token,
        &["webhooks", "deliveries", &endpoint, "--json"],
    );
    assert_eq!(shown.lines().count(), expected.len(), "{shown}");
    let listed = cli(&server.url, &token, &["webhooks", "list", "--json"]);
    let listed: Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(listed["id"], endpoint.as_str());
    assert!(
        listed.get("secret").is_none(),
        "the secret is shown only once: {listed}"
    );
    let updated = cli(
        &server.url,
        &token,
        &[
            "webhooks",
            "update",
            &endpoint,
            "--event",
            "user.created,seat.assigned",
            "--json",
        ],
    );
    let updated: Value = serde_json::from_str(updated.trim()).unwrap();
    assert_eq!(updated["events"], json!(["user.created", "seat.assigned"]));
    assert!(
        updated["url"].as_str().unwrap().ends_with("/hook"),
        "{updated}"
    );
    // The test event goes to this endpoint.
    let (s, queued) = post(
        &server.url,
        &token,
        &format!("/v1/webhooks/{endpoint}/test"),
        json!({}),
    )
    .await;
    assert_eq!(s, 202);
    let id = queued["event_id"].as_str().unwrap().to_owned();
    receiver
        .wait_for("the test event", |lines| {
            lines
                .iter()
                .any(|l| l["id"] == id.as_str() && l["status"] == 204)
        })
        .await;
    let removed = cli(
        &server.url,
        &token,
        &["webhooks", "remove", &endpoint, "--json"],
    );
    assert!(removed.contains("\"changed\":1"), "{removed}");
    server.stop();
}

#[tokio::test]
async fn a_change_committed_before_a_sigkill_is_delivered_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let db = format!("sqlite://{}", dir.path().join("allot.db").display());
    let config = config(dir.path(), true);
    let mut server = Server::start_with(&db, Some(PASSWORD), Some(&config)).await;
    let token = admin_token(&server.url).await;
    // No receiver yet: the change commits, its delivery cannot be made.
    let (s, created) = post(
        &server.url,
        &token,
        "/v1/webhooks",
        json!({
            "url": format!("http://127.0.0.1:{port}/hook"), "events": ["user.created"],
        }),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let (s, _) = post(
        &server.url,
        &token,
        "/v1/users",
        json!({ "login": "survivor" }),
    )
    .await;
    assert_eq!(s, 201);
    // SIGKILL: no shutdown of any kind.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let receiver = Receiver::start(dir.path(), port, 0);
    std::fs::write(&receiver.secret, created["secret"].as_str().unwrap()).unwrap();
    let server = Server::start_with(&db, Some(PASSWORD), Some(&config)).await;
    let lines = receiver
        .wait_for("the event after the restart", |lines| {
            lines.iter().any(|l| l["status"] == 204)
        })
        .await;
    let delivered: Vec<&Value> = lines.iter().filter(|l| l["status"] == 204).collect();
    assert_eq!(delivered.len(), 1, "{lines:#?}");
    assert_eq!(delivered[0]["type"], "user.created");
    assert_eq!(
        delivered[0]["data"]["detail"]["after"]["login"], "survivor",
        "{lines:#?}"
    );
    server.stop();
}

#[tokio::test]
async fn internal_addresses_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("allot.db").display());
    let server = Server::start_with(&db, Some(PASSWORD), Some(&config(dir.path(), false))).await;
    let token = admin_token(&server.url).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://169.254.169.254/",
        "http://[::ffff:10.0.0.1]/",
        "http://[fd00::1]/",
    ] {
        let (s, body) = post(&server.url, &token, "/v1/webhooks", json!({ "url": url })).await;
        assert_eq!(s, 422, "{url}: {body}");
        assert_eq!(body["error"]["code"], "webhook_url_refused", "{body}");
    }
    let list: Value = reqwest::Client::new()
        .get(format!("{}/v1/webhooks", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    server.stop();
}

/// Two server processes on one PostgreSQL, both running the delivery worker: each of 30 events
/// reaches the receiver exactly once (`FOR UPDATE SKIP LOCKED` gives each delivery to one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_on_one_postgres_deliver_each_event_once() {
    let Some(db) = allot_ledger::testing::TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), free_port(), 0);
    let config = config(dir.path(), true);
    let first = Server::start_with(&db.url(), Some(PASSWORD), Some(&config)).await;
    let second = Server::start_with(&db.url(), Some(PASSWORD), Some(&config)).await;
    let token = admin_token(&first.url).await;
    register(&first, &token, &receiver).await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let url = if i % 2 == 0 {
            first.url.clone()
        } else {
            second.url.clone()
        };
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            post(
                &url,
                &token,
                "/v1/users",
                json!({ "login": format!("user{i}") }),
            )
            .await
            .0
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 201);
    }
    let lines = receiver
        .wait_for("30 events", |lines| {
            lines.iter().filter(|l| l["status"] == 204).count() >= 30
        })
        .await;
    // Both workers poll every 100 ms; give a duplicate time to show.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lines = receiver.lines().len().max(lines.len());
    let all = receiver.lines();
    assert_eq!(lines, 30, "{all:#?}");
    let mut ids: Vec<&str> = all.iter().map(|l| l["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30, "every event once");
    assert!(
        all.iter()
            .all(|l| l["verified"] == true && l["type"] == "user.created")
    );
    first.stop();
    second.stop();
    db.drop_db().await;
}
