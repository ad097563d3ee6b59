//! The schema gate (issue 16 item 6): schemathesis (PyPI, pinned in
//! `tests/python/requirements.txt`) drives the real binary from `/v1/openapi.json` with an admin
//! token, every check, a fixed seed and a bounded number of examples; any failure fails the test
//! with schemathesis' report.

use std::process::Command;

use serde_json::{Value, json};

use crate::server::{Server, python};

const PASSWORD: &str = "schema-gate-password";

/// Examples per operation and phase: about 2,700 requests, well under a minute here.
const EXAMPLES: &str = "10";
const SEED: &str = "1";

/// Rules that bind two fields of one body, which the document does not state (utoipa derives
/// one schema per type): a `user` role needs its `user` (tokens and logins), and only a user
/// plan (extra flag 1) takes plan members (on a patch, the stored flags count too). The server
/// answers 422 there, as documented; every other check still runs on these operations. The
/// usage queries' `from`, `to` and `step` bind each other the same way (`to` after `from`, and
/// at most 10080 steps between them).
const CROSS_FIELD: &[(&str, &str)] = &[
    ("/v1/tokens", "POST"),
    ("/v1/logins", "POST"),
    ("/v1/products", "POST"),
    ("/v1/products/{product}", "PATCH"),
    ("/v1/products/{product}/usage", "GET"),
    ("/v1/usage", "GET"),
    // Not cross-field, but not statable either: whether a webhook URL's host resolves, and to a
    // public address (the SSRF guard; the gate runs without webhooks_allow_private).
    ("/v1/webhooks", "POST"),
    ("/v1/webhooks/{id}", "PATCH"),
];

fn config_toml() -> String {
    let mut toml = String::from(
        "[auth.openapi.bearer]\nbearer = \"${ALLOT_SCHEMATHESIS_TOKEN}\"\n\n\
         # Revoking a token by id could revoke the gate's own.\n\
         [[operations]]\ninclude-path = \"/v1/tokens/{id}\"\ninclude-method = \"DELETE\"\nenabled = false\n",
    );
    for (path, method) in CROSS_FIELD {
        toml.push_str(&format!(
            "\n[[operations]]\ninclude-path = \"{path}\"\ninclude-method = \"{method}\"\n\
             checks.positive_data_acceptance.expected-statuses = \
             [\"2xx\", \"401\", \"403\", \"404\", \"409\", \"422\", \"429\"]\n"
        ));
    }
    toml
}

#[tokio::test]
async fn schemathesis_finds_no_failure_in_the_native_api() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("allot.db").display());
    let server = Server::start(&db, Some(PASSWORD)).await;
    let http = reqwest::Client::new();
    let login: Value = http
        .post(format!("{}/v1/auth/login", server.url))
        .json(&json!({ "tenant": "default", "login": "admin", "password": PASSWORD }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // An admin token bound to no user: retiring users or changing passwords (both fuzzed) does
    // not revoke it.
    let token: Value = http
        .post(format!("{}/v1/tokens", server.url))
        .bearer_auth(login["token"].as_str().unwrap())
        .json(&json!({ "role": "admin", "label": "schemathesis" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["token"].as_str().expect("admin token").to_owned();
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(&config, config_toml()).unwrap();
    let hooks = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("python");
    let url = format!("{}/v1/openapi.json", server.url);
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .args(["-m", "schemathesis.cli", "--config-file"])
            .arg(&config)
            .args(["run", &url, "--checks", "all", "--seed", SEED])
            .args(["--max-examples", EXAMPLES, "--no-color"])
            .env("PYTHONPATH", &hooks)
            .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
            .env("ALLOT_SCHEMATHESIS_TOKEN", &token)
            .current_dir(dir.path())
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "schemathesis failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    server.stop();
}
