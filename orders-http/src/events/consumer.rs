//! The consumer of inventory's events (`orders.inventory_events`): each
//! event about a hold is applied once, deduplicated by `event_id` in the same
//! store step as its effect; a hold an unfinished saga relied on that expired
//! or was released hands the order to the saga's expired-hold policy.
//!
//! ## Failures
//!
//! What a failure is called decides whether the event waits or is given up
//! (event-bus retries a transient failure until it applies and dead-letters
//! a permanent one at once):
//!
//! - an unknown event type or a payload that does not decode is permanent;
//! - [`StoreError::Unavailable`] (the database is down or overloaded) is
//!   transient: the event waits for the store, however long it is down;
//! - any other store error (a bug, corrupt data) is permanent, after
//!   [`STORE_FAILURE_ATTEMPTS_MAX`] attempts: the PostgreSQL store reports
//!   some passing database errors (a connection terminated by a restarting
//!   server, a deadlock) as `Internal`, and a few quick attempts keep those
//!   from being dead-lettered, while data the store cannot read does not
//!   hold the queue forever.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use event_bus::{Envelope, Handler, HandlerError};
use serde::Deserialize;
use uuid::Uuid;

use crate::domain::ProductId;
use crate::saga::SagaEngine;
use crate::store::{Hold, HoldApplied, HoldEvent, HoldStatus, OrderStore, StoreError};

/// The consumer name events are deduplicated under.
pub const CONSUMER_NAME: &str = "orders";

/// Prefix of every inventory stock event type.
const STOCK_PREFIX: &str = "inventory.stock.";

/// Attempts at an event whose store step fails with an error other than
/// [`StoreError::Unavailable`] before the failure is called permanent (see
/// the module doc): enough to outlast a passing database error, few enough
/// that an event the store can never apply is dead-lettered within a second.
pub const STORE_FAILURE_ATTEMPTS_MAX: u32 = 3;

/// Pause between those attempts.
pub const STORE_FAILURE_RETRY_DELAY_MS: u64 = 200;

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
        let applied = classified(|| self.store.apply_hold_event(CONSUMER_NAME, &event)).await?;
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

/// Runs one store step, mapping its failure to what the consumer must do
/// (see the module doc): [`StoreError::Unavailable`] is transient at once;
/// any other error is tried again up to [`STORE_FAILURE_ATTEMPTS_MAX`]
/// attempts in all, then permanent.
async fn classified<T, F, Fut>(mut step: F) -> Result<T, HandlerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match step().await {
            Ok(value) => return Ok(value),
            Err(e @ StoreError::Unavailable(_)) => {
                return Err(HandlerError::Transient(e.to_string()))
            }
            Err(e) if attempt >= STORE_FAILURE_ATTEMPTS_MAX => {
                return Err(HandlerError::Permanent(format!(
                    "{e} (after {attempt} attempts)"
                )))
            }
            Err(e) => {
                tracing::warn!(attempt, error = %e, "store failed to apply an inventory event, trying again");
                tokio::time::sleep(Duration::from_millis(STORE_FAILURE_RETRY_DELAY_MS)).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A store step that fails with `failures` in order, then succeeds;
    /// counts its calls.
    fn scripted(
        failures: Vec<StoreError>,
        calls: &AtomicU32,
    ) -> impl FnMut() -> std::future::Ready<Result<(), StoreError>> + '_ {
        let mut failures = failures.into_iter();
        move || {
            calls.fetch_add(1, Ordering::Relaxed);
            std::future::ready(failures.next().map_or(Ok(()), Err))
        }
    }

    /// An unavailable store is a transient failure (the event waits for the
    /// store, never dead-lettered), reported at once.
    #[tokio::test(start_paused = true)]
    async fn unavailable_store_is_transient() {
        let calls = AtomicU32::new(0);
        let down = vec![StoreError::Unavailable("pool timed out".into())];

        let result = classified(scripted(down, &calls)).await;

        assert!(
            matches!(&result, Err(HandlerError::Transient(r)) if r.contains("pool timed out")),
            "{result:?}"
        );
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }

    /// A store error that is not unavailability is permanent once it
    /// persists for the bounded attempts; a passing one is outlasted.
    #[tokio::test(start_paused = true)]
    async fn internal_store_error_is_permanent_after_a_small_bound() {
        let calls = AtomicU32::new(0);
        let corrupt = (0..STORE_FAILURE_ATTEMPTS_MAX)
            .map(|_| StoreError::Internal("corrupt row: holds".into()))
            .collect();

        let result = classified(scripted(corrupt, &calls)).await;

        assert!(
            matches!(&result, Err(HandlerError::Permanent(r)) if r.contains("corrupt row")),
            "{result:?}"
        );
        assert_eq!(calls.load(Ordering::Relaxed), STORE_FAILURE_ATTEMPTS_MAX);
        let calls = AtomicU32::new(0);
        let passing = vec![StoreError::Internal("deadlock detected".into())];
        assert_eq!(classified(scripted(passing, &calls)).await, Ok(()));
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }

    /// After a passing error, an unavailable store is transient again: the
    /// bound never turns an outage into a dead letter.
    #[tokio::test(start_paused = true)]
    async fn outage_after_a_passing_error_stays_transient() {
        let calls = AtomicU32::new(0);
        let failures = vec![
            StoreError::Internal("terminating connection due to administrator command".into()),
            StoreError::Unavailable("connection refused".into()),
        ];

        let result = classified(scripted(failures, &calls)).await;

        assert!(
            matches!(result, Err(HandlerError::Transient(_))),
            "{result:?}"
        );
    }

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
