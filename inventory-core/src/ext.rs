//! The common calls of the storage port as plain methods: each builds the
//! [`Command`], runs it through [`InventoryStore::execute`] and returns what it
//! made, so a caller reads `store.reserve(order, product, 2, ttl, now)` rather
//! than a nested command and an [`Outcome`] to take apart.
//!
//! The methods exist on every store (a blanket implementation), including
//! [`crate::SharedStore`]. For a correlation id on the events, pass a [`Meta`]
//! where the examples pass a [`Timestamp`]; for several commands in one atomic
//! step, or a reservation id of your own, use the commands directly.

use std::future::Future;

use crate::command::{Command, Outcome, Reserve, ReserveLine};
use crate::error::Error;
use crate::ids::{OrderId, ProductId, ReservationId};
use crate::item::InventoryItem;
use crate::port::{InventoryStore, Meta};
use crate::reservation::Reservation;
use crate::value::{Actor, Quantity, Reason, StockDelta, StockLevel, Timestamp, Ttl};

impl From<Timestamp> for Meta {
    /// A context at that instant with no correlation id.
    fn from(now: Timestamp) -> Self {
        Meta::at(now)
    }
}

/// The common calls as methods on any [`InventoryStore`].
///
/// Counts are `u64` and validated here (a zero quantity or one above
/// [`crate::QUANTITY_MAX`] is [`Error::InvalidQuantity`]). `at` is the instant
/// the change is decided at, a [`Timestamp`] or a whole [`Meta`]: the library
/// never reads a clock, so the caller passes `Timestamp::from(SystemTime::now())`.
///
/// # Example
///
/// ```
/// use inventory_core::{InventoryStore, InventoryStoreExt, OrderId, ProductId, Timestamp, Ttl};
///
/// async fn sell_one<S: InventoryStore>(store: &S, product: ProductId) -> Result<(), inventory_core::Error> {
///     let now = Timestamp::from_millis(1_000);
///     let order = OrderId::from_uuid(uuid::Uuid::from_u128(7));
///     let held = store.reserve(order, product, 1, Ttl::default(), now).await?;
///     store.confirm(held.id(), now).await?;
///     Ok(())
/// }
/// ```
pub trait InventoryStoreExt: InventoryStore {
    /// Creates the item of a product with `quantity` units on hand.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`], [`Error::InvalidQuantity`] above
    /// [`crate::STOCK_MAX`], or the store's error.
    fn create_item(
        &self,
        product_id: ProductId,
        quantity: u64,
        at: impl Into<Meta> + Send,
    ) -> impl Future<Output = Result<InventoryItem, Error>> + Send {
        let meta = at.into();
        async move {
            let command = Command::CreateItem {
                product_id,
                quantity: StockLevel::new(quantity)?,
                actor: Actor::system(),
            };
            match self.execute(command, &meta).await? {
                Outcome::Created(item) => Ok(item),
                other => Err(unexpected(&other)),
            }
        }
    }

    /// Holds `quantity` units of one product for an order, for `ttl`. The
    /// reservation's id is [`ReservationId::for_line`]`(order_id, product_id)`;
    /// asking again for the same order and product answers the same
    /// reservation (an idempotent repeat).
    ///
    /// # Errors
    /// [`Error::InsufficientStock`], [`Error::ProductNotFound`],
    /// [`Error::IdempotencyConflict`] (the order holds another quantity of
    /// the product), [`Error::InvalidQuantity`], or the store's error.
    fn reserve(
        &self,
        order_id: OrderId,
        product_id: ProductId,
        quantity: u64,
        ttl: Ttl,
        at: impl Into<Meta> + Send,
    ) -> impl Future<Output = Result<Reservation, Error>> + Send {
        let meta = at.into();
        async move {
            let mut held = self
                .reserve_lines(order_id, &[(product_id, quantity)], ttl, meta)
                .await?;
            held.pop().ok_or_else(|| Error::Storage {
                reason: "a reserve of one line answered no reservation".into(),
            })
        }
    }

    /// Holds several products for one order, all or nothing: one reservation
    /// per `(product, quantity)` line, in the order given, each with the id
    /// [`ReservationId::for_line`] gives.
    ///
    /// # Errors
    /// As [`InventoryStoreExt::reserve`] for the first line that fails (then
    /// nothing is held), and [`Error::InvalidInput`] for no lines, more than
    /// [`crate::LINES_MAX`] or a product named twice.
    fn reserve_lines(
        &self,
        order_id: OrderId,
        lines: &[(ProductId, u64)],
        ttl: Ttl,
        at: impl Into<Meta> + Send,
    ) -> impl Future<Output = Result<Vec<Reservation>, Error>> + Send {
        let meta = at.into();
        let lines: Result<Vec<ReserveLine>, Error> = lines
            .iter()
            .map(|&(product_id, quantity)| {
                Ok(ReserveLine {
                    product_id,
                    quantity: Quantity::new(quantity)?,
                    reservation_id: ReservationId::for_line(order_id, product_id),
                })
            })
            .collect();
        async move {
            let reserve = Reserve::new(order_id, lines?, ttl)?;
            match self.execute(Command::Reserve(reserve), &meta).await? {
                Outcome::Reserved { reservations, .. } => Ok(reservations),
                other => Err(unexpected(&other)),
            }
        }
    }

    /// Sells the units of a pending reservation (a repeat answers it as it is).
    ///
    /// # Errors
    /// [`Error::ReservationNotFound`], [`Error::InvalidTransition`] (released
    /// or expired), [`Error::ReservationExpired`], or the store's error.
    fn confirm(
        &self,
        reservation_id: ReservationId,
        at: impl Into<Meta> + Send,
    ) -> impl Future<Output = Result<Reservation, Error>> + Send {
        settle(self, Command::Confirm { reservation_id }, at.into())
    }

    /// Gives back the units of a pending reservation (a repeat answers it as
    /// it is).
    ///
    /// # Errors
    /// [`Error::ReservationNotFound`], [`Error::InvalidTransition`]
    /// (confirmed), or the store's error.
    fn release(
        &self,
        reservation_id: ReservationId,
        at: impl Into<Meta> + Send,
    ) -> impl Future<Output = Result<Reservation, Error>> + Send {
        settle(self, Command::Release { reservation_id }, at.into())
    }

    /// Changes the quantity on hand by `delta` (negative removes), recording
    /// `reason` in the ledger; returns the item after the change.
    ///
    /// # Errors
    /// [`Error::ProductNotFound`], [`Error::BelowReserved`],
    /// [`Error::AboveStockMax`], [`Error::InvalidQuantity`] for 0 or a
    /// magnitude above [`crate::STOCK_MAX`], [`Error::InvalidInput`] for an
    /// empty or too long reason, or the store's error.
    fn adjust(
        &self,
        product_id: ProductId,
        delta: i64,
        reason: &str,
        at: impl Into<Meta> + Send,
    ) -> impl Future<Output = Result<InventoryItem, Error>> + Send {
        let meta = at.into();
        let command = StockDelta::new(delta).and_then(|delta| {
            Ok(Command::Adjust {
                product_id,
                delta,
                reason: Reason::new(reason)?,
                actor: Actor::system(),
                key: None,
            })
        });
        async move {
            match self.execute(command?, &meta).await? {
                Outcome::Item { item, .. } => Ok(item),
                other => Err(unexpected(&other)),
            }
        }
    }

    /// Units of a product that can be reserved now (`None` for an unknown
    /// product). Overdue holds not yet swept still count as held.
    ///
    /// # Errors
    /// The store's error.
    fn availability(
        &self,
        product_id: ProductId,
    ) -> impl Future<Output = Result<Option<u64>, Error>> + Send {
        async move { Ok(self.item(product_id).await?.map(|item| item.available())) }
    }
}

impl<S: InventoryStore + ?Sized> InventoryStoreExt for S {}

/// Runs a confirm or a release and answers the reservation as it is after.
async fn settle<S: InventoryStore + ?Sized>(
    store: &S,
    command: Command,
    meta: Meta,
) -> Result<Reservation, Error> {
    match store.execute(command, &meta).await? {
        Outcome::Reservation { reservation, .. } => Ok(reservation),
        other => Err(unexpected(&other)),
    }
}

/// A store answered a command with an outcome of another command: a broken
/// store, reported as a storage failure rather than a panic.
fn unexpected(outcome: &Outcome) -> Error {
    Error::Storage {
        reason: format!("the store answered an outcome of another command: {outcome:?}"),
    }
}
