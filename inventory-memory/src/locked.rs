//! The [`Workspace`] the store hands to [`inventory_core::decide`]: the cells a
//! command has locked, changed in place, and the outbox writer its events go to.

use inventory_core::{
    Adjustment, Event, EventPayload, InventoryItem, OrderId, ProductId, Reservation, ReservationId,
    Timestamp, Workspace,
};
use parking_lot::MutexGuard;

use crate::cell::ItemCell;
use crate::outbox::OutboxWriter;

/// A locked cell.
pub(crate) type Guard<'a> = MutexGuard<'a, ItemCell>;

/// The locked cells of one command, sorted by product id, and its outbox writer.
///
/// Products without a cell (no item) are simply absent, so the rules see them
/// as unknown.
pub(crate) struct Locked<'s, 'g, 'o> {
    pub(crate) cells: &'s mut [Guard<'g>],
    pub(crate) events: &'s mut OutboxWriter<'o>,
}

impl Locked<'_, '_, '_> {
    fn index(&self, product: ProductId) -> Option<usize> {
        self.cells
            .binary_search_by_key(&product, |cell| cell.product_id)
            .ok()
    }

    fn cell(&self, product: ProductId) -> Option<&ItemCell> {
        self.index(product).map(|i| &*self.cells[i])
    }

    fn cell_mut(&mut self, product: ProductId) -> Option<&mut ItemCell> {
        self.index(product).map(|i| &mut *self.cells[i])
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
        self.cells
            .iter()
            .find_map(|cell| cell.reservations.get(&id))
    }

    fn reservation_mut(&mut self, id: ReservationId) -> Option<&mut Reservation> {
        self.cells
            .iter_mut()
            .find_map(|cell| cell.reservations.get_mut(&id))
    }

    fn find_reservation(&self, order: OrderId, product: ProductId) -> Option<ReservationId> {
        self.cell(product)?.by_order.get(&order).copied()
    }

    fn insert_reservation(&mut self, reservation: Reservation) {
        self.cell_mut(reservation.product_id())
            .expect("a reservation is made only for a locked item")
            .insert_reservation(reservation);
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
            EventPayload::Confirmed {
                reservation_id,
                product_id,
                ..
            }
            | EventPayload::Released {
                reservation_id,
                product_id,
                ..
            }
            | EventPayload::Expired {
                reservation_id,
                product_id,
                ..
            } => {
                self.cell_mut(*product_id)
                    .expect("a finished reservation's item is locked")
                    .finished(*reservation_id);
            }
            EventPayload::Reserved { .. }
            | EventPayload::Adjusted { .. }
            | EventPayload::Depleted { .. } => {}
        }
        self.events.push(event);
    }

    fn record_adjustment(&mut self, adjustment: Adjustment) {
        self.cell_mut(adjustment.product_id)
            .expect("an adjusted item is locked")
            .ledger
            .push(adjustment);
    }
}
