//! Domain events: what changed, produced by the use cases in the same atomic
//! step as the change, and carried to consumers through each store's outbox.

use uuid::Uuid;

use crate::ids::{OrderId, ProductId, ReservationId};
use crate::value::{Reason, Timestamp};

/// Something that happened to the stock of one product.
///
/// [`crate::decide()`] records one or more per change; consumers read them
/// from an [`crate::Outbox`].
///
/// ```
/// use inventory_core::*;
///
/// let product = ProductId::from(Uuid::from_u128(1));
/// let mut state = Snapshot::new();
/// let create = Command::CreateItem { product_id: product, quantity: StockLevel::new(5)?, actor: Actor::system() };
/// decide(&mut state, &create, Timestamp::from_millis(0))?;
///
/// // A new item is an adjustment from nothing to its first stock.
/// let events = state.into_changes().events;
/// match &events[0].payload {
///     EventPayload::Adjusted { delta, quantity_after, .. } => assert_eq!((*delta, *quantity_after), (5, 5)),
///     other => panic!("unexpected event {other:?}"),
/// }
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "kind", rename_all = "snake_case"))]
#[non_exhaustive]
pub enum EventPayload {
    /// Units were put on hold for an order.
    Reserved {
        /// The new reservation.
        reservation_id: ReservationId,
        /// Its order.
        order_id: OrderId,
        /// The product.
        product_id: ProductId,
        /// Units held.
        quantity: u64,
        /// When the hold ends.
        expires_at: Timestamp,
    },
    /// Held units were sold: they left the quantity on hand.
    Confirmed {
        /// The reservation.
        reservation_id: ReservationId,
        /// Its order.
        order_id: OrderId,
        /// The product.
        product_id: ProductId,
        /// Units sold.
        quantity: u64,
    },
    /// Held units were given back by the caller.
    Released {
        /// The reservation.
        reservation_id: ReservationId,
        /// Its order.
        order_id: OrderId,
        /// The product.
        product_id: ProductId,
        /// Units given back.
        quantity: u64,
    },
    /// Held units were given back because the hold ran out.
    Expired {
        /// The reservation.
        reservation_id: ReservationId,
        /// Its order.
        order_id: OrderId,
        /// The product.
        product_id: ProductId,
        /// Units given back.
        quantity: u64,
    },
    /// The quantity on hand was changed by hand (or set when the item was created).
    Adjusted {
        /// The product.
        product_id: ProductId,
        /// Signed change.
        delta: i64,
        /// Quantity on hand after the change.
        quantity_after: u64,
        /// Why.
        reason: Reason,
    },
    /// Available stock reached zero.
    Depleted {
        /// The product.
        product_id: ProductId,
    },
}

impl EventPayload {
    /// The product the event is about (events are ordered per product).
    ///
    /// ```
    /// use inventory_core::{EventPayload, ProductId, Uuid};
    ///
    /// let product = ProductId::from(Uuid::from_u128(1));
    /// assert_eq!(EventPayload::Depleted { product_id: product }.product_id(), product);
    /// ```
    pub fn product_id(&self) -> ProductId {
        match self {
            Self::Reserved { product_id, .. }
            | Self::Confirmed { product_id, .. }
            | Self::Released { product_id, .. }
            | Self::Expired { product_id, .. }
            | Self::Adjusted { product_id, .. }
            | Self::Depleted { product_id } => *product_id,
        }
    }

    /// The routing key / event type, for example `inventory.stock.reserved`.
    ///
    /// ```
    /// use inventory_core::{EventPayload, ProductId, Uuid};
    ///
    /// let depleted = EventPayload::Depleted { product_id: ProductId::from(Uuid::from_u128(1)) };
    /// assert_eq!(depleted.event_type(), "inventory.stock.depleted");
    /// ```
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Reserved { .. } => "inventory.stock.reserved",
            Self::Confirmed { .. } => "inventory.stock.confirmed",
            Self::Released { .. } => "inventory.stock.released",
            Self::Expired { .. } => "inventory.stock.expired",
            Self::Adjusted { .. } => "inventory.stock.adjusted",
            Self::Depleted { .. } => "inventory.stock.depleted",
        }
    }
}

/// An event and when it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Event {
    /// When the change was decided (the `now` the use case was given).
    pub occurred_at: Timestamp,
    /// What happened.
    pub payload: EventPayload,
}

/// An event as an outbox holds it: numbered in commit order, with a stable id
/// that consumers deduplicate on and the id of the request that caused it.
///
/// ```
/// use std::collections::HashSet;
/// use inventory_core::*;
///
/// let depleted = EventPayload::Depleted { product_id: ProductId::from(Uuid::from_u128(1)) };
/// let entry = OutboxEntry {
///     sequence: 1,
///     event_id: Uuid::from_u128(7),
///     correlation_id: Some("req-42".to_owned()),
///     event: Event { occurred_at: Timestamp::from_millis(0), payload: depleted },
/// };
/// // Delivery is at least once: a consumer skips an event id it has seen.
/// let mut seen = HashSet::new();
/// for delivered in [entry.clone(), entry] {
///     if seen.insert(delivered.event_id) {
///         assert_eq!(delivered.event.payload.event_type(), "inventory.stock.depleted");
///     }
/// }
/// assert_eq!(seen.len(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct OutboxEntry {
    /// Position in the outbox. Per product it grows in commit order; across
    /// products a store may hand out numbers before commit (a SQL sequence), so
    /// read "unpublished, lowest first" rather than "after the last one seen".
    pub sequence: u64,
    /// Stable across redeliveries.
    pub event_id: Uuid,
    /// Request id of the request that caused the change, when known.
    pub correlation_id: Option<String>,
    /// The event.
    pub event: Event,
}
