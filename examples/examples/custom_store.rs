//! Writing a store of your own: the simplest possible one, every piece of
//! state behind one mutex, proven with `inventory-core`'s conformance kit.
//!
//! A store does three things and leaves every rule to `inventory-core`:
//!
//! 1. show its state to [`decide`] through the [`Workspace`] trait (items,
//!    reservations, the ledger, overdue holds);
//! 2. run each command (or batch) atomically: lock, `decide`, keep what it
//!    changed and the events it recorded, unlock;
//! 3. number the events in commit order in an outbox ([`Outbox`]).
//!
//! Then `testkit::run_all` checks it against every rule: no oversell with a
//! hundred racers for the last unit, all-or-nothing baskets, idempotent
//! repeats, expiry, batches, and a random model check. The same kit runs
//! against the memory and PostgreSQL stores, and this store doubles as the
//! check of the kit itself, independent of any real adapter.
//!
//! Run it with `cargo run -p examples --example custom_store`; `cargo test`
//! runs it too.

// An example talks to its reader on stdout.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use inventory_core::testkit::{self, Harness, KitConfig, Task};
use inventory_core::*;

#[derive(Default)]
struct State {
    items: BTreeMap<ProductId, InventoryItem>,
    reservations: BTreeMap<ReservationId, Reservation>,
    by_order: BTreeMap<(OrderId, ProductId), ReservationId>,
    ledger: Vec<Adjustment>,
    outbox: Vec<OutboxEntry>,
    next_sequence: u64,
    pending_events: Vec<Event>,
}

impl Workspace for State {
    fn item(&self, p: ProductId) -> Option<&InventoryItem> {
        self.items.get(&p)
    }
    fn item_mut(&mut self, p: ProductId) -> Option<&mut InventoryItem> {
        self.items.get_mut(&p)
    }
    fn insert_item(&mut self, item: InventoryItem) {
        self.items.insert(item.product_id(), item);
    }
    fn reservation(&self, id: ReservationId) -> Option<&Reservation> {
        self.reservations.get(&id)
    }
    fn reservation_mut(&mut self, id: ReservationId) -> Option<&mut Reservation> {
        self.reservations.get_mut(&id)
    }
    fn find_reservation(&self, o: OrderId, p: ProductId) -> Option<ReservationId> {
        self.by_order.get(&(o, p)).copied()
    }
    fn insert_reservation(&mut self, r: Reservation) {
        self.by_order.insert((r.order_id(), r.product_id()), r.id());
        self.reservations.insert(r.id(), r);
    }
    fn overdue(&self, p: ProductId, now: Timestamp, limit: usize) -> Vec<ReservationId> {
        let mut due: Vec<_> = self
            .reservations
            .values()
            .filter(|r| r.product_id() == p && r.is_overdue(now))
            .map(|r| (r.expires_at(), r.id()))
            .collect();
        due.sort();
        due.into_iter().take(limit).map(|(_, id)| id).collect()
    }
    fn record_event(&mut self, e: Event) {
        self.pending_events.push(e);
    }
    fn record_adjustment(&mut self, a: Adjustment) {
        self.ledger.push(a);
    }
    fn adjusted_under(&self, p: ProductId, key: &AdjustmentKey) -> Option<i64> {
        let mut keyed = self.ledger.iter().filter(|a| a.product_id == p);
        keyed.find(|a| a.key.as_ref() == Some(key)).map(|a| a.delta)
    }
}

#[derive(Default)]
struct ReferenceStore(Mutex<State>);

impl ReferenceStore {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }
}

/// Decides one command on the locked state and numbers its events.
fn run(s: &mut State, command: &Command, meta: &Meta) -> Result<Outcome, Error> {
    let result = decide(s, command, meta.now);
    for event in std::mem::take(&mut s.pending_events) {
        s.next_sequence += 1;
        let entry = OutboxEntry {
            sequence: s.next_sequence,
            event_id: Uuid::from_u128(u128::from(s.next_sequence)),
            correlation_id: meta.correlation_id.clone(),
            event,
        };
        s.outbox.push(entry);
    }
    result
}

impl InventoryStore for ReferenceStore {
    async fn execute(&self, command: Command, meta: &Meta) -> Result<Outcome, Error> {
        run(&mut self.state(), &command, meta)
    }
    async fn execute_batch(&self, batch: Vec<(Command, Meta)>) -> Result<BatchResults, Error> {
        check_batch(&batch)?;
        let mut s = self.state();
        Ok(batch.iter().map(|(c, m)| run(&mut s, c, m)).collect())
    }
    async fn item(&self, p: ProductId) -> Result<Option<InventoryItem>, Error> {
        Ok(self.state().items.get(&p).cloned())
    }
    async fn items(&self, ps: &[ProductId]) -> Result<Vec<InventoryItem>, Error> {
        check_bulk(ps)?;
        let s = self.state();
        Ok(ps.iter().filter_map(|p| s.items.get(p).cloned()).collect())
    }
    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, Error> {
        Ok(self.state().reservations.get(&id).cloned())
    }
    async fn reservations_of_order(&self, o: OrderId) -> Result<Vec<Reservation>, Error> {
        let s = self.state();
        Ok(s.reservations
            .values()
            .filter(|r| r.order_id() == o)
            .cloned()
            .collect())
    }
    async fn reservations_of_product(&self, p: ProductId) -> Result<Vec<Reservation>, Error> {
        let s = self.state();
        Ok(s.reservations
            .values()
            .filter(|r| r.product_id() == p)
            .cloned()
            .collect())
    }
    async fn adjustments(&self, p: ProductId, limit: usize) -> Result<Vec<Adjustment>, Error> {
        let s = self.state();
        let limit = limit.min(ADJUSTMENTS_PAGE_MAX);
        Ok(s.ledger
            .iter()
            .rev()
            .filter(|a| a.product_id == p)
            .take(limit)
            .cloned()
            .collect())
    }
    async fn expire_due(&self, meta: &Meta, limit: usize) -> Result<usize, Error> {
        let due: Vec<ReservationId> = {
            let s = self.state();
            s.reservations
                .values()
                .filter(|r| r.is_overdue(meta.now))
                .take(limit.min(EXPIRE_BATCH_MAX))
                .map(Reservation::id)
                .collect()
        };
        let mut expired = 0;
        for reservation_id in due {
            if let Outcome::Reservation { changed: true, .. } = self
                .execute(Command::Expire { reservation_id }, meta)
                .await?
            {
                expired += 1;
            }
        }
        Ok(expired)
    }
}

impl Outbox for ReferenceStore {
    async fn unpublished(&self, limit: usize) -> Result<Vec<OutboxEntry>, Error> {
        Ok(self
            .state()
            .outbox
            .iter()
            .take(limit.min(OUTBOX_BATCH_MAX))
            .cloned()
            .collect())
    }
    async fn mark_published(&self, sequences: &[u64]) -> Result<(), Error> {
        self.state()
            .outbox
            .retain(|e| !sequences.contains(&e.sequence));
        Ok(())
    }
}

struct Threads;

impl Harness for Threads {
    type Store = ReferenceStore;

    async fn store(&self) -> ReferenceStore {
        ReferenceStore::default()
    }

    async fn run_concurrently(&self, tasks: Vec<Task>) {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(tasks.len()));
        let handles: Vec<_> = tasks
            .into_iter()
            .map(|task| {
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    block_on(task);
                })
            })
            .collect();
        for h in handles {
            h.join().expect("task panicked");
        }
    }

    fn config(&self) -> KitConfig {
        KitConfig {
            race_rounds: 5,
            ..KitConfig::default()
        }
    }
}

/// Polls a future that never waits (every store call here is ready at once).
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}

fn main() {
    // Panics, naming the case and the rule, when the store breaks one.
    block_on(testkit::run_all(&Threads));
    println!("the mutex store passes every case of the conformance kit");
}

/// The reference store passes the whole conformance kit.
#[test]
fn reference_store_passes_the_conformance_kit() {
    block_on(testkit::run_all(&Threads));
}
