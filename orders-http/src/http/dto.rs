//! The JSON shapes of the orders API (snake_case, money in integer minor
//! units, timestamps in RFC 3339 UTC).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::catalog::Product;
use crate::domain::{OrderLine, RequestedItem};
use crate::store::{Hold, OrderRecord};

/// Unix milliseconds as RFC 3339 text in UTC, always with three fraction
/// digits (so the texts also sort by time).
pub fn rfc3339(ms: i64) -> String {
    match OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

/// `POST /api/orders`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrderRequest {
    /// What to buy.
    pub items: Vec<RequestedItem>,
}

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineView {
    /// The product.
    pub product_id: Uuid,
    /// Its name when ordered.
    pub name: String,
    /// Units.
    pub quantity: u32,
    /// Price of one unit, in minor units.
    pub unit_price_minor: i64,
    /// `quantity * unit_price_minor`.
    pub line_total_minor: i64,
}

impl From<&OrderLine> for LineView {
    fn from(l: &OrderLine) -> Self {
        Self {
            product_id: l.product_id.as_uuid(),
            name: l.name.clone(),
            quantity: l.quantity,
            unit_price_minor: l.unit_price_minor,
            line_total_minor: l.line_total_minor,
        }
    }
}

/// One inventory hold of an order, as inventory's events last reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldView {
    /// Inventory's reservation.
    pub reservation_id: Uuid,
    /// The product held.
    pub product_id: Uuid,
    /// Units.
    pub quantity: u32,
    /// `reserved`, `confirmed`, `released` or `expired`.
    pub status: String,
    /// When inventory made that change.
    pub updated_at: String,
}

impl From<&Hold> for HoldView {
    fn from(h: &Hold) -> Self {
        Self {
            reservation_id: h.reservation_id,
            product_id: h.product_id.as_uuid(),
            quantity: h.quantity,
            status: h.status.as_str().to_owned(),
            updated_at: rfc3339(h.updated_at_ms),
        }
    }
}

/// An order as its owner sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// Its id.
    pub id: Uuid,
    /// Who placed it.
    pub user_id: String,
    /// `pending`, `confirmed` or `cancelled`.
    pub status: String,
    /// Why it was cancelled (only when cancelled).
    pub cancel_reason: Option<String>,
    /// The lines, one per product.
    pub items: Vec<LineView>,
    /// Sum of the line totals, in minor units.
    pub total_minor: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// The `Idempotency-Key` it was placed with.
    pub idempotency_key: Option<String>,
    /// The inventory reservations held for it (one per line).
    pub reservation_ids: Vec<Uuid>,
    /// The payment, once taken.
    pub payment_id: Option<String>,
    /// The refund, once made.
    pub refund_id: Option<String>,
    /// The holds of its current reservation attempt as inventory's events
    /// reported them (empty until the first event arrives).
    pub holds: Vec<HoldView>,
    /// When it was placed.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
}

impl From<&OrderRecord> for OrderView {
    fn from(r: &OrderRecord) -> Self {
        let o = &r.order;
        Self {
            id: o.id.as_uuid(),
            user_id: o.user_id.as_str().to_owned(),
            status: o.status.as_str().to_owned(),
            cancel_reason: o.status.reason().map(|r| r.as_str().to_owned()),
            items: o.lines.iter().map(LineView::from).collect(),
            total_minor: o.total_minor,
            currency: o.currency.clone(),
            idempotency_key: o.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
            reservation_ids: r.saga.reservation_ids(),
            payment_id: r.saga.payment_id.clone(),
            refund_id: r.saga.refund_id.clone(),
            holds: r.holds.iter().map(HoldView::from).collect(),
            created_at: rfc3339(o.created_at_ms),
            updated_at: rfc3339(o.updated_at_ms),
        }
    }
}

/// `GET /api/orders/{id}/status`: the id and the status, nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// The order.
    pub id: Uuid,
    /// `pending`, `confirmed` or `cancelled`.
    pub status: String,
}

/// `GET /api/orders`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrderList {
    /// The page, newest first.
    pub items: Vec<OrderView>,
    /// 1-based page number.
    pub page: u32,
    /// Page size.
    pub limit: u32,
    /// The caller's orders in all.
    pub total: u64,
    /// Whether a later page has orders.
    pub has_next: bool,
}

/// A product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductView {
    /// Its id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Price of one unit, in minor units.
    pub price_minor: i64,
    /// ISO 4217 currency.
    pub currency: String,
    /// Whether it can be ordered.
    pub active: bool,
    /// When it last changed.
    pub updated_at: String,
}

impl From<&Product> for ProductView {
    fn from(p: &Product) -> Self {
        Self {
            id: p.id.as_uuid(),
            name: p.name.clone(),
            price_minor: p.price_minor,
            currency: p.currency.clone(),
            active: p.active,
            updated_at: rfc3339(p.updated_at_ms),
        }
    }
}

/// `GET /api/products`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProductList {
    /// Every product, by id.
    pub items: Vec<ProductView>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    /// Timestamps have a fixed width and parse back as RFC 3339.
    #[test]
    fn timestamps_are_fixed_width_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_120), "2023-11-14T22:13:20.120Z");
        let parsed = OffsetDateTime::parse(&rfc3339(1_700_000_000_007), &Rfc3339).unwrap();
        assert_eq!(parsed.unix_timestamp_nanos(), 1_700_000_000_007_000_000);
    }
}
