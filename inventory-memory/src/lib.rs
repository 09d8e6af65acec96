//! # inventory-memory
//!
//! The in-memory inventory store: the embedded default of the inventory
//! library and the reference adapter of `inventory-core`'s storage port. It
//! keeps everything in process memory (nothing survives a restart) and is
//! correct under any number of threads: no oversell, every change atomic per
//! item, multi-line reservations all or nothing.
//!
//! ## How it works
//!
//! - Every product has one cell behind a `parking_lot` mutex: its item, its
//!   reservations (in a slab, with the pending ones ordered by expiry and the
//!   finished ones in the order they finished) and its stock ledger. Cells
//!   live in a `dashmap`; two more `dashmap`s map each reservation id to its
//!   product and slot, and each order to its reservations.
//! - A command locks the cells it touches in ascending product order (so two
//!   commands never deadlock), lets [`inventory_core::decide()`] change them in
//!   place (the business rules live there, never here), and queues the
//!   resulting events in the outbox before it unlocks, so events are numbered
//!   in commit order.
//! - The outbox is sharded by thread; [`MemoryStore::drain`] (or the
//!   [`inventory_core::Outbox`] methods) hands the events on.
//! - Expired holds are given back lazily when a reserve runs short, and in
//!   bounded batches by [`MemoryStore::expire_due_sync`].
//!
//! Every method of the [`inventory_core::InventoryStore`] port is also
//! available without a future (`execute_sync`, `item_sync`, ...): nothing in
//! this store ever waits on I/O.
//!
//! ## Running it for long
//!
//! The store forgets nothing by itself. Drain the outbox ([`MemoryStore::drain`]
//! or the `Outbox` port), sweep due holds with
//! [`MemoryStore::expire_due_sync`], and drop old finished reservations with
//! [`MemoryStore::purge_finished`]; [`MemoryStore::with_capacity`] sizes the
//! indexes up front. What grows and why is listed on [`MemoryStore`].
//!
//! ## Performance
//!
//! A reserve costs one lock of its item, two inserts into store-wide hash
//! indexes (by reservation id and by order) and one outbox append; a confirm
//! one index lookup and one lock. Throughput is measured by
//! `cargo bench -p benches --bench memory` (criterion, wall time) and by
//! `cargo run --release -p inventory-memory --example throughput` (wall and
//! CPU time of one thread), each in a *growing* regime (nothing dropped, so
//! index resizes and fresh pages count) and a *steady* one (outbox drained and
//! finished reservations purged as it goes).

//! ## Example
//!
//! ```
//! use inventory_core::*;
//! use inventory_memory::MemoryStore;
//! use uuid::Uuid;
//!
//! let store = MemoryStore::new();
//! let meta = Meta::at(Timestamp::from_millis(1_000));
//! let product = ProductId::from_uuid(Uuid::new_v4());
//!
//! store.execute_sync(
//!     Command::CreateItem {
//!         product_id: product,
//!         quantity: StockLevel::new(10)?,
//!         actor: Actor::system(),
//!     },
//!     &meta,
//! )?;
//!
//! // Hold 3 units for an order, then sell them.
//! let reservation_id = ReservationId::from_uuid(Uuid::new_v4());
//! let line = ReserveLine { product_id: product, quantity: Quantity::new(3)?, reservation_id };
//! let order = OrderId::from_uuid(Uuid::new_v4());
//! store.execute_sync(Command::Reserve(Reserve::single(order, line, Ttl::default())), &meta)?;
//! assert_eq!(store.item_sync(product).unwrap().available(), 7);
//!
//! store.execute_sync(Command::Confirm { reservation_id }, &meta)?;
//! let item = store.item_sync(product).unwrap();
//! assert_eq!((item.quantity(), item.reserved()), (7, 0));
//!
//! // Hand the events on: created (adjusted), reserved, confirmed.
//! let events = store.drain(100);
//! let kinds: Vec<_> = events.iter().map(|e| e.event.payload.event_type()).collect();
//! assert_eq!(
//!     kinds,
//!     ["inventory.stock.adjusted", "inventory.stock.reserved", "inventory.stock.confirmed"]
//! );
//! # Ok::<(), inventory_core::Error>(())
//! ```
//!
//! Through the async port (any executor: the futures are ready at once):
//!
//! ```
//! use inventory_core::{InventoryStore, ProductId};
//! use inventory_memory::MemoryStore;
//!
//! # fn block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     let mut f = std::pin::pin!(f);
//! #     let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
//! #     match f.as_mut().poll(&mut cx) { std::task::Poll::Ready(v) => v, _ => unreachable!() }
//! # }
//! let store = MemoryStore::new();
//! let missing = block_on(store.item(ProductId::from_uuid(uuid::Uuid::nil())))?;
//! assert!(missing.is_none());
//! # Ok::<(), inventory_core::Error>(())
//! ```

mod cell;
mod index;
mod locked;
pub mod maintenance;
mod outbox;
mod port;
mod store;

pub use outbox::OUTBOX_SHARDS;
pub use store::{Footprint, MemoryStore, PURGE_BATCH_MAX};

#[cfg(test)]
mod tests;

// The README's examples run as doctests (its quick start uses `maintenance`).
#[cfg(all(doctest, feature = "maintenance"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
