//! `allot bench`: a load test over HTTP. It sets up P products x S seats and U users on a
//! server it starts (SQLite or PostgreSQL) or one it is pointed at, runs C concurrent clients
//! doing assign/unassign and grant/release for D seconds, then measures the same server's
//! `/healthz` the same way, prints both side by side with their ratio, and checks the ledger's
//! invariants through the API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::api::dto::{Invariants, IssuedToken, Page, ProductWithStatus};
use crate::api::v1::batch::BatchResponse;
use allot_ledger::{Seat, User};

use crate::cli::client::{Client, ClientError, segment};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// A running server to load (otherwise `allot serve` is started as a child process on --db)
    #[arg(long)]
    pub url: Option<String>,
    /// Admin token for --url
    #[arg(long, env = "ALLOT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Store for the server started here: sqlite (a temp file) or a postgres:// URL
    #[arg(long, default_value = "sqlite")]
    pub db: String,
    #[arg(long, default_value_t = 4)]
    pub products: usize,
    #[arg(long, default_value_t = 50)]
    pub seats: usize,
    #[arg(long, default_value_t = 200)]
    pub users: usize,
    #[arg(long, default_value_t = 32)]
    pub clients: usize,
    /// Seconds of load for each measurement
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// SQLite durability of the server started here
    #[arg(long, value_enum, default_value = "full")]
    pub sqlite_sync: crate::config::SqliteSync,
    /// Which protocol the license operations speak
    #[arg(long, value_enum, default_value = "native")]
    pub workload: Workload,
    /// Send license requests at this fixed rate (requests/s, open loop) instead of C clients
    /// each waiting for its last answer; latencies count from each request's scheduled start
    #[arg(long)]
    pub rate: Option<f64>,
    /// With --url: the server's process id, to report its CPU time per request
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Server processes to start on the one --db (PostgreSQL): the clients take turns between
    /// them, and the CPU per request is that of all of them together
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub servers: u16,
    /// Print the run and each measurement as JSON lines instead of text
    #[arg(long)]
    pub json: bool,
}

/// The wire the benchmark's license operations use; the ledger underneath is the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// `/v1` assign/unassign and grant/release
    Native,
    /// SuperOffice REST agents: AssignThirdPartyLicenses / UnassignThirdPartyLicenses
    Superoffice,
    /// MSP360: POST /api/Licenses/Grant and /Release
    Msp360,
}

/// Latencies and counts of one measurement.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    ok: u64,
    refused: u64,
    errors: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.ok += other.ok;
        self.refused += other.refused;
        self.errors += other.errors;
    }

    fn percentile(&self, sorted: &[u32], p: f64) -> f64 {
        if sorted.is_empty() {
            return 0.0;
        }
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[i] as f64 / 1000.0
    }

    fn report(&mut self, name: &str, elapsed: Duration, json: bool) -> f64 {
        self.latencies_us.sort_unstable();
        let total = self.latencies_us.len() as f64;
        let rate = total / elapsed.as_secs_f64();
        let sorted = std::mem::take(&mut self.latencies_us);
        if json {
            crate::cli::json_line(&json!({
                "measurement": name,
                "requests": sorted.len(),
                "seconds": elapsed.as_secs_f64(),
                "per_second": rate,
                "p50_ms": self.percentile(&sorted, 0.50),
                "p99_ms": self.percentile(&sorted, 0.99),
                "p999_ms": self.percentile(&sorted, 0.999),
                "ok": self.ok,
                "refused": self.refused,
                "errors": self.errors,
            }));
            self.latencies_us = sorted;
            return rate;
        }
        println!(
            "{name:<12} {:>9} requests in {:.1}s = {:>9.1}/s   p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms   ok {}  refused {}  errors {}",
            sorted.len(),
            elapsed.as_secs_f64(),
            rate,
            self.percentile(&sorted, 0.50),
            self.percentile(&sorted, 0.99),
            self.percentile(&sorted, 0.999),
            self.ok,
            self.refused,
            self.errors
        );
        self.latencies_us = sorted;
        rate
    }
}

impl Tally {
    /// One native answer, timed from `since`: 2xx ok, 409 a refusal (no free seat, seat taken),
    /// anything else an error.
    fn record(&mut self, since: Instant, result: &Result<Value, ClientError>) {
        self.latencies_us.push(since.elapsed().as_micros() as u32);
        match result {
            Ok(_) => self.ok += 1,
            Err(ClientError::Api { status, .. }) if status.as_u16() == 409 => self.refused += 1,
            Err(_) => self.errors += 1,
        }
    }

    /// One dialect answer: 2xx ok, 4xx a refusal (a seat already taken), anything else an error.
    fn record_status(&mut self, since: Instant, result: &Result<reqwest::StatusCode, ClientError>) {
        self.latencies_us.push(since.elapsed().as_micros() as u32);
        match result {
            Ok(s) if s.is_success() => self.ok += 1,
            Ok(s) if s.is_client_error() => self.refused += 1,
            _ => self.errors += 1,
        }
    }
}

struct World {
    products: Vec<i64>,
    product_names: Vec<String>,
    users: Vec<i64>,
    user_uuids: Vec<String>,
    seats: Vec<String>,
    /// How long the set-up took to make the products, to make the users, and to list them back.
    phases: [Duration; 3],
}

async fn setup(client: &Client, args: &BenchArgs, tag: &str) -> anyhow::Result<World> {
    // Products are made side by side (each request inserts its seats in one command), users
    // through `POST /v1/batch`, [`USERS_PER_BATCH`] to a request with a few requests in flight:
    // the scale tenant (1k products, 1M seats, 100k users) is then set up in the time
    // its rows take to write, not in 100k round trips.
    let workers = args.clients.clamp(1, 8);
    let started = Instant::now();
    let products = in_parallel(workers, args.products, |i| {
        let client = client.clone();
        let name = format!("{tag}-p{i}");
        let seats = args.seats;
        async move {
            let p: ProductWithStatus = client
                .post(
                    "/v1/products",
                    &json!({ "owner": "bench", "name": name, "seats": seats }),
                )
                .await?;
            anyhow::Ok((p.product.id, name))
        }
    })
    .await?;
    let (products, product_names): (Vec<i64>, Vec<String>) = products.into_iter().unzip();
    let products_took = started.elapsed();
    let chunks = args.users.div_ceil(USERS_PER_BATCH);
    in_parallel(workers.min(4), chunks, |c| {
        let client = client.clone();
        let logins: Vec<String> = (c * USERS_PER_BATCH
            ..((c + 1) * USERS_PER_BATCH).min(args.users))
            .map(|i| format!("{tag}-u{i}"))
            .collect();
        async move {
            let operations: Vec<Value> = logins
                .iter()
                .map(|login| json!({ "op": "upsert_user", "login": login }))
                .collect();
            let answer: BatchResponse = client
                .post("/v1/batch", &json!({ "operations": operations }))
                .await?;
            if let Some(refused) = answer.results.iter().find(|r| !r.ok) {
                anyhow::bail!("a bench user was refused: {:?}", refused.error);
            }
            anyhow::Ok(())
        }
    })
    .await?;
    let users_took = started.elapsed() - products_took;
    // The batch answers outcomes, not ids: page through the users and keep the bench's own,
    // in the order of their numbers.
    let prefix = format!("{tag}-u");
    let mut made: Vec<(usize, i64, String)> = all_pages::<User>(client, "/v1/users?limit=1000")
        .await?
        .into_iter()
        .filter_map(|u| {
            let i = u.login.strip_prefix(&prefix)?.parse::<usize>().ok()?;
            Some((i, u.id, u.uuid.to_string()))
        })
        .collect();
    made.sort_unstable_by_key(|(i, _, _)| *i);
    anyhow::ensure!(
        made.len() == args.users,
        "made {} bench users, found {}",
        args.users,
        made.len()
    );
    let (users, user_uuids) = made.into_iter().map(|(_, id, uuid)| (id, uuid)).unzip();
    let mut seats = Vec::new();
    for p in &products {
        let listed =
            all_pages::<Seat>(client, &format!("/v1/seats?product={p}&limit=1000")).await?;
        seats.extend(listed.iter().map(|s| s.id.to_string()));
    }
    Ok(World {
        products,
        product_names,
        users,
        user_uuids,
        seats,
        phases: [
            products_took,
            users_took,
            started.elapsed() - products_took - users_took,
        ],
    })
}

/// Every item of a paged list: `path` (which has a query already), then `&after=` each page's
/// cursor until the last.
async fn all_pages<T: serde::de::DeserializeOwned>(
    client: &Client,
    path: &str,
) -> anyhow::Result<Vec<T>> {
    let mut items = Vec::new();
    let mut page: Page<T> = client.get(path).await?;
    loop {
        items.append(&mut page.items);
        match page.next {
            Some(after) => page = client.get(&format!("{path}&after={after}")).await?,
            None => return Ok(items),
        }
    }
}

/// Users a set-up batch makes. Each batch is one transaction; on PostgreSQL those of the batches
/// in flight queue on the tenant's rows, so a batch of the API's maximum (1,000) waited for three
/// others past the request timeout.
const USERS_PER_BATCH: usize = 200;

/// Runs `task(0..count)` with at most `workers` in flight; the results in the order of `i`.
async fn in_parallel<T, F, Fut>(workers: usize, count: usize, task: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let mut running = tokio::task::JoinSet::new();
    let mut done = Vec::with_capacity(count);
    let mut next = 0;
    loop {
        while next < count && running.len() < workers.max(1) {
            let work = task(next);
            let i = next;
            running.spawn(async move { work.await.map(|t| (i, t)) });
            next += 1;
        }
        match running.join_next().await {
            Some(result) => done.push(result??),
            None => break,
        }
    }
    done.sort_unstable_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, t)| t).collect())
}

/// One license operation as the chosen wire speaks it: assign then unassign a random (user,
/// product), or grant then release a random seat. The first request is timed from `intended`,
/// the moment it was meant to start (so an open-loop run counts the time it queued behind a
/// slow server); the second from when the first answered.
async fn license_pair(
    client: &Client,
    world: &World,
    workload: Workload,
    rng: &mut rand::rngs::StdRng,
    intended: Instant,
    tally: &mut Tally,
) {
    let u = rng.random_range(0..world.users.len());
    if workload == Workload::Native {
        let user = world.users[u];
        if rng.random_bool(0.5) {
            let product = world.products[rng.random_range(0..world.products.len())];
            let r = client
                .post::<Value>(
                    &format!("/v1/users/{user}/assignments"),
                    &json!({ "product": product }),
                )
                .await;
            tally.record(intended, &r);
            let t = Instant::now();
            let r = client
                .delete::<Value>(&format!("/v1/users/{user}/assignments/{product}"))
                .await;
            tally.record(t, &r);
        } else {
            let seat = &world.seats[rng.random_range(0..world.seats.len())];
            let r = client
                .post::<Value>(
                    &format!("/v1/seats/{}/grant", segment(seat)),
                    &json!({ "user": user }),
                )
                .await;
            tally.record(intended, &r);
            if r.is_ok() {
                let t = Instant::now();
                let r = client
                    .post::<Value>(
                        &format!("/v1/seats/{}/release", segment(seat)),
                        &json!({ "user": user }),
                    )
                    .await;
                tally.record(t, &r);
            }
        }
        return;
    }
    let (first, second, body) = match workload {
        Workload::Superoffice => {
            let name = &world.product_names[rng.random_range(0..world.product_names.len())];
            (
                "/api/v1/Agents/License/AssignThirdPartyLicenses",
                "/api/v1/Agents/License/UnassignThirdPartyLicenses",
                json!({ "AssociateId": world.users[u], "ModuleOwner": "bench",
                        "ModuleLicenseNames": [name] }),
            )
        }
        Workload::Msp360 | Workload::Native => {
            let seat = &world.seats[rng.random_range(0..world.seats.len())];
            (
                "/api/Licenses/Grant",
                "/api/Licenses/Release",
                json!({ "LicenseID": seat, "UserID": world.user_uuids[u] }),
            )
        }
    };
    let r = client.post_status(first, &body).await;
    tally.record_status(intended, &r);
    if matches!(r, Ok(s) if s.is_success()) {
        let t = Instant::now();
        let r = client.post_status(second, &body).await;
        tally.record_status(t, &r);
    }
}

/// Closed loop: one client sends its next operation when the last one answered.
async fn license_client(
    client: Client,
    world: Arc<World>,
    workload: Workload,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut rng = rand::rngs::StdRng::from_os_rng();
    while Instant::now() < deadline {
        license_pair(
            &client,
            &world,
            workload,
            &mut rng,
            Instant::now(),
            &mut tally,
        )
        .await;
    }
    tally
}

/// Open loop: operations start at a fixed arrival rate whatever the server's speed, each timed
/// from its scheduled start, so a stall shows in the percentiles instead of slowing the senders
/// down (no coordinated omission). `rate` counts requests; each operation is two of them.
async fn open_loop(
    clients: &[Client],
    world: Arc<World>,
    workload: Workload,
    rate: f64,
    duration: Duration,
) -> (Tally, Duration) {
    /// Operations waiting for an answer beyond which the server is plainly not keeping up;
    /// later arrivals are counted as errors rather than piling up without bound.
    const MAX_IN_FLIGHT: usize = 20_000;
    let interval = Duration::from_secs_f64(2.0 / rate);
    let start = Instant::now();
    let deadline = start + duration;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut total = Tally::default();
    let mut dropped = 0;
    let mut seed_rng = rand::rngs::StdRng::from_os_rng();
    for i in 0u32.. {
        let intended = start + interval * i;
        if intended >= deadline {
            break;
        }
        tokio::time::sleep_until(intended.into()).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            dropped += 1;
            continue;
        };
        let (client, world) = (clients[i as usize % clients.len()].clone(), world.clone());
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed_rng.random());
        tasks.spawn(async move {
            let mut tally = Tally::default();
            license_pair(&client, &world, workload, &mut rng, intended, &mut tally).await;
            drop(permit);
            tally
        });
        // Collect finished operations as we go, so the set stays small.
        while let Some(done) = tasks.try_join_next() {
            if let Ok(t) = done {
                total.merge(t);
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(t) = done {
            total.merge(t);
        }
    }
    total.errors += dropped;
    (total, start.elapsed())
}

async fn health_client(client: Client, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let t = Instant::now();
        let r = client.get_status("/healthz").await;
        tally.latencies_us.push(t.elapsed().as_micros() as u32);
        match r {
            Ok(s) if s.is_success() => tally.ok += 1,
            _ => tally.errors += 1,
        }
    }
    tally
}

async fn measure<F, Fut>(clients: usize, duration: Duration, make: F) -> (Tally, Duration)
where
    F: Fn(usize, Instant) -> Fut,
    Fut: std::future::Future<Output = Tally> + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|k| tokio::spawn(make(k, deadline)))
        .collect();
    let mut total = Tally::default();
    for t in tasks {
        if let Ok(tally) = t.await {
            total.merge(tally);
        }
    }
    (total, start.elapsed())
}

/// Checks through the API that no restricted pool is over-allocated, that the held seats
/// listed match each product's count, and that the server's own invariant check is clean.
async fn check(client: &Client, world: &World) -> anyhow::Result<()> {
    for p in &world.products {
        let product: ProductWithStatus = client.get(&format!("/v1/products/{p}")).await?;
        let (total, in_use) = (product.status.total, product.status.in_use);
        anyhow::ensure!(in_use <= total, "product {p}: {in_use} in use of {total}");
        let held = all_pages::<Seat>(
            client,
            &format!("/v1/seats?product={p}&held=true&limit=1000"),
        )
        .await?;
        let listed = held.len() as i64;
        anyhow::ensure!(
            listed == in_use,
            "product {p}: {listed} seats listed held, count says {in_use}"
        );
    }
    let report: Invariants = client.get("/v1/invariants").await?;
    let violations = report.violations;
    anyhow::ensure!(violations.is_empty(), "invariants broken: {violations:?}");
    Ok(())
}

/// The server under load: a child `allot serve` process started here (so its CPU time is its
/// own, apart from the load generator's), or one at `--url`.
struct Target {
    /// One per server process; the load takes turns between them.
    urls: Vec<String>,
    token: String,
    store: String,
    /// Whose CPU counters to read: the children, or `--server-pid`.
    pids: Vec<u32>,
    children: Vec<tokio::process::Child>,
    _dir: Option<TempDir>,
}

impl Target {
    async fn start(args: &BenchArgs, tag: &str) -> anyhow::Result<Target> {
        if let Some(url) = &args.url {
            anyhow::ensure!(
                args.servers == 1,
                "--servers starts servers: not with --url"
            );
            return Ok(Target {
                urls: vec![url.clone()],
                token: args.token.clone().context("--url needs an admin --token")?,
                store: "external".to_owned(),
                pids: args.server_pid.into_iter().collect(),
                children: Vec::new(),
                _dir: None,
            });
        }
        anyhow::ensure!(
            args.servers == 1 || args.db.starts_with("postgres"),
            "several --servers share one store: PostgreSQL only (SQLite has one writer process)"
        );
        let (db, dir) = if args.db == "sqlite" {
            let dir = TempDir::new()?;
            (
                format!("sqlite://{}", dir.0.join("bench.db").display()),
                Some(dir),
            )
        } else {
            (args.db.clone(), None)
        };
        let password = format!("bench-{tag}-password");
        let store = if db.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        };
        let mut target = Target {
            urls: Vec::new(),
            token: String::new(),
            store: store.to_owned(),
            pids: Vec::new(),
            children: Vec::new(),
            _dir: dir,
        };
        for _ in 0..args.servers {
            // One at a time: the first migrates the store and makes the admin.
            let (url, child) = Self::serve(args, &db, &password).await?;
            target.pids.extend(child.id());
            target.children.push(child);
            target.urls.push(url);
        }
        let anonymous = Client::new(&target.urls[0], None);
        let issued: IssuedToken = anonymous
            .post(
                "/v1/auth/login",
                &json!({ "tenant": "default", "login": "admin", "password": password }),
            )
            .await
            .context("could not log in to the bench server")?;
        target.token = issued.token;
        Ok(target)
    }

    /// Starts one `allot serve` on `db` and waits until it answers.
    async fn serve(
        args: &BenchArgs,
        db: &str,
        password: &str,
    ) -> anyhow::Result<(String, tokio::process::Child)> {
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let sync = match args.sqlite_sync {
            crate::config::SqliteSync::Full => "full",
            crate::config::SqliteSync::Normal => "normal",
        };
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .arg("serve")
            .args(["--db", db, "--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", "off", "--sqlite-sync", sync])
            // One address drives all the load here: no per-address limit, no shedding.
            .args(["--rate-limit", "0", "--max-concurrency", "100000"])
            .env("ALLOT_ADMIN_PASSWORD", password)
            .env("ALLOT_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the server under test")?;
        let anonymous = Client::new(&url, None);
        for _ in 0..300 {
            if let Ok(Some(status)) = child.try_wait() {
                anyhow::bail!("the server under test exited at start ({status})");
            }
            if matches!(anonymous.get_status("/readyz").await, Ok(s) if s.is_success()) {
                return Ok((url, child));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("the server under test did not answer /readyz within 30 s")
    }

    /// CPU seconds (user + system) the server process has used so far, from /proc.
    fn cpu_seconds(&self) -> Option<f64> {
        if self.pids.is_empty() {
            return None;
        }
        self.pids.iter().map(|&pid| process_cpu_seconds(pid)).sum()
    }

    /// A client of each server.
    fn clients(&self) -> Vec<Client> {
        self.urls
            .iter()
            .map(|url| Client::new(url, Some(self.token.clone())))
            .collect()
    }

    async fn stop(mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

/// CPU seconds (user + system) process `pid` has used so far, from /proc.
fn process_cpu_seconds(pid: u32) -> Option<f64> {
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces) start at ") ".
        let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / clock_ticks_per_second())
    }
}

#[cfg(unix)]
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

#[cfg(not(unix))]
fn clock_ticks_per_second() -> f64 {
    100.0
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The server's CPU time per request over a measurement, in microseconds, and as printed.
fn cpu_per_request(
    before: Option<f64>,
    after: Option<f64>,
    requests: usize,
) -> (Option<f64>, String) {
    match (before, after) {
        (Some(b), Some(a)) if requests > 0 => {
            let us = (a - b) * 1e6 / requests as f64;
            (Some(us), format!("{us:.0} µs"))
        }
        _ => (None, "n/a (no server pid)".to_owned()),
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.products > 0 && args.users > 0 && args.clients > 0 && args.seats > 0,
        "sizes must be positive"
    );
    if let Some(rate) = args.rate {
        anyhow::ensure!(rate > 0.0, "--rate must be positive");
    }
    let tag = format!("b{}", rand::rng().random_range(10_000..99_999));
    let target = Target::start(&args, &tag).await?;
    let result = run_against(&args, &tag, &target).await;
    target.stop().await;
    result
}

async fn run_against(args: &BenchArgs, tag: &str, target: &Target) -> anyhow::Result<()> {
    let clients = target.clients();
    let client = clients[0].clone();
    let sync = if target.store == "sqlite" {
        format!(" synchronous={:?}", args.sqlite_sync).to_lowercase()
    } else {
        String::new()
    };
    let mode = match args.rate {
        Some(rate) => format!("open loop at {rate} requests/s"),
        None => format!("closed loop, {} clients", args.clients),
    };
    if args.json {
        crate::cli::json_line(&json!({
            "bench": {
                "store": target.store, "sqlite_sync": (!sync.is_empty()).then(|| format!("{:?}", args.sqlite_sync).to_lowercase()),
                "workload": format!("{:?}", args.workload).to_lowercase(), "products": args.products,
                "seats_per_product": args.seats, "users": args.users, "clients": args.clients,
                "rate": args.rate, "duration_seconds": args.duration,
                "servers": target.urls.len(),
            }
        }));
    } else {
        println!(
            "allot bench: store={}{sync} servers={} workload={:?} products={} seats/product={} users={} {mode} duration={}s",
            target.store,
            target.urls.len(),
            args.workload,
            args.products,
            args.seats,
            args.users,
            args.duration
        );
    }
    let set_up = Instant::now();
    let world = Arc::new(setup(&client, args, tag).await?);
    let set_up = set_up.elapsed().as_secs_f64();
    if args.json {
        crate::cli::json_line(&json!({ "set_up": {
            "products": world.products.len(), "seats": world.seats.len(),
            "users": world.users.len(), "seconds": set_up,
            "products_seconds": world.phases[0].as_secs_f64(),
            "users_seconds": world.phases[1].as_secs_f64(),
            "listing_seconds": world.phases[2].as_secs_f64(),
        }}));
    } else {
        println!(
            "set-up       {} products, {} seats, {} users in {set_up:.1}s \
             (products {:.1}s, users {:.1}s, listing them {:.1}s)",
            world.products.len(),
            world.seats.len(),
            world.users.len(),
            world.phases[0].as_secs_f64(),
            world.phases[1].as_secs_f64(),
            world.phases[2].as_secs_f64(),
        );
    }
    let duration = Duration::from_secs(args.duration);
    let workload = args.workload;
    let cpu_before = target.cpu_seconds();
    let (mut ops, elapsed) = match args.rate {
        Some(rate) => open_loop(&clients, world.clone(), workload, rate, duration).await,
        None => {
            measure(args.clients, duration, |k, deadline| {
                let client = clients[k % clients.len()].clone();
                license_client(client, world.clone(), workload, deadline)
            })
            .await
        }
    };
    let cpu = cpu_per_request(cpu_before, target.cpu_seconds(), ops.latencies_us.len());
    let ops_rate = ops.report("license ops", elapsed, args.json);
    let cpu_before = target.cpu_seconds();
    let (mut health, elapsed) = measure(args.clients, duration, |k, deadline| {
        health_client(clients[k % clients.len()].clone(), deadline)
    })
    .await;
    let health_cpu = cpu_per_request(cpu_before, target.cpu_seconds(), health.latencies_us.len());
    let health_rate = health.report("/healthz", elapsed, args.json);
    let ratio = ops_rate / health_rate.max(f64::MIN_POSITIVE);
    if args.json {
        crate::cli::json_line(&json!({ "server_cpu_us_per_request": {
            "license": cpu.0, "healthz": health_cpu.0,
        }}));
    } else {
        println!(
            "server CPU   {} per license request, {} per /healthz",
            cpu.1, health_cpu.1
        );
        println!(
            "ratio        license ops/s : /healthz/s = {ratio:.3}  (1 : {:.1})",
            health_rate / ops_rate.max(f64::MIN_POSITIVE)
        );
    }
    check(&client, &world).await?;
    if args.json {
        crate::cli::json_line(&json!({ "ops_to_healthz": ratio, "invariants": "ok" }));
    } else {
        println!(
            "invariants   ok: no pool over-allocated, held seats match counts, server check clean"
        );
    }
    anyhow::ensure!(
        ops.errors == 0 && health.errors == 0,
        "{} errors under load",
        ops.errors + health.errors
    );
    Ok(())
}

/// A scratch directory for the bench's SQLite store, removed afterwards.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let dir = std::env::temp_dir().join(format!(
            "allot-bench-{}-{}",
            std::process::id(),
            rand::rng().random_range(0..u32::MAX)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
