//! The MSP360 dialect against the real `allot` binary, driven by Python clients: the seed pages'
//! `requests` samples (grant, revoke, release; each checked in the ledger afterwards) and the
//! PyPI `msp360` client. On SQLite and on PostgreSQL (required in CI).

use allot_ledger::testing as common;

use crate::server::{Server, run_python};
use allot_ledger::{Ledger, SeatFilter, TenantId, UserRef};
use common::TestDb;
use serde_json::{Value, json};
use uuid::Uuid;

const PASSWORD: &str = "e2e admin password";

struct Setup {
    server: Server,
    http: reqwest::Client,
    native: String,
    msp: String,
}

impl Setup {
    async fn start(db: &TestDb) -> Setup {
        let server = Server::start(&db.url(), Some(PASSWORD)).await;
        let http = reqwest::Client::new();
        let native = http
            .post(format!("{}/v1/auth/login", server.url))
            .json(&json!({ "tenant": "default", "login": "admin", "password": PASSWORD }))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let login = http
            .post(format!("{}/api/Provider/Login", server.url))
            .json(&json!({ "UserName": "admin", "Password": PASSWORD }))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(login["expires_in"], 1_209_599, "{login}");
        let msp = login["access_token"].as_str().unwrap().to_owned();
        Setup {
            server,
            http,
            native,
            msp,
        }
    }

    async fn native(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let r = self
            .http
            .request(method, format!("{}{path}", self.server.url))
            .bearer_auth(&self.native)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn msp(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> String {
        let mut req = self
            .http
            .request(method, format!("{}/api/{path}", self.server.url))
            .bearer_auth(&self.msp);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.text().await.unwrap()
    }

    async fn create_user(&self, login: &str) -> Uuid {
        let id = self
            .msp(
                reqwest::Method::POST,
                "Users",
                Some(json!({ "Email": login, "Password": "secret1", "Enabled": true })),
            )
            .await;
        serde_json::from_str::<String>(&id)
            .unwrap()
            .parse()
            .unwrap()
    }

    fn python(&self, script: &str, args: &[&str]) -> String {
        let mut all = vec![self.server.url.as_str(), "admin", PASSWORD];
        all.extend_from_slice(args);
        run_python(script, &all)
    }
}

async fn ledger_of(db: &TestDb) -> (Ledger, TenantId) {
    let ledger = Ledger::open(&db.url()).await.unwrap();
    let tenant = ledger.tenant("default").await.unwrap().unwrap().id;
    (ledger, tenant)
}

async fn seed_samples_and_the_pypi_client(db: TestDb) {
    let s = Setup::start(&db).await;
    // Buying licenses is not part of the MSP360 API: the native API does it.
    let product = s
        .native(
            reqwest::Method::POST,
            "/v1/products",
            json!({ "owner": "MSP360", "name": "ultimate", "description": "Ultimate", "seats": 2 }),
        )
        .await;
    let product_id = product["id"].as_i64().unwrap();
    let licenses: Value =
        serde_json::from_str(&s.msp(reqwest::Method::GET, "Licenses", None).await).unwrap();
    let ids: Vec<String> = licenses
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ID"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);
    let (license, spare) = (ids[0].clone(), ids[1].clone());
    let seat: Uuid = license.parse().unwrap();
    let charlie = s.create_user("charlie").await;
    let other = s.create_user("other").await;
    let (ledger, tenant) = ledger_of(&db).await;
    let charlie_id = ledger
        .user(tenant, &UserRef::Uuid(charlie))
        .await
        .unwrap()
        .id;
    let counts = || async {
        let p = ledger
            .pool_status(tenant, Some(product_id))
            .await
            .unwrap()
            .remove(0);
        (p.total, p.in_use, p.free)
    };

    // Grant, in the samples' style: 200 with no body (so the sample returns 0).
    let out = s.python(
        "msp360_seed_samples.py",
        &["grant", &license, &charlie.to_string()],
    );
    assert!(out.contains("200\n") && out.contains("RESULT 0"), "{out}");
    assert_eq!(
        ledger.seat(tenant, seat).await.unwrap().holder,
        Some(charlie_id)
    );
    assert_eq!(counts().await, (2, 1, 1));

    // The computer is bound (MSP360 API) and the agent activates the license (native API).
    s.msp(
        reqwest::Method::POST,
        "Computers/HW-E2E/authorization",
        Some(json!({ "UserId": charlie, "ComputerName": "charlie-pc", "OperatingSystem": "Windows 11" })),
    )
    .await;
    s.native(
        reqwest::Method::POST,
        &format!("/v1/seats/{seat}/activate"),
        json!({ "hardware_id": "HW-E2E", "computer_name": "charlie-pc", "operating_system": "Windows 11" }),
    )
    .await;
    assert!(
        ledger
            .seat(tenant, seat)
            .await
            .unwrap()
            .activation
            .is_some()
    );

    // Revoke (seed sample): the computer is cleared, the manual user keeps the license.
    let out = s.python(
        "msp360_seed_samples.py",
        &["revoke", &license, &charlie.to_string()],
    );
    assert!(out.contains("200\n") && out.contains("RESULT 0"), "{out}");
    let after = ledger.seat(tenant, seat).await.unwrap();
    assert_eq!((after.holder, after.activation), (Some(charlie_id), None));
    assert_eq!(counts().await, (2, 1, 1));
    let computers = ledger.computers(tenant, Some(charlie_id)).await.unwrap();
    assert_eq!(computers.len(), 1, "the computer stays bound to its user");

    // Release by the wrong user: the sample prints the 400, then trips over its own bug.
    let out = s.python(
        "msp360_seed_samples.py",
        &["release", &license, &other.to_string()],
    );
    assert!(out.contains("Error :400"), "{out}");
    assert!(out.contains("SAMPLE-BUG TypeError"), "{out}");
    assert_eq!(
        ledger.seat(tenant, seat).await.unwrap().holder,
        Some(charlie_id)
    );

    // Release (seed sample): the license is back in the pool.
    let out = s.python(
        "msp360_seed_samples.py",
        &["release", &license, &charlie.to_string()],
    );
    assert!(out.contains("200\n") && out.contains("RESULT 0"), "{out}");
    let after = ledger.seat(tenant, seat).await.unwrap();
    assert_eq!((after.holder, after.activation), (None, None));
    assert_eq!(counts().await, (2, 0, 2));

    // The PyPI client: everything it does that the API supports.
    let out = s.python("msp360_pypi_client.py", &[&spare]);
    let r: Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_eq!(r["logged_in"], true);
    assert_eq!(r["get_users_before"]["ok"].as_array().unwrap().len(), 2);
    assert_eq!(r["get_licenses"]["ok"].as_array().unwrap().len(), 2);
    assert_eq!(
        r["get_licenses_available"]["ok"].as_array().unwrap().len(),
        2
    );
    assert_eq!(r["get_license"]["ok"]["ID"], spare);
    assert_eq!(r["get_license_unknown"]["raised"], "ResourceNotFound");
    assert_eq!(r["get_license_malformed"]["raised"], "ValueError");
    let company = r["create_company"]["ok"].as_str().unwrap();
    assert!(Uuid::parse_str(company).is_ok());
    assert_eq!(r["get_company"]["ok"]["Name"], "PyPI Company");
    assert_eq!(r["get_company"]["ok"]["LicenseSettings"], 1);
    assert_eq!(r["get_company_unknown"]["raised"], "ResourceNotFound");
    let user: Uuid = r["create_user"]["ok"].as_str().unwrap().parse().unwrap();
    // A duplicate is a 400 with a Message here (the real service answers 200 with error
    // text, which the client would turn into ClientError).
    assert_eq!(r["create_user_again"]["raised"], "HTTPStatusError");
    assert_eq!(r["create_user_again"]["status"], 400);
    assert!(
        r["create_user_again"]["body"]
            .as_str()
            .unwrap()
            .contains("Email already exist")
    );
    assert_eq!(r["get_user"]["ok"]["Email"], "pypi-user");
    assert_eq!(r["get_user"]["ok"]["Company"], "PyPI Company");
    assert_eq!(
        r["get_user"]["ok"]["NotificationEmails"],
        json!(["pypi@example.com"])
    );
    assert_eq!(r["get_users_after"]["ok"].as_array().unwrap().len(), 3);
    assert_eq!(r["get_user_computers"]["ok"], json!([]));
    // The wheel's bug: its license methods fail inside httpx, before any request.
    for call in ["grant_license", "revoke_license", "release_license"] {
        assert_eq!(r[call]["raised"], "TypeError", "{call}: {}", r[call]);
    }
    assert_eq!(r["grant_via_post"]["ok"], "");
    assert_eq!(r["license_after_grant"]["ok"]["UserID"], user.to_string());
    assert_eq!(r["revoke_via_post"]["ok"], "");
    assert_eq!(r["release_via_post"]["ok"], "");
    assert_eq!(r["license_after_release"]["ok"]["UserID"], Value::Null);
    assert_eq!(r["grant_again_via_post"]["ok"], "");
    assert_eq!(r["delete_user"]["ok"], Value::Null);
    assert_eq!(r["delete_user_again"]["raised"], "ResourceNotFound");
    assert_eq!(r["delete_user_malformed"]["raised"], "ValueError");
    assert_eq!(r["license_after_delete"]["ok"]["UserID"], Value::Null);
    assert_eq!(r["delete_company"]["ok"], "");
    assert_eq!(r["delete_company_unknown"]["raised"], "ResourceNotFound");
    assert!(
        r["delete_company_unknown"]["message"]
            .as_str()
            .unwrap()
            .contains("not found")
    );
    assert_eq!(r["get_company_deleted"]["raised"], "ResourceNotFound");
    for (call, result) in r["unsupported"].as_object().unwrap() {
        let status = result["status"].as_i64().unwrap_or(0);
        assert!(
            status == 404 || status == 405,
            "{call} should be refused as unsupported: {result}"
        );
    }
    // The ledger agrees: the deleted user holds nothing, the spare seat is free again.
    let pypi = ledger.user(tenant, &UserRef::Uuid(user)).await.unwrap();
    assert!(pypi.retired);
    let held = ledger
        .seats(
            tenant,
            &SeatFilter {
                holder: Some(pypi.id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(held.is_empty());
    assert_eq!(counts().await, (2, 0, 2));
    assert!(ledger.companies(tenant).await.unwrap().is_empty());
    let violations = ledger.check_invariants(tenant).await.unwrap();
    assert!(violations.is_empty(), "{violations:?}");
    ledger.close().await;
    s.server.stop();
    db.drop_db().await;
}

#[tokio::test]
async fn seed_samples_and_pypi_client_sqlite() {
    seed_samples_and_the_pypi_client(TestDb::sqlite()).await;
}

#[tokio::test]
async fn seed_samples_and_pypi_client_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    seed_samples_and_the_pypi_client(db).await;
}
