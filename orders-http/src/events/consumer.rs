//! The consumer of inventory's events (`orders.inventory_events`): each
//! event about a hold is applied once, deduplicated by `event_id` in the same
//! store step as its effect; a hold an unfinished saga relied on that expired
//! or was released hands the order to the saga's expired-hold policy.

use std::sync::Arc;

use event_bus::{Envelope, Handler, HandlerError};
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::ProductId;
use crate::saga::SagaEngine;
use crate::store::{Hold, HoldApplied, HoldEvent, HoldStatus, OrderStore};

/// The consumer name events are deduplicated under.
pub const CONSUMER_NAME: &str = "orders";

/// Prefix of every inventory stock event type.
const STOCK_PREFIX: &str = "inventory.stock.";

/// The fields of a reserved, confirmed, released or expired payload this
/// service reads (readers ignore the others).
#[derive(Debug, Deserialize)]
struct HoldPayload {
    reservation_id: Uuid,
    order_id: Uuid,
    product_id: Uuid,
    quantity: u32,
}

/// Applies inventory's events to the orders store.
pub struct InventoryEvents {
    store: Arc<dyn OrderStore>,
    engine: Arc<SagaEngine>,
}

impl std::fmt::Debug for InventoryEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InventoryEvents").finish_non_exhaustive()
    }
}

impl InventoryEvents {
    /// A handler over `store` that hands orders to `engine`.
    pub fn new(store: Arc<dyn OrderStore>, engine: Arc<SagaEngine>) -> Self {
        Self { store, engine }
    }

    /// What an envelope means to orders: a hold event, nothing (stock
    /// levels: `adjusted`, `depleted`), or a permanent failure.
    fn parse(envelope: &Envelope) -> Result<Option<HoldEvent>, HandlerError> {
        let kind = envelope
            .event_type
            .strip_prefix(STOCK_PREFIX)
            .unwrap_or_default();
        let status = match kind {
            "reserved" => HoldStatus::Reserved,
            "confirmed" => HoldStatus::Confirmed,
            "released" => HoldStatus::Released,
            "expired" => HoldStatus::Expired,
            "adjusted" | "depleted" => return Ok(None),
            _ => {
                return Err(HandlerError::Permanent(format!(
                    "unknown event type {:?}",
                    envelope.event_type
                )))
            }
        };
        let payload: HoldPayload =
            serde_json::from_value(envelope.payload.clone()).map_err(|e| {
                HandlerError::Permanent(format!("invalid {} payload: {e}", envelope.event_type))
            })?;
        Ok(Some(HoldEvent {
            event_id: envelope.event_id,
            inventory_order_id: payload.order_id,
            hold: Hold {
                reservation_id: payload.reservation_id,
                product_id: ProductId::from_uuid(payload.product_id),
                quantity: payload.quantity,
                status,
                updated_at_ms: i64::try_from(
                    envelope.occurred_at.unix_timestamp_nanos() / 1_000_000,
                )
                .unwrap_or(i64::MAX),
            },
        }))
    }
}

impl Handler for InventoryEvents {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let Some(event) = Self::parse(envelope)? else {
            return Ok(());
        };
        let applied = self
            .store
            .apply_hold_event(CONSUMER_NAME, &event)
            .await
            .map_err(|e| HandlerError::Transient(e.to_string()))?;
        if let HoldApplied::Applied {
            order_id,
            hands_to_saga: true,
        } = applied
        {
            tracing::info!(%order_id, event_type = %envelope.event_type, reservation_id = %event.hold.reservation_id, "hold gone: the saga takes over");
            // Wakes the saga if it runs here; otherwise runs it here, unless
            // another instance holds its lease (then that one handles it).
            self.engine.start(order_id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stock(event_type: &str, payload: serde_json::Value) -> Envelope {
        Envelope::new(
            "inventory",
            event_type,
            1,
            Uuid::from_u128(1),
            0,
            None,
            payload,
        )
    }

    /// Hold events parse; stock-level events mean nothing here; unknown
    /// types and broken payloads are permanent failures.
    #[test]
    fn envelopes_are_classified() {
        let payload = json!({
            "kind": "expired",
            "reservation_id": Uuid::from_u128(2),
            "order_id": Uuid::from_u128(3),
            "product_id": Uuid::from_u128(4),
            "quantity": 2,
        });
        let event = InventoryEvents::parse(&stock("inventory.stock.expired", payload))
            .unwrap()
            .unwrap();
        assert_eq!(event.inventory_order_id, Uuid::from_u128(3));
        assert_eq!(event.hold.status, HoldStatus::Expired);
        assert_eq!(event.hold.quantity, 2);
        let depleted = stock("inventory.stock.depleted", json!({"kind": "depleted"}));
        assert_eq!(InventoryEvents::parse(&depleted), Ok(None));
        for bad in [
            stock("inventory.stock.melted", json!({})),
            stock("order.created", json!({})),
            stock("inventory.stock.reserved", json!({"order_id": "x"})),
        ] {
            assert!(matches!(
                InventoryEvents::parse(&bad),
                Err(HandlerError::Permanent(_))
            ));
        }
    }
}
