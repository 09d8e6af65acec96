//! Helpers shared by the scenarios: shutdown signals, store commands, and
//! bounded waits on a condition.

use std::future::Future;
use std::time::Duration;

use event_bus::Envelope;
use inventory_core::{
    Actor, Command, Meta, OrderId, ProductId, Quantity, Reason, ReservationId, Reserve,
    ReserveLine, StockDelta, StockLevel, Timestamp, Ttl,
};
use tokio::sync::oneshot;
use uuid::Uuid;

/// Where the tests' clocks start.
pub(crate) const T0_MS: i64 = 1_700_000_000_000;

/// How often [`eventually`] looks again.
const POLL_MS: u64 = 10;

/// A shutdown trigger and the future it resolves.
pub(crate) fn shutdown() -> (
    oneshot::Sender<()>,
    impl Future<Output = ()> + Send + 'static,
) {
    let (trigger, signal) = oneshot::channel::<()>();
    (trigger, async move {
        let _ = signal.await;
    })
}

/// Waits until `condition` holds, at most `timeout`; true when it did.
pub(crate) async fn eventually(timeout: Duration, condition: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
    }
    true
}

/// A fresh id.
pub(crate) fn id() -> Uuid {
    Uuid::new_v4()
}

/// `T0` plus `ms`, caused by request `request_id`.
pub(crate) fn meta(ms: i64, request_id: &str) -> Meta {
    Meta {
        now: Timestamp::from_millis(T0_MS + ms),
        correlation_id: Some(request_id.to_owned()),
    }
}

/// Create an item.
pub(crate) fn create(product_id: ProductId, quantity: u64) -> Command {
    Command::CreateItem {
        product_id,
        quantity: StockLevel::new(quantity).expect("valid stock"),
        actor: Actor::system(),
    }
}

/// Reserve one line; returns the command and the reservation id.
pub(crate) fn reserve(
    product_id: ProductId,
    quantity: u64,
    ttl_ms: u64,
) -> (Command, ReservationId) {
    let reservation_id = ReservationId::from_uuid(id());
    let line = ReserveLine {
        product_id,
        quantity: Quantity::new(quantity).expect("valid quantity"),
        reservation_id,
    };
    let order = OrderId::from_uuid(id());
    let ttl = Ttl::from_millis(ttl_ms).expect("valid ttl");
    (
        Command::Reserve(Reserve::single(order, line, ttl)),
        reservation_id,
    )
}

/// Adjust the stock of a product by `delta`.
pub(crate) fn adjust(product_id: ProductId, delta: i64) -> Command {
    Command::Adjust {
        product_id,
        delta: StockDelta::new(delta).expect("valid delta"),
        reason: Reason::new("test").expect("valid reason"),
        actor: Actor::system(),
        key: None,
    }
}

/// An inventory stock event numbered `n` (in its payload), of `event_type`.
pub(crate) fn stock_envelope(event_type: &str, correlation_id: &str, n: u64) -> Envelope {
    Envelope::new(
        "inventory",
        event_type,
        1,
        id(),
        0,
        Some(correlation_id),
        serde_json::json!({"product_id": "p", "quantity_after": n}),
    )
}
