//! Webhook delivery (Standard Webhooks): the worker that claims due deliveries from the ledger's
//! outbox, signs and POSTs them, and records each attempt; and the guard that keeps endpoint URLs
//! off the server's own network.
//!
//! The SSRF guard resolves the endpoint's host itself and lets the HTTP client connect only to
//! the addresses it checked (a resolver plugged into the client), so a name cannot resolve to a
//! public address at the check and a private one at the connect (DNS rebinding). Redirects and
//! proxies are off: a redirect could lead anywhere.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};

use crate::config::WebhookSettings;
use allot_ledger::Ledger;
use allot_ledger::webhooks::{Attempt, DueDelivery};

/// May the server send requests to this address? Only to publicly routable ones: not loopback,
/// private (RFC 1918, IPv6 unique-local), link-local, shared (CGNAT), unspecified, multicast,
/// broadcast, documentation or reserved ranges, also when wrapped in an IPv6 address
/// (IPv4-mapped, IPv4-compatible, NAT64).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let segments = v6.segments();
            // IPv4-compatible (::a.b.c.d, deprecated) and NAT64 (64:ff9b::/96) carry an IPv4.
            let embedded = Ipv4Addr::from((u128::from(v6) & 0xffff_ffff) as u32);
            if segments[..6] == [0, 0, 0, 0, 0, 0] && !v6.is_loopback() && !v6.is_unspecified() {
                return is_public_v4(embedded);
            }
            if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public_v4(embedded);
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (segments[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (segments[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (segments[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
                || (segments[0] == 0x2001 && segments[1] == 0x0db8)) // documentation
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

/// Why an endpoint URL is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn private_refusal(host: &str, ip: IpAddr) -> Refused {
    Refused(format!(
        "{host} resolves to {ip}, a loopback, private, link-local or otherwise internal address; \
         the server refuses those unless webhooks_allow_private is set"
    ))
}

/// Checks where an endpoint URL would send requests: its host must resolve, and (unless
/// private addresses are allowed) every address it resolves to must be public. Used when an
/// endpoint is created or its URL changed; deliveries check again at connect time.
pub async fn check_url(url: &str, allow_private: bool) -> Result<(), Refused> {
    let parsed = reqwest::Url::parse(url).map_err(|e| Refused(format!("not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Refused("only http and https URLs".into()));
    }
    let host = parsed
        .host()
        .ok_or_else(|| Refused("the URL has no host".into()))?;
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<IpAddr> = match host {
        url::Host::Ipv4(ip) => vec![IpAddr::V4(ip)],
        url::Host::Ipv6(ip) => vec![IpAddr::V6(ip)],
        url::Host::Domain(name) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| Refused(format!("{name} does not resolve: {e}")))?
            .map(|a| a.ip())
            .collect(),
    };
    if addrs.is_empty() {
        return Err(Refused(format!("{host} resolves to no address")));
    }
    if !allow_private && let Some(ip) = addrs.iter().find(|ip| !is_public(**ip)) {
        return Err(private_refusal(&host.to_string(), *ip));
    }
    Ok(())
}

/// The client's resolver: resolves like the system does, then drops every address the guard
/// refuses; the client connects only to what is left.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if allowed.is_empty() {
                let reason = match found.first() {
                    Some(a) => private_refusal(&host, a.ip()).0,
                    None => format!("{host} resolves to no address"),
                };
                return Err(reason.into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client deliveries use: the guarded resolver, no redirects, no proxy, a time-out.
pub fn client(settings: &WebhookSettings) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private: settings.allow_private,
        }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .user_agent(concat!("allot-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// The Standard Webhooks signature: `v1,` and base64 of HMAC-SHA256 over `id.timestamp.body`.
pub fn sign(secret: &[u8], msg_id: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        Hmac::<sha2_11::Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Sends one delivery and says what came of it. The secret and the signature never reach a log;
/// an error names only the endpoint's answer or the transport's failure.
pub async fn deliver(client: &reqwest::Client, due: &DueDelivery, allow_private: bool) -> Attempt {
    // The resolver guards names; an address written in the URL is checked here.
    if !allow_private && let Ok(url) = reqwest::Url::parse(&due.url) {
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal.filter(|ip| !is_public(*ip)) {
            return Attempt::Failed {
                status: None,
                error: private_refusal(&ip.to_string(), ip).0,
            };
        }
    }
    let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
    let signature = sign(&due.secret, &due.event_id, timestamp, &due.payload);
    let sent = client
        .post(&due.url)
        .header("content-type", "application/json")
        .header("webhook-id", &due.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(due.payload.clone())
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => Attempt::Delivered {
            status: response.status().as_u16(),
        },
        Ok(response) => Attempt::Failed {
            status: Some(response.status().as_u16()),
            error: format!("the endpoint answered {}", response.status()),
        },
        Err(e) => Attempt::Failed {
            status: None,
            error: transport_error(&e),
        },
    }
}

/// A transport failure in words, with its causes (reqwest's own message is only the outer one).
fn transport_error(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Deliveries one worker claims at a time.
const BATCH: i64 = 16;

/// The delivery worker: claims due deliveries, sends them side by side (one per endpoint, so
/// each endpoint gets its events in order), records each attempt; sleeps `poll` when nothing
/// is due. Runs until the task is aborted; an attempt cut off by that is retried after its
/// claim lapses (the receiver may then see it twice, as Standard Webhooks allows: it dedupes
/// on `webhook-id`).
pub async fn run_worker(ledger: Ledger, settings: WebhookSettings) {
    let client = match client(&settings) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "webhooks: cannot build the HTTP client; no deliveries");
            return;
        }
    };
    // A claim outlives the slowest attempt, so no other worker takes a delivery being sent.
    let lease = settings.timeout * 2 + Duration::from_secs(30);
    let mut next_prune = tokio::time::Instant::now();
    loop {
        if let Some(retention) = settings.retention
            && tokio::time::Instant::now() >= next_prune
        {
            prune(&ledger, retention).await;
            next_prune = tokio::time::Instant::now() + PRUNE_EVERY;
        }
        let due = match ledger.claim_webhook_deliveries(BATCH, lease).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: claiming deliveries failed");
                Vec::new()
            }
        };
        if due.is_empty() {
            tokio::time::sleep(settings.poll).await;
            continue;
        }
        let attempts = due.into_iter().map(|due| {
            let client = client.clone();
            let ledger = ledger.clone();
            let settings = settings.clone();
            async move {
                let attempt = deliver(&client, &due, settings.allow_private).await;
                let outcome = match &attempt {
                    Attempt::Delivered { .. } => "delivered",
                    Attempt::Failed { .. } => "failed",
                };
                metrics::counter!("allot_webhook_attempts_total", "outcome" => outcome)
                    .increment(1);
                if let Attempt::Failed { error, .. } = &attempt {
                    tracing::info!(endpoint = %due.endpoint, event = %due.event_id,
                        attempt = due.attempts + 1, error = %error, "webhook delivery failed");
                }
                match ledger
                    .finish_webhook_delivery(&due, &attempt, &settings.retry)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(endpoint = %due.endpoint,
                        event = %due.event_id, "webhooks: the claim lapsed before the attempt was recorded"),
                    Err(e) => tracing::warn!(error = %e, "webhooks: recording an attempt failed"),
                }
            }
        });
        join_all(attempts).await;
    }
}

/// How often the worker deletes the deliveries past their retention.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Batches of ended deliveries one pruning run deletes at most; a larger backlog waits for the
/// next run, so deliveries are never held up for long.
const PRUNE_ROUNDS: usize = 20;

/// Deletes ended deliveries older than `retention`, a bounded batch at a time (through the
/// ledger), until a batch comes back short or the run's rounds are used.
async fn prune(ledger: &Ledger, retention: Duration) {
    let retention = time::Duration::try_from(retention).unwrap_or(time::Duration::MAX);
    let mut deleted = 0;
    for _ in 0..PRUNE_ROUNDS {
        match ledger
            .prune_webhook_deliveries(retention, allot_ledger::PRUNE_BATCH)
            .await
        {
            Ok(n) => {
                deleted += n;
                if n < allot_ledger::PRUNE_BATCH as u64 {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "webhooks: pruning ended deliveries failed");
                break;
            }
        }
    }
    if deleted > 0 {
        tracing::info!(
            deleted,
            "webhooks: ended deliveries past their retention deleted"
        );
    }
}

/// Runs the futures side by side and waits for all (a `JoinSet` without the spawning: they
/// share this task).
async fn join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) {
    let mut set = tokio::task::JoinSet::new();
    for f in futures {
        set.spawn(f);
    }
    while set.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worker's pruning run deletes ended deliveries past the retention in rounds of the
    /// ledger's batch, and keeps recent and pending ones (the clock moved by hand).
    #[tokio::test]
    async fn the_worker_prunes_ended_deliveries_past_their_retention() {
        use allot_ledger::testing::{Fixture, TestDb};
        use allot_ledger::webhooks::RetryPolicy;
        let f = Fixture::new(TestDb::sqlite()).await;
        let (hook, _) = f
            .ledger
            .create_webhook(
                &f.ctx,
                "https://example.com/h",
                "",
                &["user.created".into()],
            )
            .await
            .unwrap();
        let lease = Duration::from_secs(60);
        let policy = RetryPolicy::default();
        // More ended deliveries than one batch, all on day 0; one more on day 6; one pending.
        let n = allot_ledger::PRUNE_BATCH as usize + 5;
        for i in 0..n + 2 {
            if i == n {
                f.clock.advance(time::Duration::days(6));
            }
            f.user(&format!("u{i}")).await;
            if i == n + 1 {
                break;
            }
            let due = f.ledger.claim_webhook_deliveries(1, lease).await.unwrap();
            let attempt = Attempt::Delivered { status: 204 };
            assert!(
                f.ledger
                    .finish_webhook_delivery(&due[0], &attempt, &policy)
                    .await
                    .unwrap()
            );
        }
        f.clock.advance(time::Duration::days(2)); // day 8
        prune(&f.ledger, Duration::from_secs(7 * 86_400)).await;
        let left = f
            .ledger
            .webhook_deliveries(f.tenant.id, &hook.id, 5000)
            .await
            .unwrap();
        let statuses: Vec<&str> = left.iter().map(|d| d.status.as_str()).collect();
        assert_eq!(statuses, ["pending", "delivered"], "{left:?}");
        f.finish().await;
    }

    #[test]
    fn the_guard_refuses_internal_addresses_in_every_form() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::10.0.0.1",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(!is_public(ip), "{refused} must be refused");
        }
        for allowed in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            let ip: IpAddr = allowed.parse().unwrap();
            assert!(is_public(ip), "{allowed} must be allowed");
        }
    }

    #[tokio::test]
    async fn urls_naming_internal_hosts_are_refused_unless_allowed() {
        let refused = check_url("http://127.0.0.1:9/hook", false)
            .await
            .unwrap_err();
        assert!(refused.0.contains("webhooks_allow_private"), "{refused}");
        assert!(check_url("http://localhost:9/hook", false).await.is_err());
        assert!(check_url("http://[::ffff:10.0.0.1]/", false).await.is_err());
        assert!(check_url("http://127.0.0.1:9/hook", true).await.is_ok());
        assert!(check_url("ftp://example.com/", true).await.is_err());
    }

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification's reference libraries.
        let secret = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let signature = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
