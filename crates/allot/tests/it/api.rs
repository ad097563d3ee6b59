//! In-process HTTP tests of the native API (no sockets: `tower::ServiceExt::oneshot`), and the
//! OpenAPI snapshot.

use allot_ledger::testing as common;

use allot::config::{Secret, Settings};
use allot::server::{app, bootstrap};
use allot::state::AppState;
use allot_ledger::{Ledger, ManualClock};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery";

struct TestApp {
    router: Router,
    _db: common::TestDb,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

impl TestApp {
    async fn new() -> TestApp {
        Self::with(|_| {}).await
    }

    async fn with(tune: impl FnOnce(&mut Settings)) -> TestApp {
        Self::build(tune, None).await
    }

    /// A server whose ledger reads the time from `clock` (to let tokens expire).
    async fn with_clock(clock: ManualClock) -> TestApp {
        Self::build(|_| {}, Some(clock)).await
    }

    async fn build(tune: impl FnOnce(&mut Settings), clock: Option<ManualClock>) -> TestApp {
        let db = common::TestDb::sqlite();
        let mut settings = Settings {
            db: Secret::new(db.url()),
            admin_password: Some(Secret::new(PASSWORD)),
            metrics_listen: None,
            ..Settings::default()
        };
        tune(&mut settings);
        // As `allot serve` opens it: with its token cache, so that revocations are seen through it.
        let mut ledger = Ledger::open(&db.url())
            .await
            .unwrap()
            .with_token_cache(settings.token_cache);
        if let Some(clock) = clock {
            ledger = ledger.with_clock(std::sync::Arc::new(clock));
        }
        let state = AppState::new(ledger, settings);
        assert_eq!(
            bootstrap(&state).await.unwrap(),
            None,
            "password was configured"
        );
        TestApp {
            router: app(state),
            _db: db,
        }
    }

    async fn raw(&self, req: Request<Body>) -> Reply {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string()))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        self.raw(req).await
    }

    async fn login(&self, tenant: &str, login: &str, password: &str) -> Reply {
        self.call(
            "POST",
            "/v1/auth/login",
            None,
            Some(json!({ "tenant": tenant, "login": login, "password": password })),
        )
        .await
    }

    async fn admin_token(&self) -> String {
        let r = self.login("default", "admin", PASSWORD).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.body["token"].as_str().unwrap().to_owned()
    }

    async fn token_with_role(&self, admin: &str, role: &str, user: Option<&str>) -> String {
        let r = self
            .call(
                "POST",
                "/v1/tokens",
                Some(admin),
                Some(json!({ "role": role, "user": user, "label": role })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        r.body["token"].as_str().unwrap().to_owned()
    }
}

fn code(r: &Reply) -> &str {
    r.body["error"]["code"]
        .as_str()
        .unwrap_or("<no error code>")
}

#[tokio::test]
async fn admin_manages_products_users_and_assignments() {
    let app = TestApp::new().await;
    let t = app.admin_token().await;
    let t = Some(t.as_str());
    let r = app
        .call(
            "POST",
            "/v1/products",
            t,
            Some(json!({ "owner": "SuperOffice", "name": "user", "seats": 2 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body["status"]["total"], 2);
    let r = app.call("POST", "/v1/products", t, Some(json!({ "owner": "SuperOffice", "name": "web", "seats": 1, "prerequisite": "SuperOffice/user" }))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = app
        .call(
            "POST",
            "/v1/products/SuperOffice%2Fweb/seats",
            t,
            Some(json!({ "count": 2 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(r.body.as_array().unwrap().len(), 2);
    let r = app
        .call(
            "POST",
            "/v1/users",
            t,
            Some(json!({ "login": "ann", "id": 621, "first_name": "Ann" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let uuid = r.body["uuid"].as_str().unwrap().to_owned();
    // The prerequisite first.
    let r = app
        .call(
            "POST",
            "/v1/users/621/assignments",
            t,
            Some(json!({ "product": "SuperOffice/web" })),
        )
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::CONFLICT, "prerequisite_missing")
    );
    assert_eq!(
        r.body["error"]["message"],
        "SuperOffice/web requires SuperOffice/user first"
    );
    let r = app
        .call(
            "POST",
            &format!("/v1/users/{uuid}/assignments"),
            t,
            Some(json!({ "product": 1 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        (
            r.body["assigned"].as_bool(),
            r.body["status"]["in_use"].as_i64()
        ),
        (Some(true), Some(1))
    );
    let r = app
        .call(
            "POST",
            "/v1/users/ann/assignments",
            t,
            Some(json!({ "product": "SuperOffice/web" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app.call("GET", "/v1/users/ann/licenses", t, None).await;
    assert_eq!(
        r.body
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["assigned"] == true)
            .count(),
        2
    );
    let r = app.call("GET", "/v1/seats?user=ann", t, None).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 2);
    // Taking `user` away takes `web` along.
    let r = app
        .call(
            "DELETE",
            "/v1/users/621/assignments/SuperOffice%2Fuser",
            t,
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.body["assigned"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    let r = app.call("GET", "/v1/pools", t, None).await;
    assert!(
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["in_use"] == 0),
        "{:?}",
        r.body
    );
    let r = app.call("GET", "/v1/audit?user=ann", t, None).await;
    let actions: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions[..3],
        ["user.create", "license.assign", "license.assign"]
    );
    assert!(actions.contains(&"license.unassign"));
    assert!(r.body["items"][0]["request_id"].is_string());
    let r = app.call("GET", "/v1/invariants", t, None).await;
    assert_eq!(r.body["violations"], json!([]));
}

#[tokio::test]
async fn seats_can_be_granted_activated_revoked_and_released() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let t = Some(admin.as_str());
    app.call(
        "POST",
        "/v1/products",
        t,
        Some(json!({ "owner": "MSP360", "name": "Ultimate", "seats": 1 })),
    )
    .await;
    app.call(
        "POST",
        "/v1/users",
        t,
        Some(json!({ "login": "bob", "license_mode": "automatic" })),
    )
    .await;
    let seats = app.call("GET", "/v1/seats?available=true", t, None).await;
    let seat = seats.body["items"][0]["id"].as_str().unwrap().to_owned();
    let r = app
        .call(
            "POST",
            &format!("/v1/seats/{seat}/grant"),
            t,
            Some(json!({ "user": "bob" })),
        )
        .await;
    assert_eq!(
        (r.status, r.body["holder"].as_i64()),
        (StatusCode::OK, Some(1)),
        "{:?}",
        r.body
    );
    // A user activates its own seat, never another's (nor a reader anyone's).
    app.call("POST", "/v1/users", t, Some(json!({ "login": "carl" })))
        .await;
    let bob = app.token_with_role(&admin, "user", Some("bob")).await;
    let carl = app.token_with_role(&admin, "user", Some("carl")).await;
    let reader = app.token_with_role(&admin, "reader", None).await;
    for other in [&carl, &reader] {
        let r = app
            .call(
                "POST",
                &format!("/v1/seats/{seat}/activate"),
                Some(other),
                Some(json!({ "hardware_id": "HID9", "computer_name": "PC9" })),
            )
            .await;
        assert_eq!(
            (r.status, code(&r)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{:?}",
            r.body
        );
    }
    let r = app
        .call(
            "POST",
            &format!("/v1/seats/{seat}/activate"),
            Some(&bob),
            Some(json!({ "hardware_id": "HID1", "computer_name": "PC1" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["activation"]["computer_name"], "PC1");
    // The admin may activate it too (here: already done, so nothing changes).
    let r = app
        .call(
            "POST",
            &format!("/v1/seats/{seat}/activate"),
            t,
            Some(json!({ "hardware_id": "HID1", "computer_name": "PC1" })),
        )
        .await;
    assert_eq!(r.body["activation"]["computer_name"], "PC1");
    // Automatic users lose the seat on revoke.
    let r = app
        .call(
            "POST",
            &format!("/v1/seats/{seat}/revoke"),
            t,
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["holder"].clone()),
        (StatusCode::OK, Value::Null)
    );
    app.call(
        "POST",
        &format!("/v1/seats/{seat}/grant"),
        t,
        Some(json!({ "user": 1 })),
    )
    .await;
    let r = app
        .call(
            "POST",
            &format!("/v1/seats/{seat}/release"),
            t,
            Some(json!({ "user": "nobody" })),
        )
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::NOT_FOUND, "unknown_user")
    );
    let r = app
        .call(
            "POST",
            &format!("/v1/seats/{seat}/release"),
            t,
            Some(json!({ "user": "bob" })),
        )
        .await;
    assert_eq!(
        (r.status, r.body["holder"].clone()),
        (StatusCode::OK, Value::Null)
    );
    let r = app
        .call(
            "POST",
            "/v1/seats/00000000-0000-0000-0000-000000000000/grant",
            t,
            Some(json!({ "user": "bob" })),
        )
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::NOT_FOUND, "unknown_seat")
    );
    let r = app
        .call(
            "POST",
            "/v1/seats/not-a-uuid/grant",
            t,
            Some(json!({ "user": "bob" })),
        )
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::BAD_REQUEST, "invalid_path")
    );
}

/// A copy of an answer with its per-run values (ids, secrets, times) replaced by their kind, so
/// the shape can be snapshotted.
fn volatile_out(v: &Value) -> Value {
    let mut v = v.clone();
    if let Value::Object(map) = &mut v {
        for (key, value) in map.iter_mut() {
            let kind = match key.as_str() {
                "id" | "seat" if value.is_string() => "[uuid]",
                "lease_token" => "[secret]",
                k if k.ends_with("_at") && value.is_string() => "[time]",
                _ => continue,
            };
            *value = Value::String(kind.into());
        }
    }
    v
}

#[tokio::test]
async fn sessions_take_floating_seats_and_fence_their_leases() {
    let app = TestApp::new().await;
    let t = app.admin_token().await;
    let t = Some(t.as_str());
    app.call(
        "POST",
        "/v1/products",
        t,
        Some(json!({ "owner": "SuperOffice", "name": "float", "seats": 1, "kind": "floating" })),
    )
    .await;
    app.call(
        "POST",
        "/v1/users",
        t,
        Some(json!({ "login": "ann", "password": "ann-password-1" })),
    )
    .await;
    app.call("POST", "/v1/users", t, Some(json!({ "login": "bob" })))
        .await;
    // Ann logs in herself (a user-role login) and opens a session for herself only.
    let ann = app.login("default", "ann", "ann-password-1").await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .call(
            "POST",
            "/v1/sessions",
            Some(&ann),
            Some(json!({ "user": "bob", "client": "web" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = app.call("POST", "/v1/sessions", Some(&ann), Some(json!({ "user": "ann", "client": "windows", "product": "SuperOffice/float", "lease_seconds": 60 }))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // The contract: `{id, lease_token, expires_at, ...}` at the top level, the session's other
    // fields and the floating seat alongside.
    let (id, lease) = (
        r.body["id"].as_str().unwrap().to_owned(),
        r.body["lease_token"].as_str().unwrap().to_owned(),
    );
    assert!(r.body.get("session").is_none(), "{:?}", r.body);
    assert_eq!(r.body["expires_at"], r.body["lease_expires_at"]);
    assert!(r.body["seat"].is_string(), "a floating seat is held");
    insta::assert_json_snapshot!("session_opened", volatile_out(&r.body));
    let r = app
        .call(
            "POST",
            "/v1/sessions",
            t,
            Some(json!({ "user": "bob", "client": "web", "product": "SuperOffice/float" })),
        )
        .await;
    assert_eq!((r.status, code(&r)), (StatusCode::CONFLICT, "no_seat_free"));
    let r = app
        .call(
            "POST",
            &format!("/v1/sessions/{id}/heartbeat"),
            Some(&ann),
            Some(json!({ "lease_token": "wrong" })),
        )
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::FORBIDDEN, "bad_lease_token")
    );
    let r = app
        .call(
            "POST",
            &format!("/v1/sessions/{id}/heartbeat"),
            Some(&ann),
            Some(json!({ "lease_token": lease })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        (r.body["id"].as_str(), r.body["lease_token"].as_str()),
        (Some(id.as_str()), Some(lease.as_str())),
        "a renewed lease answers in the same shape"
    );
    let r = app.call("GET", "/v1/sessions", Some(&ann), None).await;
    assert_eq!(r.body["items"].as_array().unwrap().len(), 1);
    // A user ends its own session with the lease token.
    let req = Request::builder()
        .method("DELETE")
        .uri(format!("/v1/sessions/{id}"))
        .header("authorization", format!("Bearer {ann}"))
        .header("lease-token", &lease)
        .body(Body::empty())
        .unwrap();
    let r = app.raw(req).await;
    assert_eq!(
        (r.status, r.body["changed"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    let r = app
        .call(
            "POST",
            "/v1/sessions",
            t,
            Some(json!({ "user": "bob", "client": "web", "product": "SuperOffice/float" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app
        .call(
            "POST",
            "/v1/sessions/logoff",
            t,
            Some(json!({ "users": ["bob"], "client": "web" })),
        )
        .await;
    assert_eq!(r.body["changed"], 1);
}

#[tokio::test]
async fn roles_limit_what_a_token_may_do() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    app.call(
        "POST",
        "/v1/users",
        Some(&admin),
        Some(json!({ "login": "ann" })),
    )
    .await;
    app.call(
        "POST",
        "/v1/users",
        Some(&admin),
        Some(json!({ "login": "bob" })),
    )
    .await;
    let reader = app.token_with_role(&admin, "reader", None).await;
    let ann = app.token_with_role(&admin, "user", Some("ann")).await;
    assert_eq!(
        app.call("GET", "/v1/products", Some(&reader), None)
            .await
            .status,
        StatusCode::OK
    );
    let r = app
        .call(
            "POST",
            "/v1/products",
            Some(&reader),
            Some(json!({ "owner": "o", "name": "n" })),
        )
        .await;
    assert_eq!((r.status, code(&r)), (StatusCode::FORBIDDEN, "forbidden"));
    let r = app
        .call(
            "POST",
            "/v1/users/ann/assignments",
            Some(&ann),
            Some(json!({ "product": 1 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.call("GET", "/v1/users/ann/licenses", Some(&ann), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.call("GET", "/v1/users/bob/licenses", Some(&ann), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call("GET", "/v1/audit", Some(&ann), None).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call("GET", "/v1/tokens", Some(&reader), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // Revoked tokens stop working at once.
    let list = app.call("GET", "/v1/tokens", Some(&admin), None).await;
    let reader_id = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["role"] == "reader")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .call(
            "DELETE",
            &format!("/v1/tokens/{reader_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.body["changed"], 1);
    assert_eq!(
        app.call("GET", "/v1/products", Some(&reader), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Tokens never appear in listings.
    assert!(!list.body.to_string().contains(&reader));
}

#[tokio::test]
async fn tenants_see_nothing_of_each_other() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    app.call(
        "POST",
        "/v1/products",
        Some(&admin),
        Some(json!({ "owner": "SuperOffice", "name": "crm", "seats": 3 })),
    )
    .await;
    // Only an operator creates tenants.
    let r = app.call("POST", "/v1/tenants", Some(&admin), Some(json!({ "name": "globex", "admin_login": "root", "admin_password": "globex-password" }))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let url = app._db.url();
    let ledger = Ledger::open(&url).await.unwrap();
    let (op, hash) = allot::auth::new_token();
    ledger
        .issue_operator_token(&hash, "test", ledger.now_time() + time::Duration::hours(1))
        .await
        .unwrap();
    // A refused admin login leaves no tenant behind (one transaction), so the name is free.
    let r = app.call("POST", "/v1/tenants", Some(&op), Some(json!({ "name": "globex", "admin_login": "ro\u{7}ot", "admin_password": "globex-password" }))).await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
        "{:?}",
        r.body
    );
    assert!(ledger.tenant("globex").await.unwrap().is_none());
    let r = app.call("POST", "/v1/tenants", Some(&op), Some(json!({ "name": "globex", "admin_login": "root", "admin_password": "globex-password" }))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    // Operators see no tenant's ledger.
    assert_eq!(
        app.call("GET", "/v1/products", Some(&op), None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let other = app.login("globex", "root", "globex-password").await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app.call("GET", "/v1/products", Some(&other), None).await;
    assert_eq!(r.body, json!({ "items": [], "next": null }));
    assert_eq!(
        app.call("GET", "/v1/products/1", Some(&other), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let audit = app.call("GET", "/v1/audit", Some(&other), None).await;
    let actions: Vec<&str> = audit.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "tenant.create",
            "signing_key.create",
            "login.create",
            "token.issue"
        ]
    );
    // The other tenant's admin login does not work in the first tenant.
    assert_eq!(
        app.login("default", "root", "globex-password").await.status,
        StatusCode::UNAUTHORIZED
    );
    ledger.close().await;
}

#[tokio::test]
async fn bad_input_gets_the_documented_errors_and_the_server_keeps_serving() {
    let app = TestApp::with(|s| s.max_body = 4096).await;
    let t = app.admin_token().await;
    let post = |body: &'static str, ct: Option<&'static str>| {
        let mut req = Request::builder()
            .method("POST")
            .uri("/v1/products")
            .header("authorization", format!("Bearer {t}"));
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.body(Body::from(body)).unwrap()
    };
    let r = app
        .raw(post("{\"owner\": \"x\", ", Some("application/json")))
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );
    let r = app
        .raw(post(
            "{\"owner\": 1, \"name\": \"x\"}",
            Some("application/json"),
        ))
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    let r = app
        .raw(post(
            "{\"owner\": \"o\", \"name\": \"x\", \"colour\": \"red\"}",
            Some("application/json"),
        ))
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    let r = app
        .raw(post("{\"owner\": \"o\", \"name\": \"x\"}", None))
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );
    // A charset other than UTF-8 is refused, not read as UTF-8 anyway; UTF-8 in any spelling is fine.
    for charset in ["utf-16", "\"UTF-16LE\"", "latin1"] {
        let content_type: &'static str =
            Box::leak(format!("application/json; charset={charset}").into_boxed_str());
        let r = app
            .raw(post(
                "{\"owner\": \"o\", \"name\": \"u16\", \"seats\": 1}",
                Some(content_type),
            ))
            .await;
        assert_eq!(
            (r.status, code(&r)),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            "{charset}"
        );
    }
    let r = app
        .raw(post(
            "{\"owner\": \"o\", \"name\": \"u8\", \"seats\": 1}",
            Some("application/json; Charset=\"UTF-8\""),
        ))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let big: &'static str = Box::leak(
        format!("{{\"owner\": \"{}\", \"name\": \"x\"}}", "a".repeat(10_000)).into_boxed_str(),
    );
    let r = app.raw(post(big, Some("application/json"))).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{:?}", r.body);
    let r = app
        .call(
            "POST",
            "/v1/products",
            Some(&t),
            Some(json!({ "owner": "o", "name": "", "seats": 1 })),
        )
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
    );
    let r = app
        .call(
            "POST",
            "/v1/products",
            Some(&t),
            Some(json!({ "owner": "o", "name": "n", "seats": -5 })),
        )
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
    );
    let r = app
        .call("GET", "/v1/seats?limit=many", Some(&t), None)
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::BAD_REQUEST, "invalid_query")
    );
    for (bad, expected) in [
        ("Bearer nope", "token_unknown"),
        ("Basic YWRtaW46eA==", "token_missing"),
        ("Bearer", "token_missing"),
        ("Bearer   ", "token_missing"),
        ("", "token_missing"),
    ] {
        let req = Request::builder()
            .uri("/v1/products")
            .header("authorization", bad)
            .body(Body::empty())
            .unwrap();
        let r = app.raw(req).await;
        assert_eq!(
            (r.status, code(&r)),
            (StatusCode::UNAUTHORIZED, expected),
            "{bad:?}"
        );
        assert!(r.headers.contains_key("www-authenticate"));
    }
    let r = app.call("GET", "/v1/nothing-here", Some(&t), None).await;
    assert_eq!((r.status, code(&r)), (StatusCode::NOT_FOUND, "not_found"));
    let r = app.call("PUT", "/v1/products", Some(&t), None).await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    let r = app.call("GET", "/healthz", None, None).await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    assert!(r.headers.contains_key("x-request-id"));
    assert_eq!(
        app.call("GET", "/readyz", None, None).await.status,
        StatusCode::OK
    );
}

/// A 401 says whether the bearer token was missing, unknown, expired or revoked: a distinct code
/// and message each, in the API's one error shape, never repeating the token.
#[tokio::test]
async fn a_401_says_why_the_token_was_refused() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = TestApp::with_clock(clock.clone()).await;
    let admin = app.admin_token().await;
    let short = app
        .call(
            "POST",
            "/v1/tokens",
            Some(&admin),
            Some(json!({ "role": "reader", "ttl_hours": 1 })),
        )
        .await;
    assert_eq!(short.status, StatusCode::CREATED, "{:?}", short.body);
    let short_token = short.body["token"].as_str().unwrap().to_owned();
    let revoked = app
        .call(
            "POST",
            "/v1/tokens",
            Some(&admin),
            Some(json!({ "role": "reader" })),
        )
        .await;
    let revoked_token = revoked.body["token"].as_str().unwrap().to_owned();
    let revoked_id = revoked.body["id"].as_str().unwrap();
    let r = app
        .call(
            "DELETE",
            &format!("/v1/tokens/{revoked_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // Live before its hour is up.
    let r = app
        .call("GET", "/v1/products", Some(&short_token), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    clock.advance(time::Duration::hours(1));
    // The expired token with its last digit changed: well-formed, but never issued.
    let last = if short_token.ends_with('0') { '1' } else { '0' };
    let unknown = format!("{}{last}", &short_token[..short_token.len() - 1]);
    let cases = [
        (None, "token_missing", "no Authorization header"),
        (
            Some(unknown.as_str()),
            "token_unknown",
            "not one this server issued",
        ),
        (Some(short_token.as_str()), "token_expired", "has expired"),
        (
            Some(revoked_token.as_str()),
            "token_revoked",
            "has been revoked",
        ),
    ];
    for (token, expected, says) in cases {
        let r = app.call("GET", "/v1/products", token, None).await;
        assert_eq!(
            (r.status, code(&r)),
            (StatusCode::UNAUTHORIZED, expected),
            "{:?}",
            r.body
        );
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
        assert!(
            token.is_none_or(|t| !message.contains(t) && !message.contains(&t[6..20])),
            "the token is not echoed: {message}"
        );
        let challenge = r.headers["www-authenticate"].to_str().unwrap();
        assert_eq!(
            challenge.contains("invalid_token"),
            token.is_some(),
            "{challenge}"
        );
    }
    // A wrong password is a login failure, not a token one.
    let r = app.login("default", "admin", "wrong-password").await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
}

#[tokio::test]
async fn failed_logins_are_throttled() {
    let app = TestApp::new().await;
    for _ in 0..5 {
        let r = app.login("default", "admin", "wrong-password").await;
        assert_eq!(
            (r.status, code(&r)),
            (StatusCode::UNAUTHORIZED, "unauthorized")
        );
    }
    // Unknown logins and tenants answer exactly like wrong passwords.
    assert_eq!(
        app.login("default", "ghost", "whatever-pass").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("nowhere", "admin", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    app.login("default", "admin", "wrong-password").await;
    let r = app.login("default", "admin", PASSWORD).await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts")
    );
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(wait >= 1);
}

#[tokio::test]
async fn changing_a_password_revokes_its_tokens() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let second = app.admin_token().await;
    let r = app
        .call(
            "PUT",
            "/v1/logins/admin/password",
            Some(&admin),
            Some(json!({ "password": "a brand new password" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        app.call("GET", "/v1/products", Some(&second), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("default", "admin", "a brand new password")
            .await
            .status,
        StatusCode::OK
    );
    let r = app
        .call(
            "PUT",
            "/v1/logins/admin/password",
            Some(&admin),
            Some(json!({ "password": "short" })),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::UNAUTHORIZED,
        "the old token was revoked too"
    );
}

#[tokio::test]
async fn requests_are_rate_limited_per_client_address() {
    let app = TestApp::with(|s| s.rate_limit = 2).await; // bursts of 4
    let from = |addr: &str, path: &str| {
        let mut req = Request::builder().uri(path).body(Body::empty()).unwrap();
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
        req
    };
    for _ in 0..4 {
        assert_eq!(
            app.raw(from("10.1.1.1:5000", "/v1/products")).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = app.raw(from("10.1.1.1:5001", "/v1/products")).await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
    );
    assert!(r.headers.contains_key("retry-after"));
    // Another address has its own allowance; probes are never limited.
    assert_eq!(
        app.raw(from("10.1.1.2:5000", "/v1/products")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.raw(from("10.1.1.1:5002", "/healthz")).await.status,
        StatusCode::OK
    );
}

#[test]
fn openapi_declares_every_path_parameter_error_status_and_query_filter() {
    let doc: Value = serde_json::from_str(&allot::api::openapi_json()).unwrap();
    let mut problems = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let in_template: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let declared: Vec<&str> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            let mut a = in_template.clone();
            let mut b = declared.clone();
            a.sort_unstable();
            b.sort_unstable();
            if a != b {
                problems.push(format!("{method} {path}: template {a:?}, declared {b:?}"));
            }
            // The server's own answers (auth, validation, size, throttling, overload) are documented.
            for status in ["400", "401", "415", "422", "429", "503"] {
                if op["responses"][status].is_null() {
                    problems.push(format!("{method} {path}: {status} undocumented"));
                }
            }
            for p in &params {
                // List filters are optional; the one query parameter that is not is the tenant
                // of the unauthenticated key set (without credentials, nothing else names it).
                let tenant_of_keys = path == "/v1/keys" && p["name"] == "tenant";
                if p["in"] == "query" && p["required"] == true && !tenant_of_keys {
                    problems.push(format!("{method} {path}: query {} required", p["name"]));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    let audit = &doc["paths"]["/v1/audit"]["get"]["parameters"];
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "limit" && p["in"] == "query"),
        "{audit}"
    );
}

/// JSON does not tell 2 from 2.0, and JSON Schema calls both an integer: a whole-numbered float
/// binds to an integer field; a fractional one is still refused.
#[tokio::test]
async fn whole_numbered_floats_bind_as_integers() {
    let app = TestApp::new().await;
    let t = app.admin_token().await;
    let r = app
        .call(
            "POST",
            "/v1/products",
            Some(&t),
            Some(json!({ "owner": "Float", "name": "whole", "seats": 2.0 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = app
        .call(
            "PUT",
            "/v1/license-settings",
            Some(&t),
            Some(json!({ "validity_seconds": 3.6e3 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["validity_seconds"], 3600);
    let r = app
        .call(
            "POST",
            "/v1/products",
            Some(&t),
            Some(json!({ "owner": "Float", "name": "half", "seats": 2.5 })),
        )
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    // A body is an object: serde alone would bind a struct from an array, field by field.
    let r = app
        .call(
            "PATCH",
            "/v1/companies/1",
            Some(&t),
            Some(json!([null, null])),
        )
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
}

/// The request bodies declare what the server enforces, so a client generated from the document
/// sends only what is accepted (issue 16 item 6; schemathesis checks the same from outside).
#[test]
fn openapi_declares_the_constraints_the_server_enforces() {
    let doc: Value = serde_json::from_str(&allot::api::openapi_json()).unwrap();
    let schemas = &doc["components"]["schemas"];
    let name = &schemas["NewProductRequest"]["properties"]["name"];
    assert_eq!(name["minLength"], 1, "{name}");
    assert_eq!(name["maxLength"], 400, "{name}");
    assert!(name["pattern"].is_string(), "{name}");
    let password = &schemas["PasswordRequest"]["properties"]["password"];
    assert_eq!(
        (password["minLength"].clone(), password["maxLength"].clone()),
        (json!(8), json!(1024)),
        "{password}"
    );
    let count = &schemas["AddSeatsRequest"]["properties"]["count"];
    assert_eq!(
        (count["minimum"].clone(), count["maximum"].clone()),
        (json!(1), json!(100_000)),
        "{count}"
    );
    let validity = &schemas["LicenseSettings"]["properties"]["validity_seconds"];
    assert_eq!(validity["minimum"], 60, "{validity}");
    let since = doc["paths"]["/v1/audit"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "since")
        .unwrap()["schema"]
        .clone();
    assert_eq!(since["format"], "date-time", "{since}");
}

#[test]
fn openapi_document_matches_the_snapshot() {
    let doc: Value = serde_json::from_str(&allot::api::openapi_json()).unwrap();
    assert!(doc["paths"]["/v1/users/{user}/assignments"]["post"].is_object());
    insta::assert_json_snapshot!("openapi", doc);
}

#[tokio::test]
async fn groups_give_their_licenses_and_disabled_users_lose_theirs() {
    let app = TestApp::new().await;
    let admin = app.admin_token().await;
    let t = Some(admin.as_str());
    let r = app
        .call(
            "POST",
            "/v1/products",
            t,
            Some(json!({ "owner": "SuperOffice", "name": "crm", "seats": 1 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    for login in ["ann", "bob"] {
        let r = app
            .call(
                "POST",
                "/v1/users",
                t,
                Some(json!({ "login": login, "password": PASSWORD })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    let r = app
        .call("POST", "/v1/groups", t, Some(json!({ "name": "Sales" })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let id = r.body["id"].as_i64().unwrap();
    let r = app
        .call("POST", "/v1/groups", t, Some(json!({ "name": "sales" })))
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::CONFLICT, "already_exists")
    );
    let r = app
        .call("POST", "/v1/groups", t, Some(json!({ "name": "" })))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let r = app
        .call(
            "POST",
            &format!("/v1/groups/{id}/licenses"),
            t,
            Some(json!({ "product": "SuperOffice/crm" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    for login in ["ann", "bob"] {
        let r = app
            .call(
                "POST",
                "/v1/groups/Sales/members",
                t,
                Some(json!({ "user": login })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    // One seat: ann holds it, bob waits; the group says so, and so do the users' views.
    let r = app.call("GET", &format!("/v1/groups/{id}"), t, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let states: Vec<(String, String)> = r.body["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["login"].as_str().unwrap().to_owned(),
                a["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("ann".into(), "active".into()),
            ("bob".into(), "waiting".into())
        ]
    );
    assert_eq!(r.body["assignments"][1]["reason"], "no_free_seat");
    assert_eq!(r.body["members"].as_array().unwrap().len(), 2);
    assert_eq!(r.body["licenses"][0]["product_name"], "SuperOffice/crm");
    let r = app.call("GET", "/v1/users/ann/licenses", t, None).await;
    let crm = &r.body.as_array().unwrap()[0];
    assert_eq!(crm["assigned"], true);
    assert_eq!(crm["reasons"], json!(["group:Sales"]));
    let r = app.call("GET", "/v1/users/bob/licenses", t, None).await;
    assert_eq!(r.body[0]["groups"][0]["state"], "waiting");
    let r = app.call("GET", "/v1/users/ann/groups", t, None).await;
    assert_eq!(r.body[0]["name"], "Sales");
    // ann is disabled: her seat goes to bob, her token and her login are refused.
    let ann = app.login("default", "ann", PASSWORD).await.body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.call("GET", "/v1/users/ann", Some(&ann), None)
            .await
            .status,
        StatusCode::OK
    );
    let r = app.call("POST", "/v1/users/ann/disable", t, None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        app.call("GET", "/v1/users/ann", Some(&ann), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("default", "ann", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    let r = app.call("GET", "/v1/users/ann", t, None).await;
    assert_eq!(r.body["disabled"], true);
    let r = app.call("GET", "/v1/users/bob/licenses", t, None).await;
    assert_eq!(r.body[0]["reasons"], json!(["group:Sales"]));
    let r = app
        .call(
            "POST",
            "/v1/users/ann/assignments",
            t,
            Some(json!({ "product": "SuperOffice/crm" })),
        )
        .await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::CONFLICT, "user_disabled")
    );
    // Enabled: she can log in again (the old token stays revoked) and queues for a seat.
    assert_eq!(
        app.call("POST", "/v1/users/ann/enable", t, None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.login("default", "ann", PASSWORD).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.call("GET", "/v1/users/ann", Some(&ann), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let r = app.call("GET", "/v1/users/ann/licenses", t, None).await;
    assert_eq!(r.body[0]["groups"][0]["state"], "waiting");
    // The tenant may keep disabled users' seats.
    let r = app
        .call(
            "PUT",
            "/v1/directory-settings",
            t,
            Some(json!({ "disabled_keep_seats": true })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        app.call("GET", "/v1/directory-settings", t, None)
            .await
            .body["disabled_keep_seats"],
        true
    );
    // Removing bob hands the seat to ann; removing the license, renaming, deleting.
    let r = app
        .call("DELETE", "/v1/groups/sales/members/bob", t, None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["assignments"][0]["state"], "active");
    let r = app
        .call(
            "PATCH",
            &format!("/v1/groups/{id}"),
            t,
            Some(json!({ "name": "Field" })),
        )
        .await;
    assert_eq!(
        (r.status, r.body["name"].as_str()),
        (StatusCode::OK, Some("Field"))
    );
    let r = app
        .call(
            "DELETE",
            &format!("/v1/groups/{id}/licenses/SuperOffice%2Fcrm"),
            t,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(r.body["assignments"].as_array().unwrap().is_empty());
    let r = app.call("GET", "/v1/users/ann/licenses", t, None).await;
    assert_eq!(r.body[0]["assigned"], false);
    let r = app
        .call("DELETE", &format!("/v1/groups/{id}"), t, None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app.call("GET", &format!("/v1/groups/{id}"), t, None).await;
    assert_eq!(
        (r.status, code(&r)),
        (StatusCode::NOT_FOUND, "unknown_group")
    );
    let r = app.call("GET", "/v1/groups", t, None).await;
    assert!(r.body["items"].as_array().unwrap().is_empty());
    let r = app.call("GET", "/v1/invariants", t, None).await;
    assert_eq!(r.body["violations"], json!([]), "{:?}", r.body);
}

/// A seat price over HTTP: set on create, changed and removed by PATCH, refused with the field
/// named; the usage answers (JSON and CSV) then price the unused seats, by hand: 3 seats, one
/// held from 09:20, at 25.92 EUR per seat and 30 days (0.00001 a seat-second).
#[tokio::test]
async fn seat_prices_cost_the_unused_seats_in_the_usage_answers() {
    let start = time::macros::datetime!(2026-11-23 09:00 UTC);
    let clock = ManualClock::new(start);
    let app = TestApp::with_clock(clock.clone()).await;
    let admin = app.admin_token().await;
    let t = Some(admin.as_str());
    let r = app
        .call(
            "POST",
            "/v1/products",
            t,
            Some(json!({ "owner": "SuperOffice", "name": "crm", "seats": 3,
                         "seat_price_per_30_days": { "amount": "25.92", "currency": "EUR" } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    assert_eq!(
        r.body["seat_price_per_30_days"],
        json!({ "amount": "25.9200", "currency": "EUR" })
    );
    let r = app
        .call("POST", "/v1/users", t, Some(json!({ "login": "ann" })))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    clock.advance(time::Duration::minutes(20));
    let r = app
        .call(
            "POST",
            "/v1/users/ann/assignments",
            t,
            Some(json!({ "product": "SuperOffice/crm" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    clock.advance(time::Duration::minutes(100)); // 11:00
    let range = "from=2026-11-23T09:00:00Z&to=2026-11-23T11:00:00Z&step=hour";
    let r = app
        .call(
            "GET",
            &format!("/v1/products/SuperOffice%2Fcrm/usage?{range}"),
            t,
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // 09:00-10:00: 3 x 3600 - 2400 = 8400 unused seat-seconds = 0.0840; 10:00-11:00: 7200 =
    // 0.0720; in all 0.1560 EUR.
    assert_eq!(r.body["points"][0]["unused_seat_cost"], "0.0840");
    assert_eq!(r.body["points"][1]["unused_seat_cost"], "0.0720");
    assert_eq!(
        (
            r.body["unused_seat_cost"].as_str(),
            r.body["currency"].as_str()
        ),
        (Some("0.1560"), Some("EUR"))
    );
    let r = app
        .call("GET", &format!("/v1/usage?{range}"), t, None)
        .await;
    assert_eq!(
        r.body["products"][0]["unused_seat_cost"], "0.1560",
        "{:?}",
        r.body
    );
    let req = Request::builder()
        .uri(format!("/v1/products/1/usage?{range}"))
        .header("authorization", format!("Bearer {admin}"))
        .header("accept", "text/csv")
        .body(Body::empty())
        .unwrap();
    let r = app.raw(req).await;
    let text = r.body.as_str().expect("csv").to_owned();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "product_id,owner,product,at,total,in_use_max,in_use_avg,denied,unused_seat_seconds,unused_seat_cost,currency",
            "1,SuperOffice,crm,2026-11-23T09:00:00Z,3,1,0.6666666666666666,0,8400,0.0840,EUR",
            "1,SuperOffice,crm,2026-11-23T10:00:00Z,3,1,1.0,0,7200,0.0720,EUR",
        ]
    );

    // Refused, each naming what is wrong; the price stays.
    let cases = [
        (
            json!({ "amount": "1", "currency": "eur" }),
            "invalid",
            "seat_price_per_30_days.currency",
        ),
        (
            json!({ "amount": "1.23456", "currency": "EUR" }),
            "invalid_body",
            "more than four decimal places",
        ),
        (
            json!({ "amount": "-1", "currency": "EUR" }),
            "invalid_body",
            "no sign",
        ),
        (
            json!({ "amount": 1.5, "currency": "EUR" }),
            "invalid_body",
            "expected a string",
        ),
        (
            json!({ "amount": "1" }),
            "invalid_body",
            "missing field `currency`",
        ),
    ];
    for (price, expected, words) in cases {
        let r = app
            .call(
                "PATCH",
                "/v1/products/1",
                t,
                Some(json!({ "seat_price_per_30_days": price })),
            )
            .await;
        assert_eq!(
            (r.status, code(&r)),
            (StatusCode::UNPROCESSABLE_ENTITY, expected),
            "{price}: {:?}",
            r.body
        );
        assert!(
            r.body["error"]["message"].as_str().unwrap().contains(words),
            "{price}: {:?}",
            r.body
        );
    }
    let r = app.call("GET", "/v1/products/1", t, None).await;
    assert_eq!(r.body["seat_price_per_30_days"]["amount"], "25.9200");
    // Changed, then removed with null.
    let r = app
        .call(
            "PATCH",
            "/v1/products/1",
            t,
            Some(json!({ "seat_price_per_30_days": { "amount": "100", "currency": "USD" } })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(
        r.body["seat_price_per_30_days"],
        json!({ "amount": "100.0000", "currency": "USD" })
    );
    let r = app
        .call(
            "PATCH",
            "/v1/products/1",
            t,
            Some(json!({ "seat_price_per_30_days": null })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert!(
        r.body.get("seat_price_per_30_days").is_none(),
        "{:?}",
        r.body
    );
    let r = app
        .call("GET", &format!("/v1/products/1/usage?{range}"), t, None)
        .await;
    assert!(
        r.body.get("unused_seat_cost").is_none()
            && r.body["points"][0].get("unused_seat_cost").is_none(),
        "{:?}",
        r.body
    );
}

/// The usage history over HTTP: JSON (snapshot of its shape), CSV with a header row, every
/// product at once, and the errors of a bad range, with the ledger's clock moved by hand.
#[tokio::test]
async fn usage_history_answers_json_and_csv_and_refuses_bad_ranges() {
    let start = time::macros::datetime!(2026-11-23 09:00 UTC);
    let clock = ManualClock::new(start);
    let app = TestApp::with_clock(clock.clone()).await;
    let admin = app.admin_token().await;
    let t = Some(admin.as_str());
    let r = app
        .call(
            "POST",
            "/v1/products",
            t,
            Some(json!({ "owner": "SuperOffice", "name": "crm", "seats": 2 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    for login in ["ann", "bob", "cid"] {
        let r = app
            .call("POST", "/v1/users", t, Some(json!({ "login": login })))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    // 09:15 ann, 09:30 bob take a seat; 09:45 cid is refused: none is free.
    for (login, status) in [
        ("ann", StatusCode::OK),
        ("bob", StatusCode::OK),
        ("cid", StatusCode::CONFLICT),
    ] {
        clock.advance(time::Duration::minutes(15));
        let r = app
            .call(
                "POST",
                &format!("/v1/users/{login}/assignments"),
                t,
                Some(json!({ "product": "SuperOffice/crm" })),
            )
            .await;
        assert_eq!(r.status, status, "{login}: {:?}", r.body);
    }
    clock.advance(time::Duration::minutes(45)); // 10:30
    let reader = app.token_with_role(&admin, "reader", None).await;
    let range = "from=2026-11-23T09:00:00Z&to=2026-11-23T11:00:00Z&step=hour";
    let r = app
        .call(
            "GET",
            &format!("/v1/products/SuperOffice%2Fcrm/usage?{range}"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    // 09:00-10:00 held 0, 1, 2, 2 for a quarter each: mean 1.25, peak 2, one refusal; 10:00 on,
    // carried over up to now (10:30).
    assert_eq!(r.body["points"][0]["in_use_avg"], 1.25);
    insta::assert_json_snapshot!("usage_product", r.body);

    let csv_get = |path: String| {
        let app = &app;
        let reader = reader.clone();
        async move {
            let req = Request::builder()
                .uri(path)
                .header("authorization", format!("Bearer {reader}"))
                .header("accept", "text/csv")
                .body(Body::empty())
                .unwrap();
            app.raw(req).await
        }
    };
    let r = csv_get(format!("/v1/products/1/usage?{range}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "text/csv; charset=utf-8");
    let text = r.body.as_str().expect("csv is text").to_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "product_id,owner,product,at,total,in_use_max,in_use_avg,denied,unused_seat_seconds,unused_seat_cost,currency",
            "1,SuperOffice,crm,2026-11-23T09:00:00Z,2,2,1.25,1,2700,,",
            "1,SuperOffice,crm,2026-11-23T10:00:00Z,2,2,2.0,0,0,,",
        ]
    );
    // Every product at once, as JSON and as CSV.
    let r = app
        .call("GET", &format!("/v1/usage?{range}"), Some(&reader), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["step"], "hour");
    assert_eq!(r.body["products"][0]["product"]["name"], "crm");
    assert_eq!(r.body["products"][0]["points"].as_array().unwrap().len(), 2);
    let r = csv_get(format!("/v1/usage?{range}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.as_str().unwrap(), text);
    // Defaults: the last day by the hour.
    let r = app
        .call("GET", "/v1/products/1/usage", Some(&reader), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.body["step"], "hour");
    assert_eq!(r.body["points"].as_array().unwrap().len(), 25);

    // Bad ranges, each with its own status and code.
    let cases = [
        (
            "/v1/products/1/usage?from=2026-11-23T10:00:00Z&to=2026-11-23T09:00:00Z",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            "/v1/products/1/usage?from=2025-11-23T09:00:00Z&step=minute",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            "/v1/products/1/usage?step=week",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/usage?from=yesterday",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/products/99/usage",
            StatusCode::NOT_FOUND,
            "unknown_product",
        ),
    ];
    for (path, status, expected) in cases {
        let r = app.call("GET", path, Some(&reader), None).await;
        assert_eq!(
            (r.status, code(&r)),
            (status, expected),
            "{path}: {:?}",
            r.body
        );
    }
    let r = app.call("GET", "/v1/usage", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// A seat its holder uses only through a dialect's license check (SuperOffice's
/// `GetUserLicenses` and `GetUserAndInstallationLicenceStatus`, called by the user itself) is
/// not idle; a seat only an administrator looked at through the same calls is.
#[tokio::test]
async fn dialect_license_checks_by_the_holder_keep_a_seat_from_the_harvest() {
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = TestApp::with_clock(clock.clone()).await;
    let admin = app.admin_token().await;
    let t = Some(admin.as_str());
    let r = app
        .call(
            "POST",
            "/v1/products",
            t,
            Some(json!({ "owner": "SuperOffice", "name": "crm", "seats": 3 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    for (login, id) in [("ann", 701), ("bob", 702), ("cid", 703)] {
        let r = app
            .call(
                "POST",
                "/v1/users",
                t,
                Some(json!({ "login": login, "id": id })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let r = app
            .call(
                "POST",
                &format!("/v1/users/{id}/assignments"),
                t,
                Some(json!({ "product": "SuperOffice/crm" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    }
    let r = app
        .call(
            "PUT",
            "/v1/products/SuperOffice%2Fcrm/harvest-policy",
            t,
            Some(json!({ "idle_days": 30, "action": "release" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let user_token = |login: &'static str| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let r = app
                .call(
                    "POST",
                    "/v1/tokens",
                    Some(&admin),
                    Some(json!({ "role": "user", "user": login, "ttl_hours": 2000 })),
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
            r.body["token"].as_str().unwrap().to_owned()
        }
    };
    let ann = user_token("ann").await;
    let bob = user_token("bob").await;
    clock.advance(time::Duration::days(20));
    // Ann's client reads her licenses (REST), Bob's its status (the agent); an admin reads
    // Cid's, which is no use of Cid's seat.
    let r = app
        .call("GET", "/api/v1/License/user/701", Some(&ann), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let r = app
        .call(
            "POST",
            "/api/v1/Agents/License/GetUserAndInstallationLicenceStatus",
            Some(&bob),
            Some(json!({ "AssociateId": 702 })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let admin = app.admin_token().await;
    let r = app
        .call("GET", "/api/v1/License/user/703", Some(&admin), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    clock.advance(time::Duration::days(11));
    let admin = app.admin_token().await;
    let r = app.call("POST", "/v1/harvest", Some(&admin), None).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    let done: Vec<(&str, bool)> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["login"].as_str().unwrap(),
                s["released"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(done, [("cid", true)], "{:?}", r.body);
}

/// SCIM's `meta.location` (and a group member's `$ref`) come from `[scim] public_url` when it is
/// set, whatever the `Host`; unset, from a plain `Host` only (a forged one gives a relative
/// location).
#[tokio::test]
async fn scim_locations_use_the_public_url_or_a_plain_host() {
    let host_get = |app: &TestApp, token: &str, host: &str, path: &str| {
        let req = Request::builder()
            .method("GET")
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("host", host)
            .body(Body::empty())
            .unwrap();
        let app = app.router.clone();
        async move {
            let resp = app.oneshot(req).await.unwrap();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        }
    };
    for public in [Some("https://idp.example.com/"), None] {
        let app = TestApp::with(|s| s.scim.public_url = public.map(str::to_owned)).await;
        let admin = app.admin_token().await;
        let scim = app.token_with_role(&admin, "scim", None).await;
        let r = app
            .call(
                "POST",
                "/scim/v2/Users",
                Some(&scim),
                Some(json!({ "userName": "ann" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let id = r.body["id"].as_str().unwrap().to_owned();
        let r = app
            .call(
                "POST",
                "/scim/v2/Groups",
                Some(&scim),
                Some(json!({ "displayName": "Sales", "members": [{ "value": id }] })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let group = r.body["id"].as_str().unwrap().to_owned();
        let user = host_get(
            &app,
            &scim,
            "allot.internal:8080",
            &format!("/scim/v2/Users/{id}"),
        )
        .await;
        let forged = host_get(
            &app,
            &scim,
            "evil.example/x?",
            &format!("/scim/v2/Groups/{group}"),
        )
        .await;
        match public {
            Some(_) => {
                assert_eq!(
                    user["meta"]["location"],
                    format!("https://idp.example.com/scim/v2/Users/{id}")
                );
                assert_eq!(
                    forged["members"][0]["$ref"],
                    format!("https://idp.example.com/scim/v2/Users/{id}")
                );
            }
            None => {
                assert_eq!(
                    user["meta"]["location"],
                    format!("http://allot.internal:8080/scim/v2/Users/{id}")
                );
                assert_eq!(
                    forged["meta"]["location"],
                    format!("/scim/v2/Groups/{group}")
                );
                assert_eq!(forged["members"][0]["$ref"], format!("/scim/v2/Users/{id}"));
            }
        }
    }
}
