//! Per-client rate limiting: shared through Redis when configured, in-process otherwise.
//!
//! Both paths run the same algorithm, GCRA (the generic cell rate algorithm, a
//! leaky bucket that stores one timestamp per key), with the same parameters:
//! a budget of `requests_per_window` requests, refilled at one request every
//! `window / requests_per_window`. So a fresh client may send the whole budget at
//! once, the next request is denied with a `Retry-After`, and in steady state no
//! client gets more than the budget per window.
//!
//! Why GCRA rather than a fixed window: a fixed window lets a client send twice the
//! budget across a window boundary and makes every client's budget reset at the same
//! instant; GCRA has neither problem, needs one key and one timestamp per client in
//! Redis (one `GET` and one `SET` in an atomic script, timed by Redis' own clock so
//! instances with skewed clocks agree), and it is exactly what `governor` implements
//! in-process, so the fallback behaves like the shared limiter.

mod decision;
mod local;
#[cfg(feature = "redis")]
mod redis_store;
#[cfg(not(feature = "redis"))]
#[path = "redis_absent.rs"]
mod redis_store;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use decision::{
    RateDecision, RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET, X_RATELIMIT_LIMIT,
    X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
};
pub use local::RETAIN_EVERY_CHECKS;

use local::LocalLimiter;
use redis_store::RedisStore;

/// Longest wait for one Redis call (the script or a PING). Past it the request is
/// decided in-process: a hung Redis never stalls a request by more than this.
pub const REDIS_CALL_TIMEOUT_MS: u64 = 100;

/// Longest wait for a TCP connection (and handshake) to Redis.
pub const REDIS_CONNECT_TIMEOUT_MS: u64 = 500;

/// After a failed Redis call, requests skip Redis for this long before trying again,
/// so a broken Redis costs at most one timeout per interval, not one per request.
pub const REDIS_RETRY_AFTER_MS: u64 = 1_000;

/// Default budget per window and client.
pub const DEFAULT_REQUESTS_PER_WINDOW: u32 = 100;

/// Default window, in seconds.
pub const DEFAULT_WINDOW_SECS: u64 = 60;

/// Default prefix of the Redis keys.
pub const DEFAULT_KEY_PREFIX: &str = "ratelimit";

/// Shortest window, in milliseconds; shorter ones are raised to it.
pub const MIN_WINDOW_MS: u64 = 1;

/// At most one "redis unavailable" warning per this many seconds (per limiter).
pub const FALLBACK_WARN_INTERVAL_SECS: u64 = 30;

/// Rate limit settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Requests each client may make per window (0 is treated as 1).
    pub requests_per_window: u32,
    /// The window.
    pub window: Duration,
    /// Redis URL; `None` limits in-process only.
    pub redis_url: Option<String>,
    /// Prefix of the Redis keys (`<prefix>:<client key>`).
    pub key_prefix: String,
    /// The roots a `rediss://` URL's server is checked against.
    pub tls: crate::tls::TlsClient,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            requests_per_window: DEFAULT_REQUESTS_PER_WINDOW,
            window: Duration::from_secs(DEFAULT_WINDOW_SECS),
            redis_url: None,
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            tls: crate::tls::TlsClient::system(),
        }
    }
}

/// Decides whether a client's request may proceed.
///
/// With Redis, every instance shares one budget per client; when Redis errors or is
/// slow the instance decides in-process (and says so in a rate-limited warning) and
/// goes back to Redis as soon as it answers again. `check` never fails.
pub struct Limiter {
    local: LocalLimiter,
    redis: Option<Arc<RedisStore>>,
    redis_configured: bool,
    degraded: AtomicBool,
    last_warning: Mutex<Option<tokio::time::Instant>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("limit", &self.local_limit())
            .field("redis_configured", &self.redis_configured)
            .field("degraded", &self.is_degraded())
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// Builds the limiter. With a Redis URL (`redis://`, or `rediss://` for
    /// TLS trusting [`RateLimitConfig::tls`]) it tries to connect (bounded by
    /// [`REDIS_CONNECT_TIMEOUT_MS`]); if Redis is down it starts in-process and keeps
    /// reconnecting in the background. An unparsable URL, or any URL in a build
    /// without the `redis` feature, is logged and the limiter runs in-process
    /// (the servers refuse such a configuration at start).
    pub async fn new(cfg: RateLimitConfig) -> Self {
        let limit = NonZeroU32::new(cfg.requests_per_window).unwrap_or(NonZeroU32::MIN);
        let window = cfg.window.max(Duration::from_millis(MIN_WINDOW_MS));
        let period = (window / limit.get()).max(Duration::from_micros(1));
        let local = LocalLimiter::new(limit, period);
        let redis = match &cfg.redis_url {
            None => None,
            Some(url) => {
                match RedisStore::start(&cfg.tls, url, cfg.key_prefix.clone(), period, limit.get())
                    .await
                {
                    Ok(store) => Some(store),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot use the redis url for rate limiting: limiting in-process only");
                        None
                    }
                }
            }
        };
        Limiter {
            local,
            redis,
            redis_configured: cfg.redis_url.is_some(),
            degraded: AtomicBool::new(false),
            last_warning: Mutex::new(None),
        }
    }

    /// Counts one request for `key` (for example `"ip:1.2.3.4"` or `"user:abc"`) and
    /// says whether it may proceed. Keys are used as given: callers keep them short.
    pub async fn check(&self, key: &str) -> RateDecision {
        if let Some(redis) = &self.redis {
            match redis.check(key).await {
                Ok(decision) => {
                    if self.degraded.swap(false, Ordering::Relaxed) {
                        tracing::info!("redis is back: rate limits are shared again");
                    }
                    return decision;
                }
                Err(e) => self.note_fallback(&e),
            }
        } else if self.redis_configured {
            self.degraded.store(true, Ordering::Relaxed);
        }
        self.local.check(key)
    }

    fn note_fallback(&self, error: &dyn std::error::Error) {
        self.degraded.store(true, Ordering::Relaxed);
        let now = tokio::time::Instant::now();
        let mut last = self
            .last_warning
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let due = last.is_none_or(|at| {
            now.duration_since(at) >= Duration::from_secs(FALLBACK_WARN_INTERVAL_SECS)
        });
        if due {
            *last = Some(now);
            tracing::warn!(%error, "redis unavailable: rate limiting in-process on this instance");
        }
    }

    /// Whether a Redis URL was configured.
    pub fn redis_configured(&self) -> bool {
        self.redis_configured
    }

    /// Whether Redis answers a PING within [`REDIS_CALL_TIMEOUT_MS`] (for readiness).
    /// `false` when no Redis is configured.
    pub async fn redis_healthy(&self) -> bool {
        match &self.redis {
            Some(redis) => redis.ping().await,
            None => false,
        }
    }

    /// Whether the last decision was made in-process although Redis is configured.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Number of client keys the in-process limiter currently tracks.
    pub fn local_tracked_keys(&self) -> usize {
        self.local.tracked_keys()
    }

    fn local_limit(&self) -> u32 {
        self.local.limit()
    }
}
