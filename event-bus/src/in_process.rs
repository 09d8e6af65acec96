//! The embedded default transport: a fan-out of every published envelope to
//! every subscriber of the process, through bounded queues.
//!
//! A publish waits while a subscriber's queue is full (back-pressure reaches
//! the relay, so the outbox holds the excess) and nothing is dropped for a
//! subscriber that is still listening. A dropped subscription is forgotten.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::envelope::Envelope;
use crate::publisher::{PublishError, Publisher};

/// Envelopes one subscriber may have waiting before publishers wait for it.
pub const SUBSCRIBER_QUEUE_LEN_MAX: usize = 4_096;

/// Most subscribers one bus accepts; each costs a queue.
pub const SUBSCRIBERS_MAX: usize = 64;

/// An in-process publish/subscribe bus. Cheap to clone: clones share the
/// subscribers.
#[derive(Clone, Debug, Default)]
pub struct InProcessBus {
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
}

#[derive(Debug)]
struct Subscriber {
    /// Event-type prefix this subscriber wants; empty for everything.
    prefix: String,
    queue: mpsc::Sender<Arc<Envelope>>,
}

/// Why a subscription was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the bus already has {SUBSCRIBERS_MAX} subscribers")]
pub struct TooManySubscribers;

/// The receiving end of a subscription: envelopes in publish order.
#[derive(Debug)]
pub struct Subscription {
    queue: mpsc::Receiver<Arc<Envelope>>,
}

impl Subscription {
    /// The next envelope, or `None` once every publisher handle is gone.
    pub async fn recv(&mut self) -> Option<Arc<Envelope>> {
        self.queue.recv().await
    }
}

impl InProcessBus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes to every event whose type starts with `event_type_prefix`
    /// (for example `inventory.stock.`; empty for all).
    ///
    /// # Errors
    /// [`TooManySubscribers`] past [`SUBSCRIBERS_MAX`] live subscriptions.
    pub fn subscribe(&self, event_type_prefix: &str) -> Result<Subscription, TooManySubscribers> {
        let mut subscribers = self.subscribers.lock();
        subscribers.retain(|s| !s.queue.is_closed());
        if subscribers.len() >= SUBSCRIBERS_MAX {
            return Err(TooManySubscribers);
        }
        let (queue, receiver) = mpsc::channel(SUBSCRIBER_QUEUE_LEN_MAX);
        subscribers.push(Subscriber {
            prefix: event_type_prefix.to_owned(),
            queue,
        });
        Ok(Subscription { queue: receiver })
    }

    /// Live subscriptions.
    pub fn subscriber_count(&self) -> usize {
        let mut subscribers = self.subscribers.lock();
        subscribers.retain(|s| !s.queue.is_closed());
        subscribers.len()
    }
}

impl Publisher for InProcessBus {
    async fn publish(&self, batch: &[Envelope]) -> Result<(), PublishError> {
        // Senders are cloned out so no lock is held while waiting for room.
        let targets: Vec<(String, mpsc::Sender<Arc<Envelope>>)> = self
            .subscribers
            .lock()
            .iter()
            .map(|s| (s.prefix.clone(), s.queue.clone()))
            .collect();
        for envelope in batch {
            let envelope = Arc::new(envelope.clone());
            for (prefix, queue) in &targets {
                if envelope.event_type.starts_with(prefix.as_str()) {
                    // A closed queue is a subscriber that left: nothing to deliver.
                    let _ = queue.send(Arc::clone(&envelope)).await;
                }
            }
        }
        Ok(())
    }

    fn is_reachable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn envelope(event_type: &str, n: u128) -> Envelope {
        Envelope::new(
            "inventory",
            event_type,
            1,
            Uuid::from_u128(n),
            0,
            None,
            serde_json::json!({}),
        )
    }

    /// Every subscriber gets the envelopes it asked for, in order.
    #[tokio::test]
    async fn fans_out_in_order_by_prefix() {
        let bus = InProcessBus::new();
        let mut all = bus.subscribe("").unwrap();
        let mut stock = bus.subscribe("inventory.stock.").unwrap();
        let batch = [
            envelope("inventory.stock.reserved", 1),
            envelope("order.created", 2),
            envelope("inventory.stock.confirmed", 3),
        ];
        bus.publish(&batch).await.unwrap();
        for want in &batch {
            assert_eq!(*all.recv().await.unwrap(), *want);
        }
        assert_eq!(stock.recv().await.unwrap().event_id, Uuid::from_u128(1));
        assert_eq!(stock.recv().await.unwrap().event_id, Uuid::from_u128(3));
    }

    /// A dropped subscription neither blocks publishers nor counts.
    #[tokio::test]
    async fn dropped_subscribers_are_forgotten() {
        let bus = InProcessBus::new();
        drop(bus.subscribe("").unwrap());
        bus.publish(&[envelope("order.created", 1)]).await.unwrap();
        assert_eq!(bus.subscriber_count(), 0);
    }
}
