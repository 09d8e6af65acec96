//! [`MemoryStore`]: locks the cells a command touches in product order, lets
//! [`inventory_core::decide()`] change them in place, and queues the events.
//!
//! Lock order, which is what makes the store deadlock-free:
//!
//! 1. item cells, in ascending product id (a command takes all of its cells
//!    before it runs);
//! 2. then, briefly, shards of the id and order indexes, and one outbox queue.
//!
//! Nothing takes a shard of the items map while it holds a cell (cells are
//! looked up and their `Arc` cloned first, then locked), and nothing takes a
//! cell while it holds an index shard or an outbox queue. Reads copy what they
//! need out of an index before locking a cell.

use std::fmt;
use std::sync::Arc;

use dashmap::DashMap;
use std::collections::HashMap;

use inventory_core::{
    check_batch, check_bulk, decide, Adjustment, BatchResults, Command, Error, InventoryItem, Meta,
    OrderId, OutboxEntry, Outcome, ProductId, Reservation, ReservationId, Reserve, Timestamp,
    ADJUSTMENTS_PAGE_MAX, EXPIRE_BATCH_MAX, LINES_MAX,
};
use parking_lot::Mutex;

use crate::cell::ItemCell;
use crate::index::{Hasher, Indexes, Place, CLAIMED};
use crate::locked::{Guard, Locked};
use crate::outbox::MemoryOutbox;

type Cell = Arc<Mutex<ItemCell>>;

/// Most finished reservations one [`MemoryStore::purge_finished`] call removes,
/// so one call holds each item's lock only briefly.
pub const PURGE_BATCH_MAX: usize = 10_000;

// A reserve tracks which of its lines claimed their reservation id in a `u128`.
const _: () = assert!(LINES_MAX <= 128);

/// What a [`MemoryStore`] holds, counted by [`MemoryStore::footprint`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Products (cells; never dropped).
    pub products: usize,
    /// Reservations, pending and finished.
    pub reservations: usize,
    /// Ledger entries.
    pub ledger_entries: usize,
    /// Outbox entries not yet drained or published.
    pub outbox_entries: usize,
}

/// The in-memory inventory store.
///
/// Each product's item, reservations and ledger live in one cell behind one
/// mutex. A command locks the cells it touches in ascending product order,
/// runs [`inventory_core::decide()`] over them, and queues its events before it
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
/// - every ledger entry, until [`MemoryStore::purge_finished`] drops it;
/// - outbox entries until they are drained or marked published: a store whose
///   events nobody consumes grows by a few hundred bytes per change.
///
/// A long-running embedding therefore drains (or publishes) the outbox and
/// calls [`MemoryStore::purge_finished`] periodically; then memory stays
/// proportional to the pending reservations plus the retention window. A
/// purge visits every item but, within one, touches only what it drops.
///
/// # Example
///
/// Share one store between threads (or tasks) by reference or in an `Arc`:
///
/// ```
/// use inventory_core::{InventoryStoreExt, OrderId, ProductId, Timestamp, Ttl, Uuid};
/// use inventory_memory::MemoryStore;
///
/// let (store, now) = (MemoryStore::new(), Timestamp::from_millis(0));
/// let product = ProductId::from(Uuid::from_u128(1));
/// pollster::block_on(store.create_item(product, 1, now))?;
///
/// // Eight buyers race for the last unit on eight threads: exactly one gets it.
/// let store = &store;
/// let sold = std::thread::scope(|s| {
///     let buyers: Vec<_> = (0..8_u128)
///         .map(|n| s.spawn(move || {
///             let order = OrderId::from(Uuid::from_u128(n));
///             pollster::block_on(store.reserve(order, product, 1, Ttl::default(), now)).is_ok()
///         }))
///         .collect();
///     buyers.into_iter().filter_map(|b| b.join().ok()).filter(|won| *won).count()
/// });
/// assert_eq!(sold, 1);
/// assert_eq!(store.item_sync(product).map(|i| i.available()), Some(0));
/// # Ok::<(), inventory_core::Error>(())
/// ```
pub struct MemoryStore {
    items: DashMap<ProductId, Cell, Hasher>,
    index: Indexes,
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
            .field("reservations", &self.index.reservations.len())
            .field("outbox", &self.outbox.len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store.
    ///
    /// ```
    /// use inventory_core::{InventoryStoreExt, ProductId, Timestamp, Uuid};
    /// use inventory_memory::MemoryStore;
    ///
    /// let store = MemoryStore::new();
    /// let product = ProductId::from(Uuid::from_u128(1));
    /// // Its futures are ready at once: any executor runs them.
    /// pollster::block_on(store.create_item(product, 5, Timestamp::from_millis(0)))?;
    /// assert_eq!(pollster::block_on(store.availability(product))?, Some(5));
    /// # Ok::<(), inventory_core::Error>(())
    /// ```
    pub fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    /// An empty store with room for `products` items and `reservations`
    /// reservations before its indexes grow. Growing a large index copies it
    /// (a pause proportional to its size), so an embedder that knows its scale
    /// avoids those pauses by saying so here.
    ///
    /// ```
    /// use inventory_memory::{Footprint, MemoryStore};
    ///
    /// // A catalogue of ten thousand products, a hundred thousand holds a day.
    /// let store = MemoryStore::with_capacity(10_000, 100_000);
    /// assert_eq!(store.footprint(), Footprint::default()); // room, not content
    /// ```
    pub fn with_capacity(products: usize, reservations: usize) -> Self {
        Self {
            items: DashMap::with_capacity_and_hasher(products, Hasher::default()),
            index: Indexes::with_capacity(reservations),
            outbox: MemoryOutbox::default(),
        }
    }

    /// Runs one command atomically; the same as
    /// [`InventoryStore::execute`](inventory_core::InventoryStore::execute),
    /// without a future.
    ///
    /// ```
    /// use inventory_core::*;
    /// use inventory_memory::MemoryStore;
    ///
    /// let store = MemoryStore::new();
    /// let product = ProductId::from(Uuid::from_u128(1));
    /// // The request id is copied onto the change's events.
    /// let meta = Meta { correlation_id: Some("req-1".to_owned()), ..Meta::at(Timestamp::from_millis(0)) };
    /// let create = Command::CreateItem { product_id: product, quantity: StockLevel::new(3)?, actor: Actor::system() };
    ///
    /// let Outcome::Created(item) = store.execute_sync(create, &meta)? else { unreachable!() };
    /// assert_eq!(item.available(), 3);
    /// assert_eq!(store.drain(10)[0].correlation_id.as_deref(), Some("req-1"));
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    /// The business errors of [`Error`]. [`Error::InvalidInput`] on field
    /// `reservation_id` when a reserve names an id another reservation has, and
    /// [`Error::Contention`] when another reserve with that id is in flight.
    pub fn execute_sync(&self, command: Command, meta: &Meta) -> Result<Outcome, Error> {
        self.execute_ref(&command, meta)
    }

    fn execute_ref(&self, command: &Command, meta: &Meta) -> Result<Outcome, Error> {
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
                self.run(&mut guards, command, meta, None).0
            }
            Command::Reserve(reserve) => self.reserve(reserve, command, meta),
            // Every other command is routed by what core says it names: a
            // reservation (whose product the index knows) or products.
            _ => match command.reservation_id() {
                Some(reservation_id) => {
                    let place = self.index.place(reservation_id);
                    let cell = place.and_then(|place| self.cell(place.product));
                    let known = place.map(|place| (reservation_id, place));
                    match cell {
                        Some(cell) => self.run(&mut [cell.lock()], command, meta, known).0,
                        None => self.run(&mut [], command, meta, None).0,
                    }
                }
                None => {
                    // In product order, as every lock of this store is taken.
                    let cells: Vec<Cell> = command
                        .products()
                        .into_iter()
                        .filter_map(|product| self.cell(product))
                        .collect();
                    let mut guards: Vec<Guard<'_>> = cells.iter().map(|cell| cell.lock()).collect();
                    self.run(&mut guards, command, meta, None).0
                }
            },
        }
    }

    /// Runs several commands as if one after another, in order, under one
    /// lock of every cell they touch (taken in product order, so batches never
    /// deadlock with each other or with single commands); the same as
    /// [`InventoryStore::execute_batch`](inventory_core::InventoryStore::execute_batch),
    /// without a future. Each command's events are queued with its own
    /// correlation id.
    ///
    /// ```
    /// use inventory_core::*;
    /// use inventory_memory::MemoryStore;
    ///
    /// # let store = MemoryStore::new();
    /// # let product = ProductId::from(Uuid::from_u128(1));
    /// # pollster::block_on(store.create_item(product, 1, Timestamp::from_millis(0)))?;
    /// let meta = Meta::at(Timestamp::from_millis(1_000));
    /// let buyer = |n: u128| {
    ///     let order = OrderId::from(Uuid::from_u128(n));
    ///     let reservation_id = ReservationId::for_line(order, product);
    ///     let line = ReserveLine { product_id: product, quantity: Quantity::new(1).unwrap(), reservation_id };
    ///     (Command::Reserve(Reserve::single(order, line, Ttl::default())), meta.clone())
    /// };
    /// // Two buyers for the last unit in one batch: the first in line gets it.
    /// let answers = store.execute_batch_sync(vec![buyer(1), buyer(2)])?;
    /// assert!(answers[0].is_ok());
    /// assert!(matches!(answers[1], Err(Error::InsufficientStock { available: 0, .. })));
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `batch` for more than
    /// [`inventory_core::BATCH_MAX`] commands. Each command's own answer is
    /// as [`MemoryStore::execute_sync`] gives it.
    pub fn execute_batch_sync(&self, batch: Vec<(Command, Meta)>) -> Result<BatchResults, Error> {
        check_batch(&batch)?;
        if let [(command, meta)] = batch.as_slice() {
            return Ok(vec![self.execute_ref(command, meta)]);
        }
        let cells: Vec<Cell> = self
            .batch_products(&batch)
            .into_iter()
            .filter_map(|product| self.cell(product))
            .collect();
        let mut guards: Vec<Guard<'_>> = cells.iter().map(|cell| cell.lock()).collect();
        Ok(batch
            .iter()
            .map(|(command, meta)| self.run_in_batch(&mut guards, command, meta))
            .collect())
    }

    /// Every product a batch may touch, sorted and without repeats. The cell
    /// of each item a create names is made here, so it can be locked.
    fn batch_products(&self, batch: &[(Command, Meta)]) -> Vec<ProductId> {
        let mut products = Vec::with_capacity(batch.len());
        // Reservations the batch itself makes, for commands that name one
        // before it exists; built only when such a command is met.
        let mut made_here: Option<HashMap<ReservationId, ProductId>> = None;
        for (command, _) in batch {
            match command {
                Command::CreateItem { product_id, .. } => {
                    self.items
                        .entry(*product_id)
                        .or_insert_with(|| Arc::new(Mutex::new(ItemCell::new(*product_id))));
                    products.push(*product_id);
                }
                Command::Reserve(reserve) => {
                    products.extend(reserve.lines().iter().map(|l| l.product_id));
                }
                _ => match command.reservation_id() {
                    Some(reservation_id) => {
                        let product = self.index.place(reservation_id).map(|p| p.product);
                        let product = product.or_else(|| {
                            made_here
                                .get_or_insert_with(|| reserved_in(batch))
                                .get(&reservation_id)
                                .copied()
                        });
                        products.extend(product);
                    }
                    None => products.extend(command.products()),
                },
            }
        }
        products.sort_unstable();
        products.dedup();
        products
    }

    /// Runs one command of a batch over the batch's locked cells (a superset
    /// of the command's own).
    fn run_in_batch(
        &self,
        cells: &mut [Guard<'_>],
        command: &Command,
        meta: &Meta,
    ) -> Result<Outcome, Error> {
        match command {
            Command::Reserve(reserve) => {
                let mut claimed: u128 = 0;
                for (i, line) in reserve.lines().iter().enumerate() {
                    if self.index.claim(line.reservation_id, line.product_id) {
                        claimed |= 1 << i;
                    }
                }
                self.reserve_locked(cells, reserve, claimed, command, meta)
            }
            _ => {
                let known = command.reservation_id().and_then(|reservation_id| {
                    let place = self.index.place(reservation_id)?;
                    Some((reservation_id, place))
                });
                self.run(cells, command, meta, known).0
            }
        }
    }

    fn cell(&self, product: ProductId) -> Option<Cell> {
        self.items.get(&product).map(|cell| Arc::clone(&cell))
    }

    /// Decides `command` over locked cells (sorted by product); its events are
    /// queued before this returns, while the cells are still locked. `known`
    /// is a reservation whose place the caller already looked up. Also returns
    /// how many reservations the command stored.
    fn run(
        &self,
        cells: &mut [Guard<'_>],
        command: &Command,
        meta: &Meta,
        known: Option<(ReservationId, Place)>,
    ) -> (Result<Outcome, Error>, usize) {
        let mut events = self.outbox.writer(meta);
        let mut ws = Locked::new(cells, &self.index, &mut events, known);
        let result = decide(&mut ws, command, meta.now);
        (result, ws.stored())
    }

    fn reserve(&self, reserve: &Reserve, command: &Command, meta: &Meta) -> Result<Outcome, Error> {
        let lines = reserve.lines();
        // Claim each new id in the index before locking anything: an id can
        // then belong to one reservation only, even across products.
        let mut claimed: u128 = 0;
        for (i, line) in lines.iter().enumerate() {
            if self.index.claim(line.reservation_id, line.product_id) {
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
        if let Err(error) = self.check_unclaimed_ids(cells, reserve, claimed) {
            self.settle_claims(reserve, claimed);
            return Err(error);
        }
        let (result, stored) = self.run(cells, command, meta, None);
        // A claim that did not become a reservation goes back; when every
        // claim was stored (the usual case) there is nothing to look at.
        if stored != claimed.count_ones() as usize {
            self.settle_claims(reserve, claimed);
        }
        result
    }

    /// A line whose id was already in the index may only go ahead when the
    /// order already holds that product (the rules then ignore the id).
    fn check_unclaimed_ids(
        &self,
        cells: &[Guard<'_>],
        reserve: &Reserve,
        claimed: u128,
    ) -> Result<(), Error> {
        let order = reserve.order_id();
        for (i, line) in reserve.lines().iter().enumerate() {
            if claimed & (1 << i) != 0 || find(cells, line.product_id).is_none() {
                continue; // claimed, or an unknown product the rules report
            }
            if self.index.find(order, line.product_id).is_some() {
                continue;
            }
            let id = line.reservation_id;
            let owner = self.index.reservations.get(&id).map(|place| *place);
            return Err(match owner {
                // Another reserve with this id is in flight on this product.
                None => Error::Contention,
                Some(place) if place.product == line.product_id && place.slot == CLAIMED => {
                    Error::Contention
                }
                Some(_) => Error::InvalidInput {
                    field: "reservation_id",
                    reason: format!("{id} already identifies another reservation"),
                },
            });
        }
        Ok(())
    }

    /// Gives back the claims that did not become reservations.
    fn settle_claims(&self, reserve: &Reserve, claimed: u128) {
        for (i, line) in reserve.lines().iter().enumerate() {
            if claimed & (1 << i) != 0 {
                self.index.release_claim(line.reservation_id);
            }
        }
    }

    /// The item of one product.
    ///
    /// ```
    /// use inventory_core::{InventoryStoreExt, ProductId, Timestamp, Uuid};
    /// use inventory_memory::MemoryStore;
    ///
    /// let store = MemoryStore::new();
    /// let product = ProductId::from(Uuid::from_u128(1));
    /// assert!(store.item_sync(product).is_none());
    /// pollster::block_on(store.create_item(product, 4, Timestamp::from_millis(0)))?;
    /// let item = store.item_sync(product).expect("created");
    /// assert_eq!((item.quantity(), item.reserved()), (4, 0));
    /// # Ok::<(), inventory_core::Error>(())
    /// ```
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
        let place = self.index.place(id)?;
        let cell = self.cell(place.product)?;
        let cell = cell.lock();
        // A purge between the two reads may have given the slot to another.
        cell.get(place.slot).filter(|r| r.id() == id).cloned()
    }

    /// Every reservation of an order, ordered by product id.
    pub fn reservations_of_order_sync(&self, order_id: OrderId) -> Vec<Reservation> {
        let mut ids: Vec<(ProductId, ReservationId)> = match self.index.orders.get(&order_id) {
            Some(lines) => lines.iter().collect(),
            None => return Vec::new(),
        };
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|(_, id)| self.reservation_sync(id))
            .collect()
    }

    /// Every reservation of a product, ordered by id.
    pub fn reservations_of_product_sync(&self, product_id: ProductId) -> Vec<Reservation> {
        let Some(cell) = self.cell(product_id) else {
            return Vec::new();
        };
        let mut all: Vec<Reservation> =
            cell.lock().reservations().map(|(_, r)| r.clone()).collect();
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
    ///
    /// ```
    /// use inventory_core::{InventoryStoreExt, Meta, OrderId, ProductId, ReservationStatus, Timestamp, Ttl, Uuid};
    /// use inventory_memory::MemoryStore;
    ///
    /// # let store = MemoryStore::new();
    /// # let product = ProductId::from(Uuid::from_u128(1));
    /// # let t0 = Timestamp::from_millis(0);
    /// # pollster::block_on(store.create_item(product, 5, t0))?;
    /// let order = OrderId::from(Uuid::from_u128(2));
    /// let hold = pollster::block_on(store.reserve(order, product, 2, Ttl::from_secs(60)?, t0))?;
    ///
    /// assert_eq!(store.expire_due_sync(&Meta::at(t0.plus_ms(59_999)), 100), 0); // not yet due
    /// assert_eq!(store.expire_due_sync(&Meta::at(t0.plus_ms(60_000)), 100), 1);
    /// assert_eq!(store.reservation_sync(hold.id()).unwrap().status(), ReservationStatus::Expired);
    /// assert_eq!(store.item_sync(product).unwrap().available(), 5);
    /// # Ok::<(), inventory_core::Error>(())
    /// ```
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
                let (outcome, _) = self.run(std::slice::from_mut(&mut cell), &command, meta, None);
                if !matches!(outcome, Ok(Outcome::Reservation { changed: true, .. })) {
                    // A due pending reservation always expires; if the rules
                    // ever disagree, stop rather than spin on it.
                    debug_assert!(false, "a due pending reservation expires: {outcome:?}");
                    break;
                }
                expired += 1;
            }
        }
        expired
    }

    /// Drops up to `limit.min(PURGE_BATCH_MAX)` reservations that reached a
    /// terminal state before `before`, and returns how many it dropped; on
    /// the items it visits, it also drops ledger entries made before `before`
    /// (up to [`PURGE_BATCH_MAX`] per item).
    ///
    /// This bounds memory in long-running embeddings. The price: a purged
    /// reservation is unknown afterwards, so a confirm or release repeated
    /// after the purge gets [`Error::ReservationNotFound`], and a reserve
    /// repeated for the same order and product makes a new reservation (a
    /// keyed adjustment repeated after its entry is dropped applies again).
    /// Purge only what is older than any retry you expect.
    ///
    /// ```
    /// use inventory_core::{InventoryStoreExt, OrderId, ProductId, Timestamp, Ttl, Uuid};
    /// use inventory_memory::MemoryStore;
    ///
    /// # let store = MemoryStore::new();
    /// # let product = ProductId::from(Uuid::from_u128(1));
    /// let t0 = Timestamp::from_millis(0);
    /// # pollster::block_on(store.create_item(product, 5, t0))?;
    /// let order = OrderId::from(Uuid::from_u128(2));
    /// let hold = pollster::block_on(store.reserve(order, product, 1, Ttl::default(), t0))?;
    /// pollster::block_on(store.confirm(hold.id(), t0))?;
    ///
    /// // An hour later, forget what finished before then.
    /// assert_eq!(store.purge_finished(t0.plus_ms(3_600_000), 1_000), 1);
    /// assert!(store.reservation_sync(hold.id()).is_none());
    /// assert_eq!(store.footprint().reservations, 0);
    /// # Ok::<(), inventory_core::Error>(())
    /// ```
    pub fn purge_finished(&self, before: Timestamp, limit: usize) -> usize {
        let limit = limit.min(PURGE_BATCH_MAX);
        let mut purged = 0;
        for entry in self.items.iter() {
            if purged == limit {
                break;
            }
            let mut cell = entry.value().lock();
            let product = cell.product_id;
            for reservation in cell.purge_finished(before, limit - purged) {
                self.index
                    .forget(reservation.id(), reservation.order_id(), product);
                purged += 1;
            }
            cell.purge_ledger(before, PURGE_BATCH_MAX);
        }
        purged
    }

    /// Up to `limit.min(OUTBOX_BATCH_MAX)` unpublished outbox entries, lowest
    /// sequence first. They stay until [`MemoryStore::mark_published_sync`]
    /// (so a relay that fails to publish reads them again).
    ///
    /// ```
    /// use inventory_core::{InventoryStoreExt, ProductId, Timestamp, Uuid};
    /// use inventory_memory::MemoryStore;
    ///
    /// let store = MemoryStore::new();
    /// pollster::block_on(store.create_item(ProductId::from(Uuid::from_u128(1)), 5, Timestamp::from_millis(0)))?;
    ///
    /// let page = store.unpublished_sync(100);
    /// assert_eq!(store.unpublished_sync(100), page); // read again until marked
    /// // ... publish the page to a broker, then:
    /// let sequences: Vec<u64> = page.iter().map(|e| e.sequence).collect();
    /// store.mark_published_sync(&sequences);
    /// assert!(store.unpublished_sync(100).is_empty());
    /// # Ok::<(), inventory_core::Error>(())
    /// ```
    pub fn unpublished_sync(&self, limit: usize) -> Vec<OutboxEntry> {
        self.outbox.take(limit, false)
    }

    /// Forgets the outbox entries with these sequence numbers (see
    /// [`MemoryStore::unpublished_sync`] for the relay loop).
    ///
    /// ```
    /// # use inventory_core::{InventoryStoreExt, ProductId, Timestamp, Uuid};
    /// # let store = inventory_memory::MemoryStore::new();
    /// # pollster::block_on(store.create_item(ProductId::from(Uuid::from_u128(1)), 5, Timestamp::from_millis(0)))?;
    /// let first = store.unpublished_sync(1)[0].sequence;
    /// store.mark_published_sync(&[first]);
    /// assert_eq!(store.outbox_len(), 0);
    /// # Ok::<(), inventory_core::Error>(())
    /// ```
    pub fn mark_published_sync(&self, sequences: &[u64]) {
        self.outbox.remove(sequences);
    }

    /// Takes up to `limit.min(OUTBOX_BATCH_MAX)` outbox entries, lowest
    /// sequence first, and forgets them: for an embedder that hands events on
    /// in process and has nothing to retry.
    ///
    /// ```
    /// use inventory_core::{InventoryStoreExt, OrderId, ProductId, Timestamp, Ttl, Uuid};
    /// use inventory_memory::MemoryStore;
    ///
    /// let (store, now) = (MemoryStore::new(), Timestamp::from_millis(0));
    /// let product = ProductId::from(Uuid::from_u128(1));
    /// pollster::block_on(store.create_item(product, 1, now))?;
    /// pollster::block_on(store.reserve(OrderId::from(Uuid::from_u128(2)), product, 1, Ttl::default(), now))?;
    ///
    /// let kinds: Vec<&str> = store.drain(100).iter().map(|e| e.event.payload.event_type()).collect();
    /// assert_eq!(kinds, ["inventory.stock.adjusted", "inventory.stock.reserved", "inventory.stock.depleted"]);
    /// assert!(store.drain(100).is_empty()); // handed on once
    /// # Ok::<(), inventory_core::Error>(())
    /// ```
    pub fn drain(&self, limit: usize) -> Vec<OutboxEntry> {
        self.outbox.take(limit, true)
    }

    /// Number of outbox entries not yet drained or marked published.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// How much the store holds now: what its memory grows with.
    ///
    /// ```
    /// use inventory_core::{InventoryStoreExt, OrderId, ProductId, Timestamp, Ttl, Uuid};
    /// use inventory_memory::{Footprint, MemoryStore};
    ///
    /// let (store, now) = (MemoryStore::new(), Timestamp::from_millis(0));
    /// let product = ProductId::from(Uuid::from_u128(1));
    /// pollster::block_on(store.create_item(product, 5, now))?;
    /// pollster::block_on(store.reserve(OrderId::from(Uuid::from_u128(2)), product, 1, Ttl::default(), now))?;
    ///
    /// // One product, one hold, the creation in the ledger, two events not handed on.
    /// let expected = Footprint { products: 1, reservations: 1, ledger_entries: 1, outbox_entries: 2 };
    /// assert_eq!(store.footprint(), expected);
    /// # Ok::<(), inventory_core::Error>(())
    /// ```
    pub fn footprint(&self) -> Footprint {
        let ledger_entries = self
            .items
            .iter()
            .map(|e| e.value().lock().ledger.len())
            .sum();
        Footprint {
            products: self.items.len(),
            reservations: self.index.reservations.len(),
            ledger_entries,
            outbox_entries: self.outbox.len(),
        }
    }

    /// Checks the store's internal indexes and every item invariant.
    ///
    /// # Panics
    /// When an index disagrees with the data or an invariant is broken (a bug
    /// in this crate or in `inventory-core`). Meant for tests and debugging: it
    /// locks every item in turn.
    pub fn assert_consistent(&self) {
        let mut stored = 0;
        for entry in self.items.iter() {
            let cell = entry.value().lock();
            assert_eq!(cell.product_id, *entry.key());
            cell.check();
            for (slot, reservation) in cell.reservations() {
                let id = reservation.id();
                let place = Place {
                    product: cell.product_id,
                    slot,
                };
                assert_eq!(self.index.place(id), Some(place), "id index of {id}");
                assert_eq!(
                    self.index.find(reservation.order_id(), cell.product_id),
                    Some(id),
                    "order index of {id}"
                );
                stored += 1;
            }
        }
        // With no reserve in flight, every id in the index is stored.
        assert_eq!(self.index.reservations.len(), stored, "id index size");
        let lines: usize = self.index.orders.iter().map(|o| o.iter().count()).sum();
        assert_eq!(lines, stored, "order index size");
    }
}

/// The product of each reservation a batch's reserves would make.
fn reserved_in(batch: &[(Command, Meta)]) -> HashMap<ReservationId, ProductId> {
    batch
        .iter()
        .filter_map(|(command, _)| match command {
            Command::Reserve(reserve) => Some(reserve.lines()),
            _ => None,
        })
        .flatten()
        .map(|line| (line.reservation_id, line.product_id))
        .collect()
}

/// The locked cell of `product`, if the command locked one.
fn find<'c>(cells: &'c [Guard<'_>], product: ProductId) -> Option<&'c ItemCell> {
    cells
        .binary_search_by_key(&product, |cell| cell.product_id)
        .ok()
        .map(|i| &*cells[i])
}
