//! The shared conformance kit of `inventory-core`, run against the memory
//! store with one OS thread per concurrent task.

use std::sync::{Arc, Barrier};
use std::thread;

use inventory_core::testkit::{run_all, Harness, KitConfig, Task};
use inventory_core::{
    Adjustment, BatchResults, Command, Error, InventoryItem, InventoryStore, Meta, OrderId, Outbox,
    OutboxEntry, Outcome, ProductId, Reservation, ReservationId, SharedOutbox, SharedStore,
    Timestamp,
};
use inventory_memory::MemoryStore;

/// Real threads, released together by a barrier, each driving its task to
/// completion (the store's futures never wait, so `block_on` is enough).
struct Threads;

/// Runs the concurrent cases on threads, as [`Threads`] does.
async fn on_threads(tasks: Vec<Task>) {
    let barrier = Arc::new(Barrier::new(tasks.len()));
    let threads: Vec<_> = tasks
        .into_iter()
        .map(|task| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                pollster::block_on(task);
            })
        })
        .collect();
    for thread in threads {
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Harness for Threads {
    type Store = MemoryStore;

    async fn store(&self) -> MemoryStore {
        MemoryStore::new()
    }

    async fn run_concurrently(&self, tasks: Vec<Task>) {
        on_threads(tasks).await;
    }

    fn config(&self) -> KitConfig {
        KitConfig {
            race_tasks: 100,
            race_rounds: 200,
            mix_tasks: 100,
            ..KitConfig::default()
        }
    }
}

/// The memory store passes every rule of the kit, including 200 rounds of 100
/// threads racing for the last unit.
#[test]
fn memory_store_passes_the_conformance_kit() {
    pollster::block_on(run_all(&Threads));
}

/// The memory store behind the trait objects: every call goes through
/// [`SharedStore`] and [`SharedOutbox`], so the kit checks that the adapters
/// forward every method of both ports.
struct Shared {
    store: SharedStore,
    outbox: SharedOutbox,
}

impl InventoryStore for Shared {
    async fn execute(&self, command: Command, meta: &Meta) -> Result<Outcome, Error> {
        self.store.execute(command, meta).await
    }
    async fn execute_batch(&self, batch: Vec<(Command, Meta)>) -> Result<BatchResults, Error> {
        self.store.execute_batch(batch).await
    }
    async fn item(&self, product_id: ProductId) -> Result<Option<InventoryItem>, Error> {
        self.store.item(product_id).await
    }
    async fn items(&self, product_ids: &[ProductId]) -> Result<Vec<InventoryItem>, Error> {
        self.store.items(product_ids).await
    }
    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, Error> {
        self.store.reservation(id).await
    }
    async fn reservations_of_order(&self, order_id: OrderId) -> Result<Vec<Reservation>, Error> {
        self.store.reservations_of_order(order_id).await
    }
    async fn reservations_of_product(
        &self,
        product_id: ProductId,
    ) -> Result<Vec<Reservation>, Error> {
        self.store.reservations_of_product(product_id).await
    }
    async fn adjustments(
        &self,
        product_id: ProductId,
        limit: usize,
    ) -> Result<Vec<Adjustment>, Error> {
        self.store.adjustments(product_id, limit).await
    }
    async fn expire_due(&self, meta: &Meta, limit: usize) -> Result<usize, Error> {
        self.store.expire_due(meta, limit).await
    }
    async fn purge_finished(&self, before: Timestamp, limit: usize) -> Result<usize, Error> {
        self.store.purge_finished(before, limit).await
    }
}

impl Outbox for Shared {
    async fn unpublished(&self, limit: usize) -> Result<Vec<OutboxEntry>, Error> {
        self.outbox.unpublished(limit).await
    }
    async fn mark_published(&self, sequences: &[u64]) -> Result<(), Error> {
        self.outbox.mark_published(sequences).await
    }
}

struct SharedThreads;

impl Harness for SharedThreads {
    type Store = Shared;

    async fn store(&self) -> Shared {
        let store = Arc::new(MemoryStore::new());
        Shared {
            store: store.clone(),
            outbox: store,
        }
    }

    async fn run_concurrently(&self, tasks: Vec<Task>) {
        on_threads(tasks).await;
    }
}

/// The kit passes through the trait-object adapters too.
#[test]
fn shared_store_passes_the_conformance_kit() {
    pollster::block_on(run_all(&SharedThreads));
}
