//! The JSON shapes of the HTTP contract (snake_case, timestamps in RFC 3339):
//! requests parsed at the boundary into domain values, responses built from them.

use inventory_core::{Adjustment, InventoryItem, Reservation, Timestamp};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

/// An instant as RFC 3339 text in UTC (millisecond precision).
pub fn rfc3339(ts: Timestamp) -> String {
    let nanos = i128::from(ts.as_millis()) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// Availability of one product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    /// The product.
    pub product_id: Uuid,
    /// Units on hand.
    pub quantity: u64,
    /// Units held by pending reservations.
    pub reserved: u64,
    /// Units that can be reserved.
    pub available: u64,
    /// Optimistic-locking version (also the `ETag`).
    pub version: u64,
    /// When the item last changed.
    pub updated_at: String,
}

impl From<&InventoryItem> for Availability {
    fn from(item: &InventoryItem) -> Self {
        Self {
            product_id: item.product_id().as_uuid(),
            quantity: item.quantity(),
            reserved: item.reserved(),
            available: item.available(),
            version: item.version().get(),
            updated_at: rfc3339(item.updated_at()),
        }
    }
}

/// Availability of several products.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BulkAvailability {
    /// Known products, in the order asked.
    pub items: Vec<Availability>,
    /// Products asked for that have no item.
    pub missing: Vec<Uuid>,
}

/// A reservation as clients see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationView {
    /// Its id.
    pub reservation_id: Uuid,
    /// The order holding it.
    pub order_id: Uuid,
    /// The product held.
    pub product_id: Uuid,
    /// Units held.
    pub quantity: u64,
    /// `pending`, `confirmed`, `released` or `expired`.
    pub status: String,
    /// When the hold ends.
    pub expires_at: String,
    /// When it was created.
    pub created_at: String,
    /// When it last changed state.
    pub updated_at: String,
}

impl From<&Reservation> for ReservationView {
    fn from(r: &Reservation) -> Self {
        Self {
            reservation_id: r.id().as_uuid(),
            order_id: r.order_id().as_uuid(),
            product_id: r.product_id().as_uuid(),
            quantity: r.quantity(),
            status: r.status().as_str().to_owned(),
            expires_at: rfc3339(r.expires_at()),
            created_at: rfc3339(r.created_at()),
            updated_at: rfc3339(r.updated_at()),
        }
    }
}

/// The reservations of a multi-line order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderReservations {
    /// The order.
    pub order_id: Uuid,
    /// One per line, in the order given.
    pub reservations: Vec<ReservationView>,
}

/// One ledger entry.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdjustmentView {
    /// Signed change in units.
    pub delta: i64,
    /// Quantity on hand before.
    pub quantity_before: u64,
    /// Quantity on hand after.
    pub quantity_after: u64,
    /// Why.
    pub reason: String,
    /// Who.
    pub actor: String,
    /// When.
    pub at: String,
    /// The `Idempotency-Key` it was made under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl From<&Adjustment> for AdjustmentView {
    fn from(a: &Adjustment) -> Self {
        Self {
            delta: a.delta,
            quantity_before: a.quantity_before,
            quantity_after: a.quantity_after,
            reason: a.reason.as_str().to_owned(),
            actor: a.actor.as_str().to_owned(),
            at: rfc3339(a.at),
            idempotency_key: a.key.as_ref().map(|k| k.as_str().to_owned()),
        }
    }
}

/// The ledger of a product, newest first.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AdjustmentList {
    /// The product.
    pub product_id: Uuid,
    /// Newest first.
    pub adjustments: Vec<AdjustmentView>,
}

/// `POST /api/inventory/reserve`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveRequest {
    /// The product.
    pub product_id: Uuid,
    /// Units to hold.
    pub quantity: i64,
    /// The order holding them (the idempotency key with the product).
    pub order_id: Uuid,
    /// Hold duration; the core default when absent.
    pub ttl_seconds: Option<i64>,
}

/// One line of a multi-line reservation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    /// The product.
    pub product_id: Uuid,
    /// Units to hold.
    pub quantity: i64,
}

/// `POST /api/inventory/reservations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveLinesRequest {
    /// The order.
    pub order_id: Uuid,
    /// The lines, all or nothing.
    pub lines: Vec<LineRequest>,
    /// Hold duration; the core default when absent.
    pub ttl_seconds: Option<i64>,
}

/// `POST /api/inventory/confirm`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    /// The reservation to confirm.
    pub reservation_id: Uuid,
}

/// `POST /api/inventory/items`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateItemRequest {
    /// The product.
    pub product_id: Uuid,
    /// Initial units on hand.
    pub quantity: i64,
}

/// `PUT /api/inventory/{product_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetQuantityRequest {
    /// New units on hand.
    pub quantity: i64,
    /// Why (for the ledger); [`SET_QUANTITY_REASON_DEFAULT`] when absent.
    pub reason: Option<String>,
}

/// Ledger reason of a `PUT` that gives none.
pub const SET_QUANTITY_REASON_DEFAULT: &str = "quantity set";

/// `POST /api/inventory/{product_id}/adjustments`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdjustRequest {
    /// Units to add (positive) or remove (negative).
    pub delta: i64,
    /// Why.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_render_as_rfc3339_utc() {
        assert_eq!(rfc3339(Timestamp::from_millis(0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(Timestamp::from_millis(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
