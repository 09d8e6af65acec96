//! The store-wide indexes: which product and slot holds each reservation id,
//! and which reservations each order holds.
//!
//! Entries of a product's reservations change only while that product's cell
//! is locked (a reserve's claim of a new id is the one exception: see
//! [`CLAIMED`]), so whoever holds the cell sees them consistent with it.

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use inventory_core::{OrderId, ProductId, ReservationId};

use crate::cell::SlotIndex;

/// Randomly seeded hashing: ids are chosen by callers. foldhash is several
/// times faster than SipHash on 16-byte keys.
pub(crate) type Hasher = foldhash::quality::RandomState;

/// The slot of an id claimed by a reserve that has not stored it (yet).
pub(crate) const CLAIMED: SlotIndex = SlotIndex::MAX;

/// Where a reservation lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    pub(crate) product: ProductId,
    pub(crate) slot: SlotIndex,
}

/// The reservations of one order, one per product. Most orders hold one,
/// which needs no allocation.
#[derive(Debug)]
pub(crate) struct OrderLines {
    first: (ProductId, ReservationId),
    rest: Vec<(ProductId, ReservationId)>,
}

impl OrderLines {
    fn new(product: ProductId, id: ReservationId) -> Self {
        Self {
            first: (product, id),
            rest: Vec::new(),
        }
    }

    /// Every `(product, reservation)` of the order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (ProductId, ReservationId)> + '_ {
        std::iter::once(self.first).chain(self.rest.iter().copied())
    }

    /// The order's reservation of `product`.
    pub(crate) fn find(&self, product: ProductId) -> Option<ReservationId> {
        self.iter().find(|(p, _)| *p == product).map(|(_, id)| id)
    }

    fn add(&mut self, product: ProductId, id: ReservationId) {
        debug_assert!(
            self.find(product).is_none(),
            "one reservation per (order, product)"
        );
        self.rest.push((product, id));
    }

    /// Removes the line of `product`; false when none is left.
    fn remove(&mut self, product: ProductId) -> bool {
        if self.first.0 == product {
            match self.rest.pop() {
                Some(last) => self.first = last,
                None => return false,
            }
        } else {
            self.rest.retain(|(p, _)| *p != product);
        }
        true
    }
}

/// The two store-wide indexes.
#[derive(Debug)]
pub(crate) struct Indexes {
    /// Every reservation's place, plus ids claimed by reserves in flight.
    pub(crate) reservations: DashMap<ReservationId, Place, Hasher>,
    /// Every order's reservations.
    pub(crate) orders: DashMap<OrderId, OrderLines, Hasher>,
}

impl Indexes {
    /// Empty indexes with room for `reservations` reservations (and as many
    /// orders) before they grow.
    pub(crate) fn with_capacity(reservations: usize) -> Self {
        Self {
            reservations: DashMap::with_capacity_and_hasher(reservations, Hasher::default()),
            orders: DashMap::with_capacity_and_hasher(reservations, Hasher::default()),
        }
    }

    /// The place of a stored reservation (not of a mere claim).
    pub(crate) fn place(&self, id: ReservationId) -> Option<Place> {
        let place = *self.reservations.get(&id)?;
        (place.slot != CLAIMED).then_some(place)
    }

    /// Claims `id` for a reservation of `product` about to be made, unless
    /// the id is already known (stored or claimed); true when claimed.
    pub(crate) fn claim(&self, id: ReservationId, product: ProductId) -> bool {
        match self.reservations.entry(id) {
            Entry::Vacant(slot) => {
                slot.insert(Place {
                    product,
                    slot: CLAIMED,
                });
                true
            }
            Entry::Occupied(_) => false,
        }
    }

    /// The order's reservation of `product`.
    pub(crate) fn find(&self, order: OrderId, product: ProductId) -> Option<ReservationId> {
        self.orders.get(&order)?.find(product)
    }

    /// Records a reservation just stored in `place`, whose id the reserve
    /// claimed. Called with its product's cell locked.
    pub(crate) fn stored(&self, id: ReservationId, order: OrderId, place: Place) {
        let mut entry = self
            .reservations
            .get_mut(&id)
            .expect("a reserve claims every id it stores");
        debug_assert_eq!(
            *entry,
            Place {
                slot: CLAIMED,
                ..place
            }
        );
        *entry = place;
        drop(entry);
        self.orders
            .entry(order)
            .and_modify(|lines| lines.add(place.product, id))
            .or_insert_with(|| OrderLines::new(place.product, id));
    }

    /// Gives back a claim that did not become a reservation.
    pub(crate) fn release_claim(&self, id: ReservationId) {
        self.reservations
            .remove_if(&id, |_, place| place.slot == CLAIMED);
    }

    /// Forgets a purged reservation. Called with its product's cell locked.
    pub(crate) fn forget(&self, id: ReservationId, order: OrderId, product: ProductId) {
        self.reservations.remove(&id);
        if let dashmap::mapref::entry::Entry::Occupied(mut lines) = self.orders.entry(order) {
            if !lines.get_mut().remove(product) {
                lines.remove();
            }
        }
    }
}
