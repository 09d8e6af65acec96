//! The state of one product, kept together behind one lock: its item, its
//! reservations (in slots, and the pending ones ordered by expiry) and its
//! ledger.

use std::collections::{BTreeMap, HashMap, VecDeque};

use inventory_core::{
    Adjustment, AdjustmentKey, InventoryItem, ProductId, Reservation, ReservationId,
    ReservationStatus, Timestamp,
};

/// Where a reservation lives: the slot of its product's cell.
pub(crate) type SlotIndex = u32;

/// Everything the store keeps about one product.
///
/// Reservations sit in a slab (a vector of slots reused after a purge), so
/// storing one is a push rather than a hash-table insert; the store's id index
/// maps each reservation id to its product and slot.
///
/// Invariant (checked by [`ItemCell::check`]): `pending` holds exactly the
/// `(expires_at, id)` of the pending reservations, each with its slot.
#[derive(Debug)]
pub(crate) struct ItemCell {
    /// The product; set when the cell is made, never changed.
    pub(crate) product_id: ProductId,
    /// `None` until the item is created.
    pub(crate) item: Option<InventoryItem>,
    slots: Vec<Option<Reservation>>,
    free: Vec<SlotIndex>,
    /// Pending reservations, earliest expiry first.
    pending: BTreeMap<(Timestamp, ReservationId), SlotIndex>,
    /// Finished reservations in the order they finished, with when: what a
    /// purge takes from, oldest first, without scanning the slab.
    finished: VecDeque<(Timestamp, SlotIndex)>,
    /// Every stock adjustment, oldest first.
    pub(crate) ledger: Vec<Adjustment>,
    /// The delta made under each idempotency key of the ledger.
    pub(crate) keyed: HashMap<AdjustmentKey, i64>,
}

impl ItemCell {
    /// An empty cell for `product_id`, with no item yet.
    pub(crate) fn new(product_id: ProductId) -> Self {
        Self {
            product_id,
            item: None,
            slots: Vec::new(),
            free: Vec::new(),
            pending: BTreeMap::new(),
            finished: VecDeque::new(),
            ledger: Vec::new(),
            keyed: HashMap::new(),
        }
    }

    /// The reservation in `slot`.
    pub(crate) fn get(&self, slot: SlotIndex) -> Option<&Reservation> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// The reservation in `slot`, to change in place.
    pub(crate) fn get_mut(&mut self, slot: SlotIndex) -> Option<&mut Reservation> {
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    /// Stores a new reservation of this product and returns its slot.
    pub(crate) fn insert(&mut self, reservation: Reservation) -> SlotIndex {
        debug_assert_eq!(reservation.product_id(), self.product_id);
        let key = (reservation.expires_at(), reservation.id());
        let pending = reservation.status() == ReservationStatus::Pending;
        let slot = match self.free.pop() {
            Some(slot) => {
                debug_assert!(self.slots[slot as usize].is_none());
                self.slots[slot as usize] = Some(reservation);
                slot
            }
            None => {
                let slot = SlotIndex::try_from(self.slots.len())
                    .expect("fewer than 4 billion reservations per product");
                self.slots.push(Some(reservation));
                slot
            }
        };
        if pending {
            self.pending.insert(key, slot);
        }
        slot
    }

    /// Takes a reservation that just left the pending state out of the expiry
    /// index.
    pub(crate) fn finished(&mut self, slot: SlotIndex) {
        let reservation = self.get(slot).expect("a finished reservation is stored");
        debug_assert!(reservation.status().is_terminal());
        let key = (reservation.expires_at(), reservation.id());
        let at = reservation.updated_at();
        let removed = self.pending.remove(&key);
        debug_assert_eq!(removed, Some(slot), "a finished reservation was pending");
        self.finished.push_back((at, slot));
    }

    /// Up to `limit` pending reservations due at `now`, earliest first.
    pub(crate) fn due(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> impl Iterator<Item = ReservationId> + '_ {
        self.pending
            .keys()
            .take_while(move |(expires_at, _)| *expires_at <= now)
            .take(limit)
            .map(|(_, id)| *id)
    }

    /// The earliest pending reservation due at `now`.
    pub(crate) fn first_due(&self, now: Timestamp) -> Option<ReservationId> {
        self.pending
            .first_key_value()
            .filter(|((expires_at, _), _)| *expires_at <= now)
            .map(|((_, id), _)| *id)
    }

    /// Every stored reservation with its slot.
    pub(crate) fn reservations(&self) -> impl Iterator<Item = (SlotIndex, &Reservation)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, r)| Some((slot as SlotIndex, r.as_ref()?)))
    }

    /// Removes up to `limit` reservations that reached a terminal state before
    /// `before`, oldest first, and returns them. Stops at the first one that
    /// finished at or after `before` (with a clock that never goes back, that
    /// is all of them).
    pub(crate) fn purge_finished(&mut self, before: Timestamp, limit: usize) -> Vec<Reservation> {
        let mut purged = Vec::new();
        while purged.len() < limit {
            match self.finished.front() {
                Some((at, _)) if *at < before => {}
                _ => break,
            }
            let (_, slot) = self.finished.pop_front().expect("front exists");
            let reservation = self.slots[slot as usize]
                .take()
                .expect("a finished slot holds its reservation until purged");
            debug_assert!(reservation.status().is_terminal());
            self.free.push(slot);
            purged.push(reservation);
        }
        purged
    }

    /// Drops up to `limit` ledger entries made before `before`, oldest first,
    /// with their idempotency keys; returns how many.
    pub(crate) fn purge_ledger(&mut self, before: Timestamp, limit: usize) -> usize {
        let old = self.ledger.iter().take(limit).take_while(|a| a.at < before);
        let n = old.count();
        for entry in self.ledger.drain(..n) {
            if let Some(key) = entry.key {
                self.keyed.remove(&key);
            }
        }
        n
    }

    /// Checks the expiry index and the item against the reservations.
    ///
    /// # Panics
    /// When they disagree (a bug in this crate or in `inventory-core`).
    pub(crate) fn check(&self) {
        let pending: BTreeMap<(Timestamp, ReservationId), SlotIndex> = self
            .reservations()
            .filter(|(_, r)| r.status() == ReservationStatus::Pending)
            .map(|(slot, r)| ((r.expires_at(), r.id()), slot))
            .collect();
        assert_eq!(pending, self.pending, "expiry index of {}", self.product_id);
        let free = self.slots.iter().filter(|s| s.is_none()).count();
        assert_eq!(free, self.free.len(), "free slots of {}", self.product_id);
        let mut finished: Vec<SlotIndex> = self
            .reservations()
            .filter(|(_, r)| r.status().is_terminal())
            .map(|(slot, _)| slot)
            .collect();
        let mut queued: Vec<SlotIndex> = self.finished.iter().map(|(_, slot)| *slot).collect();
        finished.sort_unstable();
        queued.sort_unstable();
        assert_eq!(finished, queued, "finished queue of {}", self.product_id);
        match &self.item {
            Some(item) => {
                let held: u64 = self
                    .reservations()
                    .filter(|(_, r)| r.status() == ReservationStatus::Pending)
                    .map(|(_, r)| r.quantity())
                    .sum();
                assert_eq!(item.reserved(), held, "reserved of {}", self.product_id);
                assert!(item.reserved() <= item.quantity());
                assert_eq!(item.available(), item.quantity() - item.reserved());
            }
            None => assert!(self.slots.is_empty()),
        }
    }
}
