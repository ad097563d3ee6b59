//! The MSP360 Managed Backup API dialect, in process (`tower::ServiceExt::oneshot` on the whole
//! app, middleware included): every route, the bad-input answers, roles, tokens, and snapshots
//! of each response shape (UUIDs and tokens masked; the clock is fixed, so dates are not).
//! Tests that depend on ledger behaviour run on SQLite and PostgreSQL.

use allot_ledger::testing as common;

use std::sync::Arc;

use allot::config::{Secret, Settings};
use allot::server::app;
use allot::state::AppState;
use allot_ledger::*;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use common::{Fixture, TestDb};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery";
const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const XML: Option<&str> = Some("application/xml");

struct App {
    router: Router,
    state: AppState,
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} {}", self.status, self.text))
    }

    fn message(&self) -> String {
        self.json()["Message"]
            .as_str()
            .unwrap_or_else(|| panic!("no Message: {:?} {}", self.status, self.text))
            .to_owned()
    }

    #[track_caller]
    fn expect(&self, status: StatusCode) -> &Reply {
        assert_eq!(self.status, status, "body: {}", self.text);
        self
    }

    fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl App {
    async fn new(f: &Fixture) -> App {
        Self::with(f, |_| {}).await
    }

    /// The whole app over the fixture's ledger (tenant `acme`, fixed clock), with an admin
    /// login `admin` and a reader login `auditor`.
    async fn with(f: &Fixture, tune: impl FnOnce(&mut Settings)) -> App {
        let mut settings = Settings {
            db: Secret::new(f.db.url()),
            metrics_listen: None,
            ..Settings::default()
        };
        tune(&mut settings);
        let state = AppState::new(f.ledger.clone(), settings);
        for (login, role) in [("admin", Role::Admin), ("auditor", Role::Reader)] {
            let hash = state.auth.passwords.hash(PASSWORD).await.unwrap();
            f.ok(Command::CreateLogin {
                login: login.into(),
                password_hash: hash,
                role,
                user: None,
            })
            .await;
        }
        App {
            router: app(state.clone()),
            state,
        }
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<String>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        self.send(req.body(Body::from(body.into())).unwrap()).await
    }

    async fn get(&self, path: &str, token: &str) -> Reply {
        self.call("GET", path, Some(token), None, "").await
    }

    async fn get_xml(&self, path: &str, token: &str) -> Reply {
        let req = Request::builder()
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "application/xml")
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call("POST", path, Some(token), JSON, body.to_string())
            .await
    }

    async fn put(&self, path: &str, token: &str, body: Value) -> Reply {
        self.call("PUT", path, Some(token), JSON, body.to_string())
            .await
    }

    async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call("DELETE", path, Some(token), None, "").await
    }

    async fn login_as(&self, login: &str) -> String {
        let r = self
            .post_login(json!({ "UserName": login, "Password": PASSWORD }))
            .await;
        r.expect(StatusCode::OK);
        r.json()["access_token"].as_str().unwrap().to_owned()
    }

    async fn post_login(&self, body: Value) -> Reply {
        self.call(
            "POST",
            "/acme/api/Provider/Login",
            None,
            JSON,
            body.to_string(),
        )
        .await
    }

    async fn admin(&self) -> String {
        self.login_as("admin").await
    }

    /// Creates a user through the API; answers its ID.
    async fn create_user(&self, token: &str, body: Value) -> Uuid {
        let r = self.post("/acme/api/Users", token, body).await;
        r.expect(StatusCode::OK);
        r.json().as_str().unwrap().parse().unwrap()
    }
}

/// Replaces UUIDs with `[uuid]` and 64-hex tokens with `[token]`.
fn mask(text: &str) -> String {
    let b = text.as_bytes();
    let hex = |c: u8| c.is_ascii_hexdigit();
    let is_uuid = |s: &[u8]| {
        s.len() == 36
            && s.iter().enumerate().all(|(i, &c)| match i {
                8 | 13 | 18 | 23 => c == b'-',
                _ => hex(c),
            })
    };
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let before_ok = i == 0 || !hex(b[i - 1]);
        if before_ok && i + 36 <= b.len() && is_uuid(&b[i..i + 36]) {
            out.extend_from_slice(b"[uuid]");
            i += 36;
            continue;
        }
        if before_ok
            && i + 64 <= b.len()
            && b[i..i + 64].iter().all(|&c| hex(c))
            && (i + 64 == b.len() || !hex(b[i + 64]))
        {
            out.extend_from_slice(b"[token]");
            i += 64;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// Indents JSON text without reordering its keys (serde_json's `Value` would sort them).
fn pretty(text: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                if matches!(chars.get(i + 1), Some('}') | Some(']')) {
                    continue;
                }
                depth += 1;
                newline(&mut out, depth);
            }
            '}' | ']' => {
                if !matches!(chars.get(i.wrapping_sub(1)), Some('{') | Some('[')) {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

fn snapshot_text(reply: &Reply) -> String {
    let body = if reply.content_type().contains("json") {
        pretty(&reply.text)
    } else {
        reply.text.clone()
    };
    mask(&format!(
        "{} {}\n{}",
        reply.status.as_u16(),
        reply.content_type(),
        body
    ))
}

/// The keys of a JSON object's text, in the order written.
fn keys_in_order(object: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(object).unwrap();
    let map = v.as_object().expect("an object");
    let mut found: Vec<(usize, String)> = map
        .keys()
        .map(|k| {
            let at = object
                .find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} not found"));
            (at, k.clone())
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, k)| k).collect()
}

const LICENSE_FIELDS: [&str; 11] = [
    "ID",
    "Number",
    "ComputerName",
    "OperatingSystem",
    "IsTrial",
    "IsTaken",
    "LicenseType",
    "DateExpired",
    "Transaction",
    "User",
    "UserID",
];

async fn seat_of(f: &Fixture, id: Uuid) -> Seat {
    f.ledger.seat(f.tenant.id, id).await.unwrap()
}

async fn user_by_uuid(f: &Fixture, id: Uuid) -> User {
    f.ledger
        .user(f.tenant.id, &UserRef::Uuid(id))
        .await
        .unwrap()
}

/// A bad request: what it shows, path, content type, body, expected status, a word the
/// message must contain.
type Case<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    String,
    StatusCode,
    &'a str,
);

fn op(license: impl std::fmt::Display, user: impl std::fmt::Display) -> Value {
    json!({ "LicenseID": license.to_string(), "UserID": user.to_string() })
}

// ---------------------------------------------------------------------------------------------
// Ledger-independent plumbing: SQLite only.

#[tokio::test]
async fn login_answers_a_bearer_token_in_json_form_and_xml() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let a = App::new(&f).await;
    let r = a
        .post_login(json!({ "UserName": "admin", "Password": PASSWORD }))
        .await;
    r.expect(StatusCode::OK);
    assert!(r.content_type().starts_with("application/json"));
    assert_eq!(
        keys_in_order(&r.text),
        [
            "access_token",
            "token_type",
            "expires_in",
            "userName",
            ".issued",
            ".expires"
        ]
    );
    let body = r.json();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 1_209_599);
    assert_eq!(body["userName"], "admin");
    assert_eq!(body[".issued"], "Mon, 23 Nov 2026 09:00:00 GMT");
    assert_eq!(body[".expires"], "Mon, 07 Dec 2026 09:00:00 GMT");
    insta::assert_snapshot!("login_ok", snapshot_text(&r));
    let first = body["access_token"].as_str().unwrap().to_owned();

    // Form-encoded (PowerShell), DataContract XML, and keys in any case.
    let form = a
        .call(
            "POST",
            "/acme/api/provider/login",
            None,
            FORM,
            format!("UserName=admin&Password={}", PASSWORD.replace(' ', "+")),
        )
        .await;
    form.expect(StatusCode::OK);
    let xml = format!(
        "<ProviderController.LoginUserBindingModel xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xmlns=\"http://schemas.datacontract.org/2004/07/MBSAPImvc.Controllers\">\
         <Password>{PASSWORD}</Password><UserName>auditor</UserName></ProviderController.LoginUserBindingModel>"
    );
    let by_xml = a
        .call(
            "POST",
            "/acme/api/Provider/Login",
            None,
            Some("text/xml"),
            xml,
        )
        .await;
    by_xml.expect(StatusCode::OK);
    assert_eq!(by_xml.json()["userName"], "auditor");
    let lower = a
        .post_login(json!({ "username": "ADMIN", "password": PASSWORD, "extra": 1 }))
        .await;
    lower.expect(StatusCode::OK);

    // Every token stays valid: a new login does not end the earlier ones.
    let second = form.json()["access_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    for t in [&first, &second] {
        a.get("/acme/api/Licenses", t).await.expect(StatusCode::OK);
    }

    // Changing the login's password revokes them all.
    let hash = a
        .state
        .auth
        .passwords
        .hash("another password")
        .await
        .unwrap();
    f.ok(Command::SetPassword {
        login: "admin".into(),
        password_hash: hash,
    })
    .await;
    for t in [&first, &second] {
        a.get("/acme/api/Licenses", t)
            .await
            .expect(StatusCode::UNAUTHORIZED);
    }
    f.finish().await;
}

#[tokio::test]
async fn bad_logins_get_invalid_grant_and_bad_bodies_a_message() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let a = App::new(&f).await;
    let wrong = a
        .post_login(json!({ "UserName": "admin", "Password": "not the password" }))
        .await;
    wrong.expect(StatusCode::BAD_REQUEST);
    assert_eq!(wrong.json()["error"], "invalid_grant");
    insta::assert_snapshot!("login_invalid_grant", snapshot_text(&wrong));
    let unknown = a
        .post_login(json!({ "UserName": "nobody", "Password": PASSWORD }))
        .await;
    assert_eq!(unknown.text, wrong.text);
    // A tenant that does not exist looks the same.
    let r = a
        .call(
            "POST",
            "/nosuch/api/Provider/Login",
            None,
            JSON,
            json!({ "UserName": "admin", "Password": PASSWORD }).to_string(),
        )
        .await;
    r.expect(StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "invalid_grant");

    let missing = a.post_login(json!({ "UserName": "admin" })).await;
    missing.expect(StatusCode::BAD_REQUEST);
    assert!(missing.message().contains("Password"), "{}", missing.text);
    let empty = a
        .call("POST", "/acme/api/Provider/Login", None, JSON, "")
        .await;
    empty.expect(StatusCode::BAD_REQUEST);
    let broken = a
        .call(
            "POST",
            "/acme/api/Provider/Login",
            None,
            JSON,
            "{\"UserName\":",
        )
        .await;
    broken.expect(StatusCode::BAD_REQUEST);
    assert!(
        broken.message().contains("not valid JSON"),
        "{}",
        broken.text
    );
    insta::assert_snapshot!("malformed_json", snapshot_text(&broken));
    let xml = a
        .call(
            "POST",
            "/acme/api/Provider/Login",
            None,
            XML,
            "<LoginUserBindingModel><UserName>admin</Password>",
        )
        .await;
    xml.expect(StatusCode::BAD_REQUEST);
    assert!(xml.message().contains("not valid XML"), "{}", xml.text);
    let text = a
        .call(
            "POST",
            "/acme/api/Provider/Login",
            None,
            Some("text/plain"),
            "admin:password",
        )
        .await;
    text.expect(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    insta::assert_snapshot!("unsupported_media_type", snapshot_text(&text));
    // GET on the login route: the verb is wrong, the route exists.
    let get = a
        .call("GET", "/acme/api/Provider/Login", None, None, "")
        .await;
    get.expect(StatusCode::METHOD_NOT_ALLOWED);
    f.finish().await;
}

#[tokio::test]
async fn bad_logins_answer_403_where_configured_and_429_when_repeated() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let a = App::with(&f, |s| {
        s.msp360.forbidden_on_bad_login = vec!["ACME".into()]
    })
    .await;
    let wrong = json!({ "UserName": "admin", "Password": "not the password" });
    let r = a.post_login(wrong.clone()).await;
    r.expect(StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"], "invalid_grant");
    // Five failures are free; the sixth locks the login for a while.
    for _ in 0..5 {
        a.post_login(wrong.clone())
            .await
            .expect(StatusCode::FORBIDDEN);
    }
    let throttled = a.post_login(wrong.clone()).await;
    throttled.expect(StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers.contains_key("retry-after"));
    assert!(
        throttled.message().contains("try again"),
        "{}",
        throttled.text
    );
    // The right password waits too while the lock holds.
    let right = a
        .post_login(json!({ "UserName": "admin", "Password": PASSWORD }))
        .await;
    right.expect(StatusCode::TOO_MANY_REQUESTS);
    // Other logins are not affected.
    a.login_as("auditor").await;
    f.finish().await;
}

#[tokio::test]
async fn every_other_call_needs_a_live_bearer_token_of_the_tenant() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let a = App::new(&f).await;
    let none = a.call("GET", "/acme/api/Licenses", None, None, "").await;
    none.expect(StatusCode::UNAUTHORIZED);
    assert_eq!(
        none.message(),
        "Authorization has been denied for this request."
    );
    assert_eq!(none.headers["www-authenticate"], "Bearer");
    insta::assert_snapshot!("unauthorized", snapshot_text(&none));
    for header in [
        "Bearer nonsense",
        "Basic YWRtaW46cGFzc3dvcmQ=",
        "Bearer",
        "",
    ] {
        let req = Request::builder()
            .uri("/acme/api/Users")
            .header("authorization", header)
            .body(Body::empty())
            .unwrap();
        a.send(req).await.expect(StatusCode::UNAUTHORIZED);
    }
    // A token of another tenant does not open this one.
    let other = f.ledger.create_tenant("other", "test").await.unwrap();
    let hash = a.state.auth.passwords.hash(PASSWORD).await.unwrap();
    f.ledger
        .execute(
            &Context::new(other.id, "test"),
            Command::CreateLogin {
                login: "admin".into(),
                password_hash: hash,
                role: Role::Admin,
                user: None,
            },
        )
        .await
        .unwrap();
    let r = a
        .call(
            "POST",
            "/other/api/Provider/Login",
            None,
            JSON,
            json!({ "UserName": "admin", "Password": PASSWORD }).to_string(),
        )
        .await;
    let foreign = r.json()["access_token"].as_str().unwrap().to_owned();
    a.get("/other/api/Users", &foreign)
        .await
        .expect(StatusCode::OK);
    a.get("/acme/api/Users", &foreign)
        .await
        .expect(StatusCode::UNAUTHORIZED);

    // Tokens expire after 14 days.
    let token = a.admin().await;
    f.clock.advance(time::Duration::days(13));
    a.get("/acme/api/Users", &token)
        .await
        .expect(StatusCode::OK);
    f.clock.advance(time::Duration::days(1));
    a.get("/acme/api/Users", &token)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    f.finish().await;
}

#[tokio::test]
async fn routing_is_case_insensitive_and_misses_answer_aspnet_texts() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let a = App::new(&f).await;
    let token = a.admin().await;
    for path in [
        "/acme/API/licenses",
        "/acme/api/LICENSES",
        "/acme/Api/Licenses/",
    ] {
        let r = a.get(path, &token).await;
        r.expect(StatusCode::OK);
        assert_eq!(r.text, "[]");
    }
    // Unknown routes: 404 with the request URI, before any token is looked at.
    let r = a
        .call("GET", "/acme/api/Prrovider/Login", None, None, "")
        .await;
    r.expect(StatusCode::NOT_FOUND);
    assert_eq!(
        r.message(),
        "No HTTP resource was found that matches the request URI '/acme/api/Prrovider/Login'."
    );
    insta::assert_snapshot!("not_found", snapshot_text(&r));
    for path in [
        "/acme/api/Packages",
        "/acme/api/Licenses/a/b",
        "/acme/api/Users/x/y/z",
        "/acme/api",
    ] {
        a.get(path, &token).await.expect(StatusCode::NOT_FOUND);
    }
    // Known routes, wrong verb.
    let r = a
        .call("PATCH", "/acme/api/Users", Some(&token), JSON, "{}")
        .await;
    r.expect(StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        r.message(),
        "The requested resource does not support http method 'PATCH'."
    );
    a.call("GET", "/acme/api/Licenses/Grant", Some(&token), None, "")
        .await
        .expect(StatusCode::OK); // a license named "Grant": null
    a.call("DELETE", "/acme/api/Licenses", Some(&token), None, "")
        .await
        .expect(StatusCode::METHOD_NOT_ALLOWED);
    // The root addresses the tenant `default`, which this store does not have.
    a.get("/api/Licenses", &token)
        .await
        .expect(StatusCode::NOT_FOUND);
    // An odd Accept still gets JSON; XML when asked, errors included.
    let req = Request::builder()
        .uri("/acme/api/Licenses")
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "image/png, */*;q=0.1")
        .header("20", "application/json")
        .body(Body::empty())
        .unwrap();
    let r = a.send(req).await;
    r.expect(StatusCode::OK);
    assert!(r.content_type().starts_with("application/json"));
    let req = Request::builder()
        .uri("/acme/api/nothing")
        .header("accept", "text/xml")
        .body(Body::empty())
        .unwrap();
    let r = a.send(req).await;
    r.expect(StatusCode::NOT_FOUND);
    assert!(r.content_type().starts_with("application/xml"));
    assert!(r.text.starts_with("<Error"), "{}", r.text);
    insta::assert_snapshot!("not_found_xml", snapshot_text(&r));
    f.finish().await;
}

#[tokio::test]
async fn huge_bodies_get_413_and_the_server_keeps_serving() {
    let f = Fixture::new(TestDb::sqlite()).await;
    let a = App::with(&f, |s| s.max_body = 4096).await;
    let token = a.admin().await;
    // With a Content-Length the limit layer refuses before reading.
    let big = format!("{{\"LicenseID\": \"{}\"}}", "x".repeat(10_000));
    let req = Request::builder()
        .method("POST")
        .uri("/acme/api/Licenses/Grant")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("content-length", big.len())
        .body(Body::from(big.clone()))
        .unwrap();
    a.send(req).await.expect(StatusCode::PAYLOAD_TOO_LARGE);
    // Without one (as a chunked upload), the dialect meets the limit while reading and answers
    // in its own shape.
    let r = a
        .call("POST", "/acme/api/Licenses/Grant", Some(&token), JSON, big)
        .await;
    r.expect(StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.message().contains("larger"), "{}", r.text);
    insta::assert_snapshot!("payload_too_large", snapshot_text(&r));
    a.get("/acme/api/Users", &token)
        .await
        .expect(StatusCode::OK);
    f.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Ledger behaviour: SQLite and PostgreSQL.

on_both_stores! {
    async fn licenses_list_the_eleven_fields_and_filter_by_availability(f: Fixture) {
        let a = App::new(&f).await;
        let token = a.admin().await;
        let ultimate = f.product(NewProduct { description: "Ultimate".into(), ..NewProduct::user("MSP360", "mbs-ultimate", 0) }).await;
        let desktop = f.user_product("Desktop", 0).await;
        let expiring = f.add_seats(NewSeats {
            expires_at: Some(common::START + time::Duration::days(365)),
            transaction_id: Some("tx-0001".into()),
            ..NewSeats::plain(ProductRef::Id(ultimate.id), 2)
        }).await;
        let trial = f.add_seats(NewSeats {
            trial: true,
            expires_at: Some(common::START + time::Duration::days(15)),
            ..NewSeats::plain(ProductRef::Id(desktop.id), 1)
        }).await;
        let perpetual = f.add_seats(NewSeats::plain(ProductRef::Id(desktop.id), 1)).await;
        // A floating product's seats are not MSP360 licenses.
        f.product(NewProduct { kind: ProductKind::Floating, ..NewProduct::user("MSP360", "float", 3) }).await;

        let charlie = a.create_user(&token, json!({ "Email": "CharlieMarketing", "Password": "splendidpass", "Enabled": true, "FirstName": "Charlie" })).await;
        a.post("/acme/api/Licenses/Grant", &token, op(expiring[0].id, charlie)).await.expect(StatusCode::OK);
        f.ok(Command::ActivateSeat { seat: expiring[0].id, activation: Activation {
            hardware_id: "HW-1".into(), computer_name: "charlie-pc".into(), operating_system: "Windows 11".into() }, user: None }).await;

        let all = a.get("/acme/api/Licenses", &token).await;
        all.expect(StatusCode::OK);
        let list = all.json();
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 4, "{}", all.text);
        // Exactly the documented fields, in the documented order, for every license.
        for item in list {
            let text = item.to_string();
            let start = all.text.find(&format!("{{\"ID\":\"{}\"", item["ID"].as_str().unwrap())).unwrap();
            let end = start + all.text[start..].find('}').unwrap() + 1;
            assert_eq!(keys_in_order(&all.text[start..end]), LICENSE_FIELDS, "{text}");
            assert!(item["DateExpired"].is_string(), "{text}");
        }
        let held = &list[0];
        assert_eq!(held["ID"], expiring[0].id.to_string());
        assert_eq!(held["Number"], expiring[0].number);
        assert_eq!(held["ComputerName"], "charlie-pc");
        assert_eq!(held["OperatingSystem"], "Windows 11");
        assert_eq!(held["IsTaken"], true);
        assert_eq!(held["IsTrial"], false);
        assert_eq!(held["LicenseType"], "Ultimate");
        assert_eq!(held["DateExpired"], "2027-11-23T09:00:00");
        assert_eq!(held["Transaction"], "tx-0001");
        assert_eq!(held["User"], "CharlieMarketing");
        assert_eq!(held["UserID"], charlie.to_string());
        let free = &list[1];
        assert_eq!((free["IsTaken"].clone(), free["User"].clone(), free["UserID"].clone(), free["ComputerName"].clone()),
            (json!(false), Value::Null, Value::Null, Value::Null));
        assert_eq!(list[2]["IsTrial"], true);
        assert_eq!(list[2]["LicenseType"], "Desktop");
        assert_eq!(list[3]["DateExpired"], "9999-12-31T23:59:59");
        assert_eq!(list[3]["Transaction"], Value::Null);
        insta::assert_snapshot!("licenses_list", snapshot_text(&all));

        // isAvailable in any casing; unknown keys (and PSCB's `/IsAvailable`) are ignored.
        for query in ["isAvailable=true", "isavailable=True", "ISAVAILABLE=TRUE&skip=0&take=5"] {
            let r = a.get(&format!("/acme/api/Licenses?{query}"), &token).await;
            let ids: Vec<String> = r.json().as_array().unwrap().iter().map(|l| l["ID"].as_str().unwrap().to_owned()).collect();
            assert_eq!(ids, [expiring[1].id.to_string(), trial[0].id.to_string(), perpetual[0].id.to_string()], "{query}");
        }
        for query in ["isAvailable=false", "isAvailable=False", "/IsAvailable=True", "isAvailable=maybe", ""] {
            let r = a.get(&format!("/acme/api/Licenses?{query}"), &token).await;
            assert_eq!(r.json().as_array().unwrap().len(), 4, "{query}");
        }
        // Expired licenses are listed but not available.
        f.clock.advance(time::Duration::days(16));
        let token = a.admin().await; // the first one expired with the 16 days
        let r = a.get("/acme/api/Licenses?isAvailable=true", &token).await;
        assert_eq!(r.json().as_array().unwrap().len(), 2);

        // One license; unknown or malformed ids answer 200 null.
        let one = a.get(&format!("/acme/api/Licenses/{}", expiring[0].id), &token).await;
        one.expect(StatusCode::OK);
        assert_eq!(&one.json(), held);
        insta::assert_snapshot!("license_one", snapshot_text(&one));
        for id in [Uuid::new_v4().to_string(), "not-a-guid".into(), "%7B%7D".into()] {
            let r = a.get(&format!("/acme/api/licenses/{id}"), &token).await;
            r.expect(StatusCode::OK);
            assert_eq!(r.text, "null");
        }
        let r = a.get_xml(&format!("/acme/api/Licenses/{}", Uuid::new_v4()), &token).await;
        r.expect(StatusCode::OK);
        assert!(r.text.contains("i:nil=\"true\""), "{}", r.text);

        // XML: DataContract members in ordinal order.
        let xml = a.get_xml("/acme/api/Licenses", &token).await;
        xml.expect(StatusCode::OK);
        assert!(xml.content_type().starts_with("application/xml"));
        let doc = allot::xml::parse(&xml.text).unwrap();
        assert_eq!(doc.name, "ArrayOfLicensesModels");
        assert_eq!(doc.children.len(), 4);
        let names: Vec<&str> = doc.children[0].children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["ComputerName", "DateExpired", "ID", "IsTaken", "IsTrial", "LicenseType", "Number", "OperatingSystem", "Transaction", "User", "UserID"]);
        insta::assert_snapshot!("licenses_list_xml", snapshot_text(&xml));
    }

    async fn grant_revoke_and_release_follow_the_ledger(f: Fixture) {
        let a = App::new(&f).await;
        let token = a.admin().await;
        let ult = f.user_product("Ultimate", 0).await;
        let seats = f.add_seats(NewSeats::plain(ProductRef::Id(ult.id), 3)).await;
        let manual = a.create_user(&token, json!({ "Email": "manual", "Password": "secret1", "LicenseManagmentMode": 0 })).await;
        let auto = a.create_user(&token, json!({ "Email": "auto", "Password": "secret1", "LicenseManagmentMode": "Automatic" })).await;
        let manual_id = user_by_uuid(&f, manual).await.id;

        // Grant (JSON): the seat is the user's; nothing is activated yet.
        let r = a.post("/acme/api/Licenses/Grant", &token, op(seats[0].id, manual)).await;
        r.expect(StatusCode::OK);
        assert_eq!(r.text, "");
        assert_eq!(seat_of(&f, seats[0].id).await.holder, Some(manual_id));
        assert_eq!(f.counts(&ult).await, (3, 1, 2));
        // Granting it again to the same user changes nothing and succeeds.
        a.post("/acme/api/Licenses/Grant", &token, op(seats[0].id, manual)).await.expect(StatusCode::OK);
        // Grant by form (PowerShell hashtable under a JSON content type) and by XML.
        let form = format!("LicenseID={}&UserID={}", seats[1].id, auto);
        a.call("POST", "/acme/api/Licenses/Grant", Some(&token), JSON, form).await.expect(StatusCode::OK);
        let auto_id = user_by_uuid(&f, auto).await.id;
        assert_eq!(seat_of(&f, seats[1].id).await.holder, Some(auto_id));

        // The agent activates both (no MSP360 API for that step).
        for (seat, hid) in [(&seats[0], "HW-M"), (&seats[1], "HW-A")] {
            f.ok(Command::ActivateSeat { seat: seat.id, activation: Activation {
                hardware_id: hid.into(), computer_name: format!("{hid}-pc"), operating_system: "Windows".into() }, user: None }).await;
        }
        // Revoke (XML) for a manual user: the computer is cleared, the user keeps the license.
        let xml = format!("<LicenseOperation xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\" \
            xmlns=\"http://schemas.datacontract.org/2004/07/MBSAPImvc.Engine.Models\">\
            <LicenseID>{}</LicenseID><UserID>{}</UserID></LicenseOperation>", seats[0].id, manual);
        let r = a.call("POST", "/acme/api/Licenses/Revoke", Some(&token), Some("text/xml"), xml).await;
        r.expect(StatusCode::OK);
        let s = seat_of(&f, seats[0].id).await;
        assert_eq!((s.holder, s.activation), (Some(manual_id), None));
        let listed = a.get(&format!("/acme/api/Licenses/{}", seats[0].id), &token).await.json();
        assert_eq!((listed["IsTaken"].clone(), listed["UserID"].clone()), (json!(false), json!(manual.to_string())));
        // Revoke for an automatic user frees the license entirely.
        a.post("/acme/api/Licenses/Revoke", &token, op(seats[1].id, auto)).await.expect(StatusCode::OK);
        let s = seat_of(&f, seats[1].id).await;
        assert_eq!((s.holder, s.activation), (None, None));
        assert_eq!(f.counts(&ult).await, (3, 1, 2));
        // Release: back to the pool. Keys in any case, extra fields (MCP's ComputerID) ignored.
        let r = a.post("/acme/api/licenses/RELEASE", &token,
            json!({ "licenseid": seats[0].id, "userId": manual, "ComputerID": "HW-M" })).await;
        r.expect(StatusCode::OK);
        assert_eq!(seat_of(&f, seats[0].id).await.holder, None);
        assert_eq!(f.counts(&ult).await, (3, 0, 3));
        // Releasing or revoking a free license is a no-op success; UserID may be left out.
        a.post("/acme/api/Licenses/Release", &token, op(seats[0].id, manual)).await.expect(StatusCode::OK);
        a.post("/acme/api/Licenses/Revoke", &token, json!({ "LicenseID": seats[0].id })).await.expect(StatusCode::OK);
        f.assert_invariants().await;
    }

    async fn license_operations_say_what_is_wrong(f: Fixture) {
        let a = App::new(&f).await;
        let token = a.admin().await;
        let ult = f.user_product("Ultimate", 0).await;
        let seats = f.add_seats(NewSeats::plain(ProductRef::Id(ult.id), 2)).await;
        let expired = f.add_seats(NewSeats { expires_at: Some(common::START - time::Duration::days(1)), ..NewSeats::plain(ProductRef::Id(ult.id), 1) }).await;
        let one = a.create_user(&token, json!({ "Email": "one", "Password": "secret1" })).await;
        let two = a.create_user(&token, json!({ "Email": "two", "Password": "secret1" })).await;
        a.post("/acme/api/Licenses/Grant", &token, op(seats[0].id, one)).await.expect(StatusCode::OK);
        // A company-pool company with its own pool and no quota of tenant-wide seats.
        let company = a.post("/acme/api/Companies", &token, json!({ "Name": "Pooled", "LicenseSettings": 2 })).await.json();
        let pooled = a.create_user(&token, json!({ "Email": "pooled", "Password": "secret1", "Company": "Pooled", "LicenseManagmentMode": 2 })).await;
        let _ = company;
        let unknown = Uuid::new_v4();
        let grant = "/acme/api/Licenses/Grant";
        let cases: Vec<Case> = vec![
            ("unknown license", grant, JSON, op(unknown, one).to_string(), StatusCode::BAD_REQUEST, "not found"),
            ("malformed license id", grant, JSON, op("sample string 1", one).to_string(), StatusCode::BAD_REQUEST, "not a license ID"),
            ("unknown user", grant, JSON, op(seats[1].id, unknown).to_string(), StatusCode::BAD_REQUEST, "not found"),
            ("malformed user id", grant, JSON, op(seats[1].id, "sample string 2").to_string(), StatusCode::BAD_REQUEST, "not a user ID"),
            ("held by another user", grant, JSON, op(seats[0].id, two).to_string(), StatusCode::BAD_REQUEST, "another user"),
            ("expired", grant, JSON, op(expired[0].id, two).to_string(), StatusCode::BAD_REQUEST, "expired"),
            ("outside the user's pool", grant, JSON, op(seats[1].id, pooled).to_string(), StatusCode::BAD_REQUEST, "pool"),
            ("no user", grant, JSON, json!({ "LicenseID": seats[1].id }).to_string(), StatusCode::BAD_REQUEST, "UserID is required"),
            ("no license", grant, JSON, json!({ "UserID": one }).to_string(), StatusCode::BAD_REQUEST, "LicenseID is required"),
            ("no body", grant, JSON, String::new(), StatusCode::BAD_REQUEST, "body is required"),
            ("JSON null", grant, JSON, "null".into(), StatusCode::BAD_REQUEST, "body is required"),
            ("malformed JSON", grant, JSON, "{\"LicenseID\": ".into(), StatusCode::BAD_REQUEST, "not valid JSON"),
            ("JSON array", grant, JSON, "[1]".into(), StatusCode::BAD_REQUEST, "JSON object"),
            ("wrong type", grant, JSON, json!({ "LicenseID": [1], "UserID": one }).to_string(), StatusCode::BAD_REQUEST, "must be a string"),
            ("malformed XML", grant, XML, "<LicenseOperation><LicenseID>x</UserID>".into(), StatusCode::BAD_REQUEST, "not valid XML"),
            ("XML entity", grant, XML, "<!DOCTYPE x [<!ENTITY a \"b\">]><LicenseOperation/>".into(), StatusCode::BAD_REQUEST, "not valid XML"),
            ("wrong XML root", grant, XML, "<UsersAddModels/>".into(), StatusCode::BAD_REQUEST, "LicenseOperation"),
            ("wrong content type", grant, Some("text/plain"), op(seats[1].id, one).to_string(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "text/plain"),
            ("release by another user", "/acme/api/Licenses/Release", JSON, op(seats[0].id, two).to_string(), StatusCode::BAD_REQUEST, "another user"),
            ("revoke by another user", "/acme/api/Licenses/Revoke", JSON, op(seats[0].id, two).to_string(), StatusCode::BAD_REQUEST, "another user"),
            ("release of an unknown license", "/acme/api/Licenses/Release", JSON, op(unknown, one).to_string(), StatusCode::BAD_REQUEST, "not found"),
        ];
        let mut transcript = String::new();
        for (what, path, ct, body, status, needle) in cases {
            let r = a.call("POST", path, Some(&token), ct, body).await;
            assert_eq!(r.status, status, "{what}: {}", r.text);
            let message = r.message();
            assert!(message.contains(needle), "{what}: {message}");
            transcript.push_str(&format!("{what}: {} {message}\n", r.status.as_u16()));
        }
        insta::assert_snapshot!("license_operation_errors", mask(&transcript));
        // Nothing of it changed the ledger (the expired seat counts for nothing); the server
        // keeps serving.
        assert_eq!(f.counts(&ult).await, (2, 1, 1));
        a.get("/acme/api/Licenses", &token).await.expect(StatusCode::OK);
        // A quota on the company: its member may now take a tenant-wide license, once.
        let company = f.ledger.company(f.tenant.id, &CompanyRef::Name("Pooled".into())).await.unwrap();
        f.ok(Command::SetCompanyQuota { company: CompanyRef::Id(company.id), product: ProductRef::Id(ult.id), quota: Some(0) }).await;
        let r = a.post(grant, &token, op(seats[1].id, pooled)).await;
        r.expect(StatusCode::BAD_REQUEST);
        assert!(r.message().contains("quota"), "{}", r.text);
        f.ok(Command::SetCompanyQuota { company: CompanyRef::Id(company.id), product: ProductRef::Id(ult.id), quota: Some(1) }).await;
        a.post(grant, &token, op(seats[1].id, pooled)).await.expect(StatusCode::OK);
    }

    async fn readers_read_and_only_admins_change(f: Fixture) {
        let a = App::new(&f).await;
        let admin = a.admin().await;
        let reader = a.login_as("auditor").await;
        let ult = f.user_product("Ultimate", 1).await;
        let seat = f.ledger.seats(f.tenant.id, &SeatFilter::default()).await.unwrap().remove(0);
        let user = a.create_user(&admin, json!({ "Email": "u", "Password": "secret1" })).await;
        for path in ["/acme/api/Licenses", "/acme/api/Users", "/acme/api/Companies", "/acme/api/Computers/0/10"] {
            a.get(path, &reader).await.expect(StatusCode::OK);
        }
        a.get(&format!("/acme/api/Users/{user}/Computers"), &reader).await.expect(StatusCode::OK);
        let denied = a.post("/acme/api/Licenses/Grant", &reader, op(seat.id, user)).await;
        denied.expect(StatusCode::FORBIDDEN);
        assert!(denied.message().starts_with("Authorization has been denied"), "{}", denied.text);
        insta::assert_snapshot!("forbidden", snapshot_text(&denied));
        a.post("/acme/api/Users", &reader, json!({ "Email": "x", "Password": "secret1" })).await.expect(StatusCode::FORBIDDEN);
        a.put("/acme/api/Users", &reader, json!({ "ID": user })).await.expect(StatusCode::FORBIDDEN);
        a.delete(&format!("/acme/api/Users/{user}"), &reader).await.expect(StatusCode::FORBIDDEN);
        a.post("/acme/api/Companies", &reader, json!({ "Name": "C" })).await.expect(StatusCode::FORBIDDEN);
        a.post("/acme/api/Computers/HW/authorization", &reader, json!({ "UserId": user })).await.expect(StatusCode::FORBIDDEN);
        assert_eq!(f.counts(&ult).await, (1, 0, 1));
        // A login bound to one user gets no API token at all.
        let hash = a.state.auth.passwords.hash(PASSWORD).await.unwrap();
        f.ok(Command::CreateLogin { login: "agent".into(), password_hash: hash, role: Role::User, user: Some(UserRef::Uuid(user)) }).await;
        let r = a.post_login(json!({ "UserName": "agent", "Password": PASSWORD })).await;
        r.expect(StatusCode::BAD_REQUEST);
        assert_eq!(r.json()["error"], "unauthorized_client");
    }

    async fn users_are_created_listed_edited_and_deleted(f: Fixture) {
        let a = App::new(&f).await;
        let token = a.admin().await;
        a.post("/acme/api/Companies", &token, json!({ "Name": "Maggie's Donuts", "LicenseSettings": 1 })).await.expect(StatusCode::OK);
        let r = a.post("/acme/api/Users", &token, json!({
            "Email": "CharlieMarketing", "FirstName": "Charlie", "LastName": "Green",
            "NotificationEmails": ["charliem@maggiesdonuts.com"], "Company": "Maggie's Donuts",
            "Enabled": true, "Password": "splendidpass", "DestinationList": [], "SendEmailInstruction": false,
            "LicenseManagmentMode": 1,
        })).await;
        r.expect(StatusCode::OK);
        insta::assert_snapshot!("user_created", snapshot_text(&r));
        let charlie: Uuid = r.json().as_str().unwrap().parse().unwrap();
        // The minimal documented body; the other spelling of the mode, as a numeric string.
        let robert = a.create_user(&token, json!({ "Email": "roberttech1", "Password": "splendidpass", "Enabled": true })).await;
        let third = a.create_user(&token, json!({ "email": "third", "password": "secret1", "LicenseManagementMode": "2" })).await;
        // DataContract XML in, XML out: the new ID as a serialized string.
        let req = Request::builder().method("POST").uri("/acme/api/Users")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "text/xml")
            .header("accept", "application/xml")
            .body(Body::from("<UsersAddModels xmlns:i=\"http://www.w3.org/2001/XMLSchema-instance\" \
                xmlns=\"http://schemas.datacontract.org/2004/07/MBSAPImvc.Engine.Models\">\
                <Email>xmluser</Email><Enabled>true</Enabled><FirstName>X</FirstName>\
                <LicenseManagmentMode>Automatic</LicenseManagmentMode>\
                <NotificationEmails xmlns:a=\"http://schemas.microsoft.com/2003/10/Serialization/Arrays\">\
                <a:string>x@example.com</a:string></NotificationEmails><Password>secret12</Password></UsersAddModels>"))
            .unwrap();
        let r = a.send(req).await;
        r.expect(StatusCode::OK);
        let doc = allot::xml::parse(&r.text).unwrap();
        assert_eq!(doc.name, "string");
        let xml_user = user_by_uuid(&f, doc.value().parse().unwrap()).await;
        assert_eq!((xml_user.login.as_str(), xml_user.email.as_str(), xml_user.license_mode), ("xmluser", "x@example.com", LicenseMode::Automatic));
        a.delete(&format!("/acme/api/Users/{}", xml_user.uuid), &token).await.expect(StatusCode::OK);
        assert_eq!(user_by_uuid(&f, third).await.license_mode, LicenseMode::Company);

        let list = a.get("/acme/api/Users", &token).await;
        list.expect(StatusCode::OK);
        let users = list.json();
        assert_eq!(users.as_array().unwrap().len(), 3);
        let start = list.text.find('{').unwrap();
        let end = start + list.text[start..].find("\"SpaceUsed\":0}").unwrap() + 14;
        assert_eq!(keys_in_order(&list.text[start..end]), ["ID", "Email", "FirstName", "LastName", "NotificationEmails", "Company", "Enabled", "LicenseManagmentMode", "DestinationList", "SpaceUsed"]);
        assert_eq!(users[0]["ID"], charlie.to_string());
        assert_eq!(users[0]["Company"], "Maggie's Donuts");
        assert_eq!(users[0]["LicenseManagmentMode"], 1);
        assert_eq!(users[0]["NotificationEmails"], json!(["charliem@maggiesdonuts.com"]));
        assert_eq!(users[1]["LicenseManagmentMode"], 0);
        assert_eq!(users[1]["Company"], Value::Null);
        insta::assert_snapshot!("users_list", snapshot_text(&list));
        let xml = a.get_xml(&format!("/acme/api/Users/{charlie}"), &token).await;
        xml.expect(StatusCode::OK);
        let doc = allot::xml::parse(&xml.text).unwrap();
        assert_eq!(doc.child("LicenseManagmentMode").unwrap().value(), "Automatic");
        insta::assert_snapshot!("user_one_xml", snapshot_text(&xml));

        let one = a.get(&format!("/acme/api/Users/{charlie}"), &token).await;
        assert_eq!(one.json(), users[0]);
        for id in [Uuid::new_v4().to_string(), "nope".to_owned()] {
            assert_eq!(a.get(&format!("/acme/api/Users/{id}"), &token).await.text, "null");
        }

        // PUT: empty strings leave fields alone (PowerShell's Edit-MBSAPIUser), the mode as text.
        a.put("/acme/api/Users", &token, json!({ "ID": robert, "Email": "", "FirstName": "Robert", "Enabled": true, "LicenseManagmentMode": "" })).await.expect(StatusCode::OK);
        let u = user_by_uuid(&f, robert).await;
        assert_eq!((u.login.as_str(), u.first_name.as_str(), u.license_mode), ("roberttech1", "Robert", LicenseMode::Manual));
        a.put("/acme/api/Users", &token, json!({ "id": robert, "LicenseManagementMode": "CompanySettings", "Company": "Maggie's Donuts", "Email": "robert" })).await.expect(StatusCode::OK);
        let u = user_by_uuid(&f, robert).await;
        assert_eq!((u.login.as_str(), u.license_mode, u.company.is_some()), ("robert", LicenseMode::Company, true));

        // Refusals, each with a message.
        let bad: Vec<(&str, &str, Value, &str)> = vec![
            ("POST", "duplicate login", json!({ "Email": "ROBERT", "Password": "secret1" }), "Email already exist"),
            ("POST", "no login", json!({ "Password": "secret1" }), "Email is required"),
            ("POST", "no password", json!({ "Email": "p" }), "Password is required"),
            ("POST", "short password", json!({ "Email": "p", "Password": "12345" }), "between 6 and 100"),
            ("POST", "unknown company", json!({ "Email": "p", "Password": "secret1", "Company": "Nobody Inc" }), "Nobody Inc"),
            ("POST", "bad mode", json!({ "Email": "p", "Password": "secret1", "LicenseManagmentMode": 7 }), "LicenseManagmentMode"),
            ("POST", "bad Enabled", json!({ "Email": "p", "Password": "secret1", "Enabled": "maybe" }), "Enabled"),
            ("PUT", "no id", json!({ "Email": "p" }), "ID is required"),
            ("PUT", "unknown id", json!({ "ID": Uuid::new_v4() }), "not found"),
            ("PUT", "malformed id", json!({ "ID": "sample string 1" }), "not found"),
        ];
        let mut transcript = String::new();
        for (method, what, body, needle) in bad {
            let r = a.call(method, "/acme/api/Users", Some(&token), JSON, body.to_string()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.text);
            assert!(r.message().contains(needle), "{what}: {}", r.text);
            transcript.push_str(&format!("{method} {what}: {}\n", r.message()));
        }
        insta::assert_snapshot!("user_errors", mask(&transcript));

        // `Enabled: false` disables the user (kept, shown as not enabled); `true` enables it.
        let paused = a.create_user(&token, json!({ "Email": "paused", "Password": "splendidpass", "Enabled": false })).await;
        let u = user_by_uuid(&f, paused).await;
        assert!(u.disabled && !u.retired);
        let r = a.get(&format!("/acme/api/Users/{paused}"), &token).await;
        assert_eq!(r.json()["Enabled"], false, "{}", r.text);
        a.put("/acme/api/Users", &token, json!({ "ID": paused, "Enabled": true })).await.expect(StatusCode::OK);
        assert!(!user_by_uuid(&f, paused).await.disabled);
        a.put("/acme/api/Users", &token, json!({ "ID": paused, "Enabled": "False" })).await.expect(StatusCode::OK);
        assert!(user_by_uuid(&f, paused).await.disabled);
        let r = a.get(&format!("/acme/api/Users/{paused}"), &token).await;
        assert_eq!(r.json()["Enabled"], false, "{}", r.text);

        // DELETE releases the user's licenses; the user is gone from the API afterwards.
        let ult = f.user_product("Ultimate", 1).await;
        let seat = f.ledger.seats(f.tenant.id, &SeatFilter::default()).await.unwrap().remove(0);
        a.post("/acme/api/Licenses/Grant", &token, op(seat.id, charlie)).await.expect(StatusCode::OK);
        assert_eq!(f.counts(&ult).await, (1, 1, 0));
        let r = a.delete(&format!("/acme/api/Users/{charlie}"), &token).await;
        r.expect(StatusCode::OK);
        assert_eq!(r.text, "");
        assert_eq!(f.counts(&ult).await, (1, 0, 1));
        assert_eq!(a.get(&format!("/acme/api/Users/{charlie}"), &token).await.text, "null");
        // robert and the disabled "paused" (listed, Enabled false); charlie is gone.
        assert_eq!(a.get("/acme/api/Users", &token).await.json().as_array().unwrap().len(), 3);
        a.delete(&format!("/acme/api/Users/{charlie}"), &token).await.expect(StatusCode::BAD_REQUEST);
        // Its login is free again (the retired row is renamed, and keeps its history).
        let gone = user_by_uuid(&f, charlie).await;
        assert!(gone.retired);
        assert_eq!(gone.login, format!("CharlieMarketing (deleted {charlie})"));
        let again = a.create_user(&token, json!({ "Email": "CharlieMarketing", "Password": "splendidpass" })).await;
        assert_ne!(again, charlie);
        a.delete(&format!("/acme/api/Users/{again}"), &token).await.expect(StatusCode::OK);
        a.delete(&format!("/acme/api/Users/{robert}/Account"), &token).await.expect(StatusCode::OK);
        let r = a.delete(&format!("/acme/api/Users/{}/account", Uuid::new_v4()), &token).await;
        r.expect(StatusCode::BAD_REQUEST);
        assert!(r.message().contains("not found"));
        a.delete("/acme/api/Users/not-a-guid", &token).await.expect(StatusCode::BAD_REQUEST);
        // A deleted user can be granted nothing.
        let r = a.post("/acme/api/Licenses/Grant", &token, op(seat.id, charlie)).await;
        r.expect(StatusCode::BAD_REQUEST);
        assert!(r.message().contains("deleted"), "{}", r.text);
    }

    async fn companies_are_created_listed_edited_and_deleted(f: Fixture) {
        let a = App::new(&f).await;
        let token = a.admin().await;
        // PowerShell sends numbers as strings.
        let r = a.post("/acme/api/Companies", &token, json!({ "Name": "Contoso", "StorageLimit": "-1", "LicenseSettings": "2", "Destinations": [] })).await;
        r.expect(StatusCode::OK);
        insta::assert_snapshot!("company_created", snapshot_text(&r));
        let contoso: Uuid = r.json().as_str().unwrap().parse().unwrap();
        let form = a.call("POST", "/acme/api/Companies", Some(&token), FORM, "Name=Fabrikam&LicenseSettings=1").await;
        form.expect(StatusCode::OK);
        let fabrikam: Uuid = form.json().as_str().unwrap().parse().unwrap();
        let plain = a.post("/acme/api/Companies", &token, json!({ "Name": "Plain" })).await.json();

        let list = a.get("/acme/api/Companies", &token).await;
        list.expect(StatusCode::OK);
        let start = list.text.find('{').unwrap();
        let end = start + list.text[start..].find("\"Destinations\":[]}").unwrap() + 18;
        assert_eq!(keys_in_order(&list.text[start..end]), ["Id", "Name", "StorageLimit", "LicenseSettings", "Destinations"]);
        let companies = list.json();
        assert_eq!(companies[0]["Id"], contoso.to_string());
        assert_eq!(companies[0]["LicenseSettings"], 2);
        assert_eq!(companies[1]["LicenseSettings"], 1);
        assert_eq!(companies[2]["LicenseSettings"], 0);
        assert_eq!(companies[2]["Id"], plain);
        insta::assert_snapshot!("companies_list", snapshot_text(&list));
        let one = a.get(&format!("/acme/api/Companies/{fabrikam}"), &token).await;
        assert_eq!(one.json(), companies[1]);
        let xml = a.get_xml(&format!("/acme/api/Companies/{contoso}"), &token).await;
        assert_eq!(allot::xml::parse(&xml.text).unwrap().child("LicenseSettings").unwrap().value(), "CompanyLicensesPool");
        insta::assert_snapshot!("company_one_xml", snapshot_text(&xml));
        assert_eq!(a.get(&format!("/acme/api/Companies/{}", Uuid::new_v4()), &token).await.text, "null");
        assert_eq!(a.get("/acme/api/Companies/x", &token).await.text, "null");

        // PUT renames and changes the pool mode.
        a.put("/acme/api/Companies", &token, json!({ "Id": fabrikam, "Name": "Fabrikam Ltd", "LicenseSettings": "0", "StorageLimit": 100 })).await.expect(StatusCode::OK);
        let c = f.ledger.company(f.tenant.id, &CompanyRef::Uuid(fabrikam)).await.unwrap();
        assert_eq!((c.name.as_str(), c.pool_mode), ("Fabrikam Ltd", PoolMode::Custom));
        let mut transcript = String::new();
        for (method, what, body, needle) in [
            ("POST", "duplicate name", json!({ "Name": "contoso" }), "already exists"),
            ("POST", "no name", json!({ "LicenseSettings": 1 }), "Name is required"),
            ("POST", "bad settings", json!({ "Name": "X", "LicenseSettings": "3" }), "LicenseSettings"),
            ("POST", "bad storage limit", json!({ "Name": "X", "StorageLimit": "lots" }), "StorageLimit"),
            ("PUT", "unknown id", json!({ "Id": Uuid::new_v4(), "Name": "X" }), "not found"),
            ("PUT", "no id", json!({ "Name": "X" }), "Id is required"),
        ] {
            let r = a.call(method, "/acme/api/Companies", Some(&token), JSON, body.to_string()).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.text);
            assert!(r.message().contains(needle), "{what}: {}", r.text);
            transcript.push_str(&format!("{method} {what}: {}\n", r.message()));
        }

        // Users refer to their company by name; deleting the company keeps them, without it.
        let member = a.create_user(&token, json!({ "Email": "m", "Password": "secret1", "Company": "Fabrikam Ltd" })).await;
        let r = a.delete(&format!("/acme/api/companies/{fabrikam}"), &token).await;
        r.expect(StatusCode::OK);
        assert_eq!(r.text, "");
        assert_eq!(user_by_uuid(&f, member).await.company, None);
        assert_eq!(a.get(&format!("/acme/api/Users/{member}"), &token).await.json()["Company"], Value::Null);
        for id in [fabrikam.to_string(), "not-a-guid".to_owned()] {
            let r = a.delete(&format!("/acme/api/Companies/{id}"), &token).await;
            r.expect(StatusCode::BAD_REQUEST);
            assert!(r.message().contains("not found"), "{}", r.text);
            transcript.push_str(&format!("DELETE {}\n", r.message()));
        }
        // A company with licenses in its own pool is not deleted.
        let ult = f.user_product("Ultimate", 0).await;
        f.add_seats(NewSeats { pool_company: Some(CompanyRef::Uuid(contoso)), ..NewSeats::plain(ProductRef::Id(ult.id), 1) }).await;
        let r = a.delete(&format!("/acme/api/Companies/{contoso}"), &token).await;
        r.expect(StatusCode::BAD_REQUEST);
        transcript.push_str(&format!("DELETE with pool: {}\n", r.message()));
        insta::assert_snapshot!("company_errors", mask(&transcript));
        assert_eq!(a.get("/acme/api/Companies", &token).await.json().as_array().unwrap().len(), 2);
    }

    async fn computers_are_bound_to_users_and_listed_with_their_license(f: Fixture) {
        let a = App::new(&f).await;
        let token = a.admin().await;
        a.post("/acme/api/Companies", &token, json!({ "Name": "Contoso", "LicenseSettings": 1 })).await.expect(StatusCode::OK);
        let user = a.create_user(&token, json!({ "Email": "charlie", "Password": "secret1", "Company": "Contoso" })).await;
        let other = a.create_user(&token, json!({ "Email": "other", "Password": "secret1" })).await;
        let r = a.post("/acme/api/Computers/HW-1/authorization", &token, json!({ "UserId": user, "ComputerName": "charlie-pc", "OperatingSystem": "Windows 11" })).await;
        r.expect(StatusCode::OK);
        assert_eq!(r.json(), json!({ "ResultCode": 0, "ErrorMessage": "" }));
        insta::assert_snapshot!("computer_authorized", snapshot_text(&r));
        a.post("/acme/api/computers/HW-2/Authorization", &token, json!({ "userid": user })).await.expect(StatusCode::OK);
        let computers = a.get(&format!("/acme/api/Users/{user}/Computers"), &token).await;
        computers.expect(StatusCode::OK);
        assert_eq!(computers.json(), json!([
            { "DestinationId": null, "ComputerName": "charlie-pc" },
            { "DestinationId": null, "ComputerName": "HW-2" },
        ]));
        insta::assert_snapshot!("user_computers", snapshot_text(&computers));
        a.get(&format!("/acme/api/Users/{}/Computers", Uuid::new_v4()), &token).await.expect(StatusCode::BAD_REQUEST);

        // A granted license activated on HW-1 shows in the computer list.
        let ult = f.user_product("Ultimate", 0).await;
        let seats = f.add_seats(NewSeats { trial: true, expires_at: Some(common::START + time::Duration::days(15)), ..NewSeats::plain(ProductRef::Id(ult.id), 1) }).await;
        a.post("/acme/api/Licenses/Grant", &token, op(seats[0].id, user)).await.expect(StatusCode::OK);
        f.ok(Command::ActivateSeat { seat: seats[0].id, activation: Activation { hardware_id: "HW-1".into(), computer_name: "charlie-pc".into(), operating_system: "Windows 11".into() }, user: None }).await;
        let page = a.get("/acme/api/Computers/0/10", &token).await;
        page.expect(StatusCode::OK);
        let body = page.json();
        assert_eq!(body["Count"], 2);
        assert_eq!(body["Computers"][0]["ComputerHID"], "HW-1");
        assert_eq!(body["Computers"][0]["UserEmail"], "charlie");
        assert_eq!(body["Computers"][0]["CompanyName"], "Contoso");
        assert_eq!(body["Computers"][0]["License"], json!({ "Granted": true, "IsTrial": true, "DisplayExpiresDate": "2026-12-08T09:00:00" }));
        assert_eq!(body["Computers"][1]["License"]["Granted"], false);
        insta::assert_snapshot!("computers_page", snapshot_text(&page));
        // One computer by its hardware id, in the list's shape.
        let one = a.get("/acme/api/computers/HW-1", &token).await;
        one.expect(StatusCode::OK);
        assert_eq!(one.json(), body["Computers"][0]);
        let missing = a.get("/acme/api/Computers/HW-404", &token).await;
        missing.expect(StatusCode::BAD_REQUEST);
        assert_eq!(missing.json(), json!({ "ErrorCode": -6, "Message": "Object \"HW-404\" not found" }));
        let second = a.get("/acme/api/Computers/1/1", &token).await.json();
        assert_eq!(second["Computers"].as_array().unwrap().len(), 1);
        assert_eq!(second["Computers"][0]["ComputerHID"], "HW-2");
        a.get("/acme/api/Computers/x/10", &token).await.expect(StatusCode::BAD_REQUEST);
        a.get("/acme/api/Computers/0/-1", &token).await.expect(StatusCode::BAD_REQUEST);

        // Handing HW-1 to another user clears the activation there; Revoke then has nothing to do.
        a.post("/acme/api/Computers/HW-1/authorization", &token, json!({ "UserId": other })).await.expect(StatusCode::OK);
        let s = seat_of(&f, seats[0].id).await;
        assert_eq!((s.activation, s.holder.is_some()), (None, true));
        let mut transcript = String::new();
        for (what, body, status) in [
            ("unknown user", json!({ "UserId": Uuid::new_v4() }), StatusCode::BAD_REQUEST),
            ("malformed user", json!({ "UserId": "x" }), StatusCode::BAD_REQUEST),
            ("company only", json!({ "CompanyId": Uuid::new_v4() }), StatusCode::BAD_REQUEST),
            ("empty", json!({}), StatusCode::BAD_REQUEST),
        ] {
            let r = a.post("/acme/api/Computers/HW-3/authorization", &token, body).await;
            assert_eq!(r.status, status, "{what}: {}", r.text);
            transcript.push_str(&format!("{what}: {}\n", r.text));
        }
        insta::assert_snapshot!("computer_errors", mask(&transcript));
        let unknown = a.post("/acme/api/Computers/HW-3/authorization", &token, json!({ "UserId": Uuid::new_v4() })).await;
        assert_eq!(unknown.json()["ErrorCode"], -6);
    }
}

// ---------------------------------------------------------------------------------------------
// Concurrency: many clients granting from one pool never get more than it holds.

async fn concurrent_grants(db: TestDb) {
    const SEATS: usize = 10;
    const CLIENTS: usize = 40;
    let f = Fixture::new(db).await;
    let a = Arc::new(App::new(&f).await);
    let token = a.admin().await;
    let ult = f.user_product("Ultimate", SEATS as i64).await;
    let seats: Vec<Uuid> = f
        .ledger
        .seats(f.tenant.id, &SeatFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    let mut users = Vec::new();
    for i in 0..CLIENTS {
        users.push(
            a.create_user(
                &token,
                json!({ "Email": format!("client{i}"), "Password": "secret1" }),
            )
            .await,
        );
    }
    // Each client walks the pool (from a different start) until one Grant succeeds.
    let mut tasks = Vec::new();
    for (i, user) in users.iter().copied().enumerate() {
        let (a, token, seats) = (a.clone(), token.clone(), seats.clone());
        tasks.push(tokio::spawn(async move {
            for k in 0..seats.len() {
                let seat = seats[(i + k) % seats.len()];
                let r = a
                    .post("/acme/api/Licenses/Grant", &token, op(seat, user))
                    .await;
                match r.status {
                    StatusCode::OK => return Some(seat),
                    StatusCode::BAD_REQUEST => assert!(
                        r.message().contains("another user"),
                        "unexpected refusal: {}",
                        r.text
                    ),
                    other => panic!("unexpected {other}: {}", r.text),
                }
            }
            None
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        if let Some(seat) = t.await.unwrap() {
            won.push(seat);
        }
    }
    assert_eq!(won.len(), SEATS, "exactly as many grants as seats");
    won.sort();
    won.dedup();
    assert_eq!(won.len(), SEATS, "no seat granted twice");
    assert_eq!(f.counts(&ult).await, (SEATS as i64, SEATS as i64, 0));
    let listed = a.get("/acme/api/Licenses?isAvailable=true", &token).await;
    assert_eq!(listed.text, "[]");
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_grants_never_exceed_the_pool_sqlite() {
    concurrent_grants(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_grants_never_exceed_the_pool_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    concurrent_grants(db).await;
}
