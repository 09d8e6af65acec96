//! Saga engine tests against in-process fakes of inventory, with paused tokio
//! time and a manual wall clock: retries are bounded and counted, a multi-line
//! order is one reserve call under one inventory order id, and the pending
//! deadline cancels an order whose inventory never answers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use uuid::Uuid;

use super::{SagaConfig, SagaEngine, SagaState};
use crate::clock::{Clock, ManualClock};
use crate::domain::{CancelReason, Order, OrderId, OrderLine, OrderStatus, ProductId, UserId};
use crate::inventory::{InventoryApi, InventoryError, ReservedLine};
use crate::metrics::{OrderMetrics, StepLabels};
use crate::payment::{PaymentProvider, PaymentSimulator, SimulatorConfig};
use crate::store::{BoxFuture, HoldStatus, MemoryStore, OrderStore};

mod seeded;
mod unknown;

const T0_MS: i64 = 1_700_000_000_000;

/// One reserve call: the inventory order id and the lines.
type ReserveCall = (Uuid, Vec<(Uuid, u32)>);

/// Takes one from `counter` unless it is 0; whether it did.
fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Fails the first `failures` calls of every kind as unavailable, then works.
#[derive(Default)]
struct FlakyInventory {
    failures: AtomicU32,
    reserves: Mutex<Vec<ReserveCall>>,
    confirms: AtomicU32,
}

impl FlakyInventory {
    fn failing(failures: u32) -> Arc<Self> {
        let f = Self::default();
        f.failures.store(failures, Ordering::SeqCst);
        Arc::new(f)
    }

    fn fail(&self) -> bool {
        take_one(&self.failures)
    }
}

impl InventoryApi for FlakyInventory {
    fn reserve<'a>(
        &'a self,
        inventory_order_id: Uuid,
        lines: &'a [(Uuid, u32)],
        _ttl_seconds: Option<u64>,
        _correlation: &'a str,
    ) -> BoxFuture<'a, Result<Vec<ReservedLine>, InventoryError>> {
        Box::pin(async move {
            self.reserves
                .lock()
                .push((inventory_order_id, lines.to_vec()));
            if self.fail() {
                return Err(InventoryError::Unavailable("down".into()));
            }
            Ok(lines
                .iter()
                .map(|(p, _)| ReservedLine {
                    product_id: *p,
                    reservation_id: Uuid::new_v4(),
                })
                .collect())
        })
    }

    fn confirm<'a>(&'a self, _id: Uuid, _c: &'a str) -> BoxFuture<'a, Result<(), InventoryError>> {
        Box::pin(async move {
            self.confirms.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }

    fn release<'a>(&'a self, _id: Uuid, _c: &'a str) -> BoxFuture<'a, Result<(), InventoryError>> {
        Box::pin(async { Ok(()) })
    }

    fn reservation_status<'a>(
        &'a self,
        _id: Uuid,
        _c: &'a str,
    ) -> BoxFuture<'a, Result<HoldStatus, InventoryError>> {
        Box::pin(async { Ok(HoldStatus::Released) })
    }

    fn restock<'a>(
        &'a self,
        _product_id: Uuid,
        _quantity: u32,
        _key: &'a str,
        _c: &'a str,
    ) -> BoxFuture<'a, Result<(), InventoryError>> {
        Box::pin(async { Ok(()) })
    }
}

fn two_line_order() -> Order {
    let line = |n: u128| OrderLine {
        product_id: ProductId::from_uuid(Uuid::from_u128(n)),
        name: format!("p{n}"),
        quantity: 1,
        unit_price_minor: 100,
        line_total_minor: 100,
    };
    Order {
        id: OrderId::generate(),
        user_id: UserId::parse("u").expect("user"),
        status: OrderStatus::Pending,
        lines: vec![line(1), line(2)],
        total_minor: 200,
        currency: "EUR".into(),
        idempotency_key: None,
        fingerprint: "fp".into(),
        created_at_ms: T0_MS,
        updated_at_ms: T0_MS,
    }
}

struct Rig {
    engine: Arc<SagaEngine>,
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    metrics: OrderMetrics,
}

fn rig(inventory: Arc<dyn InventoryApi>, config: SagaConfig) -> Rig {
    let payments = Arc::new(PaymentSimulator::new(SimulatorConfig::default()));
    rig_paying(inventory, payments, config)
}

fn rig_paying(
    inventory: Arc<dyn InventoryApi>,
    payments: Arc<dyn PaymentProvider>,
    config: SagaConfig,
) -> Rig {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::new(T0_MS));
    let metrics = OrderMetrics::default();
    let engine = SagaEngine::new(
        store.clone(),
        inventory,
        payments,
        clock.clone(),
        config,
        metrics.clone(),
    );
    Rig {
        engine,
        store,
        clock,
        metrics,
    }
}

async fn place(r: &Rig, deadline_after_ms: i64) -> OrderId {
    let order = two_line_order();
    let saga = SagaState::new(&order, r.clock.now_ms() + deadline_after_ms);
    r.store
        .place(&order, &saga, &crate::events::created(&order, None))
        .await
        .expect("place");
    r.engine.start(order.id);
    order.id
}

async fn final_status(r: &Rig, id: OrderId) -> OrderStatus {
    for _ in 0..10_000 {
        let record = r.store.get(id).await.expect("get").expect("stored");
        if record.order.status.is_final() {
            return record.order.status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("order {id} never finished");
}

/// Transient failures are retried with backoff (counted), under the same
/// inventory order id, with both lines in each single call; then the order
/// is confirmed.
#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_then_confirmed() {
    let inventory = FlakyInventory::failing(3);
    let r = rig(inventory.clone(), SagaConfig::default());
    let id = place(&r, 60_000).await;
    assert_eq!(final_status(&r, id).await, OrderStatus::Confirmed);
    let calls = inventory.reserves.lock().clone();
    assert_eq!(calls.len(), 4);
    assert!(calls
        .iter()
        .all(|(o, lines)| *o == calls[0].0 && lines.len() == 2));
    assert_eq!(
        inventory.confirms.load(Ordering::SeqCst),
        2,
        "one confirm per line"
    );
    let retries = r
        .metrics
        .saga_retries
        .get_or_create(&StepLabels { step: "reserve" })
        .get();
    assert_eq!(retries, 3);
}

/// With inventory down for good, retries stay bounded per burst, the order
/// waits, and once the wall clock passes its deadline it is cancelled
/// `inventory_unavailable`.
#[tokio::test(start_paused = true)]
async fn deadline_cancels_when_inventory_never_answers() {
    let inventory = FlakyInventory::failing(u32::MAX);
    let config = SagaConfig {
        retries_max: 2,
        ..SagaConfig::default()
    };
    let r = rig(inventory.clone(), config);
    let id = place(&r, 60_000).await;
    while inventory.reserves.lock().len() < 9 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record = r.store.get(id).await.expect("get").expect("stored");
    assert_eq!(
        record.order.status,
        OrderStatus::Pending,
        "still waiting before the deadline"
    );
    r.clock.advance(Duration::from_secs(61));
    let status = final_status(&r, id).await;
    assert_eq!(
        status,
        OrderStatus::Cancelled(CancelReason::InventoryUnavailable)
    );
    let calls = inventory.reserves.lock().len();
    assert_eq!(
        calls % 3,
        0,
        "every burst is one try plus at most two retries: {calls}"
    );
}
