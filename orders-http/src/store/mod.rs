//! The storage port of orders (orders, lines, saga state, idempotency keys,
//! payments, refunds, the catalog) and its two adapters: [`MemoryStore`]
//! (the default) and `PgOrderStore` (PostgreSQL, feature `postgres`). Both
//! pass the same suite
//! (`store::suite`, feature `testkit`).

use std::future::Future;
use std::pin::Pin;

use event_bus::memory_outbox::EnvelopeOutbox;
use event_bus::Envelope;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::Product;
use crate::domain::{IdempotencyKey, Order, OrderId, OrderStatus, ProductId, UserId};
use crate::saga::SagaState;

mod memory;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "postgres")]
mod pg_rows;
#[cfg(feature = "testkit")]
pub mod suite;

pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use pg::{
    PgOrderOptions, PgOrderStore, ACQUIRE_TIMEOUT_DEFAULT_MS, HOLD_OWNER_SQL, MIGRATOR,
    POOL_SIZE_DEFAULT, SCHEMA_NAME_LEN_MAX,
};

/// A boxed, sendable future: the return type of every port method, so the
/// service can hold any store behind `Arc<dyn OrderStore>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store operation failed for a reason the caller cannot fix by changing
/// its request.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is overloaded.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A product with this id already exists.
    #[error("product {0} already exists")]
    ProductExists(ProductId),
    /// The saga's claim is held by another owner (or by nobody): a stale
    /// owner's write is refused, so it cannot overwrite what the instance that
    /// took the saga over saved.
    #[error("the saga of order {0} is no longer claimed by this owner")]
    LeaseLost(OrderId),
    /// Anything else (a bug or corrupt data); logged, never shown to clients.
    #[error("store failure: {0}")]
    Internal(String),
}

/// An order with its saga progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRecord {
    /// The order.
    pub order: Order,
    /// Its saga.
    pub saga: SagaState,
    /// Whether the customer asked to cancel it.
    pub cancel_requested: bool,
    /// Its inventory holds as inventory's events reported them, by product.
    pub holds: Vec<Hold>,
}

/// Where an inventory hold stands, as inventory's events report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldStatus {
    /// Units are held (`inventory.stock.reserved`).
    Reserved,
    /// Units are sold (`inventory.stock.confirmed`).
    Confirmed,
    /// Units were given back by a caller (`inventory.stock.released`).
    Released,
    /// Units were given back because the hold ran out (`inventory.stock.expired`).
    Expired,
}

impl HoldStatus {
    /// The snake_case spelling (also the stored text).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Confirmed => "confirmed",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }

    /// Parses the snake_case spelling.
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Reserved,
            Self::Confirmed,
            Self::Released,
            Self::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Whether the units went back to stock (the hold is lost to the order).
    pub fn is_lost(self) -> bool {
        matches!(self, Self::Released | Self::Expired)
    }
}

/// One inventory hold of an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// Inventory's reservation.
    pub reservation_id: Uuid,
    /// The product held.
    pub product_id: ProductId,
    /// Units held.
    pub quantity: u32,
    /// Where it stands.
    pub status: HoldStatus,
    /// When the event that set this status happened, in Unix ms.
    pub updated_at_ms: i64,
}

/// An inventory event about a hold, to apply once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HoldEvent {
    /// The event's id (deduplicated per consumer).
    pub event_id: Uuid,
    /// The order id inventory knows (the saga's `inventory_order_id`).
    pub inventory_order_id: Uuid,
    /// The hold as the event describes it.
    pub hold: Hold,
}

/// What [`OrderStore::apply_hold_event`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldApplied {
    /// The event was applied before; nothing changed.
    Duplicate,
    /// No order's current reservation attempt has this inventory order id
    /// (another service's hold, or an earlier attempt); recorded as seen.
    UnknownOrder,
    /// The hold is recorded on the order.
    Applied {
        /// The order.
        order_id: OrderId,
        /// The order is pending and lost one of the holds its saga relies on
        /// (expired or released): the saga's expired-hold policy applies.
        hands_to_saga: bool,
    },
}

/// Where a store keeps the `order.*` events it writes with each change, for
/// the relay to drain.
#[derive(Clone, Debug)]
pub enum OrdersOutbox {
    /// The memory store's queue.
    Memory(EnvelopeOutbox),
    /// The `event_outbox` table reachable through this pool (feature
    /// `postgres`).
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// Whether `hold` is one the pending saga `saga` relies on: a reservation of
/// its current attempt that is not confirmed yet.
pub(crate) fn saga_relies_on(saga: &SagaState, event: &HoldEvent) -> bool {
    saga.inventory_order_id == event.inventory_order_id
        && saga.held_unconfirmed().contains(&event.hold.reservation_id)
}

/// What [`OrderStore::place`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placed {
    /// The order is new and stored.
    Created,
    /// The user already used this idempotency key: here is that order;
    /// nothing was stored.
    Existing(Box<OrderRecord>),
}

/// One page of a user's orders, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The orders of the page.
    pub records: Vec<OrderRecord>,
    /// How many orders the user has in all.
    pub total: u64,
}

/// A payment taken for an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRecord {
    /// The order.
    pub order_id: OrderId,
    /// The provider's payment id.
    pub payment_id: String,
    /// Amount, in minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
    /// When, in Unix ms.
    pub at_ms: i64,
}

/// A refund made for an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundRecord {
    /// The order.
    pub order_id: OrderId,
    /// The provider's refund id.
    pub refund_id: String,
    /// The payment refunded.
    pub payment_id: String,
    /// Amount, in minor units.
    pub amount_minor: i64,
    /// When, in Unix ms.
    pub at_ms: i64,
}

/// Where orders live. Every method is atomic on its own.
pub trait OrderStore: Send + Sync + 'static {
    /// Stores a new order, its lines, its saga, (if the order has one) its
    /// idempotency key and its `order.created` event, in one step. When the
    /// user already used that key, stores nothing and returns the existing
    /// order.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn place<'a>(
        &'a self,
        order: &'a Order,
        saga: &'a SagaState,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<Placed, StoreError>>;

    /// The order a user placed with an idempotency key, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn by_key<'a>(
        &'a self,
        user: &'a UserId,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Option<OrderRecord>, StoreError>>;

    /// One order with its saga.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn get(&self, id: OrderId) -> BoxFuture<'_, Result<Option<OrderRecord>, StoreError>>;

    /// A user's orders, newest first, skipping `offset` and returning at most
    /// `limit`.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn list<'a>(
        &'a self,
        user: &'a UserId,
        offset: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page, StoreError>>;

    /// Saves saga progress (while the order is pending) for `owner`, the
    /// holder of the saga's claim (see [`OrderStore::claim`]): the claim is
    /// the fence of every saga write.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when `owner` does not hold the claim of a
    /// pending order (nothing is saved); [`StoreError`] when the store fails.
    fn save_saga<'a>(
        &'a self,
        saga: &'a SagaState,
        owner: Uuid,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Sets the final status of a pending order, saves its final saga state
    /// and writes `event` (`order.confirmed` or `order.cancelled`), in one
    /// step, for `owner`, the holder of the saga's claim. Returns false (and
    /// changes nothing) when the order was not pending.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when `owner` does not hold the claim of the
    /// pending order (nothing changes); [`StoreError`] when the store fails.
    fn finish<'a>(
        &'a self,
        saga: &'a SagaState,
        owner: Uuid,
        status: OrderStatus,
        now_ms: i64,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Applies an inventory event about a hold, once per `(consumer,
    /// event_id)`: records the event as processed and the hold's status on
    /// the order whose current reservation attempt it belongs to, in one
    /// step. A hold that is confirmed, released or expired is never set back
    /// to reserved.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (nothing is recorded then).
    fn apply_hold_event<'a>(
        &'a self,
        consumer: &'a str,
        event: &'a HoldEvent,
    ) -> BoxFuture<'a, Result<HoldApplied, StoreError>>;

    /// The outbox the relay drains.
    fn outbox(&self) -> OrdersOutbox;

    /// Forgets what is kept only to deduplicate and route events: the record
    /// of inventory events applied before `before_ms` (PostgreSQL: processed
    /// then; memory: carrying a hold change from then), and the saga claims
    /// and inventory order ids of orders that finished before it. At most
    /// `limit` records per call; returns how many it forgot. An event
    /// redelivered after its record is forgotten would apply again, so
    /// `before_ms` lies further back than any redelivery (see
    /// `EVENT_DEDUP_RETENTION_SECS`).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn prune(&self, before_ms: i64, limit: usize) -> BoxFuture<'_, Result<usize, StoreError>>;

    /// Marks a pending order as asked to cancel. Returns false when it is not
    /// pending (or does not exist).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn request_cancel(&self, id: OrderId, now_ms: i64) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Claims the saga of `id` for `owner` until `now_ms + lease_ms`, unless
    /// another owner holds a claim that has not run out. Returns whether
    /// `owner` holds it now (false also when the order does not exist).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn claim(
        &self,
        id: OrderId,
        owner: Uuid,
        now_ms: i64,
        lease_ms: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Gives up `owner`'s claims on `ids` (on a graceful stop).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn unclaim<'a>(
        &'a self,
        ids: &'a [OrderId],
        owner: Uuid,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Ids of pending orders, ascending, after `after`, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn pending(
        &self,
        after: Option<OrderId>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<OrderId>, StoreError>>;

    /// Records a payment; a second record for the same order changes nothing.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn record_payment<'a>(&'a self, p: &'a PaymentRecord) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Records a refund; a second record for the same order changes nothing.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn record_refund<'a>(&'a self, r: &'a RefundRecord) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The payment and refund of an order, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    #[allow(clippy::type_complexity)]
    fn money(
        &self,
        id: OrderId,
    ) -> BoxFuture<'_, Result<(Option<PaymentRecord>, Option<RefundRecord>), StoreError>>;

    /// Every product, by id.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn products(&self) -> BoxFuture<'_, Result<Vec<Product>, StoreError>>;

    /// The products with these ids (missing ones are left out).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn products_by_id<'a>(
        &'a self,
        ids: &'a [ProductId],
    ) -> BoxFuture<'a, Result<Vec<Product>, StoreError>>;

    /// Adds a product.
    ///
    /// # Errors
    /// [`StoreError::ProductExists`] when the id is taken.
    fn create_product<'a>(&'a self, p: &'a Product) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Replaces a product. Returns false when there is none with its id.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn update_product<'a>(&'a self, p: &'a Product) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Adds the products whose ids are not taken yet (demo seeding).
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    fn seed_products<'a>(&'a self, ps: &'a [Product]) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Whether the store answers (readiness).
    ///
    /// # Errors
    /// [`StoreError`] when it does not.
    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}
