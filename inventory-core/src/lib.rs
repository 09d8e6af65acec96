//! # inventory-core
//!
//! The pure domain of the inventory: stock items, reservations with a time to
//! live, the reservation state machine (reserve, confirm, release, expire),
//! optimistic locking, events, and the storage port every store implements.
//!
//! This crate does no I/O, takes no locks, spawns nothing and never reads the
//! clock: time comes in as an argument. Stores are adapters around it.
//!
//! ## Map
//!
//! - [`ids`] and [`value`]: identifiers and value objects, valid by construction.
//! - [`InventoryItem`], [`Reservation`] and [`ReservationStatus`]: the state.
//! - [`Command`], [`Outcome`] and [`decide()`]: every change and its rules.
//! - [`Workspace`] and [`Snapshot`]: how a store shows its state to [`decide()`].
//! - [`EventPayload`], [`Event`] and [`OutboxEntry`]: what changed, for consumers.
//! - [`InventoryStore`] and [`Outbox`]: the storage port.
//! - `testkit` (feature `testkit`): the conformance suite every store runs.
//!
//! ## Example
//!
//! ```
//! use inventory_core::*;
//! use uuid::Uuid;
//!
//! let product = ProductId::from_uuid(Uuid::from_u128(1));
//! let mut ws = Snapshot::new();
//! let now = Timestamp::from_millis(0);
//! let create = Command::CreateItem {
//!     product_id: product,
//!     quantity: StockLevel::new(5)?,
//!     actor: Actor::system(),
//! };
//! decide(&mut ws, &create, now)?;
//! let line = ReserveLine {
//!     product_id: product,
//!     quantity: Quantity::new(2)?,
//!     reservation_id: ReservationId::from_uuid(Uuid::from_u128(2)),
//! };
//! let order = OrderId::from_uuid(Uuid::from_u128(3));
//! let reserve = Command::Reserve(Reserve::single(order, line, Ttl::default()));
//! decide(&mut ws, &reserve, now)?;
//! assert_eq!(ws.item(product).unwrap().available(), 3);
//! # Ok::<(), inventory_core::Error>(())
//! ```

pub mod command;
pub mod decide;
pub mod error;
pub mod event;
pub mod ext;
pub mod ids;
pub mod item;
pub mod port;
pub mod reservation;
pub mod shared;
pub mod snapshot;
pub mod value;
pub mod workspace;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use command::{
    Command, Outcome, Reserve, ReserveLine, EXPIRE_BATCH_MAX, LAZY_EXPIRY_MAX, LINES_MAX,
};
pub use decide::decide;
pub use error::Error;
pub use event::{Event, EventPayload, OutboxEntry};
pub use ext::InventoryStoreExt;
pub use ids::{OrderId, ProductId, ReservationId};
pub use item::{Adjustment, InventoryItem};
pub use port::{
    check_batch, check_bulk, BatchResults, InventoryStore, Meta, Outbox, ADJUSTMENTS_PAGE_MAX,
    AVAILABILITY_BATCH_MAX, BATCH_MAX, OUTBOX_BATCH_MAX,
};
pub use reservation::{Reservation, ReservationStatus};
pub use shared::{BoxFuture, DynInventoryStore, DynOutbox, SharedOutbox, SharedStore};
pub use snapshot::{Changes, Snapshot};
pub use value::{
    Actor, AdjustmentKey, Quantity, Reason, StockDelta, StockLevel, Timestamp, Ttl, Version,
    ACTOR_LEN_MAX, ADJUSTMENT_KEY_LEN_MAX, QUANTITY_MAX, REASON_LEN_MAX,
    RESERVATION_TTL_DEFAULT_MS, RESERVATION_TTL_MAX_MS, RESERVATION_TTL_MIN_MS, STOCK_MAX,
};
pub use workspace::Workspace;

/// The `uuid` crate the ids wrap, so callers need no dependency of their own
/// to make or read one.
pub use uuid::{self, Uuid};

// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
