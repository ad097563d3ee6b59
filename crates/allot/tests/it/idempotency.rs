//! `Idempotency-Key` against the real binary on each store: 20 concurrent retries of one seat
//! purchase add exactly one seat and every answer that is not 409 is the first one; the same key
//! with another body is 422; a replay after a restart answers the same.

use allot_ledger::testing as common;

use crate::server::Server;

use reqwest::StatusCode;
use serde_json::{Value, json};

const PASSWORD: &str = "idempotency-admin-password";

async fn token(url: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/auth/login"))
        .json(&json!({ "tenant": "default", "login": "admin", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    key: Option<&str>,
    body: Value,
) -> (StatusCode, String, bool) {
    let mut req = http.post(url).bearer_auth(token).json(&body);
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let replayed = r.headers().get("idempotent-replayed").is_some();
    (status, r.text().await.unwrap(), replayed)
}

async fn total(http: &reqwest::Client, url: &str, token: &str, product: i64) -> i64 {
    let r = http
        .get(format!("{url}/v1/products/{product}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    body["status"]["total"]
        .as_i64()
        .unwrap_or_else(|| panic!("{body}"))
}

async fn retries_change_once(db: &str) {
    let server = Server::start(db, Some(PASSWORD)).await;
    let url = server.url.clone();
    let admin = token(&url).await;
    let http = reqwest::Client::new();
    let (status, body, _) = post(
        &http,
        &format!("{url}/v1/products"),
        &admin,
        None,
        json!({ "owner": "SuperOffice", "name": "crm", "seats": 0 }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let product = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_i64()
        .unwrap();
    let seats_url = format!("{url}/v1/products/{product}/seats");

    // 20 concurrent retries with one key.
    let key = "\"7f4c1d2e-retry-one-seat\"";
    // Spread over a few hundred milliseconds, so some arrive while the first runs (409) and
    // some after it (the recorded answer).
    let tasks: Vec<_> = (0..20u64)
        .map(|i| {
            let (http, seats_url, admin) = (http.clone(), seats_url.clone(), admin.clone());
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(i % 10 * 15)).await;
                post(&http, &seats_url, &admin, Some(key), json!({ "count": 1 })).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert_eq!(total(&http, &url, &admin, product).await, 1, "{answers:?}");
    let done: Vec<_> = answers
        .iter()
        .filter(|(status, _, _)| *status != StatusCode::CONFLICT)
        .collect();
    assert!(!done.is_empty(), "every retry was 409: {answers:?}");
    for (status, body, _) in &answers {
        if *status == StatusCode::CONFLICT {
            let error: Value = serde_json::from_str(body).unwrap();
            assert_eq!(error["error"]["code"], "idempotency_in_flight");
        }
    }
    eprintln!(
        "20 concurrent retries: {} answered 409, {} answered (of which {} replays)",
        answers.len() - done.len(),
        done.len(),
        done.iter().filter(|(_, _, replayed)| *replayed).count()
    );
    let (first_status, first_body, _) = done[0];
    assert_eq!(*first_status, StatusCode::CREATED);
    assert!(
        done.iter()
            .all(|(s, b, _)| s == first_status && b == first_body),
        "{done:?}"
    );
    // A sequential retry: the recorded answer, marked as a replay, nothing added.
    let (status, body, replayed) =
        post(&http, &seats_url, &admin, Some(key), json!({ "count": 1 })).await;
    assert_eq!((status, &body), (*first_status, first_body));
    assert!(replayed);
    // The same key with another request.
    let (status, body, _) = post(&http, &seats_url, &admin, Some(key), json!({ "count": 2 })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("idempotency_key_reused"), "{body}");
    // A malformed key.
    let (status, _, _) = post(&http, &seats_url, &admin, Some(""), json!({ "count": 1 })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Another key is another purchase; no key, as before.
    let (status, _, replayed) = post(
        &http,
        &seats_url,
        &admin,
        Some("another"),
        json!({ "count": 1 }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(!replayed);
    post(&http, &seats_url, &admin, None, json!({ "count": 1 })).await;
    assert_eq!(total(&http, &url, &admin, product).await, 3);
    let first_body = first_body.clone();
    server.stop();

    // After a restart the key still answers the first answer and changes nothing.
    let again = Server::start(db, Some(PASSWORD)).await;
    let admin = token(&again.url).await;
    let seats_url = format!("{}/v1/products/{product}/seats", again.url);
    let (status, body, replayed) =
        post(&http, &seats_url, &admin, Some(key), json!({ "count": 1 })).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body, first_body);
    assert!(replayed);
    assert_eq!(total(&http, &again.url, &admin, product).await, 3);
    again.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("allot.db").display());
    retries_change_once(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_retries_on_postgres() {
    let Some(db) = common::TestDb::postgres().await else {
        return;
    };
    retries_change_once(&db.url()).await;
    db.drop_db().await;
}

/// The server process dies (SIGKILL) between a change and the write of its answer: the window
/// is held open on PostgreSQL by a trigger that stalls every answer write, and the database
/// session of the dead process is ended as its death would end it. After the restart the key
/// must still answer consistently: if the change committed, the retry is a replay of the
/// answer as the change left it (not of a later state) and changes nothing; if it did not,
/// the retry runs it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_between_the_change_and_its_answer_leaves_an_answerable_key() {
    let Some(db) = common::TestDb::postgres().await else {
        return;
    };
    let url_db = db.url();
    let mut server = Server::start(&url_db, Some(PASSWORD)).await;
    let url = server.url.clone();
    let admin = token(&url).await;
    let http = reqwest::Client::new();
    let (status, body, _) = post(
        &http,
        &format!("{url}/v1/products"),
        &admin,
        None,
        json!({ "owner": "SuperOffice", "name": "crm", "seats": 0 }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let product = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_i64()
        .unwrap();
    let product_url = format!("{url}/v1/products/{product}");
    db.stall_idempotent_answers().await;
    let key = "kill-between-change-and-answer";
    let patch = |http: reqwest::Client, product_url: String, admin: String| async move {
        http.patch(product_url)
            .bearer_auth(admin)
            .header("Idempotency-Key", key)
            .json(&json!({ "description": "first" }))
            .send()
            .await
    };
    let first = tokio::spawn(patch(http.clone(), product_url.clone(), admin.clone()));
    let mut stalled = None;
    for _ in 0..200 {
        stalled = db.stalled_answer_backend().await;
        if stalled.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let stalled = stalled.expect("the answer write never started");
    // SIGKILL: no shutdown of any kind; the process's database session dies with it.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    db.end_stall(stalled).await;
    assert!(
        first.await.unwrap().is_err(),
        "the first request got no answer"
    );
    drop(server);

    let again = Server::start(&url_db, Some(PASSWORD)).await;
    let admin = token(&again.url).await;
    let product_url = format!("{}/v1/products/{product}", again.url);
    let committed = {
        let r = http
            .get(&product_url)
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["description"] == "first"
    };
    // The pool moves on before the retry.
    let (status, body, _) = post(
        &http,
        &format!("{product_url}/seats"),
        &admin,
        None,
        json!({ "count": 2 }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let retry = patch(http.clone(), product_url.clone(), admin.clone())
        .await
        .unwrap();
    let status = retry.status();
    let replayed = retry.headers().get("idempotent-replayed").is_some();
    let answer: Value = retry.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["description"], "first");
    if committed {
        // Changed before the crash: the answer is the one of that change, as it left the pool.
        assert!(
            replayed,
            "a committed change answered as a fresh run: {answer}"
        );
        assert_eq!(answer["status"]["total"], 0, "{answer}");
    } else {
        // Nothing committed: the retry ran it, now.
        assert!(!replayed);
        assert_eq!(answer["status"]["total"], 2, "{answer}");
    }
    eprintln!("change committed before the kill: {committed}");
    // Exactly one edit of the product, however it went.
    let audit: Value = http
        .get(format!("{}/v1/audit?product={product}", again.url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let edits = audit["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{audit}"))
        .iter()
        .filter(|e| e["action"] == "product.edit")
        .count();
    assert_eq!(edits, 1, "{audit}");
    // And from now on the same answer.
    let replay = patch(http.clone(), product_url.clone(), admin.clone())
        .await
        .unwrap();
    assert!(replay.headers().get("idempotent-replayed").is_some());
    assert_eq!(replay.json::<Value>().await.unwrap(), answer);
    again.stop();
    db.drop_db().await;
}
