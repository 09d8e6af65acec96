//! A [`Workspace`] over state loaded into memory, with change tracking: what a
//! store that reads rows, decides, then writes rows back (a SQL store) uses.

use std::collections::BTreeMap;

use crate::event::Event;
use crate::ids::{OrderId, ProductId, ReservationId};
use crate::item::{Adjustment, InventoryItem};
use crate::reservation::{Reservation, ReservationStatus};
use crate::value::{AdjustmentKey, Timestamp, Version};
use crate::workspace::Workspace;

#[derive(Debug)]
struct Slot<T> {
    value: T,
    /// `None` for values created by this change.
    loaded: Option<Version>,
    dirty: bool,
}

/// Items and reservations loaded for one change, and everything the change did.
///
/// Load every item and reservation the commands may touch (see
/// [`crate::Command::products`], [`crate::Command::reservation_id`] and
/// [`crate::Command::expires_lazily`]), including the reservation of each
/// `(order, product)` a reserve names and the overdue pending reservations of
/// its products; then run [`crate::decide()`]; then persist [`Snapshot::into_changes`].
///
/// ```
/// use inventory_core::*;
///
/// let product = ProductId::from(Uuid::from_u128(1));
/// let t0 = Timestamp::from_millis(0);
/// // In the transaction: load the row the command names, as stored.
/// let mut snapshot = Snapshot::new();
/// snapshot.load_item(InventoryItem::restore(product, 10, 0, Version::new(3), t0, t0)?);
///
/// let delivery = Command::Adjust {
///     product_id: product,
///     delta: StockDelta::new(5)?,
///     reason: Reason::new("delivery")?,
///     actor: Actor::system(),
///     key: None,
/// };
/// decide(&mut snapshot, &delivery, Timestamp::from_millis(1_000))?;
///
/// // Write back: update the row only where it is still at the version loaded.
/// let changes = snapshot.into_changes();
/// let (item, loaded_at) = &changes.updated_items[0];
/// assert_eq!((item.quantity(), item.version(), *loaded_at), (15, Version::new(4), Version::new(3)));
/// assert_eq!((changes.adjustments.len(), changes.events.len()), (1, 1));
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Snapshot {
    items: BTreeMap<ProductId, Slot<InventoryItem>>,
    reservations: BTreeMap<ReservationId, Slot<Reservation>>,
    by_order: BTreeMap<(OrderId, ProductId), ReservationId>,
    events: Vec<Event>,
    adjustments: Vec<Adjustment>,
    /// Deltas of ledger entries made under idempotency keys, loaded and new.
    keyed: BTreeMap<(ProductId, AdjustmentKey), i64>,
}

/// What a change did, for a store to persist in one transaction.
#[derive(Debug, Default)]
pub struct Changes {
    /// Items created.
    pub new_items: Vec<InventoryItem>,
    /// Items changed, each with the version it was loaded at (for optimistic
    /// locking: update only where the stored version is still that one).
    pub updated_items: Vec<(InventoryItem, Version)>,
    /// Reservations created.
    pub new_reservations: Vec<Reservation>,
    /// Reservations whose state changed.
    pub updated_reservations: Vec<Reservation>,
    /// Events, in the order they happened.
    pub events: Vec<Event>,
    /// Ledger entries, in the order they happened.
    pub adjustments: Vec<Adjustment>,
}

impl Changes {
    /// True when the change wrote nothing.
    pub fn is_empty(&self) -> bool {
        self.new_items.is_empty()
            && self.updated_items.is_empty()
            && self.new_reservations.is_empty()
            && self.updated_reservations.is_empty()
            && self.events.is_empty()
            && self.adjustments.is_empty()
    }
}

impl Snapshot {
    /// An empty snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a stored item.
    pub fn load_item(&mut self, item: InventoryItem) {
        let loaded = Some(item.version());
        self.items.insert(
            item.product_id(),
            Slot {
                value: item,
                loaded,
                dirty: false,
            },
        );
    }

    /// Adds a stored reservation.
    pub fn load_reservation(&mut self, reservation: Reservation) {
        self.by_order.insert(
            (reservation.order_id(), reservation.product_id()),
            reservation.id(),
        );
        self.reservations.insert(
            reservation.id(),
            Slot {
                value: reservation,
                loaded: Some(Version::INITIAL),
                dirty: false,
            },
        );
    }

    /// Adds a stored ledger entry's idempotency key and delta: load those of
    /// every key a change's adjustments carry.
    pub fn load_adjustment_key(&mut self, product: ProductId, key: AdjustmentKey, delta: i64) {
        self.keyed.insert((product, key), delta);
    }

    /// How many events the changes decided so far recorded: a store that
    /// decides several commands on one snapshot reads this after each to
    /// know which events belong to which command.
    pub fn events_recorded(&self) -> usize {
        self.events.len()
    }

    /// The changes to persist.
    pub fn into_changes(self) -> Changes {
        let mut changes = Changes {
            events: self.events,
            adjustments: self.adjustments,
            ..Changes::default()
        };
        for slot in self.items.into_values() {
            match slot.loaded {
                None => changes.new_items.push(slot.value),
                Some(version) if slot.dirty => changes.updated_items.push((slot.value, version)),
                Some(_) => {}
            }
        }
        for slot in self.reservations.into_values() {
            match slot.loaded {
                None => changes.new_reservations.push(slot.value),
                Some(_) if slot.dirty => changes.updated_reservations.push(slot.value),
                Some(_) => {}
            }
        }
        changes
    }
}

impl Workspace for Snapshot {
    fn item(&self, product: ProductId) -> Option<&InventoryItem> {
        self.items.get(&product).map(|s| &s.value)
    }

    fn item_mut(&mut self, product: ProductId) -> Option<&mut InventoryItem> {
        self.items.get_mut(&product).map(|s| {
            s.dirty = true;
            &mut s.value
        })
    }

    fn insert_item(&mut self, item: InventoryItem) {
        self.items.insert(
            item.product_id(),
            Slot {
                value: item,
                loaded: None,
                dirty: true,
            },
        );
    }

    fn reservation(&self, id: ReservationId) -> Option<&Reservation> {
        self.reservations.get(&id).map(|s| &s.value)
    }

    fn reservation_mut(&mut self, id: ReservationId) -> Option<&mut Reservation> {
        self.reservations.get_mut(&id).map(|s| {
            s.dirty = true;
            &mut s.value
        })
    }

    fn find_reservation(&self, order: OrderId, product: ProductId) -> Option<ReservationId> {
        self.by_order.get(&(order, product)).copied()
    }

    fn insert_reservation(&mut self, reservation: Reservation) {
        self.by_order.insert(
            (reservation.order_id(), reservation.product_id()),
            reservation.id(),
        );
        self.reservations.insert(
            reservation.id(),
            Slot {
                value: reservation,
                loaded: None,
                dirty: true,
            },
        );
    }

    fn overdue(&self, product: ProductId, now: Timestamp, limit: usize) -> Vec<ReservationId> {
        let mut due: Vec<&Reservation> = self
            .reservations
            .values()
            .map(|s| &s.value)
            .filter(|r| {
                r.product_id() == product
                    && r.status() == ReservationStatus::Pending
                    && r.is_overdue(now)
            })
            .collect();
        due.sort_by_key(|r| (r.expires_at(), r.id()));
        due.into_iter().take(limit).map(Reservation::id).collect()
    }

    fn record_event(&mut self, event: Event) {
        self.events.push(event);
    }

    fn record_adjustment(&mut self, adjustment: Adjustment) {
        if let Some(key) = &adjustment.key {
            self.keyed
                .insert((adjustment.product_id, key.clone()), adjustment.delta);
        }
        self.adjustments.push(adjustment);
    }

    fn adjusted_under(&self, product: ProductId, key: &AdjustmentKey) -> Option<i64> {
        self.keyed.get(&(product, key.clone())).copied()
    }
}
