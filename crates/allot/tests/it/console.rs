//! The web console in process (`tower::ServiceExt::oneshot`): its session cookie's flags, CSRF
//! refusals, role refusals, the Content-Security-Policy and what pages may contain under it.
//! The browser tests (`console_browser.rs`) drive the same pages in Chromium.

use allot_ledger::testing as common;

use allot::config::{Secret, Settings};
use allot::server::{app, bootstrap};
use allot::state::AppState;
use allot_ledger::Ledger;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const PASSWORD: &str = "console horse battery";

struct Console {
    router: Router,
    _db: common::TestDb,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }

    /// The `Set-Cookie` header that sets `name`.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A browser's cookie jar for one login: the session cookie and its CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default()
}

/// The value of the first `name="csrf" value="..."` in a page.
fn csrf_in(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF field")
        + 19;
    html[at..at + 64].to_owned()
}

impl Console {
    async fn new() -> Console {
        Self::with(|_| {}).await
    }

    async fn with(tune: impl FnOnce(&mut Settings)) -> Console {
        let db = common::TestDb::sqlite();
        let mut settings = Settings {
            db: Secret::new(db.url()),
            admin_password: Some(Secret::new(PASSWORD)),
            metrics_listen: None,
            ..Settings::default()
        };
        tune(&mut settings);
        let ledger = Ledger::open(&db.url()).await.unwrap();
        let state = AppState::new(ledger, settings);
        bootstrap(&state).await.unwrap();
        Console {
            router: app(state),
            _db: db,
        }
    }

    async fn send(&self, req: Request<Body>) -> Answer {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str, session: Option<&Session>) -> Answer {
        let mut req = Request::get(path);
        if let Some(s) = session {
            req = req.header(header::COOKIE, format!("allot_console={}", s.cookie));
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// Posts a form as a logged-in browser would (`csrf` is added when given).
    async fn post(
        &self,
        path: &str,
        session: &Session,
        fields: &[(&str, &str)],
        csrf: Option<&str>,
    ) -> Answer {
        let mut fields: Vec<(&str, &str)> = fields.to_vec();
        if let Some(token) = csrf {
            fields.push(("csrf", token));
        }
        let body = serde_urlencoded::to_string(&fields).unwrap();
        self.send(
            Request::post(path)
                .header(header::COOKIE, format!("allot_console={}", session.cookie))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    /// The login form's answer to `login`/`password` (with the login CSRF cookie and field).
    async fn try_login(&self, login: &str, password: &str, extra: &[(&str, &str)]) -> Answer {
        let form = self.get("/console/login", None).await;
        assert_eq!(form.status, StatusCode::OK);
        let token = cookie_value(&form.set_cookie("allot_console_login").unwrap());
        assert_eq!(csrf_in(&form.text), token);
        let mut fields = vec![
            ("tenant", "default"),
            ("login", login),
            ("password", password),
            ("csrf", token.as_str()),
        ];
        fields.extend_from_slice(extra);
        let mut req = Request::post("/console/login")
            .header(header::COOKIE, format!("allot_console_login={token}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (name, value) in extra.iter().filter(|(n, _)| n.starts_with("header:")) {
            req = req.header(&name["header:".len()..], *value);
        }
        let fields: Vec<_> = fields
            .into_iter()
            .filter(|(n, _)| !n.starts_with("header:"))
            .collect();
        self.send(
            req.body(Body::from(serde_urlencoded::to_string(&fields).unwrap()))
                .unwrap(),
        )
        .await
    }

    async fn login(&self, login: &str, password: &str) -> Session {
        let answer = self.try_login(login, password, &[]).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
        let cookie = cookie_value(&answer.set_cookie("allot_console").unwrap());
        let page = self
            .get(
                "/console/sessions",
                Some(&Session {
                    cookie: cookie.clone(),
                    csrf: String::new(),
                }),
            )
            .await;
        Session {
            csrf: csrf_in(&page.text),
            cookie,
        }
    }

    /// The API, with a bearer token.
    async fn api(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Answer {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string()))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        self.send(req).await
    }

    async fn admin_token(&self) -> String {
        let r = self
            .send(
                Request::post("/v1/auth/login")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        json!({"tenant": "default", "login": "admin", "password": PASSWORD})
                            .to_string(),
                    ))
                    .unwrap(),
            )
            .await;
        r.json()["token"].as_str().unwrap().to_owned()
    }

    /// A product with seats, a user and a reader login; answers (admin token, product id, user id).
    async fn seed(&self) -> (String, i64, i64) {
        let t = self.admin_token().await;
        let p = self
            .api(
                "POST",
                "/v1/products",
                &t,
                Some(json!({"owner": "SuperOffice", "name": "crm", "seats": 3})),
            )
            .await;
        assert_eq!(p.status, StatusCode::CREATED, "{}", p.text);
        let u = self
            .api(
                "POST",
                "/v1/users",
                &t,
                Some(json!({"login": "ann", "first_name": "Ann"})),
            )
            .await;
        assert_eq!(u.status, StatusCode::CREATED, "{}", u.text);
        let r = self
            .api(
                "POST",
                "/v1/logins",
                &t,
                Some(json!({"login": "rita", "password": PASSWORD, "role": "reader"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let r = self
            .api(
                "POST",
                "/v1/logins",
                &t,
                Some(json!({"login": "ann", "password": PASSWORD, "role": "user", "user": "ann"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        (
            t,
            p.json()["id"].as_i64().unwrap(),
            u.json()["id"].as_i64().unwrap(),
        )
    }

    async fn in_use(&self, token: &str, product: i64) -> i64 {
        let r = self
            .api("GET", &format!("/v1/products/{product}"), token, None)
            .await;
        r.json()["status"]["in_use"].as_i64().unwrap()
    }
}

#[tokio::test]
async fn the_root_and_pages_without_a_session_lead_to_the_login() {
    let c = Console::new().await;
    let root = c.get("/", None).await;
    assert!(root.status.is_redirection(), "{}", root.status);
    assert_eq!(root.location(), "/console");
    let dashboard = c.get("/console/users?q=a", None).await;
    assert_eq!(dashboard.status, StatusCode::SEE_OTHER);
    assert_eq!(
        dashboard.location(),
        "/console/login?next=%2Fconsole%2Fusers%3Fq%3Da"
    );
    // A table refreshing itself (htmx) sends the whole page to the login instead.
    let table = c
        .send(
            Request::get("/console/sessions")
                .header("hx-request", "true")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(table.status, StatusCode::NO_CONTENT);
    assert_eq!(
        table.headers["hx-redirect"],
        "/console/login?next=%2Fconsole%2Fsessions"
    );
    // An unknown console page is the console's own 404.
    let missing = c.get("/console/nowhere", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(
        missing.text.contains("<h1>Not found</h1>"),
        "{}",
        missing.text
    );
}

#[tokio::test]
async fn the_session_cookie_is_http_only_strict_and_secure_behind_tls() {
    let c = Console::new().await;
    let answer = c.try_login("admin", PASSWORD, &[]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.text);
    assert_eq!(answer.location(), "/console");
    let cookie = answer.set_cookie("allot_console").unwrap();
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=43200",
    ] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    assert!(cookie_value(&cookie).starts_with("allot_"));
    // X-Forwarded-Proto counts only when the configuration trusts the proxy.
    let https = [("header:x-forwarded-proto", "https")];
    let untrusted = c.try_login("admin", PASSWORD, &https).await;
    assert!(
        !untrusted
            .set_cookie("allot_console")
            .unwrap()
            .contains("Secure")
    );
    let trusting = Console::with(|s| s.trust_forwarded_proto = true).await;
    let behind_tls = trusting.try_login("admin", PASSWORD, &https).await;
    assert!(
        behind_tls
            .set_cookie("allot_console")
            .unwrap()
            .contains("; Secure")
    );
    let plain = trusting.try_login("admin", PASSWORD, &[]).await;
    assert!(
        !plain
            .set_cookie("allot_console")
            .unwrap()
            .contains("Secure")
    );
    let always = Console::with(|s| s.console_secure_cookie = true).await;
    let secure = always.try_login("admin", PASSWORD, &[]).await;
    assert!(
        secure
            .set_cookie("allot_console")
            .unwrap()
            .contains("; Secure")
    );
    // The login form's own CSRF cookie has the same flags.
    let form = always.get("/console/login", None).await;
    let login_cookie = form.set_cookie("allot_console_login").unwrap();
    for flag in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(
            login_cookie.contains(flag),
            "{flag} missing: {login_cookie}"
        );
    }
}

#[tokio::test]
async fn a_wrong_password_shows_the_form_with_an_error_and_is_throttled_like_the_api() {
    let c = Console::new().await;
    let wrong = c.try_login("admin", "not the password", &[]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.text.contains("Wrong tenant, login or password."),
        "{}",
        wrong.text
    );
    assert!(
        wrong.text.contains("<form"),
        "the form again: {}",
        wrong.text
    );
    assert!(wrong.set_cookie("allot_console").is_none());
    // The API's per-login throttle: five free failures, then a lock (shared with the API).
    for _ in 0..5 {
        c.try_login("admin", "not the password", &[]).await;
    }
    let locked = c.try_login("admin", PASSWORD, &[]).await;
    assert_eq!(
        locked.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        locked.text
    );
    assert!(locked.headers.contains_key(header::RETRY_AFTER));
    assert!(
        locked.text.contains("Too many failed attempts"),
        "{}",
        locked.text
    );
    let api = c
        .send(
            Request::post("/v1/auth/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({"tenant": "default", "login": "admin", "password": PASSWORD})
                        .to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(api.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_login_form_itself_needs_its_csrf_token() {
    let c = Console::new().await;
    let body = "tenant=default&login=admin&password=console+horse+battery";
    let forged = c
        .send(
            Request::post("/console/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
    assert!(forged.set_cookie("allot_console").is_none());
}

#[tokio::test]
async fn forms_without_the_sessions_csrf_token_are_refused_and_change_nothing() {
    let c = Console::new().await;
    let (token, product, user) = c.seed().await;
    let admin = c.login("admin", PASSWORD).await;
    let path = format!("/console/users/{user}/assign");
    let product_id = product.to_string();
    let fields = [("product", product_id.as_str())];
    let missing = c.post(&path, &admin, &fields, None).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN, "{}", missing.text);
    assert!(missing.text.contains("CSRF"), "{}", missing.text);
    let other = c.login("admin", PASSWORD).await;
    let foreign = c.post(&path, &admin, &fields, Some(&other.csrf)).await;
    assert_eq!(
        foreign.status,
        StatusCode::FORBIDDEN,
        "another session's token"
    );
    assert_eq!(c.in_use(&token, product).await, 0);
    // The same form with its token goes through, and the API sees the change.
    let ok = c.post(&path, &admin, &fields, Some(&admin.csrf)).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text);
    assert_eq!(ok.location(), format!("/console/users/{user}"));
    assert_eq!(c.in_use(&token, product).await, 1);
    // The header form of the token (htmx) works too.
    let unassign = c
        .send(
            Request::post(format!("/console/users/{user}/unassign"))
                .header(header::COOKIE, format!("allot_console={}", admin.cookie))
                .header("x-csrf-token", &admin.csrf)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("product={product}")))
                .unwrap(),
        )
        .await;
    assert_eq!(unassign.status, StatusCode::SEE_OTHER, "{}", unassign.text);
    assert_eq!(c.in_use(&token, product).await, 0);
    // Logging out is a state change too.
    let logout = c.post("/console/logout", &admin, &[], None).await;
    assert_eq!(logout.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_reader_sees_no_buttons_and_the_server_refuses_its_changes() {
    let c = Console::new().await;
    let (token, product, user) = c.seed().await;
    let reader = c.login("rita", PASSWORD).await;
    let page = c
        .get(&format!("/console/users/{user}"), Some(&reader))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("SuperOffice&#x2f;crm"), "{}", page.text);
    for button in ["Assign", "Unassign", "Retire", "Log off"] {
        assert!(
            !page.text.contains(&format!(">{button}<")),
            "a reader sees {button}: {}",
            page.text
        );
    }
    assert!(!page.text.contains("/assign\""), "no assign form");
    let users = c.get("/console/users", Some(&reader)).await;
    assert!(!users.text.contains("Add user"), "{}", users.text);
    assert!(
        !users.text.contains("/console/tokens"),
        "no Tokens link for a reader"
    );
    // Its session's CSRF token is valid: the role decides.
    let path = format!("/console/users/{user}/assign");
    let refused = c
        .post(
            &path,
            &reader,
            &[("product", &product.to_string())],
            Some(&reader.csrf),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.text);
    assert!(refused.text.contains("admin role"), "{}", refused.text);
    assert_eq!(c.in_use(&token, product).await, 0);
    let tokens = c.get("/console/tokens", Some(&reader)).await;
    assert_eq!(tokens.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_user_login_sees_only_its_own_licenses_and_sessions() {
    let c = Console::new().await;
    let (token, _product, ann) = c.seed().await;
    let bob = c
        .api("POST", "/v1/users", &token, Some(json!({"login": "bob"})))
        .await
        .json()["id"]
        .as_i64()
        .unwrap();
    let me = c.login("ann", PASSWORD).await;
    let home = c.get("/console", Some(&me)).await;
    assert_eq!(home.status, StatusCode::SEE_OTHER);
    assert_eq!(home.location(), format!("/console/users/{ann}"));
    let own = c.get(&format!("/console/users/{ann}"), Some(&me)).await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(own.text.contains("My licenses"), "{}", own.text);
    assert!(!own.text.contains(">Dashboard<"), "{}", own.text);
    let other = c.get(&format!("/console/users/{bob}"), Some(&me)).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    for page in [
        "/console/users",
        "/console/products",
        "/console/audit",
        "/console/companies",
    ] {
        assert_eq!(
            c.get(page, Some(&me)).await.status,
            StatusCode::FORBIDDEN,
            "{page}"
        );
    }
    // Sessions: bob's is not on ann's page, hers is.
    for (user, device) in [("ann", "ann-laptop"), ("bob", "bob-laptop")] {
        let r = c
            .api(
                "POST",
                "/v1/sessions",
                &token,
                Some(
                    json!({"user": user, "client": "web", "device": device, "lease_seconds": 600}),
                ),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    }
    let sessions = c.get("/console/sessions", Some(&me)).await;
    assert!(sessions.text.contains("ann-laptop"), "{}", sessions.text);
    assert!(!sessions.text.contains("bob-laptop"), "{}", sessions.text);
    assert!(!sessions.text.contains(">Log off<"), "{}", sessions.text);
}

#[tokio::test]
async fn every_page_has_a_strict_csp_and_nothing_inline() {
    let c = Console::new().await;
    let (token, product, user) = c.seed().await;
    let company = c
        .api(
            "POST",
            "/v1/companies",
            &token,
            Some(json!({"name": "Acme <b>&</b>", "pool_mode": "company"})),
        )
        .await
        .json()["id"]
        .as_i64()
        .unwrap();
    let admin = c.login("admin", PASSWORD).await;
    let pages = [
        "/console".to_owned(),
        "/console/products".to_owned(),
        format!("/console/products/{product}?range=24h"),
        "/console/users?q=an".to_owned(),
        format!("/console/users/{user}"),
        "/console/sessions".to_owned(),
        "/console/companies".to_owned(),
        format!("/console/companies/{company}"),
        "/console/audit?actor=admin".to_owned(),
        "/console/tokens".to_owned(),
        "/console/login".to_owned(),
    ];
    for path in &pages {
        let page = c.get(path, Some(&admin)).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.text);
        let csp = page
            .headers
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{path}: no CSP"));
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-eval"), "{path}: {csp}");
        assert_eq!(page.headers[header::CACHE_CONTROL], "no-store", "{path}");
        assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY", "{path}");
        let html = page.text.to_ascii_lowercase();
        // Every script is a file; no inline handler, no inline style.
        for (at, _) in html.match_indices("<script") {
            let tag = &html[at..at + html[at..].find('>').unwrap()];
            assert!(
                tag.contains(" src=\"/console/static/"),
                "{path}: inline script {tag}"
            );
        }
        for needle in [
            " onclick=",
            " onload=",
            " onsubmit=",
            " onchange=",
            " style=",
            "javascript:",
        ] {
            assert!(!html.contains(needle), "{path}: {needle}");
        }
        // Every input but hidden ones has a label naming it.
        for (at, _) in html.match_indices("<input") {
            let tag = &html[at..at + html[at..].find('>').unwrap()];
            if tag.contains("type=\"hidden\"") {
                continue;
            }
            let id = tag
                .split("id=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("{path}: input without id {tag}"));
            assert!(
                html.contains(&format!("<label for=\"{id}\"")),
                "{path}: no label for {id}"
            );
        }
    }
    // The history drawn: a sparkline per pool on the dashboard, the chart's points (one an hour
    // over 7 days) in the product page for uPlot, and the same points as a table.
    let dashboard = c.get("/console", Some(&admin)).await;
    assert!(dashboard.text.contains("<polyline"), "{}", dashboard.text);
    assert!(
        dashboard.text.contains("id=\"refusals\">0<"),
        "{}",
        dashboard.text
    );
    let product_page = c
        .get(&format!("/console/products/{product}"), Some(&admin))
        .await;
    let at = product_page.text.find("data-usage=\"").expect("chart data") + 12;
    let end = at + product_page.text[at..].find('"').unwrap();
    let json = product_page.text[at..end].replace("&quot;", "\"");
    let usage: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let points = usage["at"].as_array().unwrap().len();
    assert!((168..=169).contains(&points), "{points} points");
    assert_eq!(usage["total"].as_array().unwrap().last().unwrap(), 3);
    // Names are escaped, never markup.
    let companies = c.get("/console/companies", Some(&admin)).await;
    assert!(
        companies
            .text
            .contains("Acme &lt;b&gt;&amp;&lt;&#x2f;b&gt;")
            || companies.text.contains("Acme &lt;b&gt;&amp;&lt;/b&gt;"),
        "{}",
        companies.text
    );
    // Static files are served from the binary with their types.
    for (file, kind) in [
        ("htmx.min.js", "text/javascript"),
        ("uPlot.iife.min.js", "text/javascript"),
        ("console.css", "text/css"),
    ] {
        let asset = c.get(&format!("/console/static/{file}"), None).await;
        assert_eq!(asset.status, StatusCode::OK, "{file}");
        assert!(
            asset.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert!(asset.text.len() > 1000, "{file}");
    }
}

#[tokio::test]
async fn logging_out_revokes_the_session() {
    let c = Console::new().await;
    let token = c.admin_token().await;
    let admin = c.login("admin", PASSWORD).await;
    assert_eq!(c.get("/console", Some(&admin)).await.status, StatusCode::OK);
    let out = c
        .post("/console/logout", &admin, &[], Some(&admin.csrf))
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/console/login");
    assert!(
        out.set_cookie("allot_console")
            .unwrap()
            .contains("Max-Age=0")
    );
    // The old cookie, replayed, no longer opens anything.
    let replay = c.get("/console", Some(&admin)).await;
    assert_eq!(replay.status, StatusCode::SEE_OTHER);
    assert!(replay.location().starts_with("/console/login"));
    let tokens = c.api("GET", "/v1/tokens", &token, None).await.json();
    let console: Vec<&Value> = tokens
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["label"] == "console")
        .collect();
    assert_eq!(console.len(), 1, "{tokens}");
    assert!(console[0]["revoked_at"].is_string(), "{tokens}");
}

#[tokio::test]
async fn tokens_are_shown_once_and_revoked_from_the_console() {
    let c = Console::new().await;
    let (token, _, _) = c.seed().await;
    let admin = c.login("admin", PASSWORD).await;
    let created = c
        .post(
            "/console/tokens",
            &admin,
            &[("label", "ci"), ("role", "reader"), ("ttl_hours", "2")],
            Some(&admin.csrf),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let at = created.text.find("value=\"allot_").expect("the new token") + 7;
    let secret = &created.text[at..at + 70];
    assert!(secret.starts_with("allot_"), "{secret}");
    // It works against the API, and the list page never shows it again.
    let whoami = c.api("GET", "/v1/products", secret, None).await;
    assert_eq!(whoami.status, StatusCode::OK, "{}", whoami.text);
    let list = c.get("/console/tokens", Some(&admin)).await;
    assert!(!list.text.contains(secret));
    let id = c
        .api("GET", "/v1/tokens", &token, None)
        .await
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["label"] == "ci")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = c
        .post(
            &format!("/console/tokens/{id}/revoke"),
            &admin,
            &[],
            Some(&admin.csrf),
        )
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.text);
    assert_eq!(
        c.api("GET", "/v1/products", secret, None).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_refused_assignment_says_why_and_counts_as_a_refusal_on_the_dashboard() {
    let c = Console::new().await;
    let token = c.admin_token().await;
    let one = c
        .api(
            "POST",
            "/v1/products",
            &token,
            Some(json!({"owner": "SuperOffice", "name": "solo", "seats": 1})),
        )
        .await
        .json()["id"]
        .as_i64()
        .unwrap();
    let mut users = Vec::new();
    for login in ["ann", "bob"] {
        let u = c
            .api("POST", "/v1/users", &token, Some(json!({"login": login})))
            .await;
        users.push(u.json()["id"].as_i64().unwrap());
    }
    let admin = c.login("admin", PASSWORD).await;
    let fields = [("product", one.to_string())];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = c
        .post(
            &format!("/console/users/{}/assign", users[0]),
            &admin,
            &fields,
            Some(&admin.csrf),
        )
        .await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    let refused = c
        .post(
            &format!("/console/users/{}/assign", users[1]),
            &admin,
            &fields,
            Some(&admin.csrf),
        )
        .await;
    // The ledger's refusal comes back on the user's page as a message, not as an error page.
    assert_eq!(refused.status, StatusCode::SEE_OTHER, "{}", refused.text);
    let flash = refused
        .set_cookie("allot_console_flash")
        .expect("a message");
    let page = c
        .send(
            Request::get(refused.location())
                .header(
                    header::COOKIE,
                    format!(
                        "allot_console={}; allot_console_flash={}",
                        admin.cookie,
                        cookie_value(&flash)
                    ),
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert!(page.text.contains("role=\"alert\""), "{}", page.text);
    assert!(
        page.text
            .contains("no free seat of SuperOffice&#x2f;solo (1 of 1 in use)"),
        "{}",
        page.text
    );
    assert!(
        page.set_cookie("allot_console_flash")
            .unwrap()
            .contains("Max-Age=0"),
        "shown once"
    );
    assert_eq!(c.in_use(&token, one).await, 1);
    // The usage history counted the refusal; the dashboard shows it.
    let dashboard = c.get("/console", Some(&admin)).await;
    assert!(
        dashboard.text.contains("id=\"refusals\">1<"),
        "{}",
        dashboard.text
    );
}

#[tokio::test]
async fn the_product_page_shows_the_seat_price_and_what_unused_seats_cost() {
    let c = Console::new().await;
    let (token, product, _) = c.seed().await;
    let admin = c.login("admin", PASSWORD).await;
    let page = c
        .get(&format!("/console/products/{product}"), Some(&admin))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(
        !page.text.contains("id=\"unused-cost\""),
        "no price, no cost"
    );
    let r = c
        .api(
            "PATCH",
            &format!("/v1/products/{product}"),
            &token,
            Some(json!({"seat_price_per_30_days": {"amount": "1000000", "currency": "EUR"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for range in ["24h", "7d", "30d", "1y"] {
        let page = c
            .get(
                &format!("/console/products/{product}?range={range}"),
                Some(&admin),
            )
            .await;
        assert!(
            page.text
                .contains("<dd id=\"seat-price\">1000000.0000 EUR per seat and 30 days</dd>"),
            "{}",
            page.text
        );
        // Three seats bought, none held: the cost so far, with four places, in EUR.
        let at = page.text.find("id=\"unused-cost\"").expect("cost shown") + 16;
        let text = &page.text[at..at + page.text[at..].find("</p>").unwrap()];
        let amount = text
            .split("<strong>")
            .nth(1)
            .and_then(|s| s.strip_suffix(" EUR</strong>."))
            .unwrap_or_else(|| panic!("{text}"));
        let (whole, places) = amount.split_once('.').unwrap();
        assert!(
            whole.bytes().all(|b| b.is_ascii_digit()) && places.len() == 4,
            "{text}"
        );
    }
}
