//! Events: the `order.*` event types and payloads this service owns (the
//! transport, event-bus, carries them without knowing them), the envelopes the stores write in the same atomic step
//! as the change they describe ([`created`], [`finished`]), the consumer of
//! inventory's events ([`InventoryEvents`]), and starting and stopping the
//! relay and the consumer beside the server ([`EventsRuntime`]).
//!
//! Schemas: `docs/events/orders-events.schema.json` (published) and
//! `docs/events/inventory-events.schema.json` (consumed).

mod consumer;
mod runtime;

pub use consumer::{
    InventoryEvents, CONSUMER_NAME, STORE_FAILURE_ATTEMPTS_MAX, STORE_FAILURE_RETRY_DELAY_MS,
};
pub use runtime::{EventSettings, EventsHealth, EventsRuntime};

use event_bus::envelope::{ORDERS_SCHEMA_VERSION, ORDERS_SOURCE};
use event_bus::Envelope;
use serde_json::json;
use uuid::Uuid;

use crate::domain::{Order, OrderStatus};

/// An order was accepted (pending).
pub const ORDER_CREATED: &str = "order.created";

/// An order was confirmed and paid.
pub const ORDER_CONFIRMED: &str = "order.confirmed";

/// An order was cancelled.
pub const ORDER_CANCELLED: &str = "order.cancelled";

/// The envelope of an orders event; `payload` must carry `order_id` (events
/// are ordered per order). See `docs/events/orders-events.schema.json`.
pub fn envelope(
    event_type: &str,
    event_id: Uuid,
    occurred_at_ms: i64,
    correlation_id: Option<&str>,
    payload: serde_json::Value,
) -> Envelope {
    Envelope::new(
        ORDERS_SOURCE,
        event_type,
        ORDERS_SCHEMA_VERSION,
        event_id,
        occurred_at_ms,
        correlation_id,
        payload,
    )
}

/// The `order.created` envelope of a new order, correlated with the request
/// that placed it.
pub fn created(order: &Order, correlation_id: Option<&str>) -> Envelope {
    let lines: Vec<serde_json::Value> = order
        .lines
        .iter()
        .map(|l| {
            json!({
                "product_id": l.product_id.as_uuid(),
                "quantity": l.quantity,
                "unit_price_minor": l.unit_price_minor,
                "line_total_minor": l.line_total_minor,
            })
        })
        .collect();
    envelope(
        ORDER_CREATED,
        Uuid::new_v4(),
        order.created_at_ms,
        correlation_id,
        json!({
            "order_id": order.id.as_uuid(),
            "user_id": order.user_id.as_str(),
            "lines": lines,
            "total_minor": order.total_minor,
            "currency": order.currency,
        }),
    )
}

/// The `order.confirmed` or `order.cancelled` envelope of an order reaching
/// `status` at `now_ms`; `None` for `pending` (not a final status).
pub fn finished(
    order: &Order,
    status: OrderStatus,
    correlation_id: Option<&str>,
    now_ms: i64,
) -> Option<Envelope> {
    let (event_type, payload) = match status {
        OrderStatus::Pending => return None,
        OrderStatus::Confirmed => (
            ORDER_CONFIRMED,
            json!({
                "order_id": order.id.as_uuid(),
                "user_id": order.user_id.as_str(),
                "total_minor": order.total_minor,
                "currency": order.currency,
            }),
        ),
        OrderStatus::Cancelled(reason) => (
            ORDER_CANCELLED,
            json!({
                "order_id": order.id.as_uuid(),
                "user_id": order.user_id.as_str(),
                "reason": reason.as_str(),
            }),
        ),
    };
    Some(envelope(
        event_type,
        Uuid::new_v4(),
        now_ms,
        correlation_id,
        payload,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{CancelReason, OrderId, OrderLine, ProductId, UserId};

    fn order() -> Order {
        Order {
            id: OrderId::from_uuid(Uuid::from_u128(7)),
            user_id: UserId::parse("ann").unwrap(),
            status: OrderStatus::Pending,
            lines: vec![OrderLine {
                product_id: ProductId::from_uuid(Uuid::from_u128(1)),
                name: "tea".into(),
                quantity: 2,
                unit_price_minor: 150,
                line_total_minor: 300,
            }],
            total_minor: 300,
            currency: "EUR".into(),
            idempotency_key: None,
            fingerprint: "fp".into(),
            created_at_ms: 1_700_000_000_000,
            updated_at_ms: 1_700_000_000_000,
        }
    }

    /// Every payload has exactly the required fields of its documented schema.
    #[test]
    fn payloads_match_the_documented_schema() {
        let schema: serde_json::Value = serde_json::from_str(include_str!(
            "../../../docs/events/orders-events.schema.json"
        ))
        .unwrap();
        let o = order();
        let cases = [
            ("created", created(&o, Some("req-1"))),
            (
                "confirmed",
                finished(&o, OrderStatus::Confirmed, Some("req-1"), 5).unwrap(),
            ),
            (
                "cancelled",
                finished(
                    &o,
                    OrderStatus::Cancelled(CancelReason::OutOfStock),
                    Some("req-1"),
                    5,
                )
                .unwrap(),
            ),
        ];
        for (def, envelope) in cases {
            assert_eq!(envelope.event_type, format!("order.{def}"));
            assert_eq!(envelope.source, "orders");
            assert_eq!(envelope.correlation_id.as_deref(), Some("req-1"));
            assert_eq!(envelope.ordering_key(), o.id.to_string());
            let mut required: Vec<&str> = schema["$defs"][def]["required"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let mut fields: Vec<&str> = envelope
                .payload
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            required.sort_unstable();
            fields.sort_unstable();
            assert_eq!(fields, required, "{def}");
        }
        let line = &cases_line(&o);
        let mut line_required: Vec<&str> = schema["$defs"]["line"]["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let mut line_fields: Vec<&str> = line.keys().map(String::as_str).collect();
        line_required.sort_unstable();
        line_fields.sort_unstable();
        assert_eq!(line_fields, line_required);
        assert!(finished(&o, OrderStatus::Pending, None, 5).is_none());
    }

    fn cases_line(o: &Order) -> serde_json::Map<String, serde_json::Value> {
        created(o, None).payload["lines"][0]
            .as_object()
            .unwrap()
            .clone()
    }
}
