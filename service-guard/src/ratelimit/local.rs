//! The in-process limiter: governor's keyed GCRA on tokio's clock.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use super::RateDecision;

/// Every this many checks, keys whose budget is full again are dropped, so memory
/// stays proportional to the clients active within one window.
pub const RETAIN_EVERY_CHECKS: u64 = 4096;

/// Governor's clock, read from tokio so tests can pause and advance time.
#[derive(Debug, Clone)]
struct TokioClock {
    start: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

type Keyed = RateLimiter<String, DashMapStateStore<String>, TokioClock, StateInformationMiddleware>;

/// A per-process GCRA limiter with the same parameters as the Redis script.
pub(crate) struct LocalLimiter {
    limiter: Keyed,
    clock: TokioClock,
    limit: u32,
    period: Duration,
    checks: AtomicU64,
}

impl LocalLimiter {
    /// `limit` requests per `limit * period`, all of them usable at once.
    pub(crate) fn new(limit: NonZeroU32, period: Duration) -> Self {
        let quota = Quota::with_period(period)
            .expect("period is at least one microsecond")
            .allow_burst(limit);
        let clock = TokioClock {
            start: tokio::time::Instant::now(),
        };
        let limiter = RateLimiter::dashmap_with_clock(quota, clock.clone())
            .with_middleware::<StateInformationMiddleware>();
        LocalLimiter {
            limiter,
            clock,
            limit: limit.get(),
            period,
            checks: AtomicU64::new(0),
        }
    }

    pub(crate) fn check(&self, key: &str) -> RateDecision {
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY_CHECKS
            == RETAIN_EVERY_CHECKS - 1
        {
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&key.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                RateDecision {
                    allowed: true,
                    limit: self.limit,
                    remaining,
                    reset_after: self.period * (self.limit - remaining.min(self.limit)),
                    retry_after: None,
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                RateDecision {
                    allowed: false,
                    limit: self.limit,
                    remaining: 0,
                    reset_after: wait + self.period * (self.limit - 1),
                    retry_after: Some(wait),
                }
            }
        }
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }

    /// Number of keys currently tracked.
    pub(crate) fn tracked_keys(&self) -> usize {
        self.limiter.len()
    }
}
