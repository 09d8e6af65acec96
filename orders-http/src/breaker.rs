//! A circuit breaker: closed (calls pass, consecutive failures counted), open
//! (calls fail fast until a cool-down passes), half-open (a bounded number of
//! probe calls; a success closes, a failure opens again).
//!
//! The breaker is a plain state machine that is told the time, so tests drive
//! it without waiting. `docs/adr/0004-order-saga.md` says why it is not an
//! external crate.

use std::time::Duration;

use tokio::time::Instant;

/// Default consecutive failures that open the breaker.
pub const FAILURES_TO_OPEN_DEFAULT: u32 = 5;

/// Default time the breaker stays open before letting probes through, in ms.
pub const OPEN_COOL_DOWN_MS_DEFAULT: u64 = 2_000;

/// Default probe calls allowed at once while half-open.
pub const HALF_OPEN_PROBES_MAX_DEFAULT: u32 = 1;

/// Thresholds of a breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failures_to_open: u32,
    /// Time open before probing, in milliseconds.
    pub open_cool_down_ms: u64,
    /// Probe calls allowed at once while half-open.
    pub half_open_probes_max: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures_to_open: FAILURES_TO_OPEN_DEFAULT,
            open_cool_down_ms: OPEN_COOL_DOWN_MS_DEFAULT,
            half_open_probes_max: HALF_OPEN_PROBES_MAX_DEFAULT,
        }
    }
}

/// The observable state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls pass.
    Closed,
    /// Calls fail fast.
    Open,
    /// A few probe calls pass.
    HalfOpen,
}

impl BreakerState {
    /// The metric value: 0 closed, 1 open, 2 half-open.
    pub fn as_gauge(self) -> i64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probes: u32 },
}

/// The call was refused because the breaker is open (or half-open with every
/// probe slot taken).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("circuit open")]
pub struct Rejected;

/// A circuit breaker. Not synchronised: wrap it in a mutex.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Inner,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            inner: Inner::Closed { failures: 0 },
        }
    }

    /// The state at `now` (an open breaker whose cool-down passed reports
    /// half-open).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.inner {
            Inner::Closed { .. } => BreakerState::Closed,
            Inner::Open { until } if now >= until => BreakerState::HalfOpen,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make a call at `now`. Every admitted call must be followed by
    /// exactly one [`Breaker::on_success`], [`Breaker::on_failure`] or
    /// [`Breaker::on_abandon`].
    ///
    /// # Errors
    /// [`Rejected`] while open, or half-open with every probe slot taken.
    pub fn try_acquire(&mut self, now: Instant) -> Result<(), Rejected> {
        match &mut self.inner {
            Inner::Closed { .. } => Ok(()),
            Inner::Open { until } if now >= *until => {
                self.inner = Inner::HalfOpen { probes: 1 };
                Ok(())
            }
            Inner::Open { .. } => Err(Rejected),
            Inner::HalfOpen { probes } if *probes < self.config.half_open_probes_max => {
                *probes += 1;
                Ok(())
            }
            Inner::HalfOpen { .. } => Err(Rejected),
        }
    }

    /// An admitted call succeeded: the breaker closes.
    pub fn on_success(&mut self) {
        self.inner = Inner::Closed { failures: 0 };
    }

    /// An admitted call failed at `now` (the dependency is unhealthy).
    pub fn on_failure(&mut self, now: Instant) {
        let cool_down = Duration::from_millis(self.config.open_cool_down_ms);
        self.inner = match self.inner {
            Inner::Closed { failures } if failures + 1 < self.config.failures_to_open => {
                Inner::Closed {
                    failures: failures + 1,
                }
            }
            Inner::Closed { .. } | Inner::HalfOpen { .. } | Inner::Open { .. } => Inner::Open {
                until: now + cool_down,
            },
        };
    }

    /// An admitted call ended without an answer about the dependency (the
    /// caller gave up): a half-open probe slot is returned.
    pub fn on_abandon(&mut self) {
        if let Inner::HalfOpen { probes } = &mut self.inner {
            *probes = probes.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failures_to_open: 3,
            open_cool_down_ms: 1_000,
            half_open_probes_max: 1,
        }
    }

    /// Consecutive failures open it; a success in between resets the count.
    #[test]
    fn opens_after_consecutive_failures() {
        let t = Instant::now();
        let mut b = Breaker::new(config());
        for _ in 0..2 {
            b.try_acquire(t).unwrap();
            b.on_failure(t);
        }
        b.try_acquire(t).unwrap();
        b.on_success();
        for _ in 0..2 {
            b.try_acquire(t).unwrap();
            b.on_failure(t);
        }
        assert_eq!(b.state(t), BreakerState::Closed);
        b.try_acquire(t).unwrap();
        b.on_failure(t);
        assert_eq!(b.state(t), BreakerState::Open);
        assert_eq!(b.try_acquire(t + Duration::from_millis(999)), Err(Rejected));
    }

    /// After the cool-down one probe passes; its success closes the breaker,
    /// its failure opens it for another cool-down.
    #[test]
    fn half_open_probes() {
        let t = Instant::now();
        let mut b = Breaker::new(config());
        for _ in 0..3 {
            b.try_acquire(t).unwrap();
            b.on_failure(t);
        }
        let later = t + Duration::from_millis(1_000);
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        b.try_acquire(later).unwrap();
        assert_eq!(b.try_acquire(later), Err(Rejected), "one probe at a time");
        b.on_failure(later);
        assert_eq!(
            b.try_acquire(later + Duration::from_millis(500)),
            Err(Rejected)
        );
        let again = later + Duration::from_millis(1_000);
        b.try_acquire(again).unwrap();
        b.on_abandon();
        b.try_acquire(again).unwrap();
        b.on_success();
        assert_eq!(b.state(again), BreakerState::Closed);
    }
}
