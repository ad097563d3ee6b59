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
use allot_ledger::{Seat, User};

use crate::cli::client::{Client, ClientError, segment};
use crate::config::{Secret, Settings};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// A running server to load (otherwise one is started in-process on --db)
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

fn classify(result: &Result<Value, ClientError>, tally: &mut Tally) {
    match result {
        Ok(_) => tally.ok += 1,
        Err(ClientError::Api { status, .. }) if status.as_u16() == 409 => tally.refused += 1,
        Err(_) => tally.errors += 1,
    }
}

struct World {
    products: Vec<i64>,
    product_names: Vec<String>,
    users: Vec<i64>,
    user_uuids: Vec<String>,
    seats: Vec<String>,
}

async fn setup(client: &Client, args: &BenchArgs, tag: &str) -> anyhow::Result<World> {
    let mut products = Vec::new();
    let mut product_names = Vec::new();
    for i in 0..args.products {
        let name = format!("{tag}-p{i}");
        let p: ProductWithStatus = client
            .post(
                "/v1/products",
                &json!({ "owner": "bench", "name": name, "seats": args.seats }),
            )
            .await?;
        products.push(p.product.id);
        product_names.push(name);
    }
    let mut users = Vec::new();
    let mut user_uuids = Vec::new();
    for i in 0..args.users {
        let u: User = client
            .post("/v1/users", &json!({ "login": format!("{tag}-u{i}") }))
            .await?;
        users.push(u.id);
        user_uuids.push(u.uuid.to_string());
    }
    let mut seats = Vec::new();
    for p in &products {
        let mut after: Option<i64> = None;
        loop {
            let path = match after {
                Some(a) => format!("/v1/seats?product={p}&limit=1000&after={a}"),
                None => format!("/v1/seats?product={p}&limit=1000"),
            };
            let page: Page<Seat> = client.get(&path).await?;
            seats.extend(page.items.iter().map(|s| s.id.to_string()));
            after = page.next;
            if after.is_none() {
                break;
            }
        }
    }
    Ok(World {
        products,
        product_names,
        users,
        user_uuids,
        seats,
    })
}

/// One client's loop: assign+unassign of a random (user, product), or grant+release of a
/// random seat, until the deadline. Every HTTP request is one timed operation.
async fn license_client(client: Client, world: Arc<World>, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut rng = rand::rngs::StdRng::from_os_rng();
    while Instant::now() < deadline {
        let user = world.users[rng.random_range(0..world.users.len())];
        if rng.random_bool(0.5) {
            let product = world.products[rng.random_range(0..world.products.len())];
            let t = Instant::now();
            let r = client
                .post::<Value>(
                    &format!("/v1/users/{user}/assignments"),
                    &json!({ "product": product }),
                )
                .await;
            tally.latencies_us.push(t.elapsed().as_micros() as u32);
            classify(&r, &mut tally);
            let t = Instant::now();
            let r = client
                .delete::<Value>(&format!("/v1/users/{user}/assignments/{product}"))
                .await;
            tally.latencies_us.push(t.elapsed().as_micros() as u32);
            classify(&r, &mut tally);
        } else {
            let seat = &world.seats[rng.random_range(0..world.seats.len())];
            let t = Instant::now();
            let r = client
                .post::<Value>(
                    &format!("/v1/seats/{}/grant", segment(seat)),
                    &json!({ "user": user }),
                )
                .await;
            tally.latencies_us.push(t.elapsed().as_micros() as u32);
            classify(&r, &mut tally);
            if r.is_ok() {
                let t = Instant::now();
                let r = client
                    .post::<Value>(
                        &format!("/v1/seats/{}/release", segment(seat)),
                        &json!({ "user": user }),
                    )
                    .await;
                tally.latencies_us.push(t.elapsed().as_micros() as u32);
                classify(&r, &mut tally);
            }
        }
    }
    tally
}

/// Counts a dialect answer: 2xx ok, 4xx a refusal (a seat already taken), anything else an error.
fn classify_status(result: &Result<reqwest::StatusCode, ClientError>, tally: &mut Tally) {
    match result {
        Ok(s) if s.is_success() => tally.ok += 1,
        Ok(s) if s.is_client_error() => tally.refused += 1,
        _ => tally.errors += 1,
    }
}

/// The same load through a dialect: SuperOffice assigns and unassigns a third-party module
/// (two agent calls), MSP360 grants and releases a seat (two calls).
async fn dialect_client(
    client: Client,
    world: Arc<World>,
    deadline: Instant,
    workload: Workload,
) -> Tally {
    let mut tally = Tally::default();
    let mut rng = rand::rngs::StdRng::from_os_rng();
    while Instant::now() < deadline {
        let u = rng.random_range(0..world.users.len());
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
        let t = Instant::now();
        let r = client.post_status(first, &body).await;
        tally.latencies_us.push(t.elapsed().as_micros() as u32);
        classify_status(&r, &mut tally);
        if matches!(r, Ok(s) if s.is_success()) {
            let t = Instant::now();
            let r = client.post_status(second, &body).await;
            tally.latencies_us.push(t.elapsed().as_micros() as u32);
            classify_status(&r, &mut tally);
        }
    }
    tally
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
    F: Fn(Instant) -> Fut,
    Fut: std::future::Future<Output = Tally> + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..clients).map(|_| tokio::spawn(make(deadline))).collect();
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
        let held: Page<Seat> = client
            .get(&format!("/v1/seats?product={p}&held=true&limit=1000"))
            .await?;
        let listed = held.items.len() as i64;
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

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.products > 0 && args.users > 0 && args.clients > 0 && args.seats > 0,
        "sizes must be positive"
    );
    let tag = format!("b{}", rand::rng().random_range(10_000..99_999));
    let mut _temp = None;
    let mut shutdown = None;
    let (url, token, store) = match &args.url {
        Some(url) => (
            url.clone(),
            args.token.clone().context("--url needs an admin --token")?,
            "external".to_owned(),
        ),
        None => {
            let db = if args.db == "sqlite" {
                let dir = tempfile_dir()?;
                let url = format!("sqlite://{}", dir.join("bench.db").display());
                _temp = Some(dir);
                url
            } else {
                args.db.clone()
            };
            let password = format!("bench-{tag}-password");
            let settings = Settings {
                db: Secret::new(db.clone()),
                listen: ([127, 0, 0, 1], 0).into(),
                metrics_listen: None,
                admin_password: Some(Secret::new(password.clone())),
                max_concurrency: 4096,
                // One address drives all the load here: no per-address limit.
                rate_limit: 0,
                sqlite_sync: args.sqlite_sync,
                ..Settings::default()
            };
            let listener = tokio::net::TcpListener::bind(settings.listen).await?;
            let addr = listener.local_addr()?;
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(crate::server::serve(settings, listener, async {
                let _ = rx.await;
            }));
            shutdown = Some(tx);
            let url = format!("http://{addr}");
            let anonymous = Client::new(&url, None);
            let mut token = None;
            for _ in 0..100 {
                let login = anonymous
                    .post::<IssuedToken>(
                        "/v1/auth/login",
                        &json!({ "tenant": "default", "login": "admin", "password": password }),
                    )
                    .await;
                if let Ok(issued) = login {
                    token = Some(issued.token);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let store = if db.starts_with("sqlite") {
                "sqlite"
            } else {
                "postgres"
            };
            (
                url,
                token.context("could not log in to the bench server")?,
                store.to_owned(),
            )
        }
    };
    let client = Client::new(&url, Some(token));
    let sync = if store == "sqlite" {
        format!(" synchronous={:?}", args.sqlite_sync).to_lowercase()
    } else {
        String::new()
    };
    if args.json {
        crate::cli::json_line(&json!({
            "bench": {
                "store": store, "sqlite_sync": (!sync.is_empty()).then(|| format!("{:?}", args.sqlite_sync).to_lowercase()),
                "workload": format!("{:?}", args.workload).to_lowercase(), "products": args.products,
                "seats_per_product": args.seats, "users": args.users, "clients": args.clients,
                "duration_seconds": args.duration,
            }
        }));
    } else {
        println!(
            "allot bench: store={store}{sync} workload={:?} products={} seats/product={} users={} clients={} duration={}s",
            args.workload, args.products, args.seats, args.users, args.clients, args.duration
        );
    }
    let world = Arc::new(setup(&client, &args, &tag).await?);
    let duration = Duration::from_secs(args.duration);
    let workload = args.workload;
    let (mut ops, elapsed) = measure(args.clients, duration, |deadline| {
        let (client, world) = (client.clone(), world.clone());
        async move {
            match workload {
                Workload::Native => license_client(client, world, deadline).await,
                dialect => dialect_client(client, world, deadline, dialect).await,
            }
        }
    })
    .await;
    let ops_rate = ops.report("license ops", elapsed, args.json);
    let (mut health, elapsed) = measure(args.clients, duration, |deadline| {
        health_client(client.clone(), deadline)
    })
    .await;
    let health_rate = health.report("/healthz", elapsed, args.json);
    let ratio = ops_rate / health_rate.max(f64::MIN_POSITIVE);
    if !args.json {
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
    if let Some(tx) = shutdown {
        let _ = tx.send(());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::ensure!(
        ops.errors == 0 && health.errors == 0,
        "{} errors under load",
        ops.errors + health.errors
    );
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("allot-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
