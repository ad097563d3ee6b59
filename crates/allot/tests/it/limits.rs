//! What a client can hold of the real server: slow and idle connections are cut after the
//! header timeout, open connections are capped below the descriptor limit, and SIGTERM lets
//! requests in flight finish, then exits 0 within the configured grace.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::server::Server;

const PASSWORD: &str = "limits-admin-pass";

async fn start(settings: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("allot.toml");
    std::fs::write(&config, settings).unwrap();
    let db = format!("sqlite://{}", dir.path().join("allot.db").display());
    let server = Server::start_with(&db, Some(PASSWORD), Some(&config)).await;
    (server, dir)
}

fn address(server: &Server) -> String {
    server.url.trim_start_matches("http://").to_owned()
}

/// Sockets the server process holds open.
fn sockets(server: &Server) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", server.child.id()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

/// Whether the server has closed this connection (end of stream or reset).
async fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before closing is fine; keep reading until it closes.
            Ok(Ok(_)) => continue,
        }
    }
}

async fn healthz(server: &Server) -> reqwest::StatusCode {
    reqwest::Client::new()
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_connections_are_cut_and_healthz_keeps_answering() {
    let (server, _dir) = start("header_timeout = 2\n").await;
    let addr = address(&server);
    // 1,000 slowloris connections, each sending one header line every half second.
    let mut held = Vec::new();
    for _ in 0..1000 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    for round in 0..2 {
        for s in held.iter_mut() {
            let _ = s
                .write_all(format!("X-Trickle-{round}: y\r\n").as_bytes())
                .await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let asked = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(1), healthz(&server))
        .await
        .expect("/healthz answers within 1 s while 1,000 slow connections are held");
    assert_eq!(status, reqwest::StatusCode::OK);
    eprintln!(
        "healthz answered in {:?} with {} sockets open in the server",
        asked.elapsed(),
        sockets(&server)
    );
    // However they trickle, the server closes them once the header timeout has passed.
    let mut cut = 0;
    for s in held.iter_mut() {
        if closed_by_server(s, Duration::from_secs(10)).await {
            cut += 1;
        }
    }
    assert_eq!(cut, 1000, "slow connections closed by the server");
    // An idle keep-alive connection is closed after the same timeout.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    assert!(closed_by_server(&mut idle, Duration::from_secs(10)).await);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_capped() {
    let (server, _dir) = start("header_timeout = 30\nmax_connections = 50\n").await;
    let addr = address(&server);
    let baseline = sockets(&server);
    let mut held = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open = sockets(&server);
    eprintln!("200 held connections: {open} sockets in the server (baseline {baseline})");
    assert!(
        open <= baseline + 50,
        "{open} sockets open (baseline {baseline}, cap 50)"
    );
    // Once they go, the server serves again.
    drop(held);
    assert_eq!(healthz(&server).await, reqwest::StatusCode::OK);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_then_exits_within_the_grace() {
    let (mut server, _dir) = start("shutdown_grace = 3\n").await;
    let addr = address(&server);
    // A login whose body is still arriving when SIGTERM comes.
    let body =
        format!("{{\"tenant\": \"default\", \"login\": \"admin\", \"password\": \"{PASSWORD}\"}}");
    let mut in_flight = TcpStream::connect(&addr).await.unwrap();
    in_flight
        .write_all(
            format!(
                "POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
                body.len(),
                &body[..10]
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // A request that will never complete.
    let mut stalled = TcpStream::connect(&addr).await.unwrap();
    stalled
        .write_all(b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = server.child.id().to_string();
    let signalled = Instant::now();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No new connections are taken.
    assert!(TcpStream::connect(&addr).await.is_err(), "still accepting");
    // The request in flight completes with its answer.
    in_flight.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), in_flight.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"token\""), "{answer}");
    // The stalled one does not hold the exit beyond the grace; the exit is clean.
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(15),
            "still running after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(3),
        "the stalled request was given the grace"
    );
    eprintln!(
        "exited {status} {:?} after SIGTERM (grace 3 s)",
        signalled.elapsed()
    );
    drop(stalled);
}
