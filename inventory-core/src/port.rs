//! The storage port: what the servers and embedders need from a store. Adapters
//! (`inventory-memory`, `inventory-sqlx`) implement it by loading state, calling
//! [`crate::decide()`] and committing the result atomically.

use std::future::Future;

use crate::command::{Command, Outcome};
use crate::error::Error;
use crate::event::OutboxEntry;
use crate::ids::{OrderId, ProductId, ReservationId};
use crate::item::{Adjustment, InventoryItem};
use crate::reservation::Reservation;
use crate::value::Timestamp;

/// Most products one bulk availability read may name.
pub const AVAILABILITY_BATCH_MAX: usize = 100;

/// Most ledger entries one read returns.
pub const ADJUSTMENTS_PAGE_MAX: usize = 100;

/// Most outbox entries one read returns.
pub const OUTBOX_BATCH_MAX: usize = 1_000;

/// Most commands one [`InventoryStore::execute_batch`] call may hold. A batch
/// is one atomic step (one transaction in a SQL store), so this bounds how
/// long it holds its locks and how large its statements grow: at
/// [`crate::LINES_MAX`] lines per reserve, a full batch touches at most
/// `BATCH_MAX * LINES_MAX` items.
pub const BATCH_MAX: usize = 1_000;

/// The answers of a batch: one per command, in the order given.
pub type BatchResults = Vec<Result<Outcome, Error>>;

/// The context of one change: when it is decided and which request caused it.
///
/// The methods of [`crate::InventoryStoreExt`] take a bare [`Timestamp`] too
/// (it converts to a `Meta` with no correlation id).
///
/// ```
/// use inventory_core::{Meta, Timestamp};
///
/// let now = Timestamp::from_millis(1_000);
/// // The request id goes onto every event of the change.
/// let meta = Meta { correlation_id: Some("req-42".to_owned()), ..Meta::at(now) };
/// assert_eq!(meta.now, now);
/// assert_eq!(Meta::from(now), Meta::at(now));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// The instant the change is decided at (stores never read a clock of
    /// their own for rules).
    pub now: Timestamp,
    /// The id of the request that caused the change; copied onto its events.
    pub correlation_id: Option<String>,
}

impl Meta {
    /// A context at `now` with no correlation id.
    pub fn at(now: Timestamp) -> Self {
        Self {
            now,
            correlation_id: None,
        }
    }
}

/// Durable (or embedded) home of items, reservations, the ledger and the outbox.
///
/// Every method is safe to call from any number of tasks at once. Write code
/// once for every store by taking `S: InventoryStore` (or a
/// [`crate::SharedStore`] when the store is picked at run time); the common
/// changes read best through [`crate::InventoryStoreExt`].
///
/// ```
/// use inventory_core::{Error, InventoryStore, OrderId};
///
/// /// Units an order holds now, over every product, on any store.
/// async fn units_held<S: InventoryStore>(store: &S, order: OrderId) -> Result<u64, Error> {
///     let reservations = store.reservations_of_order(order).await?;
///     let pending = reservations.iter().filter(|r| !r.status().is_terminal());
///     Ok(pending.map(|r| r.quantity()).sum())
/// }
/// ```
pub trait InventoryStore: Send + Sync + 'static {
    /// Runs one command atomically: its changes, events and ledger entries are
    /// committed together or not at all.
    ///
    /// # Errors
    /// The business errors of [`Error`], and [`Error::Unavailable`],
    /// [`Error::Contention`] or [`Error::Storage`] when the store failed (then
    /// nothing was committed).
    fn execute(
        &self,
        command: Command,
        meta: &Meta,
    ) -> impl Future<Output = Result<Outcome, Error>> + Send;

    /// Runs several commands as if one after another, in the order given, and
    /// commits them in one atomic step: one answer per command, in order.
    ///
    /// A business error of one command (sold out, conflict, expired) is that
    /// command's answer and does not touch the others; later commands see
    /// what earlier ones did. Each command's events carry its own
    /// `meta.correlation_id` and each is decided at its own `meta.now`. A batch
    /// of one means exactly what [`InventoryStore::execute`] means.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `batch` when it holds more than
    /// [`BATCH_MAX`] commands; [`Error::Unavailable`], [`Error::Contention`]
    /// or [`Error::Storage`] when the store failed: then no command of the
    /// batch was committed (but when a commit's answer was lost, whether it
    /// happened is unknown, as for a single command).
    ///
    /// # Example
    ///
    /// ```
    /// use inventory_core::*;
    ///
    /// /// Two buyers for one unit in one batch: the first in line gets it.
    /// async fn two_buyers<S: InventoryStore>(store: &S, product: ProductId) {
    ///     let meta = Meta::at(Timestamp::from_millis(1_000));
    ///     let buyer = |n: u128| {
    ///         let line = ReserveLine {
    ///             product_id: product,
    ///             quantity: Quantity::new(1).unwrap(),
    ///             reservation_id: ReservationId::from_uuid(uuid::Uuid::from_u128(n)),
    ///         };
    ///         let order = OrderId::from_uuid(uuid::Uuid::from_u128(n));
    ///         (Command::Reserve(Reserve::single(order, line, Ttl::default())), meta.clone())
    ///     };
    ///     let answers = store.execute_batch(vec![buyer(1), buyer(2)]).await.unwrap();
    ///     assert!(answers[0].is_ok());
    ///     assert!(matches!(answers[1], Err(Error::InsufficientStock { .. })));
    /// }
    /// ```
    fn execute_batch(
        &self,
        batch: Vec<(Command, Meta)>,
    ) -> impl Future<Output = Result<BatchResults, Error>> + Send;

    /// The item of one product.
    ///
    /// # Errors
    /// [`Error::Unavailable`] or [`Error::Storage`] when the store failed.
    fn item(
        &self,
        product_id: ProductId,
    ) -> impl Future<Output = Result<Option<InventoryItem>, Error>> + Send;

    /// The items of several products (unknown ones are left out), in the order
    /// asked. At most [`AVAILABILITY_BATCH_MAX`] ids.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for too many ids; [`Error::Unavailable`] or
    /// [`Error::Storage`] when the store failed.
    fn items(
        &self,
        product_ids: &[ProductId],
    ) -> impl Future<Output = Result<Vec<InventoryItem>, Error>> + Send;

    /// One reservation.
    ///
    /// # Errors
    /// [`Error::Unavailable`] or [`Error::Storage`] when the store failed.
    fn reservation(
        &self,
        id: ReservationId,
    ) -> impl Future<Output = Result<Option<Reservation>, Error>> + Send;

    /// Every reservation of an order, in any state, ordered by product id.
    ///
    /// # Errors
    /// [`Error::Unavailable`] or [`Error::Storage`] when the store failed.
    fn reservations_of_order(
        &self,
        order_id: OrderId,
    ) -> impl Future<Output = Result<Vec<Reservation>, Error>> + Send;

    /// Every reservation of a product, in any state, ordered by id. For
    /// consistency checks and operators; not for hot paths.
    ///
    /// # Errors
    /// [`Error::Unavailable`] or [`Error::Storage`] when the store failed.
    fn reservations_of_product(
        &self,
        product_id: ProductId,
    ) -> impl Future<Output = Result<Vec<Reservation>, Error>> + Send;

    /// The newest ledger entries of a product, newest first, at most
    /// `limit.min(ADJUSTMENTS_PAGE_MAX)`.
    ///
    /// # Errors
    /// [`Error::Unavailable`] or [`Error::Storage`] when the store failed.
    fn adjustments(
        &self,
        product_id: ProductId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Adjustment>, Error>> + Send;

    /// Expires up to `limit` (at most [`crate::EXPIRE_BATCH_MAX`]) pending
    /// reservations whose hold ended at or before `meta.now`, and returns how
    /// many it expired. Several sweepers may run at once: each reservation is
    /// expired exactly once. A store may skip items another sweeper holds, so
    /// 0 means "nothing this sweeper could take", not "nothing due".
    ///
    /// # Errors
    /// [`Error::Unavailable`] or [`Error::Storage`] when the store failed.
    fn expire_due(
        &self,
        meta: &Meta,
        limit: usize,
    ) -> impl Future<Output = Result<usize, Error>> + Send;

    /// Forgets up to `limit` finished reservations (and ledger entries) from
    /// before `before`, for a store whose memory would otherwise grow with
    /// every order; returns how many reservations it forgot. What is forgotten is unknown
    /// afterwards: a confirm or release repeated later gets
    /// [`Error::ReservationNotFound`], a repeated reserve or keyed adjustment
    /// happens anew; so `before` should lie further back than any retry or
    /// redelivery. The default keeps everything (a database keeps its history
    /// on disk, for operators to archive).
    ///
    /// # Errors
    /// [`Error::Unavailable`] or [`Error::Storage`] when the store failed.
    fn purge_finished(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<usize, Error>> + Send {
        let _ = (before, limit);
        async { Ok(0) }
    }
}

/// The events a store has committed and not yet handed on, in commit order.
///
/// A relay reads a page, hands it on, then marks it published: an entry is
/// handed on at least once (again after a crash between the two), so
/// consumers deduplicate on [`OutboxEntry::event_id`].
///
/// ```
/// use inventory_core::{Error, Outbox, OutboxEntry, OUTBOX_BATCH_MAX};
///
/// /// Hands one page of events to `publish`; returns how many it handed on.
/// async fn relay_once<O: Outbox>(outbox: &O, publish: impl Fn(&OutboxEntry)) -> Result<usize, Error> {
///     let entries = outbox.unpublished(OUTBOX_BATCH_MAX).await?;
///     entries.iter().for_each(&publish);
///     let sequences: Vec<u64> = entries.iter().map(|e| e.sequence).collect();
///     outbox.mark_published(&sequences).await?;
///     Ok(entries.len())
/// }
/// ```
pub trait Outbox: Send + Sync + 'static {
    /// Up to `limit.min(OUTBOX_BATCH_MAX)` unpublished entries, lowest sequence
    /// first.
    ///
    /// # Errors
    /// [`Error::Unavailable`] or [`Error::Storage`] when the store failed.
    fn unpublished(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, Error>> + Send;

    /// Marks entries as published so they are not handed out again.
    ///
    /// # Errors
    /// [`Error::Unavailable`] or [`Error::Storage`] when the store failed.
    fn mark_published(&self, sequences: &[u64]) -> impl Future<Output = Result<(), Error>> + Send;
}

/// Checks the length of a batch.
///
/// # Errors
/// [`Error::InvalidInput`] on field `batch` when longer than [`BATCH_MAX`].
pub fn check_batch<T>(batch: &[T]) -> Result<(), Error> {
    if batch.len() > BATCH_MAX {
        return Err(Error::InvalidInput {
            field: "batch",
            reason: format!("must hold at most {BATCH_MAX} commands"),
        });
    }
    Ok(())
}

/// Checks the length of a bulk read.
///
/// # Errors
/// [`Error::InvalidInput`] on field `product_ids` when empty or longer than
/// [`AVAILABILITY_BATCH_MAX`].
pub fn check_bulk(product_ids: &[ProductId]) -> Result<(), Error> {
    if product_ids.is_empty() || product_ids.len() > AVAILABILITY_BATCH_MAX {
        return Err(Error::InvalidInput {
            field: "product_ids",
            reason: format!("must name 1 to {AVAILABILITY_BATCH_MAX} products"),
        });
    }
    Ok(())
}
