//! Per-client-address request rate limiting (a token bucket per address). Over the limit a
//! request is answered 429 with `Retry-After`. Probes (`/healthz`, `/readyz`) are never limited,
//! and neither is a request whose peer address is unknown (in-process use).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;

struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Clone)]
pub struct RateLimiter {
    buckets: Arc<Mutex<HashMap<IpAddr, Bucket>>>,
    /// Tokens added per second; 0 disables limiting.
    rate: f64,
    burst: f64,
}

impl RateLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimiter {
            buckets: Arc::new(Mutex::new(HashMap::new())),
            rate: per_second as f64,
            burst: burst.max(1) as f64,
        }
    }

    /// Takes one token for `addr`; `Err(seconds)` says how long until one is available.
    pub fn take(&self, addr: IpAddr) -> Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > 100_000 {
            // Forget full buckets: they carry no state worth keeping.
            let (rate, burst) = (self.rate, self.burst);
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(addr).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let refill = now.duration_since(bucket.last).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

pub async fn limit(State(limiter): State<RateLimiter>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let probe = path == "/healthz" || path == "/readyz";
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let (false, Some(addr)) = (probe, peer)
        && let Err(wait) = limiter.take(addr)
    {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests from this address; slow down",
        )
        .retry(wait)
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_a_burst_then_refuse_per_address() {
        let limiter = RateLimiter::new(1, 3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.take(a).is_ok());
        }
        assert_eq!(limiter.take(a), Err(1));
        assert!(limiter.take(b).is_ok());
        assert!(RateLimiter::new(0, 1).take(a).is_ok());
    }
}
