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
