//! The state of one product, kept together behind one lock: its item, its
//! reservations (by id, by order, and the pending ones by expiry) and its ledger.

use std::collections::{BTreeSet, HashMap};

use inventory_core::{
    Adjustment, InventoryItem, OrderId, ProductId, Reservation, ReservationId, ReservationStatus,
    Timestamp,
};

/// Hash maps keyed by ids. Ids are caller-chosen UUIDs, so the hasher is
/// randomly seeded; foldhash is several times faster than SipHash on them.
pub(crate) type IdMap<K, V> = HashMap<K, V, foldhash::quality::RandomState>;

/// Everything the store knows about one product.
///
/// Invariant (checked by [`ItemCell::check`] in tests): `pending` holds exactly
/// the `(expires_at, id)` of the reservations whose status is pending, and
/// `by_order` maps each reservation's order to its id.
#[derive(Debug)]
pub(crate) struct ItemCell {
    /// The product; set when the cell is made, never changed.
    pub(crate) product_id: ProductId,
    /// `None` until the item is created.
    pub(crate) item: Option<InventoryItem>,
    pub(crate) reservations: IdMap<ReservationId, Reservation>,
    pub(crate) by_order: IdMap<OrderId, ReservationId>,
    /// Pending reservations, earliest expiry first.
    pub(crate) pending: BTreeSet<(Timestamp, ReservationId)>,
    /// Every stock adjustment, oldest first.
    pub(crate) ledger: Vec<Adjustment>,
}

impl ItemCell {
    /// An empty cell for `product_id`, with no item yet.
    pub(crate) fn new(product_id: ProductId) -> Self {
        Self {
            product_id,
            item: None,
            reservations: IdMap::default(),
            by_order: IdMap::default(),
            pending: BTreeSet::new(),
            ledger: Vec::new(),
        }
    }

    /// Stores a new reservation of this product.
    pub(crate) fn insert_reservation(&mut self, reservation: Reservation) {
        debug_assert_eq!(reservation.product_id(), self.product_id);
        if reservation.status() == ReservationStatus::Pending {
            self.pending
                .insert((reservation.expires_at(), reservation.id()));
        }
        let previous = self
            .by_order
            .insert(reservation.order_id(), reservation.id());
        debug_assert!(previous.is_none(), "one reservation per (order, product)");
        let previous = self.reservations.insert(reservation.id(), reservation);
        debug_assert!(previous.is_none(), "reservation ids are unique");
    }

    /// Takes a reservation that just left the pending state out of the expiry
    /// index.
    pub(crate) fn finished(&mut self, id: ReservationId) {
        let reservation = &self.reservations[&id];
        debug_assert!(reservation.status().is_terminal());
        let removed = self.pending.remove(&(reservation.expires_at(), id));
        debug_assert!(removed, "a finished reservation was pending");
    }

    /// Up to `limit` pending reservations due at `now`, earliest first.
    pub(crate) fn due(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> impl Iterator<Item = ReservationId> + '_ {
        self.pending
            .iter()
            .take_while(move |(expires_at, _)| *expires_at <= now)
            .take(limit)
            .map(|(_, id)| *id)
    }

    /// The earliest pending reservation due at `now`.
    pub(crate) fn first_due(&self, now: Timestamp) -> Option<ReservationId> {
        self.pending
            .first()
            .filter(|(expires_at, _)| *expires_at <= now)
            .map(|(_, id)| *id)
    }

    /// Removes up to `limit` reservations that reached a terminal state before
    /// `before`, returning their ids and orders.
    pub(crate) fn purge_finished(
        &mut self,
        before: Timestamp,
        limit: usize,
    ) -> Vec<(ReservationId, OrderId)> {
        let old: Vec<(ReservationId, OrderId)> = self
            .reservations
            .values()
            .filter(|r| r.status().is_terminal() && r.updated_at() < before)
            .take(limit)
            .map(|r| (r.id(), r.order_id()))
            .collect();
        for (id, order) in &old {
            self.reservations.remove(id);
            self.by_order.remove(order);
        }
        old
    }

    /// Checks the cell's own indexes against its reservations.
    ///
    /// # Panics
    /// When an index disagrees with the reservations (a bug in this crate).
    pub(crate) fn check(&self) {
        let pending: BTreeSet<(Timestamp, ReservationId)> = self
            .reservations
            .values()
            .filter(|r| r.status() == ReservationStatus::Pending)
            .map(|r| (r.expires_at(), r.id()))
            .collect();
        assert_eq!(pending, self.pending, "expiry index of {}", self.product_id);
        assert_eq!(self.by_order.len(), self.reservations.len());
        for (order, id) in &self.by_order {
            assert_eq!(self.reservations[id].order_id(), *order);
        }
        if let Some(item) = &self.item {
            let held: u64 = self
                .reservations
                .values()
                .filter(|r| r.status() == ReservationStatus::Pending)
                .map(|r| r.quantity().get())
                .sum();
            assert_eq!(item.reserved(), held, "reserved of {}", self.product_id);
            assert!(item.reserved() <= item.quantity());
        } else {
            assert!(self.reservations.is_empty());
        }
    }
}
