//! The real `allot` binary as a child process, and the Python clients the dialect tests drive
//! it with.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_allot");

/// A port that was free a moment ago and that no other test of this process has been given.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

pub struct Server {
    pub child: Child,
    pub url: String,
    pub metrics: String,
    pub stdout_lines: Vec<String>,
}

impl Server {
    /// Starts `allot serve` on `db` and waits until `/healthz` answers.
    pub async fn start(db: &str, admin_password: Option<&str>) -> Server {
        Server::start_with(db, admin_password, None).await
    }

    /// As [`Server::start`], with a TOML configuration file.
    pub async fn start_with(
        db: &str,
        admin_password: Option<&str>,
        config: Option<&std::path::Path>,
    ) -> Server {
        // A port can still be taken between choosing and binding it (by a client socket, say);
        // the server binds before it touches the store, so starting again on others is safe.
        for attempt in 1.. {
            match Self::try_start(db, admin_password, config, None).await {
                Some(server) => return server,
                None if attempt < 5 => continue,
                None => panic!("allot serve exited early {attempt} times"),
            }
        }
        unreachable!()
    }

    /// Starts `allot serve` on `db` on this port (a restart where clients expect it), retrying
    /// for a while if the port is not free yet.
    pub async fn start_on(db: &str, admin_password: Option<&str>, port: u16) -> Server {
        for _ in 0..25 {
            if let Some(server) = Self::try_start(db, admin_password, None, Some(port)).await {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("allot serve could not start again on port {port}")
    }

    /// The port the API listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// One start on fresh ports (or the API on `port`); `None` when the server exited before
    /// answering.
    async fn try_start(
        db: &str,
        admin_password: Option<&str>,
        config: Option<&std::path::Path>,
        port: Option<u16>,
    ) -> Option<Server> {
        let (port, metrics_port) = (port.unwrap_or_else(free_port), free_port());
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--db",
            db,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .env_remove("ALLOT_ADMIN_PASSWORD")
        .env("ALLOT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        if let Some(path) = config {
            cmd.arg("--config").arg(path);
        }
        if let Some(p) = admin_password {
            cmd.env("ALLOT_ADMIN_PASSWORD", p);
        }
        let mut child = cmd.spawn().expect("start allot serve");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{url}/healthz")).send().await
                && r.status().is_success()
            {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("allot serve exited early: {status}");
                return None;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "server did not come up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The first-start banner (if any) was printed before the listener opened.
        let mut stdout_lines = Vec::new();
        if admin_password.is_none() {
            let mut reader = BufReader::new(child.stdout.take().unwrap());
            for _ in 0..2 {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                stdout_lines.push(line.trim_end().to_owned());
            }
        }
        Some(Server {
            child,
            url,
            metrics: format!("http://127.0.0.1:{metrics_port}"),
            stdout_lines,
        })
    }

    pub fn stop(mut self) {
        self.terminate();
    }

    pub fn terminate(&mut self) {
        // SIGTERM: a graceful shutdown that exits cleanly.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "allot serve exited with {status} on SIGTERM"
                );
                return;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                panic!("allot serve did not stop on SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A test that fails midway must not leave its server running.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The Python interpreter of the test virtual environment (zeep, requests, msp360 from PyPI,
/// pinned in `tests/python/requirements.txt`). `.ci/run` creates it; a developer's first
/// `cargo test` creates it too. `ALLOT_TEST_PYTHON` points elsewhere.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("ALLOT_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    static CREATE: Mutex<()> = Mutex::new(());
    let _guard = CREATE.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The workspace's target directory, two levels above this crate.
    let venv = root.join("../../target").join("pyenv");
    let python = venv.join("bin").join("python");
    let marker = venv.join(".allot-requirements");
    let requirements = root.join("tests").join("python").join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("tests/python/requirements.txt");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) {
        return python;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 -m venv");
    assert!(
        status.success(),
        "creating the Python test environment failed"
    );
    let status = Command::new(&python)
        .args(["-m", "pip", "install", "-q", "-r"])
        .arg(&requirements)
        .status()
        .expect("pip install");
    assert!(
        status.success(),
        "installing the Python test clients failed"
    );
    std::fs::write(&marker, wanted).expect("venv marker");
    python
}

/// Runs `tests/python/<script>` with arguments; panics with its output unless it exits 0.
/// Returns its standard output.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(python())
        .arg(root.join("tests").join("python").join(script))
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    stdout
}
