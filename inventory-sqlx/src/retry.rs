//! Bounded retries with jittered exponential backoff, and counters of how often
//! transactions had to be run again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;

use crate::options::PgOptions;

/// How often a store's transactions ran, conflicted and gave up, since the
/// store was built. Counters only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryStats {
    /// Transactions attempted (first tries and retries).
    pub attempts: u64,
    /// Attempts that met a conflict and were rolled back (a failed version
    /// check, a serialization failure or a deadlock).
    pub conflicts: u64,
    /// Commands that ran out of retries and returned
    /// [`inventory_core::Error::Contention`].
    pub gave_up: u64,
}

impl RetryStats {
    /// Share of attempts that conflicted, between 0 and 1 (0 when nothing ran).
    pub fn conflict_rate(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            self.conflicts as f64 / self.attempts as f64
        }
    }

    /// The counts since `earlier`, a snapshot of the same store.
    #[must_use]
    pub fn since(&self, earlier: &RetryStats) -> RetryStats {
        RetryStats {
            attempts: self.attempts - earlier.attempts,
            conflicts: self.conflicts - earlier.conflicts,
            gave_up: self.gave_up - earlier.gave_up,
        }
    }
}

/// The live counters behind [`RetryStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    attempts: AtomicU64,
    conflicts: AtomicU64,
    gave_up: AtomicU64,
}

impl Counters {
    pub(crate) fn read(&self) -> RetryStats {
        RetryStats {
            attempts: self.attempts.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            gave_up: self.gave_up.load(Ordering::Relaxed),
        }
    }
}

/// The retry state of one command.
pub(crate) struct Retrier<'a> {
    options: &'a PgOptions,
    counters: &'a Counters,
    retries: u32,
}

impl<'a> Retrier<'a> {
    pub(crate) fn new(options: &'a PgOptions, counters: &'a Counters) -> Self {
        Self {
            options,
            counters,
            retries: 0,
        }
    }

    /// Counts one attempt.
    pub(crate) fn attempt(&self) {
        self.counters.attempts.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a conflict; waits a jittered backoff and returns true when the
    /// command may run again, false when it is out of retries.
    pub(crate) async fn backoff(&mut self, why: &'static str) -> bool {
        self.counters.conflicts.fetch_add(1, Ordering::Relaxed);
        if self.retries >= self.options.retries_max {
            self.counters.gave_up.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(retries = self.retries, why, "giving up after conflicts");
            return false;
        }
        let step = self
            .options
            .backoff_base_ms
            .saturating_mul(1u64 << self.retries.min(16))
            .min(self.options.backoff_cap_ms);
        self.retries += 1;
        // Full jitter: a uniform wait in [0, step] spreads the retries of
        // tasks that conflicted together.
        let wait_us = rand::rng().random_range(0..=step.saturating_mul(1_000));
        tracing::debug!(retry = self.retries, why, wait_us, "conflict, retrying");
        tokio::time::sleep(Duration::from_micros(wait_us)).await;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_rate_and_since() {
        let a = RetryStats {
            attempts: 10,
            conflicts: 4,
            gave_up: 1,
        };
        assert!((a.conflict_rate() - 0.4).abs() < 1e-9);
        assert_eq!(RetryStats::default().conflict_rate(), 0.0);
        let b = RetryStats {
            attempts: 30,
            conflicts: 5,
            gave_up: 1,
        };
        assert_eq!(
            b.since(&a),
            RetryStats {
                attempts: 20,
                conflicts: 1,
                gave_up: 0
            }
        );
    }

    #[tokio::test]
    async fn gives_up_after_retries_max() {
        let options = PgOptions {
            retries_max: 2,
            backoff_base_ms: 0,
            ..PgOptions::default()
        };
        let counters = Counters::default();
        let mut retrier = Retrier::new(&options, &counters);
        assert!(retrier.backoff("test").await);
        assert!(retrier.backoff("test").await);
        assert!(!retrier.backoff("test").await);
        let stats = counters.read();
        assert_eq!((stats.conflicts, stats.gave_up), (3, 1));
    }
}
