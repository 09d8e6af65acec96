//! The [`Workspace`] the store hands to [`inventory_core::decide()`]: the cells a
//! command has locked, changed in place, the store-wide indexes, and the
//! outbox writer its events go to.

use std::cell::Cell;

use inventory_core::{
    Adjustment, AdjustmentKey, Event, EventPayload, InventoryItem, OrderId, ProductId, Reservation,
    ReservationId, Timestamp, Workspace,
};
use parking_lot::MutexGuard;

use crate::cell::{ItemCell, SlotIndex};
use crate::index::{Indexes, Place};
use crate::outbox::OutboxWriter;

/// A locked cell.
pub(crate) type Guard<'a> = MutexGuard<'a, ItemCell>;

/// The locked cells of one command, sorted by product id, and where its
/// events and index entries go.
///
/// Products without a cell (no item) are simply absent, so the rules see them
/// as unknown. A reservation is visible only if its product is locked.
pub(crate) struct Locked<'s, 'g, 'o> {
    cells: &'s mut [Guard<'g>],
    index: &'o Indexes,
    events: &'s mut OutboxWriter<'o>,
    /// The last reservation looked up: the rules read one reservation several
    /// times per command.
    last: Cell<Option<(ReservationId, usize, SlotIndex)>>,
    stored: usize,
}

impl<'s, 'g, 'o> Locked<'s, 'g, 'o> {
    pub(crate) fn new(
        cells: &'s mut [Guard<'g>],
        index: &'o Indexes,
        events: &'s mut OutboxWriter<'o>,
        known: Option<(ReservationId, Place)>,
    ) -> Self {
        debug_assert!(cells.windows(2).all(|w| w[0].product_id < w[1].product_id));
        let locked = Self {
            cells,
            index,
            events,
            last: Cell::new(None),
            stored: 0,
        };
        if let Some((id, place)) = known {
            // The place was read before the cell was locked: a purge may have
            // reused the slot since, so only a slot still holding `id` counts.
            if let Some(cell) = locked.position(place.product) {
                if locked.cells[cell].get(place.slot).map(Reservation::id) == Some(id) {
                    locked.last.set(Some((id, cell, place.slot)));
                }
            }
        }
        locked
    }

    /// How many reservations the command stored.
    pub(crate) fn stored(&self) -> usize {
        self.stored
    }
}

impl Locked<'_, '_, '_> {
    fn position(&self, product: ProductId) -> Option<usize> {
        self.cells
            .binary_search_by_key(&product, |cell| cell.product_id)
            .ok()
    }

    fn cell(&self, product: ProductId) -> Option<&ItemCell> {
        self.position(product).map(|i| &*self.cells[i])
    }

    fn cell_mut(&mut self, product: ProductId) -> Option<&mut ItemCell> {
        self.position(product).map(|i| &mut *self.cells[i])
    }

    /// The locked cell and slot of a stored reservation.
    fn locate(&self, id: ReservationId) -> Option<(usize, SlotIndex)> {
        if let Some((last, cell, slot)) = self.last.get() {
            if last == id {
                return Some((cell, slot));
            }
        }
        let place = self.index.place(id)?;
        let cell = self.position(place.product)?;
        self.last.set(Some((id, cell, place.slot)));
        Some((cell, place.slot))
    }
}

impl Workspace for Locked<'_, '_, '_> {
    fn item(&self, product: ProductId) -> Option<&InventoryItem> {
        self.cell(product)?.item.as_ref()
    }

    fn item_mut(&mut self, product: ProductId) -> Option<&mut InventoryItem> {
        self.cell_mut(product)?.item.as_mut()
    }

    fn insert_item(&mut self, item: InventoryItem) {
        let cell = self
            .cell_mut(item.product_id())
            .expect("a create locks the cell of its product");
        debug_assert!(cell.item.is_none());
        cell.item = Some(item);
    }

    fn reservation(&self, id: ReservationId) -> Option<&Reservation> {
        let (cell, slot) = self.locate(id)?;
        let reservation = self.cells[cell].get(slot)?;
        debug_assert_eq!(reservation.id(), id);
        Some(reservation)
    }

    fn reservation_mut(&mut self, id: ReservationId) -> Option<&mut Reservation> {
        let (cell, slot) = self.locate(id)?;
        self.cells[cell].get_mut(slot)
    }

    fn find_reservation(&self, order: OrderId, product: ProductId) -> Option<ReservationId> {
        // Only a locked product's reservations are visible.
        self.position(product)?;
        self.index.find(order, product)
    }

    fn insert_reservation(&mut self, reservation: Reservation) {
        let (id, order, product) = (
            reservation.id(),
            reservation.order_id(),
            reservation.product_id(),
        );
        let cell = self
            .position(product)
            .expect("a reservation is made only for a locked item");
        let slot = self.cells[cell].insert(reservation);
        self.index.stored(id, order, Place { product, slot });
        self.last.set(Some((id, cell, slot)));
        self.stored += 1;
    }

    fn overdue(&self, product: ProductId, now: Timestamp, limit: usize) -> Vec<ReservationId> {
        self.cell(product)
            .map(|cell| cell.due(now, limit).collect())
            .unwrap_or_default()
    }

    fn record_event(&mut self, event: Event) {
        // Every move out of pending produces exactly one of these events, right
        // after the move: the moment to update the expiry index.
        match &event.payload {
            EventPayload::Confirmed { reservation_id, .. }
            | EventPayload::Released { reservation_id, .. }
            | EventPayload::Expired { reservation_id, .. } => {
                let (cell, slot) = self
                    .locate(*reservation_id)
                    .expect("a finished reservation is stored and locked");
                self.cells[cell].finished(slot);
            }
            _ => {}
        }
        self.events.push(event);
    }

    fn record_adjustment(&mut self, adjustment: Adjustment) {
        let cell = self
            .cell_mut(adjustment.product_id)
            .expect("an adjusted item is locked");
        if let Some(key) = &adjustment.key {
            cell.keyed.insert(key.clone(), adjustment.delta);
        }
        cell.ledger.push(adjustment);
    }

    fn adjusted_under(&self, product: ProductId, key: &AdjustmentKey) -> Option<i64> {
        self.cell(product)?.keyed.get(key).copied()
    }
}
