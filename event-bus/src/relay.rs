//! The outbox relay: reads unsent events in bounded batches, in order,
//! publishes them, and marks them sent only after the publisher confirmed.
//!
//! While the broker (or the outbox) is down it backs off, bounded and
//! jittered, and the outbox grows: nothing is dropped. [`RelayHealth`] tells
//! readiness whether the broker is reachable and metrics how deep the outbox
//! is. Sent rows are pruned after [`RelayConfig::retention_ms`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::publisher::Publisher;
use crate::source::{Claim, OutboxSource};

/// Events per batch by default: large enough to amortize a confirm round
/// trip, small enough to hold a PostgreSQL transaction for milliseconds.
pub const BATCH_DEFAULT_MAX: usize = 256;

/// Pause after finding the outbox empty (the relay polls; a store does not
/// wake it).
pub const IDLE_POLL_DEFAULT_MS: u64 = 20;

/// Pause after a batch smaller than the largest, so that under a steady
/// trickle of events the relay claims them in batches rather than a few at a
/// time (every claim costs the outbox a fixed few statements). Adds at most
/// this to an event's delivery.
pub const PARTIAL_POLL_DEFAULT_MS: u64 = 10;

/// First back-off after a failure.
pub const BACKOFF_MIN_DEFAULT_MS: u64 = 100;

/// Longest back-off: a broker that comes back is used within this.
pub const BACKOFF_MAX_DEFAULT_MS: u64 = 5_000;

/// Sent rows are kept this long (for replay and audit) before pruning: 7 days.
pub const RETENTION_DEFAULT_MS: u64 = 7 * 24 * 3_600_000;

/// How often sent rows are pruned.
pub const PRUNE_INTERVAL_DEFAULT_MS: u64 = 60_000;

/// Most rows one prune deletes (the rest wait for the next interval).
pub const PRUNE_BATCH_MAX: usize = 10_000;

/// How often the outbox depth is measured.
pub const DEPTH_INTERVAL_MS: u64 = 1_000;

/// How a relay runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayConfig {
    /// See [`BATCH_DEFAULT_MAX`].
    pub batch_max: usize,
    /// See [`IDLE_POLL_DEFAULT_MS`].
    pub idle_poll_ms: u64,
    /// See [`PARTIAL_POLL_DEFAULT_MS`].
    pub partial_poll_ms: u64,
    /// See [`BACKOFF_MIN_DEFAULT_MS`].
    pub backoff_min_ms: u64,
    /// See [`BACKOFF_MAX_DEFAULT_MS`].
    pub backoff_max_ms: u64,
    /// See [`RETENTION_DEFAULT_MS`].
    pub retention_ms: u64,
    /// See [`PRUNE_INTERVAL_DEFAULT_MS`].
    pub prune_interval_ms: u64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_max: BATCH_DEFAULT_MAX,
            idle_poll_ms: IDLE_POLL_DEFAULT_MS,
            partial_poll_ms: PARTIAL_POLL_DEFAULT_MS,
            backoff_min_ms: BACKOFF_MIN_DEFAULT_MS,
            backoff_max_ms: BACKOFF_MAX_DEFAULT_MS,
            retention_ms: RETENTION_DEFAULT_MS,
            prune_interval_ms: PRUNE_INTERVAL_DEFAULT_MS,
        }
    }
}

impl RelayConfig {
    /// Pauses after failures: never above `backoff_max_ms` (backon's jitter
    /// alone could double it), the same rule as the consumers'.
    fn backoff(&self) -> impl Iterator<Item = Duration> {
        crate::consume::backoff(self.backoff_min_ms, self.backoff_max_ms)
    }
}

/// What a running relay knows, shared with readiness checks and metrics.
#[derive(Debug)]
pub struct RelayHealth {
    broker_reachable: AtomicBool,
    outbox_reachable: AtomicBool,
    outbox_depth: AtomicU64,
    published: AtomicU64,
    failures: AtomicU64,
}

impl Default for RelayHealth {
    fn default() -> Self {
        Self {
            broker_reachable: AtomicBool::new(true),
            outbox_reachable: AtomicBool::new(true),
            outbox_depth: AtomicU64::new(0),
            published: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }
}

impl RelayHealth {
    /// False after a failed publish, until one succeeds.
    pub fn broker_reachable(&self) -> bool {
        self.broker_reachable.load(Ordering::Relaxed)
    }

    /// False after a failed outbox read or write, until one succeeds.
    pub fn outbox_reachable(&self) -> bool {
        self.outbox_reachable.load(Ordering::Relaxed)
    }

    /// Both reachable: what a readiness check should report.
    pub fn is_ready(&self) -> bool {
        self.broker_reachable() && self.outbox_reachable()
    }

    /// Unsent events at the last measurement (0 when the source cannot tell).
    pub fn outbox_depth(&self) -> u64 {
        self.outbox_depth.load(Ordering::Relaxed)
    }

    /// Events published and marked sent by this relay.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Failed attempts (publish or outbox), each followed by a back-off.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// Moves events from an outbox to a publisher.
#[derive(Debug)]
pub struct Relay<S, P> {
    source: S,
    publisher: P,
    config: RelayConfig,
    health: Arc<RelayHealth>,
}

/// What one step did.
enum Step {
    /// Published a batch of this many events.
    Sent(usize),
    /// Nothing to send.
    Idle,
    /// Something failed; back off.
    Failed,
}

impl<S: OutboxSource, P: Publisher> Relay<S, P> {
    /// A relay that is not running yet.
    pub fn new(source: S, publisher: P, config: RelayConfig) -> Self {
        assert!(
            config.batch_max > 0,
            "a relay batch holds at least one event"
        );
        assert!(config.backoff_min_ms <= config.backoff_max_ms);
        Self {
            source,
            publisher,
            config,
            health: Arc::new(RelayHealth::default()),
        }
    }

    /// Its health, shared with the running relay.
    pub fn health(&self) -> Arc<RelayHealth> {
        Arc::clone(&self.health)
    }

    /// One batch: claim, publish, commit. Returns how many events were sent.
    ///
    /// # Errors
    /// A description of what failed; the batch is then handed out again.
    pub async fn step(&self) -> Result<usize, String> {
        let claim = self
            .source
            .claim(self.config.batch_max)
            .await
            .map_err(|e| {
                self.health.outbox_reachable.store(false, Ordering::Relaxed);
                e.to_string()
            })?;
        self.health.outbox_reachable.store(true, Ordering::Relaxed);
        let count = claim.envelopes().len();
        if count == 0 {
            claim.release().await;
            return Ok(0);
        }
        if let Err(e) = self.publisher.publish(claim.envelopes()).await {
            self.health.broker_reachable.store(false, Ordering::Relaxed);
            claim.release().await;
            return Err(e.to_string());
        }
        self.health.broker_reachable.store(true, Ordering::Relaxed);
        claim.commit().await.map_err(|e| {
            self.health.outbox_reachable.store(false, Ordering::Relaxed);
            e.to_string()
        })?;
        self.health
            .published
            .fetch_add(count as u64, Ordering::Relaxed);
        Ok(count)
    }

    async fn step_logged(&self) -> Step {
        match self.step().await {
            Ok(0) => Step::Idle,
            Ok(sent) => Step::Sent(sent),
            Err(reason) => {
                self.health.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%reason, depth = self.health.outbox_depth(), "relay step failed, backing off");
                Step::Failed
            }
        }
    }

    async fn housekeeping(&self, next_depth: &mut Instant, next_prune: &mut Instant) {
        let now = Instant::now();
        if now >= *next_depth {
            *next_depth = now + Duration::from_millis(DEPTH_INTERVAL_MS);
            if let Ok(Some(depth)) = self.source.depth().await {
                self.health.outbox_depth.store(depth, Ordering::Relaxed);
            }
        }
        if now >= *next_prune {
            *next_prune = now + Duration::from_millis(self.config.prune_interval_ms);
            let retention = Duration::from_millis(self.config.retention_ms);
            match self.source.prune(retention, PRUNE_BATCH_MAX).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "pruned sent outbox rows"),
                Err(e) => tracing::warn!(error = %e, "outbox prune failed"),
            }
        }
    }

    /// Relays until `shutdown` resolves. A batch in flight when it resolves
    /// is abandoned unmarked (and sent again by the next relay to run).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let mut backoff = self.config.backoff();
        let mut next_depth = Instant::now();
        let mut next_prune = Instant::now();
        loop {
            let step = tokio::select! {
                () = &mut shutdown => return,
                step = self.step_logged() => step,
            };
            let pause = match step {
                Step::Sent(sent) => {
                    backoff = self.config.backoff();
                    (sent < self.config.batch_max)
                        .then(|| Duration::from_millis(self.config.partial_poll_ms))
                }
                Step::Idle => {
                    backoff = self.config.backoff();
                    Some(Duration::from_millis(self.config.idle_poll_ms))
                }
                Step::Failed => Some(
                    backoff
                        .next()
                        .unwrap_or(Duration::from_millis(self.config.backoff_max_ms)),
                ),
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = self.housekeeping(&mut next_depth, &mut next_prune) => {}
            }
            if let Some(pause) = pause {
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
}

/// Runs `relay` on the current runtime until `shutdown` resolves.
pub fn spawn<S: OutboxSource, P: Publisher>(
    relay: Relay<S, P>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(relay.run(shutdown))
}
