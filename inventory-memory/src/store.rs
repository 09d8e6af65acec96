//! [`MemoryStore`]: locks the cells a command touches in product order, lets
//! [`inventory_core::decide`] change them in place, and queues the events.

use std::fmt;
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use inventory_core::{
    check_bulk, decide, Adjustment, Command, Error, InventoryItem, Meta, OrderId, OutboxEntry,
    Outcome, ProductId, Reservation, ReservationId, Reserve, Timestamp, ADJUSTMENTS_PAGE_MAX,
    EXPIRE_BATCH_MAX, LINES_MAX,
};
use parking_lot::Mutex;

use crate::cell::ItemCell;
use crate::locked::{Guard, Locked};
use crate::outbox::MemoryOutbox;

type Hasher = foldhash::quality::RandomState;
type Cell = Arc<Mutex<ItemCell>>;

/// Most finished reservations one [`MemoryStore::purge_finished`] call removes,
/// so one call holds each item's lock only briefly.
pub const PURGE_BATCH_MAX: usize = 10_000;

// A reserve tracks which of its lines claimed their reservation id in a `u128`.
const _: () = assert!(LINES_MAX <= 128);

/// The products an order holds reservations of. Most orders name one product,
/// which needs no allocation.
#[derive(Debug)]
struct OrderProducts {
    first: ProductId,
    rest: Vec<ProductId>,
}

impl OrderProducts {
    fn iter(&self) -> impl Iterator<Item = ProductId> + '_ {
        std::iter::once(self.first).chain(self.rest.iter().copied())
    }

    fn add(&mut self, product: ProductId) {
        if self.first != product && !self.rest.contains(&product) {
            self.rest.push(product);
        }
    }

    /// Removes `product`; false when none is left.
    fn remove(&mut self, product: ProductId) -> bool {
        if self.first == product {
            match self.rest.pop() {
                Some(last) => self.first = last,
                None => return false,
            }
        } else {
            self.rest.retain(|p| *p != product);
        }
        true
    }
}

/// The in-memory inventory store.
///
/// Each product's item, reservations and ledger live in one cell behind one
/// mutex. A command locks the cells it touches in ascending product order,
/// runs [`inventory_core::decide`] over them, and queues its events before it
/// unlocks, so every change is atomic per item, multi-line reservations are all
/// or nothing without deadlock, and the events of a product are numbered in
/// commit order. Reads lock one cell at a time.
///
/// # Memory
///
/// What grows, and what bounds it:
/// - one cell per product ever created (items are never deleted);
/// - every reservation, with an entry in the id index and the order index:
///   finished ones are kept so that repeated confirms and reserves stay
///   idempotent, until [`MemoryStore::purge_finished`] drops them;
/// - every ledger entry (the audit trail is never dropped);
/// - outbox entries until they are drained or marked published: a store whose
///   events nobody consumes grows by a few hundred bytes per change.
pub struct MemoryStore {
    items: DashMap<ProductId, Cell, Hasher>,
    /// The product of every reservation, and of reservation ids claimed by a
    /// reserve in flight.
    reservations: DashMap<ReservationId, ProductId, Hasher>,
    orders: DashMap<OrderId, OrderProducts, Hasher>,
    outbox: MemoryOutbox,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("products", &self.items.len())
            .field("reservations", &self.reservations.len())
            .field("outbox", &self.outbox.len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            items: DashMap::with_hasher(Hasher::default()),
            reservations: DashMap::with_hasher(Hasher::default()),
            orders: DashMap::with_hasher(Hasher::default()),
            outbox: MemoryOutbox::default(),
        }
    }

    /// Runs one command atomically; the same as
    /// [`InventoryStore::execute`](inventory_core::InventoryStore::execute),
    /// without a future.
    ///
    /// # Errors
    /// The business errors of [`Error`]. [`Error::InvalidInput`] on field
    /// `reservation_id` when a reserve names an id another reservation has, and
    /// [`Error::Contention`] when another reserve with that id is in flight.
    pub fn execute_sync(&self, command: &Command, meta: &Meta) -> Result<Outcome, Error> {
        match command {
            Command::CreateItem { product_id, .. } => {
                // Made (empty) under the map's entry lock, so two creates of one
                // product share one cell and the second finds the item there.
                let cell = Arc::clone(
                    &self
                        .items
                        .entry(*product_id)
                        .or_insert_with(|| Arc::new(Mutex::new(ItemCell::new(*product_id)))),
                );
                let mut guards = [cell.lock()];
                self.run(&mut guards, command, meta)
            }
            Command::Reserve(reserve) => self.reserve(reserve, command, meta),
            Command::Confirm { reservation_id }
            | Command::Release { reservation_id }
            | Command::Expire { reservation_id } => {
                let product = self.reservations.get(reservation_id).map(|p| *p);
                self.run_on(product, command, meta)
            }
            Command::Adjust { product_id, .. } | Command::SetQuantity { product_id, .. } => {
                self.run_on(Some(*product_id), command, meta)
            }
        }
    }

    fn cell(&self, product: ProductId) -> Option<Cell> {
        self.items.get(&product).map(|cell| Arc::clone(&cell))
    }

    /// Runs a command touching at most one product.
    fn run_on(
        &self,
        product: Option<ProductId>,
        command: &Command,
        meta: &Meta,
    ) -> Result<Outcome, Error> {
        match product.and_then(|p| self.cell(p)) {
            Some(cell) => self.run(&mut [cell.lock()], command, meta),
            None => self.run(&mut [], command, meta),
        }
    }

    /// Decides `command` over locked cells (sorted by product); its events are
    /// queued before this returns, while the cells are still locked.
    fn run(
        &self,
        cells: &mut [Guard<'_>],
        command: &Command,
        meta: &Meta,
    ) -> Result<Outcome, Error> {
        debug_assert!(cells.windows(2).all(|w| w[0].product_id < w[1].product_id));
        let mut events = self.outbox.writer(meta);
        let mut ws = Locked {
            cells,
            events: &mut events,
        };
        decide(&mut ws, command, meta.now)
    }

    fn reserve(&self, reserve: &Reserve, command: &Command, meta: &Meta) -> Result<Outcome, Error> {
        let lines = reserve.lines();
        // Claim each new id in the index before locking anything: an id can
        // then belong to one reservation only, even across products.
        let mut claimed: u128 = 0;
        for (i, line) in lines.iter().enumerate() {
            if let Entry::Vacant(slot) = self.reservations.entry(line.reservation_id) {
                slot.insert(line.product_id);
                claimed |= 1 << i;
            }
        }
        if let [line] = lines {
            match self.cell(line.product_id) {
                Some(cell) => {
                    self.reserve_locked(&mut [cell.lock()], reserve, claimed, command, meta)
                }
                None => self.reserve_locked(&mut [], reserve, claimed, command, meta),
            }
        } else {
            let mut cells: Vec<(ProductId, Cell)> = lines
                .iter()
                .filter_map(|l| self.cell(l.product_id).map(|c| (l.product_id, c)))
                .collect();
            // Ascending product order: two commands never wait on each other
            // in a cycle.
            cells.sort_unstable_by_key(|(product, _)| *product);
            let mut guards: Vec<Guard<'_>> = cells.iter().map(|(_, cell)| cell.lock()).collect();
            self.reserve_locked(&mut guards, reserve, claimed, command, meta)
        }
    }

    fn reserve_locked(
        &self,
        cells: &mut [Guard<'_>],
        reserve: &Reserve,
        claimed: u128,
        command: &Command,
        meta: &Meta,
    ) -> Result<Outcome, Error> {
        let result = self
            .check_unclaimed_ids(cells, reserve, claimed)
            .and_then(|()| self.run(cells, command, meta));
        self.settle_claims(cells, reserve, claimed);
        result
    }

    /// A line whose id was already in the index may only go ahead when the
    /// order already holds that product (the id is then ignored).
    fn check_unclaimed_ids(
        &self,
        cells: &[Guard<'_>],
        reserve: &Reserve,
        claimed: u128,
    ) -> Result<(), Error> {
        for (i, line) in reserve.lines().iter().enumerate() {
            if claimed & (1 << i) != 0 {
                continue;
            }
            let Some(cell) = find(cells, line.product_id) else {
                continue; // unknown product: the rules report it
            };
            if cell.by_order.contains_key(&reserve.order_id()) {
                continue;
            }
            let id = line.reservation_id;
            let owner = self.reservations.get(&id).map(|p| *p);
            if !cell.reservations.contains_key(&id) && owner.is_none_or(|p| p == line.product_id) {
                // Another reserve with this id is in flight on this product.
                return Err(Error::Contention);
            }
            return Err(Error::InvalidInput {
                field: "reservation_id",
                reason: format!("{id} already identifies another reservation"),
            });
        }
        Ok(())
    }

    /// Keeps the claims that became reservations (and indexes their orders);
    /// gives the others back.
    fn settle_claims(&self, cells: &[Guard<'_>], reserve: &Reserve, claimed: u128) {
        if claimed == 0 {
            return;
        }
        let order = reserve.order_id();
        for (i, line) in reserve.lines().iter().enumerate() {
            if claimed & (1 << i) == 0 {
                continue;
            }
            let created = find(cells, line.product_id)
                .is_some_and(|cell| cell.reservations.contains_key(&line.reservation_id));
            if created {
                self.orders
                    .entry(order)
                    .and_modify(|products| products.add(line.product_id))
                    .or_insert_with(|| OrderProducts {
                        first: line.product_id,
                        rest: Vec::new(),
                    });
            } else {
                self.reservations.remove(&line.reservation_id);
            }
        }
    }

    /// The item of one product.
    pub fn item_sync(&self, product_id: ProductId) -> Option<InventoryItem> {
        self.cell(product_id)?.lock().item.clone()
    }

    /// The items of several products (unknown ones left out), in the order asked.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for no ids or more than
    /// [`inventory_core::AVAILABILITY_BATCH_MAX`].
    pub fn items_sync(&self, product_ids: &[ProductId]) -> Result<Vec<InventoryItem>, Error> {
        check_bulk(product_ids)?;
        Ok(product_ids
            .iter()
            .filter_map(|p| self.item_sync(*p))
            .collect())
    }

    /// One reservation.
    pub fn reservation_sync(&self, id: ReservationId) -> Option<Reservation> {
        let product = *self.reservations.get(&id)?;
        self.cell(product)?.lock().reservations.get(&id).cloned()
    }

    /// Every reservation of an order, ordered by product id.
    pub fn reservations_of_order_sync(&self, order_id: OrderId) -> Vec<Reservation> {
        let mut products: Vec<ProductId> = match self.orders.get(&order_id) {
            Some(products) => products.iter().collect(),
            None => return Vec::new(),
        };
        products.sort_unstable();
        products
            .into_iter()
            .filter_map(|p| {
                let cell = self.cell(p)?;
                let cell = cell.lock();
                let id = cell.by_order.get(&order_id)?;
                cell.reservations.get(id).cloned()
            })
            .collect()
    }

    /// Every reservation of a product, ordered by id.
    pub fn reservations_of_product_sync(&self, product_id: ProductId) -> Vec<Reservation> {
        let Some(cell) = self.cell(product_id) else {
            return Vec::new();
        };
        let mut all: Vec<Reservation> = cell.lock().reservations.values().cloned().collect();
        all.sort_unstable_by_key(Reservation::id);
        all
    }

    /// The newest ledger entries of a product, newest first, at most
    /// `limit.min(ADJUSTMENTS_PAGE_MAX)`.
    pub fn adjustments_sync(&self, product_id: ProductId, limit: usize) -> Vec<Adjustment> {
        let Some(cell) = self.cell(product_id) else {
            return Vec::new();
        };
        let cell = cell.lock();
        cell.ledger
            .iter()
            .rev()
            .take(limit.min(ADJUSTMENTS_PAGE_MAX))
            .cloned()
            .collect()
    }

    /// Expires up to `limit.min(EXPIRE_BATCH_MAX)` pending reservations due at
    /// `meta.now` and returns how many it expired. Any number of sweepers may
    /// run at once; each reservation is expired once.
    pub fn expire_due_sync(&self, meta: &Meta, limit: usize) -> usize {
        let limit = limit.min(EXPIRE_BATCH_MAX);
        let mut expired = 0;
        for entry in self.items.iter() {
            if expired == limit {
                break;
            }
            let mut cell = entry.value().lock();
            while expired < limit {
                let Some(reservation_id) = cell.first_due(meta.now) else {
                    break;
                };
                let command = Command::Expire { reservation_id };
                let outcome = self.run(std::slice::from_mut(&mut cell), &command, meta);
                let changed = matches!(outcome, Ok(Outcome::Reservation { changed: true, .. }));
                assert!(changed, "a due pending reservation expires: {outcome:?}");
                expired += 1;
            }
        }
        expired
    }

    /// Drops up to `limit.min(PURGE_BATCH_MAX)` reservations that reached a
    /// terminal state before `before`, and returns how many it dropped.
    ///
    /// This bounds memory in long-running embeddings. The price: a purged
    /// reservation is unknown afterwards, so a confirm or release repeated
    /// after the purge gets [`Error::ReservationNotFound`], and a reserve
    /// repeated for the same order and product makes a new reservation. Purge
    /// only what is older than any retry you expect.
    pub fn purge_finished(&self, before: Timestamp, limit: usize) -> usize {
        let mut left = limit.min(PURGE_BATCH_MAX);
        for entry in self.items.iter() {
            if left == 0 {
                break;
            }
            let mut cell = entry.value().lock();
            let product = cell.product_id;
            for (id, order) in cell.purge_finished(before, left) {
                left -= 1;
                self.reservations.remove(&id);
                if let Entry::Occupied(mut products) = self.orders.entry(order) {
                    if !products.get_mut().remove(product) {
                        products.remove();
                    }
                }
            }
        }
        limit.min(PURGE_BATCH_MAX) - left
    }

    /// Up to `limit.min(OUTBOX_BATCH_MAX)` unpublished outbox entries, lowest
    /// sequence first.
    pub fn unpublished_sync(&self, limit: usize) -> Vec<OutboxEntry> {
        self.outbox.take(limit, false)
    }

    /// Forgets the outbox entries with these sequence numbers.
    pub fn mark_published_sync(&self, sequences: &[u64]) {
        self.outbox.remove(sequences);
    }

    /// Takes up to `limit.min(OUTBOX_BATCH_MAX)` outbox entries, lowest
    /// sequence first, and forgets them: for an embedder that hands events on
    /// in process and has nothing to retry.
    pub fn drain(&self, limit: usize) -> Vec<OutboxEntry> {
        self.outbox.take(limit, true)
    }

    /// Number of outbox entries not yet drained or marked published.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Checks the store's internal indexes and every item invariant.
    ///
    /// # Panics
    /// When an index disagrees with the data or an invariant is broken (a bug
    /// in this crate or in `inventory-core`). Meant for tests and debugging: it
    /// locks every item in turn.
    pub fn assert_consistent(&self) {
        let mut reservations = 0;
        for entry in self.items.iter() {
            let cell = entry.value().lock();
            assert_eq!(cell.product_id, *entry.key());
            cell.check();
            for (id, reservation) in &cell.reservations {
                assert_eq!(
                    self.reservations.get(id).map(|p| *p),
                    Some(cell.product_id),
                    "id index of reservation {id}"
                );
                let order = self.orders.get(&reservation.order_id());
                assert!(
                    order.is_some_and(|o| o.iter().any(|p| p == cell.product_id)),
                    "order index of reservation {id}"
                );
            }
            reservations += cell.reservations.len();
        }
        // With no reserve in flight, every id in the index is a reservation.
        assert_eq!(self.reservations.len(), reservations, "id index size");
    }
}

/// The locked cell of `product`, if the command locked one.
fn find<'c>(cells: &'c [Guard<'_>], product: ProductId) -> Option<&'c ItemCell> {
    cells
        .binary_search_by_key(&product, |cell| cell.product_id)
        .ok()
        .map(|i| &*cells[i])
}
