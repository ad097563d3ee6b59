//! The web console in Chromium (issue 13): Playwright for Python (PyPI, pinned in
//! `tests/python/requirements.txt`) drives Debian's `chromium` against the real binary; see
//! `tests/python/console_playwright.py` for what it checks. Screenshots of every page land in
//! `target/console-screens/`.

use std::path::Path;

use crate::server::{Server, run_python};

const PASSWORD: &str = "console-browser-password";
const CHROMIUM: &str = "/usr/bin/chromium";

#[tokio::test]
async fn the_console_works_in_chromium() {
    if !Path::new(CHROMIUM).exists() {
        // `.ci/run` installs it; a developer machine without it skips (CI may not).
        assert!(
            !allot_ledger::testing::in_ci(),
            "{CHROMIUM} is missing (apt-get install chromium)"
        );
        eprintln!("skipping the browser test: {CHROMIUM} is missing (apt-get install chromium)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("allot.db").display());
    let server = Server::start(&db, Some(PASSWORD)).await;
    let screens = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/console-screens")
        .display()
        .to_string();
    let url = server.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        run_python("console_playwright.py", &[&url, PASSWORD, &screens])
    })
    .await
    .unwrap();
    eprintln!("{out}");
    assert!(out.contains("console in chromium: ok"), "{out}");
    server.stop();
}

/// An open live audit feed (Server-Sent Events) does not hold a shutdown up: SIGTERM ends the
/// stream at once and the server exits well inside its 20-second grace.
#[tokio::test]
async fn an_open_audit_feed_does_not_delay_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("allot.db").display());
    let server = Server::start(&db, Some(PASSWORD)).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie_of = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .and_then(|c| c.split(';').next())
            .map(str::to_owned)
            .unwrap()
    };
    let form = http
        .get(format!("{}/console/login", server.url))
        .send()
        .await
        .unwrap();
    let login_cookie = cookie_of(&form, "allot_console_login");
    let token = login_cookie.split_once('=').unwrap().1.to_owned();
    let body = serde_urlencoded::to_string([
        ("tenant", "default"),
        ("login", "admin"),
        ("password", PASSWORD),
        ("csrf", token.as_str()),
    ])
    .unwrap();
    let logged_in = http
        .post(format!("{}/console/login", server.url))
        .header("cookie", &login_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(logged_in.status(), 303);
    let session = cookie_of(&logged_in, "allot_console");
    let mut feed = http
        .get(format!("{}/console/audit/stream", server.url))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    assert_eq!(feed.headers()["content-type"], "text/event-stream");
    // The first chunk arrives (the retry hint): the stream is open.
    let first = feed.chunk().await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&first).contains("retry:"),
        "{first:?}"
    );
    let started = std::time::Instant::now();
    server.stop();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "shutdown took {:?} with a feed open",
        started.elapsed()
    );
}
