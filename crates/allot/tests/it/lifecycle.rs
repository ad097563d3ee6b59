//! Seat lifecycle and the admin commands that used to exist only in the API, through the real
//! binary: `allot seats remove`, `allot harvest` (and the server's scheduled harvest),
//! `allot login|logout`, `allot tenant`, `allot logins`, `allot tokens`.

use crate::server::{BIN, Server, python};

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Runs the binary with only the environment given (no ALLOT_TOKEN of the caller's, a config
/// directory of the test's own), feeding `stdin` when given.
fn allot(config_dir: &Path, env: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_remove("ALLOT_TOKEN")
        .env_remove("ALLOT_URL")
        .env("ALLOT_CONFIG_DIR", config_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run allot");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().expect("wait for allot")
}

fn ok(out: Output, args: &[&str]) -> String {
    assert!(
        out.status.success(),
        "allot {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

struct Admin<'a> {
    dir: &'a Path,
    url: &'a str,
    token: &'a str,
}

impl Admin<'_> {
    fn run(&self, args: &[&str]) -> Output {
        allot(
            self.dir,
            &[("ALLOT_URL", self.url), ("ALLOT_TOKEN", self.token)],
            args,
            None,
        )
    }

    fn json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = args.to_vec();
        all.push("--json");
        lines(&ok(self.run(&all), args))
    }
}

async fn password_token(url: &str, tenant: &str, login: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{url}/v1/auth/login"))
        .json(&json!({ "tenant": tenant, "login": login, "password": password }))
        .send()
        .await
        .unwrap()
}

async fn token_of(url: &str, login: &str, password: &str) -> String {
    let answer: Value = password_token(url, "default", login, password)
        .await
        .json()
        .await
        .unwrap();
    answer["token"].as_str().unwrap().to_owned()
}

async fn status_with(url: &str, token: &str, path: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{url}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Seats removed (free ones only: 409 saying how many are free otherwise), a month-idle seat
/// listed by `allot harvest --dry-run` and then released by the server's own schedule, audited
/// with the reason `idle`; an exempt user's seat kept.
#[tokio::test]
async fn seats_removal_and_the_scheduled_harvest() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("allot.db");
    let db = format!("sqlite://{}", file.display());
    let config = dir.path().join("allot.toml");
    std::fs::write(&config, "harvest_interval = 1\n").unwrap();
    let server = Server::start_with(&db, Some("harvest-admin-pass"), Some(&config)).await;
    let url = server.url.clone();
    let token = token_of(&url, "admin", "harvest-admin-pass").await;
    let admin = Admin {
        dir: dir.path(),
        url: &url,
        token: &token,
    };
    admin.json(&[
        "product",
        "add",
        "--owner",
        "SuperOffice",
        "--name",
        "user",
        "--seats",
        "4",
    ]);
    for login in ["ann", "bob"] {
        admin.json(&["user", "add", "--login", login]);
        admin.json(&["assign", "--user", login, "--product", "SuperOffice/user"]);
    }
    // Three asked, two free: refused, with the count, by the CLI and by the API.
    let out = admin.run(&[
        "seats",
        "remove",
        "--product",
        "SuperOffice/user",
        "--count",
        "3",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("only 2 free seat(s)"), "{stderr}");
    let answer = reqwest::Client::new()
        .post(format!("{url}/v1/products/SuperOffice%2Fuser/seats/remove"))
        .bearer_auth(&token)
        .json(&json!({ "count": 3 }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 409);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_enough_free_seats");
    let removed = admin.json(&[
        "seats",
        "remove",
        "--product",
        "SuperOffice/user",
        "--count",
        "1",
    ]);
    assert_eq!(removed, [json!({ "changed": 1 })]);
    let pools = admin.json(&["status"]);
    assert_eq!(
        (pools[0]["total"].as_i64(), pools[0]["in_use"].as_i64()),
        (Some(3), Some(2))
    );

    admin.json(&[
        "harvest",
        "policy",
        "--product",
        "SuperOffice/user",
        "--idle-days",
        "30",
    ]);
    admin.json(&["harvest", "exempt", "--user", "bob"]);
    let policies = admin.json(&["harvest", "policies"]);
    assert_eq!(policies[0]["idle_days"], 30);
    assert_eq!(policies[0]["action"], "release");
    let exempt = admin.json(&["harvest", "exempted"]);
    assert_eq!(exempt.len(), 1);
    assert_eq!(exempt[0]["login"], "bob");
    assert!(admin.json(&["harvest", "--dry-run"]).is_empty());
    // A month passes for the seats (the server's clock cannot be moved: the store's times are,
    // by an outside edit with Python's own sqlite3).
    let month = 31_i64 * 86_400 * 1_000_000;
    let script = format!(
        "import sqlite3; c = sqlite3.connect({:?}); c.execute('PRAGMA busy_timeout = 5000'); \
         c.execute('UPDATE seats SET held_since = held_since - {month} WHERE holder_id IS NOT NULL'); c.commit()",
        file.display().to_string()
    );
    let status = Command::new(python())
        .args(["-c", &script])
        .status()
        .unwrap();
    assert!(status.success());
    // The server's schedule (every second here) reclaims Ann's seat; Bob is exempt.
    let started = Instant::now();
    loop {
        let held = admin.json(&["seats", "list", "--user", "ann"]);
        if held.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the scheduled harvest never ran"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(admin.json(&["seats", "list", "--user", "bob"]).len(), 1);
    let trail = admin.json(&["audit"]);
    let release = trail
        .iter()
        .find(|e| e["action"] == "seat.release")
        .expect("the release is audited");
    assert_eq!(release["actor"], "harvest");
    assert_eq!(release["detail"]["reason"], "idle");
    assert!(release["detail"]["idle_days"].as_i64().unwrap() >= 31);
    // Nothing left idle but the exempt, listed with why it stays.
    let left = admin.json(&["harvest", "--dry-run"]);
    let left: Vec<(&str, &str, bool)> = left
        .iter()
        .map(|s| {
            (
                s["login"].as_str().unwrap(),
                s["exempt"].as_str().unwrap_or("-"),
                s["released"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(left, [("bob", "user", false)]);
    // A report-only policy lists Bob's idle seat once he is no longer exempt, and keeps it
    // (the schedule runs meanwhile too).
    admin.json(&[
        "harvest",
        "policy",
        "--product",
        "SuperOffice/user",
        "--idle-days",
        "30",
        "--report-only",
    ]);
    admin.json(&["harvest", "exempt", "--user", "bob", "--undo"]);
    let done = admin.json(&["harvest"]);
    assert_eq!(done.len(), 1);
    assert_eq!(
        (
            done[0]["login"].as_str(),
            done[0]["action"].as_str(),
            done[0]["released"].as_bool()
        ),
        (Some("bob"), Some("report"), Some(false))
    );
    assert_eq!(admin.json(&["seats", "list", "--user", "bob"]).len(), 1);
    admin.json(&["harvest", "clear", "--product", "SuperOffice/user"]);
    let human = ok(admin.run(&["harvest", "--dry-run"]), &["harvest"]);
    assert_eq!(human.trim(), "no idle seats");
    server.stop();
}

/// `allot login` keeps a token (0600) the other commands use without ALLOT_TOKEN, `allot
/// logout` revokes and forgets it; tenants, logins and tokens are managed by the binary.
#[tokio::test]
async fn login_tenants_logins_and_tokens_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("allot.db");
    let db = format!("sqlite://{}", file.display());
    let server = Server::start(&db, Some("cli-admin-pass")).await;
    let url = server.url.clone();
    let home = dir.path().join("config");
    let env = [("ALLOT_URL", url.as_str())];

    // Not logged in: the commands say the token is missing.
    let out = allot(&home, &env, &["user", "list"], None);
    assert!(!out.status.success());
    let wrong = allot(
        &home,
        &env,
        &["login", "--login", "admin", "--password-stdin"],
        Some("nope-nope-nope\n"),
    );
    assert!(!wrong.status.success());
    assert!(!home.join("token.json").exists());
    let args = ["login", "--login", "admin", "--password-stdin", "--json"];
    let answer = lines(&ok(
        allot(&home, &env, &args, Some("cli-admin-pass\n")),
        &args,
    ));
    assert_eq!(answer[0]["role"], "admin");
    assert!(answer[0].get("token").is_none(), "the token is not printed");
    let saved = home.join("token.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let kept: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let kept_token = kept["token"].as_str().unwrap().to_owned();
    // Every other command now runs on the kept token (no ALLOT_TOKEN, and the URL from the
    // file too).
    let args = ["user", "add", "--login", "ann", "--json"];
    ok(allot(&home, &[], &args, None), &args);

    // Logins: add (password from stdin), list (no hashes), passwd.
    let args = [
        "logins",
        "add",
        "--login",
        "rita",
        "--role",
        "reader",
        "--password-stdin",
        "--json",
    ];
    let added = lines(&ok(
        allot(&home, &env, &args, Some("rita-password-1\n")),
        &args,
    ));
    assert_eq!(
        added[0],
        json!({ "login": "rita", "role": "reader", "user": null })
    );
    let args = [
        "logins",
        "add",
        "--login",
        "ann",
        "--role",
        "user",
        "--user",
        "ann",
        "--password-stdin",
        "--json",
    ];
    let added = lines(&ok(
        allot(&home, &env, &args, Some("ann-password-1\n")),
        &args,
    ));
    assert_eq!(added[0]["user"], 1);
    let args = ["logins", "list", "--json"];
    let listed = lines(&ok(allot(&home, &env, &args, None), &args));
    let names: Vec<&str> = listed
        .iter()
        .map(|l| l["login"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "ann", "rita"]);
    assert!(listed.iter().all(|l| l.get("password_hash").is_none()));
    assert_eq!(
        password_token(&url, "default", "rita", "rita-password-1")
            .await
            .status()
            .as_u16(),
        200
    );
    let args = [
        "logins",
        "passwd",
        "--login",
        "rita",
        "--password-stdin",
        "--json",
    ];
    let changed = lines(&ok(
        allot(&home, &env, &args, Some("rita-password-2\n")),
        &args,
    ));
    // The password, and the one token Rita's login above was issued (revoked with it).
    assert_eq!(changed[0]["changed"], 2);
    assert_eq!(
        password_token(&url, "default", "rita", "rita-password-1")
            .await
            .status()
            .as_u16(),
        401
    );
    assert_eq!(
        password_token(&url, "default", "rita", "rita-password-2")
            .await
            .status()
            .as_u16(),
        200
    );

    // Tokens: add, list, revoke.
    let args = [
        "tokens", "add", "--role", "reader", "--label", "ci", "--json",
    ];
    let issued = lines(&ok(allot(&home, &env, &args, None), &args));
    let ci_token = issued[0]["token"].as_str().unwrap().to_owned();
    let ci_id = issued[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(status_with(&url, &ci_token, "/v1/users").await, 200);
    let args = ["tokens", "list", "--json"];
    let listed = lines(&ok(allot(&home, &env, &args, None), &args));
    assert!(
        listed
            .iter()
            .any(|t| t["id"] == ci_id.as_str() && t["label"] == "ci")
    );
    let human = ok(
        allot(&home, &env, &["tokens", "list"], None),
        &["tokens", "list"],
    );
    assert!(human.starts_with("ID"), "{human}");
    let args = ["tokens", "revoke", "--id", &ci_id, "--json"];
    assert_eq!(
        lines(&ok(allot(&home, &env, &args, None), &args))[0]["changed"],
        1
    );
    assert_eq!(status_with(&url, &ci_token, "/v1/users").await, 401);

    // Tenants: an operator token creates and lists them; the new tenant's admin logs in.
    let args = ["operator-token", "--db", &db];
    let operator = ok(allot(&home, &[], &args, None), &args).trim().to_owned();
    let op_env = [
        ("ALLOT_URL", url.as_str()),
        ("ALLOT_TOKEN", operator.as_str()),
    ];
    let args = [
        "tenant",
        "add",
        "--name",
        "acme",
        "--admin",
        "boss",
        "--password-stdin",
        "--json",
    ];
    let created = lines(&ok(
        allot(&home, &op_env, &args, Some("boss-password-1\n")),
        &args,
    ));
    assert_eq!(created[0]["name"], "acme");
    let args = ["tenant", "list", "--json"];
    let tenants = lines(&ok(allot(&home, &op_env, &args, None), &args));
    let names: Vec<&str> = tenants
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["default", "acme"]);
    assert_eq!(
        password_token(&url, "acme", "boss", "boss-password-1")
            .await
            .status()
            .as_u16(),
        200
    );

    // Logout revokes the kept token and removes the file.
    let args = ["logout", "--json"];
    let out = lines(&ok(allot(&home, &env, &args, None), &args));
    assert_eq!(out[0], json!({ "logged_out": true, "revoked": true }));
    assert!(!saved.exists());
    assert_eq!(status_with(&url, &kept_token, "/v1/users").await, 401);
    let out = ok(allot(&home, &env, &["logout"], None), &["logout"]);
    assert_eq!(out.trim(), "not logged in");
    server.stop();
}

/// `allot import`: a CSV with good and bad rows (each bad one named by row, field and reason;
/// the good ones applied), a dry run that writes nothing, a second run that changes nothing,
/// JSON lines too; `POST /v1/batch` refuses more than 1,000 operations.
#[tokio::test]
async fn import_reports_bad_rows_applies_good_ones_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("allot.db");
    let db = format!("sqlite://{}", file.display());
    let server = Server::start(&db, Some("import-admin-pass")).await;
    let url = server.url.clone();
    let token = token_of(&url, "admin", "import-admin-pass").await;
    let admin = Admin {
        dir: dir.path(),
        url: &url,
        token: &token,
    };
    admin.json(&[
        "product",
        "add",
        "--owner",
        "SuperOffice",
        "--name",
        "user",
        "--seats",
        "10",
    ]);
    admin.json(&[
        "product",
        "add",
        "--owner",
        "SuperOffice",
        "--name",
        "web",
        "--seats",
        "1",
    ]);
    let csv = dir.path().join("users.csv");
    std::fs::write(
        &csv,
        "login,first_name,last_name,email,company,licenses\n\
         ann,Ann,Smith,ann@example.com,Acme,SuperOffice/user;SuperOffice/web\n\
         ,No,Login,x@example.com,,\n\
         bob,Bob,Jones,bob@example.com,Acme,SuperOffice/user\n\
         cid,Cid,,cid@example.com,,nonsense\n\
         dan,Dan,,dan@example.com,Other,SuperOffice/web\n\
         eve,Eve,,eve\u{7}@example.com,,\n",
    )
    .unwrap();
    let path = csv.to_str().unwrap();
    let report = |args: &[&str]| {
        let mut all = args.to_vec();
        all.push("--json");
        let out = admin.run(&all);
        (
            out.status.success(),
            lines(&String::from_utf8(out.stdout).unwrap()),
        )
    };
    // Dry run: the same report, nothing written.
    let (success, dry) = report(&["import", path, "--dry-run"]);
    assert!(!success, "bad rows make the command fail");
    let summary = dry.last().unwrap();
    assert_eq!(summary["dry_run"], true);
    assert_eq!(
        (
            summary["rows"].as_u64(),
            summary["applied"].as_u64(),
            summary["failed"].as_u64()
        ),
        (Some(6), Some(2), Some(4))
    );
    assert!(
        admin.json(&["user", "list"]).is_empty(),
        "a dry run writes nothing"
    );

    let (success, first) = report(&["import", path]);
    assert!(!success);
    let bad: Vec<(u64, &str)> = first[..first.len() - 1]
        .iter()
        .map(|b| (b["row"].as_u64().unwrap(), b["field"].as_str().unwrap()))
        .collect();
    // Row 3 has no login, row 5 a malformed license, row 6 wants the one web seat Ann took,
    // row 7 a control character in its email.
    assert_eq!(
        bad,
        [(3, "login"), (5, "licenses"), (6, "licenses"), (7, "email")]
    );
    assert!(
        first[2]["reason"]
            .as_str()
            .unwrap()
            .contains("no free seat"),
        "{:?}",
        first[2]
    );
    let summary = first.last().unwrap();
    assert_eq!(
        (summary["applied"].as_u64(), summary["failed"].as_u64()),
        (Some(2), Some(4))
    );
    // Ann: company Acme made, user, two licenses; Bob (Acme exists): user, one license.
    assert_eq!(summary["changed"], 6);
    let users = admin.json(&["user", "list"]);
    let logins: Vec<&str> = users.iter().map(|u| u["login"].as_str().unwrap()).collect();
    assert_eq!(logins, ["ann", "bob"]);
    assert_eq!(
        admin.json(&["company", "list"]).len(),
        1,
        "the refused row made no company"
    );
    let views = admin.json(&["user", "licenses", "--user", "ann"]);
    assert_eq!(views.iter().filter(|v| v["assigned"] == true).count(), 2);

    // Twice: nothing changes.
    let (_, second) = report(&["import", path]);
    assert_eq!(second.last().unwrap()["changed"], 0);
    assert_eq!(second.last().unwrap()["applied"], 2);

    // JSON lines; the human report names rows.
    let jsonl = dir.path().join("users.jsonl");
    std::fs::write(
        &jsonl,
        "{\"login\": \"fay\", \"email\": \"fay@example.com\", \"licenses\": [\"SuperOffice/user\"]}\n\
         {\"login\": \"gus\", \"shoe_size\": 44}\n\
         {\"login\": \"bob\", \"email\": \"bob@acme.test\"}\n",
    )
    .unwrap();
    let out = admin.run(&["import", jsonl.to_str().unwrap()]);
    assert!(!out.status.success());
    let human = String::from_utf8(out.stdout).unwrap();
    assert!(human.contains("row 2: shoe_size: unknown field"), "{human}");
    assert!(
        human.contains("3 rows: 2 applied, 1 failed, 3 changes"),
        "{human}"
    );

    // The batch endpoint takes 1,000 operations at most.
    let op = json!({ "op": "assign", "user": "ann", "product": "SuperOffice/user" });
    let too_many = reqwest::Client::new()
        .post(format!("{url}/v1/batch"))
        .bearer_auth(&token)
        .json(&json!({ "operations": vec![op.clone(); 1001] }))
        .send()
        .await
        .unwrap();
    assert_eq!(too_many.status().as_u16(), 422);
    let answer: Value = reqwest::Client::new()
        .post(format!("{url}/v1/batch"))
        .bearer_auth(&token)
        .json(&json!({ "operations": [op, { "op": "assign", "user": "nobody", "product": "SuperOffice/user" }] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["results"][0], json!({ "ok": true, "changed": 0 }));
    assert_eq!(answer["results"][1]["ok"], false);
    assert_eq!(answer["results"][1]["error"]["code"], "unknown_user");
    server.stop();
}

/// `allot import` with a `groups` column: users join the groups named (a group missing is
/// made), the group's license follows, a bad group name is a bad row, and a second run
/// changes nothing; then `allot harvest exempt --group` and `harvest exempted --groups`.
#[tokio::test]
async fn import_joins_groups_and_groups_can_be_exempt_from_the_harvest() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("allot.db");
    let db = format!("sqlite://{}", file.display());
    let server = Server::start(&db, Some("import-admin-pass")).await;
    let url = server.url.clone();
    let token = token_of(&url, "admin", "import-admin-pass").await;
    let admin = Admin {
        dir: dir.path(),
        url: &url,
        token: &token,
    };
    admin.json(&[
        "product",
        "add",
        "--owner",
        "SuperOffice",
        "--name",
        "crm",
        "--seats",
        "5",
    ]);
    admin.json(&["groups", "add", "--name", "Sales"]);
    admin.json(&[
        "groups",
        "licenses",
        "add",
        "--group",
        "Sales",
        "--product",
        "SuperOffice/crm",
    ]);
    let csv = dir.path().join("users.csv");
    std::fs::write(
        &csv,
        "login,email,groups\n\
         ann,ann@example.com,sales;Support\n\
         bob,bob@example.com,Sales\n\
         cid,cid@example.com,Bad\u{7}Group\n",
    )
    .unwrap();
    let path = csv.to_str().unwrap();
    let report = |args: &[&str]| {
        let mut all = args.to_vec();
        all.push("--json");
        let out = admin.run(&all);
        lines(&String::from_utf8(out.stdout).unwrap())
    };
    let first = report(&["import", path]);
    let summary = first.last().unwrap();
    assert_eq!(
        (summary["applied"].as_u64(), summary["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        (first[0]["row"].as_u64(), first[0]["field"].as_str()),
        (Some(4), Some("groups"))
    );
    // Ann: user, Support made, two joins; Bob: user, one join.
    assert_eq!(summary["changed"], 6);
    let sales = admin.json(&["groups", "show", "--group", "Sales"]);
    let mut members: Vec<&str> = sales[0]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["login"].as_str().unwrap())
        .collect();
    members.sort();
    assert_eq!(members, ["ann", "bob"]);
    let support = admin.json(&["groups", "show", "--group", "support"]);
    assert_eq!(support[0]["members"].as_array().unwrap().len(), 1);
    let views = admin.json(&["user", "licenses", "--user", "bob"]);
    assert!(
        views
            .iter()
            .any(|v| v["product"]["name"] == "crm" && v["assigned"] == true),
        "{views:?}"
    );
    let second = report(&["import", path]);
    assert_eq!(second.last().unwrap()["changed"], 0);
    let jsonl = dir.path().join("users.jsonl");
    std::fs::write(
        &jsonl,
        "{\"login\": \"dan\", \"groups\": [\"Sales\", \"\"]}\n",
    )
    .unwrap();
    let out = report(&["import", jsonl.to_str().unwrap()]);
    assert_eq!(out.last().unwrap()["changed"], 2);

    let changed = admin.json(&["harvest", "exempt", "--group", "Sales"]);
    assert_eq!(changed[0]["changed"], 1);
    let groups = admin.json(&["harvest", "exempted", "--groups"]);
    assert_eq!(
        groups
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["Sales"]
    );
    let changed = admin.json(&["harvest", "exempt", "--group", "Sales", "--undo"]);
    assert_eq!(changed[0]["changed"], 1);
    assert!(admin.json(&["harvest", "exempted", "--groups"]).is_empty());
    let out = admin.run(&["harvest", "exempt", "--group", "nobody"]);
    assert!(!out.status.success());
    server.stop();
}
