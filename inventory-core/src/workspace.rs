//! The view of stored state a store hands to [`crate::decide()`] while a change is
//! being decided: reads and in-place writes of items and reservations, and
//! places to put the events and ledger entries the change produces.
//!
//! A store implements this over whatever it has locked or loaded (the memory
//! store over its locked items, a SQL store over a [`crate::Snapshot`]). The
//! mutating methods only hand out `&mut` to values whose fields only this crate
//! can change, so a store can move state but never decide how.

use crate::event::Event;
use crate::ids::{OrderId, ProductId, ReservationId};
use crate::item::{Adjustment, InventoryItem};
use crate::reservation::Reservation;
use crate::value::{AdjustmentKey, Timestamp};

/// Stored state visible to one atomic change.
///
/// A store of one's own implements it over whatever it holds locked (every
/// method is a lookup or an insert; the rules are all in [`crate::decide()`]);
/// the workspace's `examples` crate has a complete store built this way,
/// proven with the conformance kit: `examples/examples/custom_store.rs`, run
/// with `cargo run -p examples --example custom_store`. A store that loads
/// rows and writes them back uses the ready-made [`crate::Snapshot`] instead.
///
/// The shape of a store's atomic step, generic over the workspace:
///
/// ```
/// use inventory_core::*;
///
/// /// Lock, decide, keep: the rules change the workspace in place.
/// fn step<W: Workspace>(ws: &mut W, command: &Command, now: Timestamp) -> Result<Outcome, Error> {
///     decide(ws, command, now)
/// }
///
/// let product = ProductId::from(Uuid::from_u128(1));
/// let mut ws = Snapshot::new();
/// let create = Command::CreateItem { product_id: product, quantity: StockLevel::new(4)?, actor: Actor::system() };
/// step(&mut ws, &create, Timestamp::from_millis(0))?;
/// assert_eq!(ws.item(product).map(InventoryItem::available), Some(4));
/// # Ok::<(), Error>(())
/// ```
pub trait Workspace {
    /// The item of `product`, if it exists (and is visible to this change).
    fn item(&self, product: ProductId) -> Option<&InventoryItem>;

    /// The item of `product`, to change it in place.
    fn item_mut(&mut self, product: ProductId) -> Option<&mut InventoryItem>;

    /// Stores a newly created item; its product has no item yet.
    fn insert_item(&mut self, item: InventoryItem);

    /// The reservation with that id, if it exists.
    fn reservation(&self, id: ReservationId) -> Option<&Reservation>;

    /// The reservation with that id, to change it in place.
    fn reservation_mut(&mut self, id: ReservationId) -> Option<&mut Reservation>;

    /// The id of the reservation of `(order, product)`, if one exists.
    fn find_reservation(&self, order: OrderId, product: ProductId) -> Option<ReservationId>;

    /// Stores a new reservation; no reservation visible to this change has
    /// its id or its `(order, product)`. A store that cannot show every
    /// reservation to the change must itself refuse an id that is taken (with
    /// [`crate::Error::InvalidInput`] on field `reservation_id`).
    fn insert_reservation(&mut self, reservation: Reservation);

    /// Up to `limit` pending reservations of `product` whose hold ended at or
    /// before `now`, earliest first.
    fn overdue(&self, product: ProductId, now: Timestamp, limit: usize) -> Vec<ReservationId>;

    /// Appends an event to the change's outbox records.
    ///
    /// Guarantee a store may build on: right after each move of a reservation
    /// from pending to a terminal state, [`crate::decide()`] records that
    /// reservation's `Confirmed`, `Released` or `Expired` event, in the same
    /// call; a new reservation is followed by its `Reserved` event. A store
    /// can keep its own indexes (for example of pending reservations by
    /// expiry) current from these events.
    fn record_event(&mut self, event: Event);

    /// Appends an entry to the stock ledger.
    fn record_adjustment(&mut self, adjustment: Adjustment);

    /// The delta of `product`'s ledger entry made under `key`, if one is
    /// visible to this change (a store loads the entries under the keys the
    /// change's adjustments carry; entries this change recorded count too).
    fn adjusted_under(&self, product: ProductId, key: &AdjustmentKey) -> Option<i64>;
}
