//! Faults at the store port: [`Faulty`] wraps any store and, by a seeded
//! draw per call, fails a write before it reaches the store, or lets it
//! commit and then loses the answer (the caller sees an error, the change
//! happened). Both answer [`Error::Unavailable`]: the caller cannot tell
//! them apart, which is the point.

use inventory_core::{
    Adjustment, BatchResults, Command, Error, InventoryItem, InventoryStore, Meta, OrderId,
    Outcome, ProductId, Reservation, ReservationId, Timestamp,
};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How often writes fail, as probabilities per call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FaultRates {
    /// The write never reaches the store.
    pub before_commit: f64,
    /// The write commits, then its answer is lost.
    pub after_commit: f64,
}

impl FaultRates {
    /// No faults.
    pub const NONE: FaultRates = FaultRates {
        before_commit: 0.0,
        after_commit: 0.0,
    };
}

/// How many faults a [`Faulty`] store injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Writes failed before they reached the store.
    pub before_commit: u64,
    /// Writes committed whose answer was lost.
    pub after_commit: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    BeforeCommit,
    AfterCommit,
}

/// A store whose writes fail now and then, reproducibly from a seed. Reads
/// and sweeps pass through untouched.
///
/// ```
/// use inventory_core::InventoryStore;
/// use sim::faults::{FaultRates, Faulty};
///
/// let rates = FaultRates { before_commit: 0.0, after_commit: 1.0 };
/// let store = Faulty::new(inventory_memory::MemoryStore::new(), rates, 7);
/// let create = inventory_core::Command::CreateItem {
///     product_id: inventory_core::ProductId::from_uuid(uuid::Uuid::from_u128(1)),
///     quantity: inventory_core::StockLevel::new(3).unwrap(),
///     actor: inventory_core::Actor::system(),
/// };
/// let meta = inventory_core::Meta::at(inventory_core::Timestamp::from_millis(0));
/// // The item is created, but the caller is told the store failed.
/// assert!(pollster::block_on(store.execute(create, &meta)).is_err());
/// assert_eq!(store.counts().after_commit, 1);
/// ```
pub struct Faulty<S> {
    inner: S,
    rates: FaultRates,
    rng: Mutex<StdRng>,
    counts: Mutex<FaultCounts>,
}

impl<S> Faulty<S> {
    /// Wraps `inner`; the faults follow `seed`.
    pub fn new(inner: S, rates: FaultRates, seed: u64) -> Self {
        Self {
            inner,
            rates,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            counts: Mutex::new(FaultCounts::default()),
        }
    }

    /// The store underneath (no faults).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Faults injected so far.
    pub fn counts(&self) -> FaultCounts {
        *self.counts.lock()
    }

    fn draw(&self) -> Fault {
        let roll: f64 = self.rng.lock().random();
        let mut counts = self.counts.lock();
        if roll < self.rates.before_commit {
            counts.before_commit += 1;
            Fault::BeforeCommit
        } else if roll < self.rates.before_commit + self.rates.after_commit {
            counts.after_commit += 1;
            Fault::AfterCommit
        } else {
            Fault::None
        }
    }
}

fn lost(when: &str) -> Error {
    Error::Unavailable {
        reason: format!("injected fault {when}"),
    }
}

impl<S: InventoryStore> InventoryStore for Faulty<S> {
    async fn execute(&self, command: Command, meta: &Meta) -> Result<Outcome, Error> {
        match self.draw() {
            Fault::BeforeCommit => Err(lost("before commit")),
            Fault::AfterCommit => {
                let _ = self.inner.execute(command, meta).await;
                Err(lost("after commit"))
            }
            Fault::None => self.inner.execute(command, meta).await,
        }
    }

    async fn execute_batch(&self, batch: Vec<(Command, Meta)>) -> Result<BatchResults, Error> {
        match self.draw() {
            Fault::BeforeCommit => Err(lost("before commit")),
            Fault::AfterCommit => {
                let _ = self.inner.execute_batch(batch).await;
                Err(lost("after commit"))
            }
            Fault::None => self.inner.execute_batch(batch).await,
        }
    }

    async fn item(&self, product_id: ProductId) -> Result<Option<InventoryItem>, Error> {
        self.inner.item(product_id).await
    }

    async fn items(&self, product_ids: &[ProductId]) -> Result<Vec<InventoryItem>, Error> {
        self.inner.items(product_ids).await
    }

    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, Error> {
        self.inner.reservation(id).await
    }

    async fn reservations_of_order(&self, order_id: OrderId) -> Result<Vec<Reservation>, Error> {
        self.inner.reservations_of_order(order_id).await
    }

    async fn reservations_of_product(
        &self,
        product_id: ProductId,
    ) -> Result<Vec<Reservation>, Error> {
        self.inner.reservations_of_product(product_id).await
    }

    async fn adjustments(
        &self,
        product_id: ProductId,
        limit: usize,
    ) -> Result<Vec<Adjustment>, Error> {
        self.inner.adjustments(product_id, limit).await
    }

    async fn expire_due(&self, meta: &Meta, limit: usize) -> Result<usize, Error> {
        self.inner.expire_due(meta, limit).await
    }

    async fn purge_finished(&self, before: Timestamp, limit: usize) -> Result<usize, Error> {
        self.inner.purge_finished(before, limit).await
    }
}
