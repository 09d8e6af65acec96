//! What a consuming service provides: a [`Handler`] that applies one event,
//! and the [`Dedup`] store that makes applying it idempotent.
//!
//! Delivery is at least once, so the same envelope can arrive twice (after a
//! broker restart, a lost ack, a relay that crashed between publishing and
//! marking). A handler records the `event_id` it applied in the same
//! transaction as the effect and skips an id it has seen: with PostgreSQL,
//! `pg::record_processed` inside the handler's transaction.
//!
//! What a consumer does with each kind of failure is in [`crate::consume`].

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use uuid::Uuid;

use crate::envelope::Envelope;

/// Why a handler did not apply an event. The variant decides what the
/// consumer does next (policy in [`crate::consume`]), so a handler must not
/// call a failure permanent unless retrying can never help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// Might work later (the database is down, a lock timed out): retried in
    /// place with a capped, jittered exponential back-off, without an
    /// attempt limit, until it applies or the consumer shuts down. Never
    /// dead-lettered.
    #[error("transient failure: {0}")]
    Transient(String),
    /// Will never work (unknown event type, a payload that makes no sense,
    /// data the handler cannot read): dead-lettered at once with this reason
    /// (in process: logged and skipped).
    #[error("permanent failure: {0}")]
    Permanent(String),
}

/// Applies events. Called with one envelope at a time, in delivery order.
///
/// `Ok` means the effect is committed (the message is acknowledged right
/// after); it must also be returned for an event already applied.
pub trait Handler: Send + Sync + 'static {
    /// Applies one event.
    ///
    /// # Errors
    /// [`HandlerError::Transient`] to be retried until it applies,
    /// [`HandlerError::Permanent`] to be dead-lettered.
    fn handle(&self, envelope: &Envelope) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Remembers which events a consumer has applied.
pub trait Dedup: Send + Sync + 'static {
    /// Records `event_id` for `consumer`; `true` the first time, `false` when
    /// it was already recorded (the event must then be skipped).
    ///
    /// # Errors
    /// [`HandlerError::Transient`] when the store failed.
    fn first_time(
        &self,
        consumer: &str,
        event_id: Uuid,
    ) -> impl Future<Output = Result<bool, HandlerError>> + Send;
}

/// A [`Dedup`] in process memory, for tests and the embedded stack (where
/// the effects live in memory too, so they are lost together).
#[derive(Clone, Debug, Default)]
pub struct MemoryDedup {
    seen: Arc<Mutex<HashSet<(String, Uuid)>>>,
}

impl MemoryDedup {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records synchronously; see [`Dedup::first_time`].
    pub fn first_time_sync(&self, consumer: &str, event_id: Uuid) -> bool {
        self.seen.lock().insert((consumer.to_owned(), event_id))
    }

    /// Events recorded, over every consumer.
    pub fn len(&self) -> usize {
        self.seen.lock().len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Dedup for MemoryDedup {
    async fn first_time(&self, consumer: &str, event_id: Uuid) -> Result<bool, HandlerError> {
        Ok(self.first_time_sync(consumer, event_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first record of an id wins; other consumers are independent.
    #[tokio::test]
    async fn memory_dedup_records_each_id_once_per_consumer() {
        let dedup = MemoryDedup::new();
        let id = Uuid::from_u128(9);
        assert!(dedup.first_time("a", id).await.unwrap());
        assert!(!dedup.first_time("a", id).await.unwrap());
        assert!(dedup.first_time("b", id).await.unwrap());
        assert_eq!(dedup.len(), 2);
    }
}
