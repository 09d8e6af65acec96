//! Where a relay reads events from: an [`OutboxSource`] hands out a bounded
//! batch as a [`Claim`], which is marked sent only when committed (after the
//! publisher confirmed it). Dropping a claim unsent gives its rows back.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::envelope::Envelope;

/// The outbox could not be read or written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("outbox unavailable: {0}")]
pub struct SourceError(pub String);

/// A batch of unsent events, in commit order (at least per ordering key).
pub trait Claim: Send {
    /// The events to publish, in order.
    fn envelopes(&self) -> &[Envelope];

    /// Marks every event of the batch as sent.
    ///
    /// # Errors
    /// [`SourceError`] when the outbox failed; the events are then handed
    /// out again later (and published twice: at least once).
    fn commit(self) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// Gives the events back unsent; they are handed out again by a later
    /// claim. Dropping a claim does the same, possibly a moment later.
    fn release(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized,
    {
        async move { drop(self) }
    }
}

/// An outbox a relay drains.
///
/// Implemented here for any `inventory_core::Outbox` ([`InventoryOutbox`]) and
/// for inventory's PostgreSQL table (`pg::PgOutbox`); another
/// service implements it over its own outbox table the same way.
pub trait OutboxSource: Send + Sync + 'static {
    /// The batch type.
    type Claim: Claim;

    /// Up to `limit` unsent events, oldest first.
    ///
    /// # Errors
    /// [`SourceError`] when the outbox failed.
    fn claim(&self, limit: usize) -> impl Future<Output = Result<Self::Claim, SourceError>> + Send;

    /// Events waiting to be sent, when the source can tell cheaply.
    ///
    /// # Errors
    /// [`SourceError`] when the outbox failed.
    fn depth(&self) -> impl Future<Output = Result<Option<u64>, SourceError>> + Send;

    /// Deletes up to `limit` events sent more than `retention` ago; returns
    /// how many. Sources that forget events when they are sent do nothing.
    ///
    /// # Errors
    /// [`SourceError`] when the outbox failed.
    fn prune(
        &self,
        retention: Duration,
        limit: usize,
    ) -> impl Future<Output = Result<u64, SourceError>> + Send;
}

type DepthFn<O> = dyn Fn(&O) -> u64 + Send + Sync;

/// An [`OutboxSource`] over any `inventory_core::Outbox` (the memory store,
/// or the PostgreSQL store with a single relay).
///
/// Entries are marked published after the confirm; the memory store forgets
/// them then, so there is nothing to prune.
pub struct InventoryOutbox<O> {
    outbox: Arc<O>,
    depth: Option<Arc<DepthFn<O>>>,
}

impl<O> Clone for InventoryOutbox<O> {
    fn clone(&self) -> Self {
        Self {
            outbox: Arc::clone(&self.outbox),
            depth: self.depth.clone(),
        }
    }
}

impl<O> std::fmt::Debug for InventoryOutbox<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InventoryOutbox").finish_non_exhaustive()
    }
}

impl<O: inventory_core::Outbox> InventoryOutbox<O> {
    /// A source over `outbox`, reporting no depth.
    pub fn new(outbox: Arc<O>) -> Self {
        Self {
            outbox,
            depth: None,
        }
    }

    /// Reports the depth with `depth` (for the memory store,
    /// `MemoryStore::outbox_len`).
    #[must_use]
    pub fn with_depth(mut self, depth: impl Fn(&O) -> u64 + Send + Sync + 'static) -> Self {
        self.depth = Some(Arc::new(depth));
        self
    }
}

/// A batch read from an [`InventoryOutbox`].
#[derive(Debug)]
pub struct InventoryClaim<O> {
    outbox: Arc<O>,
    envelopes: Vec<Envelope>,
    sequences: Vec<u64>,
}

impl<O: inventory_core::Outbox> Claim for InventoryClaim<O> {
    fn envelopes(&self) -> &[Envelope] {
        &self.envelopes
    }

    async fn commit(self) -> Result<(), SourceError> {
        self.outbox
            .mark_published(&self.sequences)
            .await
            .map_err(|e| SourceError(e.to_string()))
    }
}

impl<O: inventory_core::Outbox> OutboxSource for InventoryOutbox<O> {
    type Claim = InventoryClaim<O>;

    async fn claim(&self, limit: usize) -> Result<Self::Claim, SourceError> {
        let entries = self
            .outbox
            .unpublished(limit)
            .await
            .map_err(|e| SourceError(e.to_string()))?;
        Ok(InventoryClaim {
            outbox: Arc::clone(&self.outbox),
            envelopes: entries.iter().map(Envelope::from_inventory).collect(),
            sequences: entries.iter().map(|e| e.sequence).collect(),
        })
    }

    async fn depth(&self) -> Result<Option<u64>, SourceError> {
        Ok(self.depth.as_ref().map(|depth| depth(&self.outbox)))
    }

    async fn prune(&self, _retention: Duration, _limit: usize) -> Result<u64, SourceError> {
        Ok(0)
    }
}
