//! The server: one entry point ([`serve`]) shared by `main` and the tests, the middleware
//! stack, the metrics listener and first-start bootstrap.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::{RequestBodyDeadlineLayer, TimeoutLayer};
use tower_http::trace::TraceLayer;

use crate::api::error::ApiError;
use crate::config::Settings;
use crate::ratelimit::RateLimiter;
use crate::state::AppState;
use allot_ledger::{Command, Context, Ledger, Role};

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP application, middleware included.
pub fn app(state: AppState) -> Router {
    let settings = state.settings.clone();
    // Outermost first: hide secrets from traces, tag every request with an id, trace it,
    // turn panics into 500s, bound its time, shed load past the concurrency limit, cap the body.
    let middleware = ServiceBuilder::new()
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
            axum::http::header::COOKIE,
            HeaderName::from_static("lease-token"),
        ]))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let path = req
                .extensions()
                .get::<MatchedPath>()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| req.uri().path().to_owned());
            let id = req
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            tracing::info_span!("request", method = %req.method(), path, request_id = id)
        }))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
            .into_response()
        }))
        .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "the server is overloaded; try again",
            )
            .retry(1)
        }))
        .load_shed()
        .concurrency_limit(settings.max_concurrency)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            settings.request_timeout,
        ))
        .layer(RequestBodyDeadlineLayer::new(settings.request_timeout))
        .layer(RequestBodyLimitLayer::new(settings.max_body));
    let routed = crate::api::v1_routes()
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::api::v1::idempotency::middleware,
        ))
        .merge(crate::scim::routes())
        .merge(crate::dialects::routes())
        .merge(crate::console::routes(state.clone()))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            RateLimiter::new(settings.rate_limit, settings.rate_limit.saturating_mul(2)),
            crate::ratelimit::limit,
        ))
        .layer(axum::middleware::from_fn(record_request))
        .layer(axum::extract::DefaultBodyLimit::max(settings.max_body))
        .layer(middleware)
        .with_state(state);
    // Dialect clients are case-insensitive about `api`/`Remote`; fix the casing before routing.
    Router::new()
        .fallback_service(
            ServiceBuilder::new()
                .map_request(crate::dialects::normalize_path)
                .service(routed),
        )
        .layer(axum::middleware::from_fn(crate::dialects::error_shapes))
}

/// Counts requests and their latency by route and status.
/// Also writes the access log: one INFO line per request with its method, matched route, status,
/// duration and request id (never headers or bodies, so no secret reaches it).
async fn record_request(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(req).await;
    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    tracing::info!(
        target: "allot::access",
        method = %method,
        route = %path,
        status,
        ms = format_args!("{:.2}", elapsed.as_secs_f64() * 1000.0),
        request_id = %request_id,
        "request"
    );
    let labels = [
        ("method", method),
        ("path", path),
        ("status", status.to_string()),
    ];
    metrics::counter!("allot_http_requests_total", &labels).increment(1);
    metrics::histogram!("allot_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
    response
}

/// The process-wide Prometheus recorder (installed once, shared by every app in the process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder().handle())
        })
        .clone()
}

/// The metrics listener's app: `/metrics`, with pool utilisation read fresh on each scrape.
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(state)
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Ok(tenants) = state.ledger.tenants().await {
        for tenant in tenants {
            let denials = state
                .ledger
                .pool_denials(tenant.id)
                .await
                .unwrap_or_default();
            if let Ok(pools) = state.ledger.pool_status(tenant.id, None).await {
                for p in pools {
                    let labels = [
                        ("tenant", tenant.name.clone()),
                        ("product", format!("{}/{}", p.owner, p.name)),
                    ];
                    metrics::gauge!("allot_pool_seats_total", &labels).set(p.total as f64);
                    metrics::gauge!("allot_pool_seats_in_use", &labels).set(p.in_use as f64);
                    // Requests refused for want of a seat, counted durably by the ledger.
                    let denied = denials
                        .iter()
                        .find(|(product, _)| *product == p.product)
                        .map_or(0, |(_, n)| *n);
                    metrics::counter!("allot_pool_seat_denials_total", &labels)
                        .absolute(denied as u64);
                }
            }
        }
    }
    // Group commit: commands per commit is the ratio of the two.
    let commits = state.ledger.commit_stats();
    metrics::counter!("allot_store_commits_total").absolute(commits.batches);
    metrics::counter!("allot_store_committed_commands_total").absolute(commits.commands);
    metrics_handle().render()
}

/// On an empty store: the tenant `default` with an `admin` login. Returns the generated password
/// (to print once) when none was configured.
pub async fn bootstrap(state: &AppState) -> anyhow::Result<Option<String>> {
    if !state.ledger.tenants().await?.is_empty() {
        return Ok(None);
    }
    let (password, generated) = match &state.settings.admin_password {
        Some(p) => (p.expose().to_owned(), false),
        None => (
            allot_ledger::rules::new_lease_token()[..24].to_owned(),
            true,
        ),
    };
    let hash = state.auth.passwords.hash(&password).await?;
    // The tenant and its admin login are created in one transaction: a crash cannot leave a
    // tenant nobody can log in to.
    let admin = Command::CreateLogin {
        login: "admin".into(),
        password_hash: hash,
        role: Role::Admin,
        user: None,
    };
    match state
        .ledger
        .create_tenant_with("default", "bootstrap", None, &[admin])
        .await
    {
        Ok(_) => Ok(generated.then_some(password)),
        // Another process sharing the store bootstrapped it first.
        Err(allot_ledger::LedgerError::AlreadyExists { what: "tenant", .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Binds `addr`; a failure names the address and the setting that changes it, e.g.
/// `cannot listen on 127.0.0.1:8080: address already in use (set --listen or ALLOT_LISTEN)`.
pub async fn listen(addr: std::net::SocketAddr, setting: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let reason = match e.kind() {
            std::io::ErrorKind::AddrInUse => "address already in use".to_owned(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            std::io::ErrorKind::AddrNotAvailable => "address not available here".to_owned(),
            _ => e.to_string(),
        };
        anyhow::anyhow!("cannot listen on {addr}: {reason} (set {setting})")
    })
}

/// Opens the store and runs the server on `listener` until `shutdown` resolves; then stops
/// accepting, lets requests in flight finish and closes the store.
pub async fn serve(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Both listeners are bound before the store is touched: a taken port fails the start with
    // nothing done.
    let metrics_listener = match settings.metrics_listen {
        Some(addr) => Some(listen(addr, "--metrics-listen or ALLOT_METRICS_LISTEN").await?),
        None => None,
    };
    let ledger = Ledger::open_with(settings.db.expose(), &settings.store_options())
        .await?
        .with_key_vault(settings.key_vault()?)
        .with_token_cache(settings.token_cache);
    let state = AppState::new(ledger.clone(), settings.clone());
    if let Some(password) = bootstrap(&state).await? {
        // Printed once, to the terminal only: it is never logged.
        println!("Created tenant \"default\" with login \"admin\", password: {password}");
        println!("(set ALLOT_ADMIN_PASSWORD to choose it; it is not shown again)");
        if let Ok(addr) = listener.local_addr() {
            println!(
                "Open http://{addr}/ for the web console (tenant \"default\", login \"admin\")."
            );
        }
    }
    let metrics_task = match metrics_listener {
        Some(metrics_listener) => {
            metrics_handle();
            tracing::info!(addr = %metrics_listener.local_addr()?, "metrics listening");
            let app = metrics_app(state.clone());
            Some(tokio::spawn(async move {
                let _ = axum::serve(metrics_listener, app).await;
            }))
        }
        None => None,
    };
    let reaper = tokio::spawn(reap_expired_sessions(ledger.clone()));
    let harvester = settings
        .harvest_interval
        .map(|every| tokio::spawn(harvest_idle_seats(ledger.clone(), every)));
    let pruner = settings
        .usage_minutes_retention
        .map(|keep| tokio::spawn(prune_usage_minutes(ledger.clone(), keep)));
    let webhook_worker = tokio::spawn(crate::webhooks::run_worker(
        ledger.clone(),
        settings.webhooks.clone(),
    ));
    tracing::info!(addr = %listener.local_addr()?, "allot listening");
    let stopping = state.clone();
    let shutdown = async move {
        shutdown.await;
        stopping.begin_shutdown();
    };
    serve_connections(listener, app(state), &settings, shutdown).await;
    reaper.abort();
    if let Some(task) = harvester {
        task.abort();
    }
    webhook_worker.abort();
    if let Some(task) = pruner {
        task.abort();
    }
    if let Some(task) = metrics_task {
        task.abort();
    }
    ledger.close().await;
    Ok(())
}

/// The accept loop. Unlike `axum::serve` it bounds what a client can hold: at most
/// `max_connections` open connections (further clients wait in the listen backlog, so the
/// descriptors never run out and `/healthz` keeps answering), `header_timeout` to send a
/// request's headers (also the idle time of a keep-alive connection: hyper restarts the timer
/// whenever it waits for the next request), and at shutdown `shutdown_grace` for requests in
/// flight before the remaining connections are dropped.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use tower::ServiceExt;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(settings.header_timeout)
        .keep_alive_timeout(settings.header_timeout);
    let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("stopped accepting; finishing requests in flight");
    if tokio::time::timeout(settings.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?settings.shutdown_grace,
            "requests still in flight at the end of the shutdown grace; dropping them"
        );
    }
}

/// Runs the idle-seat harvest in every tenant every `every` (the first run one interval after
/// start), releasing idle seats whose product's policy says so.
async fn harvest_idle_seats(ledger: Ledger, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match ledger.harvest_all_tenants("harvest").await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "idle seats harvested"),
            Err(e) => tracing::warn!(error = %e, "harvesting idle seats failed"),
        }
    }
}

/// Deletes the usage history's minute buckets older than `keep` (hours and days stay), at
/// start and every hour: bounded batches through the ledger until one comes back short.
async fn prune_usage_minutes(ledger: Ledger, keep: Duration) {
    let keep = time::Duration::try_from(keep).unwrap_or(time::Duration::MAX);
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut deleted = 0;
        loop {
            match ledger
                .prune_usage_minutes(keep, allot_ledger::PRUNE_BATCH)
                .await
            {
                Ok(n) => {
                    deleted += n;
                    if n < allot_ledger::PRUNE_BATCH as u64 {
                        break;
                    }
                    // Other writers get the store between batches.
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "pruning minute buckets failed");
                    break;
                }
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, "usage minute buckets past their retention deleted");
        }
    }
}

/// Ends lapsed sessions in every tenant every few seconds, so floating seats come back even
/// when nobody asks for one.
async fn reap_expired_sessions(ledger: Ledger) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let Ok(tenants) = ledger.tenants().await else {
            continue;
        };
        for tenant in tenants {
            let ctx = Context::new(tenant.id, "reaper");
            if let Err(e) = ledger.execute(&ctx, Command::ExpireSessions).await {
                tracing::warn!(tenant = %tenant.name, error = %e, "expiring sessions failed");
            }
        }
    }
}
