//! End-to-end: the real `allot` binary, started as the README says (`allot serve`), driven over
//! HTTP and through its own admin commands.

use allot_ledger::testing as common;

use crate::server::{BIN, Server};

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

async fn login(url: &str, tenant: &str, login: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/v1/auth/login"))
        .json(&json!({ "tenant": tenant, "login": login, "password": password }))
        .send()
        .await
        .unwrap()
}

/// The token of a password login of the tenant `default`.
async fn token_of(url: &str, login_name: &str, password: &str) -> String {
    let answer: Value = login(url, "default", login_name, password)
        .await
        .json()
        .await
        .unwrap();
    answer["token"]
        .as_str()
        .unwrap_or_else(|| panic!("login failed: {answer}"))
        .to_owned()
}

/// Runs an admin command of the binary against the server; returns stdout.
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

/// A command's `--json` output: JSON lines, each one object.
fn cli_lines(server_url: &str, token: &str, args: &[&str]) -> Vec<Value> {
    let mut all = args.to_vec();
    all.push("--json");
    json_lines(&cli(server_url, token, &all), args)
}

fn json_lines(stdout: &str, args: &[&str]) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("allot {args:?} --json printed {line:?}: {e}"));
            assert!(v.is_object(), "allot {args:?}: one object a line: {line}");
            v
        })
        .collect()
}

/// A command whose `--json` answer is one object.
fn cli_json(server_url: &str, token: &str, args: &[&str]) -> Value {
    let mut lines = cli_lines(server_url, token, args);
    assert_eq!(lines.len(), 1, "allot {args:?}: {lines:?}");
    lines.remove(0)
}

/// `allot user list | head -1`: the reader is gone before the list is written; the command
/// ends without a panic (killed by SIGPIPE, as other Unix tools are, or exit 0).
fn list_into_a_closed_pipe_is_quiet(server_url: &str, token: &str) {
    let mut child = Command::new(BIN)
        .args(["user", "list"])
        .env("ALLOT_URL", server_url)
        .env("ALLOT_TOKEN", token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run allot");
    // Close the read end at once: the command is still waiting for the server's answer.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for allot");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "nothing is said on stderr: {stderr}"
    );
}

/// The whole admin flow through the binary's own commands and raw HTTP.
/// `allot groups ...` and `allot user disable|enable` against the real binary and server.
fn groups_from_the_cli(url: &str, token: &str) {
    cli(
        url,
        token,
        &[
            "product", "add", "--owner", "Teams", "--name", "seat", "--seats", "1",
        ],
    );
    for login in ["gina", "gus"] {
        cli(url, token, &["user", "add", "--login", login]);
    }
    let group = cli_json(url, token, &["groups", "add", "--name", "Team"]);
    assert_eq!(group["name"], "Team");
    let view = cli_json(
        url,
        token,
        &[
            "groups",
            "licenses",
            "add",
            "--group",
            "Team",
            "--product",
            "Teams/seat",
        ],
    );
    assert_eq!(view["licenses"][0]["product_name"], "Teams/seat");
    cli_json(
        url,
        token,
        &[
            "groups", "members", "add", "--group", "Team", "--user", "gina",
        ],
    );
    let view = cli_json(
        url,
        token,
        &[
            "groups", "members", "add", "--group", "Team", "--user", "gus",
        ],
    );
    let states: Vec<&str> = view["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["active", "waiting"]);
    // The table says the same for people.
    let table = cli(url, token, &["groups", "show", "--group", "Team"]);
    assert!(
        table.contains("waiting") && table.contains("no_free_seat"),
        "{table}"
    );
    let listed = cli_lines(url, token, &["groups", "list"]);
    assert!(listed.iter().any(|g| g["name"] == "Team"));
    // Disabling gina hands her seat to gus; enabling queues her again.
    assert!(
        cli_json(url, token, &["user", "disable", "--user", "gina"])["changed"]
            .as_u64()
            .unwrap()
            >= 2
    );
    let view = cli_json(url, token, &["groups", "show", "--group", "Team"]);
    let states: Vec<(&str, &str)> = view["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["login"].as_str().unwrap(), a["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("gina", "error"), ("gus", "active")]);
    cli_json(url, token, &["user", "enable", "--user", "gina"]);
    let view = cli_json(
        url,
        token,
        &[
            "groups", "members", "remove", "--group", "Team", "--user", "gus",
        ],
    );
    assert_eq!(
        view["assignments"][0]["state"], "active",
        "gina got the seat gus left: {view}"
    );
    cli_json(
        url,
        token,
        &[
            "groups",
            "licenses",
            "remove",
            "--group",
            "Team",
            "--product",
            "Teams/seat",
        ],
    );
    assert_eq!(
        cli_json(url, token, &["groups", "remove", "--group", "Team"])["changed"],
        1
    );
    cli_json(url, token, &["user", "retire", "--user", "gus"]);
    assert_eq!(
        cli_json(url, token, &["user", "unretire", "--user", "gus"])["changed"],
        1
    );
}

async fn admin_flow(server: &Server, token: &str) {
    let url = server.url.as_str();
    cli(
        url,
        token,
        &[
            "product",
            "add",
            "--owner",
            "SuperOffice",
            "--name",
            "user",
            "--seats",
            "2",
        ],
    );
    cli(
        url,
        token,
        &[
            "product",
            "add",
            "--owner",
            "SuperOffice",
            "--name",
            "web",
            "--seats",
            "1",
            "--prerequisite",
            "user",
        ],
    );
    cli(
        url,
        token,
        &[
            "product",
            "add",
            "--owner",
            "SuperOffice",
            "--name",
            "plan",
            "--seats",
            "5",
            "--plan",
            "user,web",
            "--hidden",
        ],
    );
    cli(
        url,
        token,
        &[
            "seats",
            "add",
            "--product",
            "SuperOffice/web",
            "--count",
            "2",
        ],
    );
    cli(
        url,
        token,
        &["company", "add", "--name", "Acme", "--pool", "global"],
    );
    cli(
        url,
        token,
        &[
            "user",
            "add",
            "--login",
            "ann",
            "--name",
            "Ann Smith",
            "--email",
            "ann@example.com",
            "--company",
            "Acme",
            "--id",
            "621",
        ],
    );
    cli(url, token, &["user", "add", "--login", "bob"]);
    list_into_a_closed_pipe_is_quiet(url, token);
    // --company takes the company's id as well as its name.
    let beta = cli_json(
        url,
        token,
        &["company", "add", "--name", "Beta", "--pool", "global"],
    );
    let beta_id = beta["id"].as_i64().expect("company id").to_string();
    let cid = cli_json(
        url,
        token,
        &["user", "add", "--login", "cid", "--company", &beta_id],
    );
    assert_eq!(cid["company"].to_string(), beta_id, "{cid}");
    let view = cli_json(
        url,
        token,
        &["assign", "--user", "ann", "--product", "SuperOffice/plan"],
    );
    assert_eq!(view["assigned"], true);
    let status = cli_lines(url, token, &["status"]);
    let in_use = |name: &str| {
        status.iter().find(|p| p["name"] == name).unwrap()["in_use"]
            .as_i64()
            .unwrap()
    };
    assert_eq!((in_use("user"), in_use("web"), in_use("plan")), (1, 1, 1));
    let human = cli(url, token, &["status"]);
    assert!(
        human.contains("UTILISATION") && human.contains('#'),
        "{human}"
    );
    // Grant and release one particular seat.
    let seats = cli_lines(
        url,
        token,
        &[
            "seats",
            "list",
            "--product",
            "SuperOffice/user",
            "--available",
        ],
    );
    let seat = seats[0]["id"].as_str().unwrap().to_owned();
    let granted = cli_json(url, token, &["grant", "--user", "bob", "--seat", &seat]);
    assert_eq!(granted["holder"].as_i64(), Some(622));
    let released = cli_json(url, token, &["release", "--user", "bob", "--seat", &seat]);
    assert!(released["holder"].is_null());
    let view = cli_json(
        url,
        token,
        &["unassign", "--user", "ann", "--product", "SuperOffice/plan"],
    );
    assert_eq!(view["assigned"], false);
    let status = cli_lines(url, token, &["status"]);
    assert!(status.iter().all(|p| p["in_use"] == 0), "{status:?}");
    // The usage history saw the seat held and given back: a point per minute of the last hour.
    let usage = ["usage", "--product", "SuperOffice/user", "--since", "1h"];
    let points = cli_lines(url, token, &usage);
    assert!((60..=62).contains(&points.len()), "{points:?}");
    assert!(
        points.iter().any(|p| p["in_use_max"].as_i64() >= Some(1)),
        "{points:?}"
    );
    let user_total = &status.iter().find(|p| p["name"] == "user").unwrap()["total"];
    assert_eq!(&points.last().unwrap()["total"], user_total, "{points:?}");
    let human = cli(url, token, &usage);
    assert!(
        human.contains("in use max") && human.contains('█'),
        "{human}"
    );
    let csv = cli(url, token, &[&usage[..], &["--csv"]].concat());
    assert!(
        csv.starts_with("product_id,owner,product,at,total,in_use_max,in_use_avg,denied,"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), points.len() + 1);
    // A seat price: the product lists it, and the usage prices the unused seats.
    let priced = cli_json(
        url,
        token,
        &[
            "product",
            "price",
            "--product",
            "SuperOffice/user",
            "--amount",
            "12.5",
            "--currency",
            "EUR",
        ],
    );
    assert_eq!(
        priced["seat_price_per_30_days"],
        serde_json::json!({ "amount": "12.5000", "currency": "EUR" })
    );
    let human = cli(url, token, &usage);
    assert!(
        human.contains("unused cost")
            && human.contains("Unused seats cost ")
            && human.contains(" EUR over these points."),
        "{human}"
    );
    let csv = cli(url, token, &[&usage[..], &["--csv"]].concat());
    assert!(csv.lines().nth(1).unwrap().ends_with(",EUR"), "{csv}");
    let refused = Command::new(BIN)
        .args([
            "product",
            "price",
            "--product",
            "SuperOffice/user",
            "--amount",
            "1",
            "--currency",
            "euro",
        ])
        .env("ALLOT_URL", url)
        .env("ALLOT_TOKEN", token)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("ISO 4217"),
        "{refused:?}"
    );
    let cleared = cli_json(
        url,
        token,
        &[
            "product",
            "price",
            "--product",
            "SuperOffice/user",
            "--clear",
        ],
    );
    assert!(cleared.get("seat_price_per_30_days").is_none(), "{cleared}");
    every_command_prints_json_lines(url, token);
    // The audit trail saw all of it, in order.
    let audit = cli(url, token, &["audit", "--json"]);
    let actions: Vec<String> = audit
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["action"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for expected in [
        "product.create",
        "seats.add",
        "company.create",
        "user.create",
        "license.assign",
        "seat.grant",
        "seat.release",
        "license.unassign",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} missing from {actions:?}"
        );
    }
    let invariants: Value = reqwest::Client::new()
        .get(format!("{url}/v1/invariants"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(invariants["violations"], json!([]));
    // A failing command exits non-zero with the server's message.
    let out = Command::new(BIN)
        .args(["assign", "--user", "bob", "--product", "SuperOffice/web"])
        .env("ALLOT_URL", url)
        .env("ALLOT_TOKEN", token)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("prerequisite_missing"));
}

/// `--json` on every admin command: JSON lines, one object a line (lists one item a line, single
/// answers one line), each decodable as what the API answered.
fn every_command_prints_json_lines(url: &str, token: &str) {
    let users = cli_lines(url, token, &["user", "list"]);
    assert!(users.len() >= 3, "{users:?}");
    assert!(
        users
            .iter()
            .all(|u| u["login"].is_string() && u["uuid"].is_string())
    );
    let products = cli_lines(url, token, &["product", "list"]);
    assert_eq!(products.len(), 3, "{products:?}");
    assert!(products.iter().all(|p| p["status"]["total"].is_i64()));
    let companies = cli_lines(url, token, &["company", "list"]);
    assert_eq!(companies.len(), 2, "{companies:?}");
    let views = cli_lines(url, token, &["user", "licenses", "--user", "ann"]);
    assert_eq!(views.len(), 3, "{views:?}");
    assert!(views.iter().all(|v| v["can_assign"].is_boolean()));
    let added = cli_lines(
        url,
        token,
        &[
            "seats",
            "add",
            "--product",
            "SuperOffice/user",
            "--count",
            "3",
        ],
    );
    assert_eq!(added.len(), 3, "three seats, three lines: {added:?}");
    let all_seats = cli_lines(url, token, &["seats", "list"]);
    assert!(all_seats.len() >= 3 + 2 + 3, "{}", all_seats.len());
    assert!(cli_lines(url, token, &["sessions"]).is_empty());
    let created = cli_json(
        url,
        token,
        &[
            "product", "add", "--owner", "Json", "--name", "lines", "--seats", "1",
        ],
    );
    assert_eq!(created["status"]["total"], 1, "{created}");
    let logoff = cli_json(url, token, &["logoff", "--user", "bob"]);
    assert_eq!(logoff, json!({ "changed": 0 }));
    let retired = cli_json(url, token, &["user", "retire", "--user", "cid"]);
    assert_eq!(retired["changed"].as_u64(), Some(1), "{retired}");
    let audit = cli_lines(url, token, &["audit"]);
    let seqs: Vec<i64> = audit.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
}

/// `audit --follow --json` across a server restart on the same store and port: it says on stderr
/// that it is reconnecting, comes back by itself, and prints every event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_follow_reconnects_after_a_restart_and_resumes() {
    use std::io::{BufRead, BufReader};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("allot.db").display());
    let server = Server::start(&db, Some("follow-password")).await;
    let (url, port) = (server.url.clone(), server.port());
    let token = token_of(&url, "admin", "follow-password").await;
    cli(&url, &token, &["user", "add", "--login", "before"]);
    let mut follower = Command::new(BIN)
        .args(["audit", "--follow", "--json"])
        .env("ALLOT_URL", &url)
        .env("ALLOT_TOKEN", &token)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let printed = Arc::new(Mutex::new(Vec::<Value>::new()));
    let said = Arc::new(Mutex::new(String::new()));
    let stdout = BufReader::new(follower.stdout.take().unwrap());
    let stderr = BufReader::new(follower.stderr.take().unwrap());
    let (p, s) = (printed.clone(), said.clone());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            p.lock()
                .unwrap()
                .push(serde_json::from_str(&line).expect(&line));
        }
    });
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            s.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    let logins = |printed: &Arc<Mutex<Vec<Value>>>| -> Vec<String> {
        printed
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "user.create")
            .map(|e| e["detail"].to_string())
            .collect()
    };
    let wait_for = |what: &str, done: &dyn Fn() -> bool| {
        let started = std::time::Instant::now();
        while !done() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "waited in vain for {what}; stderr: {}",
                said.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("the first event", &|| {
        logins(&printed).iter().any(|d| d.contains("before"))
    });
    server.stop();
    wait_for("the follower to say it is reconnecting", &|| {
        said.lock().unwrap().contains("reconnecting")
    });
    let again = Server::start_on(&db, Some("follow-password"), port).await;
    cli(&again.url, &token, &["user", "add", "--login", "after"]);
    wait_for("the event made after the restart", &|| {
        logins(&printed).iter().any(|d| d.contains("after"))
    });
    // Two more polls: anything printed twice would show by now.
    std::thread::sleep(Duration::from_millis(2500));
    let _ = follower.kill();
    let _ = follower.wait();
    let followed: Vec<i64> = printed
        .lock()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    let trail: Vec<i64> = cli_lines(&again.url, &token, &["audit"])
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(followed, trail, "every event exactly once, in order");
    let said = said.lock().unwrap().clone();
    assert!(said.contains("reconnected"), "{said}");
    assert!(!said.contains(&token), "{said}");
    again.stop();
}

/// `bench --json`: the run and each measurement as JSON lines (a one-second run, tiny sizes).
#[test]
fn bench_prints_json_lines() {
    let args = [
        "bench",
        "--products",
        "1",
        "--seats",
        "2",
        "--users",
        "2",
        "--clients",
        "2",
        "--duration",
        "1",
        "--json",
    ];
    let out = Command::new(BIN)
        .args(args)
        .env_remove("ALLOT_TOKEN")
        .env("ALLOT_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&String::from_utf8(out.stdout).unwrap(), &args);
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!(lines[0]["bench"]["workload"], "native", "{:?}", lines[0]);
    assert_eq!(lines[1]["set_up"]["seats"], 2, "{:?}", lines[1]);
    assert_eq!(lines[2]["measurement"], "license ops");
    assert_eq!(lines[3]["measurement"], "/healthz");
    assert!(lines[2]["requests"].as_u64().unwrap() > 0);
    // The server ran as its own process, so its CPU time per request could be read.
    let cpu = &lines[4]["server_cpu_us_per_request"];
    assert!(cpu["license"].as_f64().unwrap() > 0.0, "{cpu:?}");
    assert!(cpu["healthz"].as_f64().unwrap() > 0.0, "{cpu:?}");
    assert_eq!(lines[5]["invariants"], "ok");
}

/// Declares a 3 MiB JSON body, sends its first bytes, and returns the status the server answers.
async fn oversized_post(url: &str, token: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/products HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{{\"owner\": \"",
        3 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]).to_string();
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// Bad input of every kind; the server answers each with its documented error and keeps serving.
async fn bad_input(server: &Server, token: &str) {
    let http = reqwest::Client::new();
    let url = &server.url;
    let post = |body: String| {
        http.post(format!("{url}/v1/products"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
    };
    let r = post("{\"owner\": ".into()).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = post("{\"owner\": [], \"name\": 5}".into())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // Oversized: the server answers 413 from the declared length, before reading the body
    // (raw TCP, so the client does not race to write the rest into a closed connection).
    assert_eq!(oversized_post(url, token).await, 413);
    let r = http
        .get(format!("{url}/v1/products"))
        .bearer_auth("allot_forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "token_unknown");
    assert_eq!(
        login(url, "default", "admin", "not the password")
            .await
            .status(),
        401
    );
    let r = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let metrics = http
        .get(format!("{}/metrics", server.metrics))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("allot_http_requests_total"), "{metrics}");
    assert!(metrics.contains("allot_ledger_operations_total"));
    assert!(metrics.contains("allot_pool_seats_total"));
    assert!(metrics.contains("allot_pool_seat_denials_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_server_from_first_start_to_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("allot.db").display());
    let server = Server::start(&db, None).await;
    // The generated admin password is printed once, on first start.
    let banner = server.stdout_lines.join("\n");
    let password = banner
        .split("password: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect(&banner)
        .trim()
        .to_owned();
    let r = login(&server.url, "default", "admin", &password).await;
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    admin_flow(&server, &token).await;
    groups_from_the_cli(&server.url, &token);
    bad_input(&server, &token).await;
    server.stop();
    // A restart keeps everything and prints no new password.
    let again = Server::start(&db, Some("ignored-now-pass")).await;
    let r = login(&again.url, "default", "admin", &password).await;
    assert_eq!(r.status(), 200, "the first password still works");
    again.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_operator_and_tenant_isolation() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("allot.db").display());
    let out = Command::new(BIN)
        .args([
            "init",
            "--db",
            &db,
            "--tenant",
            "acme",
            "--admin",
            "root",
            "--password",
            "acme-password",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acme_token = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let out = Command::new(BIN)
        .args(["operator-token", "--db", &db])
        .output()
        .unwrap();
    let operator = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let server = Server::start(&db, Some("default-admin-pass")).await;
    let url = server.url.as_str();
    cli(
        url,
        &acme_token,
        &[
            "product",
            "add",
            "--owner",
            "SuperOffice",
            "--name",
            "crm",
            "--seats",
            "3",
        ],
    );
    let http = reqwest::Client::new();
    let r = http.post(format!("{url}/v1/tenants")).bearer_auth(&operator)
        .json(&json!({ "name": "globex", "admin_login": "boss", "admin_password": "globex-password" }))
        .send().await.unwrap();
    assert_eq!(r.status(), 201);
    let globex = login(url, "globex", "boss", "globex-password")
        .await
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let products = cli_lines(url, &globex, &["product", "list"]);
    assert!(products.is_empty(), "globex sees nothing of acme");
    let r = http
        .get(format!("{url}/v1/products/1"))
        .bearer_auth(&globex)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A reader cannot write.
    let r = http
        .post(format!("{url}/v1/tokens"))
        .bearer_auth(&acme_token)
        .json(&json!({ "role": "reader" }))
        .send()
        .await
        .unwrap();
    let reader = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = Command::new(BIN)
        .args(["product", "add", "--owner", "x", "--name", "y"])
        .env("ALLOT_URL", url)
        .env("ALLOT_TOKEN", &reader)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("forbidden"));
    assert_eq!(cli_json(url, &reader, &["product", "list"])["name"], "crm");
    // The store commands print JSON too.
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines = json_lines(&String::from_utf8(out.stdout).unwrap(), args);
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        lines.remove(0)
    };
    let migrated = run(&["migrate", "--db", &db, "--json"]);
    assert!(migrated["migrated"].is_string(), "{migrated}");
    let op = run(&["operator-token", "--db", &db, "--json"]);
    assert_eq!(op["role"], "operator", "{op}");
    let op_token = op["token"].as_str().unwrap();
    let r = http
        .get(format!("{url}/v1/tenants"))
        .bearer_auth(op_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the printed operator token works");
    let init = run(&[
        "init",
        "--db",
        &db,
        "--tenant",
        "initech",
        "--admin",
        "peter",
        "--password",
        "initech-password",
        "--json",
    ]);
    assert_eq!(
        (
            &init["tenant"]["name"],
            &init["admin"],
            &init["token"]["role"]
        ),
        (&json!("initech"), &json!("peter"), &json!("admin")),
        "{init}"
    );
    let initech = init["token"]["token"].as_str().unwrap();
    assert!(cli_lines(url, initech, &["user", "list"]).is_empty());
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_end_to_end() {
    let Some(db) = common::TestDb::postgres().await else {
        return;
    };
    let server = Server::start(&db.url(), Some("pg-admin-password")).await;
    let r = login(&server.url, "default", "admin", "pg-admin-password").await;
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    admin_flow(&server, &token).await;
    bad_input(&server, &token).await;
    server.stop();
    db.drop_db().await;
}

/// Two server processes on one PostgreSQL database, 40 clients racing over HTTP for 10 seats
/// through both: exactly 10 assignments win, and the counts agree from either process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_processes_on_one_postgres_never_over_allocate() {
    let Some(db) = common::TestDb::postgres().await else {
        return;
    };
    let first = Server::start(&db.url(), Some("pg-admin-password")).await;
    let second = Server::start(&db.url(), Some("pg-admin-password")).await;
    let token = token_of(&first.url, "admin", "pg-admin-password").await;
    cli(
        &first.url,
        &token,
        &[
            "product",
            "add",
            "--owner",
            "SuperOffice",
            "--name",
            "contended",
            "--seats",
            "10",
        ],
    );
    for i in 0..40 {
        cli(
            &first.url,
            &token,
            &["user", "add", "--login", &format!("racer{i}")],
        );
    }
    let http = reqwest::Client::new();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(40));
    let mut tasks = Vec::new();
    for i in 0..40 {
        // The token was issued by the first process; the second one knows it from the shared store.
        let url = if i % 2 == 0 {
            first.url.clone()
        } else {
            second.url.clone()
        };
        let (http, token, barrier) = (http.clone(), token.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            http.post(format!("{url}/v1/users/racer{i}/assignments"))
                .bearer_auth(token)
                .json(&json!({ "product": "SuperOffice/contended" }))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 409),
        "{statuses:?}"
    );
    for server in [&first, &second] {
        let status = cli_json(&server.url, &token, &["status"]);
        assert_eq!(
            (status["total"].as_i64(), status["in_use"].as_i64()),
            (Some(10), Some(10)),
            "{status}"
        );
    }
    let invariants: Value = http
        .get(format!("{}/v1/invariants", second.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(invariants["violations"], json!([]));
    first.stop();
    second.stop();
    db.drop_db().await;
}

/// Logs written into a pipe (or a file) carry no ANSI colour codes: `allot serve` with its
/// standard error piped logs its start-up lines in plain text, and one access-log line per
/// request.
#[test]
fn logs_into_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}", dir.path().join("allot.db").display());
    let (port, metrics_port) = (crate::server::free_port(), crate::server::free_port());
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--db",
            &db,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .env("ALLOT_ADMIN_PASSWORD", "correct horse battery")
        .env("ALLOT_LOG", "info")
        .env_remove("ALLOT_LOG_JSON")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start allot serve");
    // Read the log until the server says it listens (the line after start-up's work), then
    // make one request and read on until its access-log line.
    let mut logs = String::new();
    let stderr = child.stderr.take().expect("stderr");
    let mut requested = false;
    for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
        let Ok(line) = line else { break };
        logs.push_str(&line);
        logs.push('\n');
        if line.contains("allot listening") && !requested {
            requested = true;
            use std::io::{Read, Write};
            let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .expect("send");
            let mut answer = String::new();
            conn.read_to_string(&mut answer).ok();
        }
        if line.contains("route=/healthz") {
            break;
        }
    }
    child.kill().expect("stop the server");
    child.wait().ok();
    assert!(logs.contains("allot listening"), "{logs}");
    // One access-log line per request: method, matched route, status, duration, request id.
    let access = logs
        .lines()
        .find(|l| l.contains("route=/healthz"))
        .unwrap_or_else(|| panic!("no access-log line: {logs}"));
    for field in ["method=GET", "status=200", "ms=", "request_id="] {
        assert!(access.contains(field), "{field} missing from {access:?}");
    }
    assert!(
        !logs.contains('\u{1b}'),
        "ANSI escape codes in piped logs: {logs:?}"
    );
}

/// A port already taken: `serve` says which address and how to choose another, and exits
/// non-zero without a panic.
#[test]
fn a_failed_bind_names_the_address_and_the_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("take a port");
    let addr = taken.local_addr().expect("address");
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}", dir.path().join("allot.db").display());
    let out = Command::new(BIN)
        .args(["serve", "--db", &db, "--listen", &addr.to_string()])
        .args([
            "--metrics-listen",
            &format!("127.0.0.1:{}", crate::server::free_port()),
        ])
        .env("ALLOT_ADMIN_PASSWORD", "correct horse battery")
        .output()
        .expect("run allot serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot listen on {addr}: address already in use (set --listen or ALLOT_LISTEN)"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// No server at the URL: the admin command names the URL and how to change it.
#[test]
fn an_unreachable_server_is_named_with_the_setting() {
    // A port nobody listens on: bound, then released.
    let port = crate::server::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let out = Command::new(BIN)
        .args(["status"])
        .env("ALLOT_URL", &url)
        .env("ALLOT_TOKEN", "allot_nothing")
        .output()
        .expect("run allot");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach the allot server at {url}: ")),
        "{stderr}"
    );
    assert!(stderr.contains("(set --url or ALLOT_URL)"), "{stderr}");
}

/// The tamper-evident audit: `GET /v1/audit/head` names the chain's last record, and
/// `allot audit verify` on the store says the chain is intact, then, after an outside edit of one
/// record (Python's own sqlite3), names that record and exits non-zero.
#[tokio::test]
async fn audit_chain_head_and_offline_verification_catch_an_edit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("allot.db");
    let db = format!("sqlite://{}", file.display());
    let server = Server::start(&db, Some("chain-admin-pass")).await;
    let url = server.url.clone();
    let token = token_of(&url, "admin", "chain-admin-pass").await;
    cli(
        &url,
        &token,
        &[
            "product",
            "add",
            "--owner",
            "SuperOffice",
            "--name",
            "crm",
            "--seats",
            "2",
        ],
    );
    cli(&url, &token, &["user", "add", "--login", "ann"]);
    cli(
        &url,
        &token,
        &["assign", "--user", "ann", "--product", "SuperOffice/crm"],
    );
    let head: Value = reqwest::Client::new()
        .get(format!("{url}/v1/audit/head"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let trail = cli_lines(&url, &token, &["audit"]);
    let last = trail
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .max()
        .unwrap();
    assert_eq!(head["seq"].as_i64(), Some(last), "{head}");
    let hash = head["hash"].as_str().unwrap();
    assert_eq!(hash.len(), 64, "{head}");
    server.stop();

    let verify = |json: bool| {
        let mut args = vec![
            "audit",
            "verify",
            "--db",
            db.as_str(),
            "--tenant",
            "default",
        ];
        if json {
            args.push("--json");
        }
        Command::new(BIN).args(&args).output().unwrap()
    };
    let out = verify(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_lines(
        &String::from_utf8(out.stdout).unwrap(),
        &["audit", "verify"],
    );
    assert_eq!(report[0]["intact"], true, "{report:?}");
    assert_eq!(report[0]["head"]["hash"].as_str(), Some(hash));

    crate::server::run_python("tamper_audit.py", &[file.to_str().unwrap(), "2"]);
    let out = verify(false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "an edited chain must fail: {stdout}");
    assert!(stdout.contains("BROKEN at record 2"), "{stdout}");
}

/// The operator's path through `allot backup`, `allot restore` and `allot copy`, as the real
/// binary: a backup taken while the server runs, restored into a new file (and refused over a
/// store that holds data), copied to PostgreSQL, and a server started on the copy answers with
/// the same login, holdings and audit chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restore_and_copy_to_postgres_through_the_binary() {
    let Some(pg) = common::TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("live.db").display());
    let server = Server::start(&db, Some("backup-admin-pass")).await;
    let token = token_of(&server.url, "admin", "backup-admin-pass").await;
    cli(
        &server.url,
        &token,
        &[
            "product",
            "add",
            "--owner",
            "SuperOffice",
            "--name",
            "crm",
            "--seats",
            "3",
        ],
    );
    cli(&server.url, &token, &["user", "add", "--login", "ann"]);
    cli(
        &server.url,
        &token,
        &["assign", "--user", "ann", "--product", "SuperOffice/crm"],
    );
    let head_before: Value = reqwest::Client::new()
        .get(format!("{}/v1/audit/head", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let run = |args: &[&str]| Command::new(BIN).args(args).output().unwrap();
    let backup = dir.path().join("backup.db");
    let out = run(&["backup", "--db", &db, "--to", backup.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server goes on meanwhile; the later change is not in the backup.
    cli(&server.url, &token, &["user", "add", "--login", "late"]);
    server.stop();

    let restored = format!("sqlite://{}", dir.path().join("restored.db").display());
    let out = run(&[
        "restore",
        "--from",
        backup.to_str().unwrap(),
        "--db",
        &restored,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_lines(&String::from_utf8(out.stdout).unwrap(), &["restore"]);
    assert_eq!(report[0]["tenants_verified"], 1, "{report:?}");
    assert_eq!(report[0]["rows"]["users"], 1, "{report:?}");
    // Over a store that holds data, only with --force.
    let out = run(&["restore", "--from", backup.to_str().unwrap(), "--db", &db]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(&["copy", "--from", &restored, "--to", &pg.url(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // (The password only seeds an empty store; this one has its admin from the copy.)
    let server = Server::start(&pg.url(), Some("backup-admin-pass")).await;
    let token = token_of(&server.url, "admin", "backup-admin-pass").await;
    let users = cli_lines(&server.url, &token, &["user", "list"]);
    let logins: Vec<&str> = users.iter().filter_map(|u| u["login"].as_str()).collect();
    assert_eq!(logins, ["ann"], "{users:?}");
    let head_after: Value = reqwest::Client::new()
        .get(format!("{}/v1/audit/head", server.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Logging in appended to the copy's chain: the copied records are below it, intact.
    assert!(head_after["seq"].as_i64() >= head_before["seq"].as_i64());
    server.stop();
    let out = run(&["audit", "verify", "--db", &pg.url()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    pg.drop_db().await;
}
