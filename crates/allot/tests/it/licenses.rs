//! Signed offline license files end to end: the real binary on each store (with a configured
//! license key encryption key), files checked by PyJWT (PyPI) against the served JWK Set, a
//! changed byte and another tenant's signature rejected, the claims compared with the ledger,
//! rotation through `allot keys rotate`, and `allot verify`.

use allot_ledger::testing as common;

use crate::server::{BIN, Server, run_python};

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "licenses-admin-password";
/// 32 bytes in base64 (`openssl rand -base64 32`).
const LICENSE_KEY: &str = "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";

struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn login(url: &str, tenant: &str, login: &str, password: &str) -> Api {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{url}/v1/auth/login"))
            .json(&json!({ "tenant": tenant, "login": login, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let token = r.json::<Value>().await.unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        Api {
            http,
            url: url.to_owned(),
            token,
        }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, body) = self.send(method, path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    /// A license file, checking its media type.
    async fn license(&self, path: &str) -> String {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["content-type"], "application/jwt");
        r.text().await.unwrap()
    }
}

fn allot(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run allot")
}

fn config_with_key(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("allot.toml");
    std::fs::write(
        &path,
        format!("license_key_encryption_key = \"{LICENSE_KEY}\"\n"),
    )
    .unwrap();
    path
}

async fn offline_license_files(db: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_key(dir.path());
    // An operator token, to make a second tenant.
    let out = allot(
        &["operator-token", "--db", db],
        &[("ALLOT_LICENSE_KEY", LICENSE_KEY)],
    );
    assert!(out.status.success(), "{out:?}");
    let operator = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    let server = Server::start_with(db, Some(PASSWORD), Some(&config)).await;
    let url = server.url.clone();
    let admin = Api::login(&url, "default", "admin", PASSWORD).await;

    admin
        .ok(
            "POST",
            "/v1/products",
            Some(json!({ "owner": "SuperOffice", "name": "user", "seats": 2 })),
        )
        .await;
    admin.ok("POST", "/v1/products", Some(json!({ "owner": "SuperOffice", "name": "web", "seats": 1, "prerequisite": "SuperOffice/user" }))).await;
    admin
        .ok(
            "POST",
            "/v1/products",
            Some(json!({ "owner": "SuperOffice", "name": "travel", "seats": 1 })),
        )
        .await;
    let ann = admin
        .ok("POST", "/v1/users", Some(json!({ "login": "ann" })))
        .await;
    admin
        .ok(
            "POST",
            "/v1/users/ann/assignments",
            Some(json!({ "product": "SuperOffice/user" })),
        )
        .await;
    admin
        .ok(
            "POST",
            "/v1/users/ann/assignments",
            Some(json!({ "product": "SuperOffice/web" })),
        )
        .await;
    let seats = admin.ok("GET", "/v1/seats?user=ann", None).await["items"].clone();
    let seats = seats.as_array().unwrap();
    assert_eq!(seats.len(), 2);
    let web_product = admin
        .ok("GET", "/v1/products/SuperOffice%2Fweb", None)
        .await;
    let web_seat = seats
        .iter()
        .find(|s| s["product"] == web_product["id"])
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    admin.ok("POST", &format!("/v1/seats/{web_seat}/activate"), Some(json!({ "hardware_id": "HID-42", "computer_name": "PC42", "operating_system": "Windows" }))).await;

    // The JWK Set needs no credentials; an unknown tenant is a 404 in the API's error shape.
    let r = reqwest::get(format!("{url}/v1/keys?tenant=nobody"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unknown_tenant"
    );

    let user_file = admin.license("/v1/users/ann/license").await;
    let seat_file = admin
        .license(&format!("/v1/seats/{web_seat}/license"))
        .await;
    // An unknown user has no file.
    let (status, _) = admin.send("GET", "/v1/users/nobody/license", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Another tenant's file, signed with its own key.
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/tenants"))
        .bearer_auth(&operator)
        .json(&json!({ "name": "globex", "admin_login": "boss", "admin_password": "globex-password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let globex = Api::login(&url, "globex", "boss", "globex-password").await;
    globex
        .ok("POST", "/v1/users", Some(json!({ "login": "ann" })))
        .await;
    let foreign_file = globex.license("/v1/users/ann/license").await;

    // One byte of the signed payload changed.
    let mut tampered = user_file.clone().into_bytes();
    let at = user_file.find('.').unwrap() + 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();

    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (user_path, seat_path, foreign_path, tampered_path) = (
        write("ann.jwt", &user_file),
        write("seat.jwt", &seat_file),
        write("foreign.jwt", &foreign_file),
        write("tampered.jwt", &tampered),
    );
    let report: Value = serde_json::from_str(&run_python(
        "license_pyjwt.py",
        &[
            &url,
            "default",
            &format!("ok:{user_path}"),
            &format!("ok:{seat_path}"),
            &format!("bad:{foreign_path}"),
            &format!("bad:{tampered_path}"),
        ],
    ))
    .unwrap();
    let first_kid = report["kids"][0].as_str().unwrap().to_owned();
    assert_eq!(report["kids"].as_array().unwrap().len(), 1);

    // The claims PyJWT accepted, against the ledger.
    let claims = &report["files"][&user_path]["claims"];
    assert_eq!(report["files"][&user_path]["kid"], first_kid.as_str());
    assert_eq!(claims["tenant"]["name"], "default");
    assert_eq!(claims["iss"], "allot:default");
    assert_eq!(claims["user"]["id"], ann["id"]);
    assert_eq!(claims["user"]["login"], "ann");
    assert_eq!(claims["sub"], ann["uuid"]);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        7 * 24 * 3600
    );
    let licenses = admin.ok("GET", "/v1/users/ann/licenses", None).await;
    let mut assigned: Vec<String> = licenses
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["assigned"] == true)
        .map(|v| {
            format!(
                "{}/{}",
                v["product"]["owner"].as_str().unwrap(),
                v["product"]["name"].as_str().unwrap()
            )
        })
        .collect();
    let mut in_file: Vec<String> = claims["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["owner"].as_str().unwrap(),
                p["name"].as_str().unwrap()
            )
        })
        .collect();
    assigned.sort();
    in_file.sort();
    assert_eq!(in_file, assigned);
    assert_eq!(in_file, ["SuperOffice/user", "SuperOffice/web"]);
    let mut held: Vec<&str> = seats.iter().map(|s| s["id"].as_str().unwrap()).collect();
    let mut file_seats: Vec<&str> = claims["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    held.sort();
    file_seats.sort();
    assert_eq!(file_seats, held);
    let device = claims["seats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == web_seat.as_str())
        .unwrap()["device"]
        .clone();
    assert_eq!(
        device,
        json!({ "hardware_id": "HID-42", "computer_name": "PC42", "operating_system": "Windows" })
    );
    let seat_claims = &report["files"][&seat_path]["claims"];
    assert_eq!(seat_claims["seats"].as_array().unwrap().len(), 1);
    assert_eq!(seat_claims["seats"][0]["id"], web_seat.as_str());
    assert_eq!(seat_claims["products"][0]["name"], "web");

    // `allot verify` checks offline against the server's keys or a JWK Set file.
    let out = allot(&["verify", &user_path, "--url", &url, "--json"], &[]);
    assert!(out.status.success(), "{out:?}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(&printed, claims);
    let jwks_text = reqwest::get(format!("{url}/v1/keys?tenant=default"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let jwks_path = write("jwks.json", &jwks_text);
    let out = allot(&["verify", &user_path, "--jwks", &jwks_path], &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with("valid license of tenant \"default\" for \"ann\"")
    );
    for bad in [&tampered_path, &foreign_path] {
        let out = allot(&["verify", bad, "--jwks", &jwks_path], &[]);
        assert!(!out.status.success(), "{bad} verified");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("invalid license file"),
            "{out:?}"
        );
    }

    // Rotation: the new key signs, the old file still verifies against the new set.
    let out = allot(
        &["keys", "rotate"],
        &[("ALLOT_URL", &url), ("ALLOT_TOKEN", &admin.token)],
    );
    assert!(out.status.success(), "{out:?}");
    let new_kid = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert_ne!(new_kid, first_kid);
    let rotated_file = admin.license("/v1/users/ann/license").await;
    let rotated_path = write("rotated.jwt", &rotated_file);
    let report: Value = serde_json::from_str(&run_python(
        "license_pyjwt.py",
        &[
            &url,
            "default",
            &format!("ok:{user_path}"),
            &format!("ok:{rotated_path}"),
        ],
    ))
    .unwrap();
    assert_eq!(report["kids"], json!([new_kid, first_kid]));
    assert_eq!(report["files"][&user_path]["kid"], first_kid.as_str());
    assert_eq!(report["files"][&rotated_path]["kid"], new_kid.as_str());
    let audit = admin.ok("GET", "/v1/audit?limit=1000", None).await;
    let key_events = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "signing_key.create")
        .count();
    assert_eq!(key_events, 2);

    // A per-tenant validity.
    let (status, _) = admin
        .send(
            "PUT",
            "/v1/license-settings",
            Some(json!({ "validity_seconds": 5 })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    admin
        .ok(
            "PUT",
            "/v1/license-settings",
            Some(json!({ "validity_seconds": 3600 })),
        )
        .await;
    let short = admin.license("/v1/users/ann/license").await;
    let short_path = write("short.jwt", &short);
    let out = allot(&["verify", &short_path, "--url", &url, "--json"], &[]);
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        printed["exp"].as_i64().unwrap() - printed["iat"].as_i64().unwrap(),
        3600
    );
    server.stop();

    // The keys are sealed with the configured key: a server started without it cannot open
    // them to sign.
    let plain = Server::start(db, Some(PASSWORD)).await;
    let again = Api::login(&plain.url, "default", "admin", PASSWORD).await;
    let (status, body) = again.send("GET", "/v1/users/ann/license", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    plain.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_license_files_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("allot.db").display());
    offline_license_files(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_license_files_on_postgres() {
    let Some(db) = common::TestDb::postgres().await else {
        return;
    };
    offline_license_files(&db.url()).await;
    db.drop_db().await;
}
