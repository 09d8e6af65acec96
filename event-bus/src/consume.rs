//! What every consumer does with an envelope, whatever the transport: hand
//! it to the [`Handler`], retry a transient failure until it applies, and
//! report a permanent one; plus the counts a running consumer keeps
//! ([`ConsumerHealth`]) and the in-process consumer ([`run_subscription`]).
//!
//! ## Retry policy
//!
//! - [`HandlerError::Transient`] (the store is unavailable, a lock timed
//!   out) is retried **in place, without an attempt limit**, after pauses
//!   that grow exponentially from [`TRANSIENT_RETRY_DELAY_MIN_MS`] to at most
//!   [`TRANSIENT_RETRY_DELAY_MAX_MS`], with jitter, until the handler applies
//!   the event or shutdown is asked. It is never dead-lettered nor skipped:
//!   an outage of the handler's store, however long, must not lose events,
//!   and a store that is down fails every event alike, so moving on would
//!   only move the whole queue to the dead-letter queue. Retrying in place
//!   keeps per-product order; later events wait behind the failing one.
//! - [`HandlerError::Permanent`] (and an undecodable message) is never
//!   retried: on RabbitMQ it goes to the dead-letter queue at once; in
//!   process it is logged and skipped. Both count in
//!   [`ConsumerHealth::dead_lettered`].
//! - Shutdown is noticed during every pause between attempts. A handler call
//!   in progress is let finish (it may be committing), so a handler bounds
//!   its own calls (its store's timeouts).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::envelope::Envelope;
use crate::handler::{Handler, HandlerError};
use crate::in_process::Subscription;

/// First pause after a transient failure: short, so that a blip (a lock
/// timeout, a connection recycled) costs little.
pub const TRANSIENT_RETRY_DELAY_MIN_MS: u64 = 50;

/// Longest pause between attempts at a transiently failing event: a store
/// that comes back is noticed within this, and an outage of hours costs one
/// attempt per this interval and consumer.
pub const TRANSIENT_RETRY_DELAY_MAX_MS: u64 = 5_000;

/// Jittered exponential pauses from `min_ms`, never above `max_ms`, without
/// end.
///
/// backon's jitter adds up to the current step again, so the steps are
/// capped at half of `max_ms` and the result clamped: every pause is at most
/// `max_ms` and pauses at the cap still differ (consumers do not retry in
/// lockstep).
pub(crate) fn backoff(min_ms: u64, max_ms: u64) -> impl Iterator<Item = Duration> {
    let min = Duration::from_millis(min_ms);
    let max = Duration::from_millis(max_ms.max(min_ms));
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay((max / 2).max(min))
        .with_jitter()
        .without_max_times()
        .build()
        .map(move |pause| pause.min(max))
}

/// What a running consumer has done, for readiness and metrics.
#[derive(Debug, Default)]
pub struct ConsumerHealth {
    connected: AtomicBool,
    sessions: AtomicU64,
    applied: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
}

impl ConsumerHealth {
    /// Whether the consumer is connected and consuming (in process: its
    /// subscription is live).
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Times the consumer started consuming (1 + reconnections).
    pub fn sessions(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }

    /// Messages the handler accepted (acknowledged).
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// Attempts repeated after a transient failure.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    /// Messages given up on as permanent failures: sent to the dead-letter
    /// queue (RabbitMQ) or logged and skipped (in process).
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered.load(Ordering::Relaxed)
    }

    pub(crate) fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    pub(crate) fn record_session(&self) {
        self.sessions.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_applied(&self) {
        self.applied.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_dead_lettered(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }
}

/// What came of handing one envelope to a handler.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handler applied it (or had already).
    Applied,
    /// It can never be applied: the handler's reason.
    Permanent(String),
    /// Shutdown was asked while a transient failure waited for its retry;
    /// the envelope is not applied.
    Shutdown,
}

/// Applies `envelope` through `handler`, retrying transient failures after
/// the pauses of [`backoff`]`(delay_min_ms, delay_max_ms)` for as long as it
/// takes or until `shutdown` resolves (see the module doc).
pub(crate) async fn apply<H: Handler>(
    handler: &H,
    envelope: &Envelope,
    (delay_min_ms, delay_max_ms): (u64, u64),
    health: &ConsumerHealth,
    shutdown: &mut Pin<&mut impl Future<Output = ()>>,
) -> Outcome {
    let mut pauses = backoff(delay_min_ms, delay_max_ms);
    let mut attempt: u64 = 1;
    loop {
        match handler.handle(envelope).await {
            Ok(()) => return Outcome::Applied,
            Err(HandlerError::Permanent(reason)) => return Outcome::Permanent(reason),
            Err(HandlerError::Transient(reason)) => {
                let pause = pauses.next().unwrap_or(Duration::from_millis(delay_max_ms));
                tracing::warn!(
                    event_id = %envelope.event_id,
                    event_type = %envelope.event_type,
                    attempt,
                    pause_ms = pause.as_millis() as u64,
                    %reason,
                    "event not applied yet, retrying"
                );
                tokio::select! {
                    () = shutdown.as_mut() => return Outcome::Shutdown,
                    () = tokio::time::sleep(pause) => {}
                }
                health.retried.fetch_add(1, Ordering::Relaxed);
                attempt += 1;
            }
        }
    }
}

/// Feeds an in-process [`Subscription`] to a handler until `shutdown`
/// resolves or the bus is gone, under the module's retry policy: a transient
/// failure is retried until the event applies (later events wait, as on
/// RabbitMQ); a permanent one is logged and skipped (there is no dead-letter
/// queue in process).
pub async fn run_subscription<H: Handler>(
    subscription: Subscription,
    handler: H,
    shutdown: impl Future<Output = ()> + Send,
) {
    let health = Arc::new(ConsumerHealth::default());
    run_subscription_with_health(subscription, handler, health, shutdown).await;
}

/// [`run_subscription`], counting into `health` (connected while running;
/// permanent failures count as dead-lettered).
pub async fn run_subscription_with_health<H: Handler>(
    mut subscription: Subscription,
    handler: H,
    health: Arc<ConsumerHealth>,
    shutdown: impl Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    health.set_connected(true);
    health.record_session();
    let delays = (TRANSIENT_RETRY_DELAY_MIN_MS, TRANSIENT_RETRY_DELAY_MAX_MS);
    loop {
        let envelope = tokio::select! {
            () = &mut shutdown => break,
            next = subscription.recv() => match next {
                Some(envelope) => envelope,
                None => break,
            },
        };
        match apply(&handler, &envelope, delays, &health, &mut shutdown).await {
            Outcome::Applied => health.record_applied(),
            Outcome::Permanent(reason) => {
                tracing::error!(event_id = %envelope.event_id, event_type = %envelope.event_type, %reason, "event can never be applied: skipped");
                health.record_dead_lettered();
            }
            Outcome::Shutdown => break,
        }
    }
    health.set_connected(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pause lies between the minimum and the maximum, the pauses
    /// grow to the cap and never end.
    #[test]
    fn backoff_is_bounded_and_endless() {
        let pauses: Vec<Duration> = backoff(50, 5_000).take(1_000).collect();
        assert_eq!(pauses.len(), 1_000);
        for pause in &pauses {
            assert!(*pause >= Duration::from_millis(50), "{pause:?}");
            assert!(*pause <= Duration::from_millis(5_000), "{pause:?}");
        }
        assert!(pauses[999] >= Duration::from_millis(2_500));
        let odd: Vec<Duration> = backoff(100, 10).take(10).collect();
        assert!(odd.iter().all(|p| *p == Duration::from_millis(100)));
    }
}
