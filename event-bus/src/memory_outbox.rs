//! An in-memory outbox of envelopes, for a store without a database (the
//! orders service's embedded store): the store pushes in the same critical
//! section as the change, one relay drains it ([`crate::relay`]). On
//! PostgreSQL the outbox is a table (`pg::enqueue`,
//! `pg::PgOutbox::envelopes`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::envelope::Envelope;
use crate::source::{Claim, OutboxSource, SourceError};

/// Most envelopes the in-memory outbox holds; past it, [`EnvelopeOutbox::push`]
/// refuses, so a broker that stays down cannot exhaust memory unnoticed.
pub const MEMORY_OUTBOX_LEN_MAX: usize = 1_000_000;

/// The in-memory outbox is full.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the event outbox holds {MEMORY_OUTBOX_LEN_MAX} unsent events")]
pub struct OutboxFull;

/// An in-memory outbox of envelopes, in push order. Cheap to clone: clones
/// share the queue. The store pushes in the same critical section as the
/// change; one relay drains it.
#[derive(Clone, Debug, Default)]
pub struct EnvelopeOutbox {
    queue: Arc<Mutex<Queue>>,
}

#[derive(Debug, Default)]
struct Queue {
    next_sequence: u64,
    entries: VecDeque<(u64, Envelope)>,
}

impl EnvelopeOutbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an envelope.
    ///
    /// # Errors
    /// [`OutboxFull`] past [`MEMORY_OUTBOX_LEN_MAX`] unsent envelopes.
    pub fn push(&self, envelope: Envelope) -> Result<(), OutboxFull> {
        let mut queue = self.queue.lock();
        if queue.entries.len() >= MEMORY_OUTBOX_LEN_MAX {
            return Err(OutboxFull);
        }
        queue.next_sequence += 1;
        let sequence = queue.next_sequence;
        queue.entries.push_back((sequence, envelope));
        Ok(())
    }

    /// Unsent envelopes.
    pub fn len(&self) -> usize {
        self.queue.lock().entries.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A batch of an [`EnvelopeOutbox`].
#[derive(Debug)]
pub struct EnvelopeClaim {
    outbox: EnvelopeOutbox,
    envelopes: Vec<Envelope>,
    last_sequence: u64,
}

impl Claim for EnvelopeClaim {
    fn envelopes(&self) -> &[Envelope] {
        &self.envelopes
    }

    async fn commit(self) -> Result<(), SourceError> {
        let mut queue = self.outbox.queue.lock();
        while queue
            .entries
            .front()
            .is_some_and(|(sequence, _)| *sequence <= self.last_sequence)
        {
            queue.entries.pop_front();
        }
        Ok(())
    }
}

impl OutboxSource for EnvelopeOutbox {
    type Claim = EnvelopeClaim;

    async fn claim(&self, limit: usize) -> Result<EnvelopeClaim, SourceError> {
        let queue = self.queue.lock();
        let batch: Vec<&(u64, Envelope)> = queue.entries.iter().take(limit).collect();
        Ok(EnvelopeClaim {
            outbox: self.clone(),
            last_sequence: batch.last().map_or(0, |(sequence, _)| *sequence),
            envelopes: batch.into_iter().map(|(_, e)| e.clone()).collect(),
        })
    }

    async fn depth(&self) -> Result<Option<u64>, SourceError> {
        Ok(Some(self.len() as u64))
    }

    async fn prune(&self, _retention: Duration, _limit: usize) -> Result<u64, SourceError> {
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn created(n: u128) -> Envelope {
        Envelope::new(
            crate::envelope::ORDERS_SOURCE,
            "order.created",
            crate::envelope::ORDERS_SCHEMA_VERSION,
            uuid::Uuid::from_u128(n),
            0,
            Some("req"),
            json!({"order_id": format!("{n}")}),
        )
    }

    /// A claim hands out the oldest envelopes; only a commit removes them,
    /// and envelopes pushed meanwhile stay.
    #[tokio::test]
    async fn claims_in_order_and_commit_removes_only_the_batch() {
        let outbox = EnvelopeOutbox::new();
        for n in 1..=3 {
            outbox.push(created(n)).unwrap();
        }
        let first = outbox.claim(2).await.unwrap();
        assert_eq!(first.envelopes(), &[created(1), created(2)]);
        drop(first);
        let again = outbox.claim(2).await.unwrap();
        outbox.push(created(4)).unwrap();
        again.commit().await.unwrap();
        let rest = outbox.claim(10).await.unwrap();
        assert_eq!(rest.envelopes(), &[created(3), created(4)]);
        assert_eq!(outbox.depth().await.unwrap(), Some(2));
        assert_eq!(rest.envelopes()[0].source, "orders");
        assert_eq!(rest.envelopes()[0].ordering_key(), "3");
    }
}
