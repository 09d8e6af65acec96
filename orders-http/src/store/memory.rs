//! The in-memory store: one mutex over plain maps. Every method holds it for a
//! few map operations and never across an await, so it is atomic and cannot
//! deadlock. Events go to an in-memory outbox pushed under the same lock, and
//! the ids of applied inventory events are remembered under it too.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use event_bus::memory_outbox::EnvelopeOutbox;
use event_bus::Envelope;
use parking_lot::Mutex;
use uuid::Uuid;

use super::{
    saga_relies_on, BoxFuture, HoldApplied, HoldEvent, OrderRecord, OrderStore, OrdersOutbox, Page,
    PaymentRecord, Placed, RefundRecord, StoreError,
};
use crate::catalog::Product;
use crate::domain::{IdempotencyKey, Order, OrderId, OrderStatus, ProductId, UserId};
use crate::saga::SagaState;

#[derive(Default)]
struct Inner {
    orders: HashMap<OrderId, OrderRecord>,
    by_user: HashMap<UserId, Vec<OrderId>>,
    keys: HashMap<(UserId, IdempotencyKey), OrderId>,
    pending: BTreeSet<OrderId>,
    payments: HashMap<OrderId, PaymentRecord>,
    refunds: HashMap<OrderId, RefundRecord>,
    products: BTreeMap<ProductId, Product>,
    claims: HashMap<OrderId, (Uuid, i64)>,
    /// Current inventory order id of each saga -> its order.
    by_inventory_order: HashMap<Uuid, OrderId>,
    /// `(consumer, event_id)` of every inventory event applied, stamped
    /// with [`Inner::events_seen_ms`] when it was applied (what pruning goes
    /// by).
    processed: HashMap<(String, Uuid), i64>,
    /// The latest hold-change instant of any event applied: this store has
    /// no clock, so it stamps an applied event with how far the stream had
    /// got, which a late delivery of an old event does not move back.
    events_seen_ms: i64,
}

impl Inner {
    /// Refuses a saga write by anyone but the holder of its claim (for a
    /// finished order too: a stale owner learns it lost the saga).
    fn fence(&self, id: OrderId, owner: Uuid) -> Result<(), StoreError> {
        let exists = self.orders.contains_key(&id);
        let holds = self.claims.get(&id).is_some_and(|(h, _)| *h == owner);
        if exists && !holds {
            return Err(StoreError::LeaseLost(id));
        }
        Ok(())
    }
}

/// Orders kept in this process's memory (lost on exit).
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    outbox: EnvelopeOutbox,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The outbox of `order.*` events (unsent ones).
    pub fn envelope_outbox(&self) -> &EnvelopeOutbox {
        &self.outbox
    }
}

fn outbox_full(e: event_bus::memory_outbox::OutboxFull) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl OrderStore for MemoryStore {
    fn place<'a>(
        &'a self,
        order: &'a Order,
        saga: &'a SagaState,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<Placed, StoreError>> {
        let mut inner = self.inner.lock();
        if self.outbox.len() >= event_bus::memory_outbox::MEMORY_OUTBOX_LEN_MAX {
            return ready(Err(outbox_full(event_bus::memory_outbox::OutboxFull)));
        }
        if let Some(key) = &order.idempotency_key {
            let scoped = (order.user_id.clone(), key.clone());
            if let Some(existing) = inner.keys.get(&scoped) {
                let record = inner.orders.get(existing).cloned();
                return ready(
                    record
                        .map(|r| Placed::Existing(Box::new(r)))
                        .ok_or_else(|| {
                            StoreError::Internal("idempotency key without order".into())
                        }),
                );
            }
            inner.keys.insert(scoped, order.id);
        }
        inner.orders.insert(
            order.id,
            OrderRecord {
                order: order.clone(),
                saga: saga.clone(),
                cancel_requested: false,
                holds: Vec::new(),
            },
        );
        inner
            .by_inventory_order
            .insert(saga.inventory_order_id, order.id);
        inner
            .by_user
            .entry(order.user_id.clone())
            .or_default()
            .push(order.id);
        if !order.status.is_final() {
            inner.pending.insert(order.id);
        }
        // Checked for room above, under the same lock: cannot fail.
        let pushed = self.outbox.push(event.clone()).map_err(outbox_full);
        ready(pushed.map(|()| Placed::Created))
    }

    fn by_key<'a>(
        &'a self,
        user: &'a UserId,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Option<OrderRecord>, StoreError>> {
        let inner = self.inner.lock();
        let id = inner.keys.get(&(user.clone(), key.clone()));
        ready(Ok(id.and_then(|id| inner.orders.get(id)).cloned()))
    }

    fn get(&self, id: OrderId) -> BoxFuture<'_, Result<Option<OrderRecord>, StoreError>> {
        ready(Ok(self.inner.lock().orders.get(&id).cloned()))
    }

    fn list<'a>(
        &'a self,
        user: &'a UserId,
        offset: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page, StoreError>> {
        let inner = self.inner.lock();
        let ids = inner
            .by_user
            .get(user)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut all: Vec<&OrderRecord> = ids.iter().filter_map(|id| inner.orders.get(id)).collect();
        all.sort_by(|a, b| {
            (b.order.created_at_ms, b.order.id).cmp(&(a.order.created_at_ms, a.order.id))
        });
        let records = all
            .into_iter()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(limit as usize)
            .cloned()
            .collect();
        ready(Ok(Page {
            records,
            total: ids.len() as u64,
        }))
    }

    fn save_saga<'a>(
        &'a self,
        saga: &'a SagaState,
        owner: Uuid,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut inner = self.inner.lock();
        if let Err(e) = inner.fence(saga.order_id, owner) {
            return ready(Err(e));
        }
        let mut saved = false;
        if let Some(r) = inner.orders.get_mut(&saga.order_id) {
            if !r.order.status.is_final() {
                r.saga = saga.clone();
                saved = true;
            }
        }
        if saved {
            inner
                .by_inventory_order
                .insert(saga.inventory_order_id, saga.order_id);
        }
        let _ = now_ms;
        ready(Ok(()))
    }

    fn finish<'a>(
        &'a self,
        saga: &'a SagaState,
        owner: Uuid,
        status: OrderStatus,
        now_ms: i64,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let mut inner = self.inner.lock();
        if let Err(e) = inner.fence(saga.order_id, owner) {
            return ready(Err(e));
        }
        if self.outbox.len() >= event_bus::memory_outbox::MEMORY_OUTBOX_LEN_MAX {
            return ready(Err(outbox_full(event_bus::memory_outbox::OutboxFull)));
        }
        let done = match inner.orders.get_mut(&saga.order_id) {
            Some(r) if !r.order.status.is_final() => {
                r.saga = saga.clone();
                r.order.status = status;
                r.order.updated_at_ms = now_ms;
                true
            }
            _ => false,
        };
        if done && status.is_final() {
            inner.pending.remove(&saga.order_id);
        }
        if done {
            if let Err(e) = self.outbox.push(event.clone()) {
                return ready(Err(outbox_full(e)));
            }
        }
        ready(Ok(done))
    }

    fn prune(&self, before_ms: i64, limit: usize) -> BoxFuture<'_, Result<usize, StoreError>> {
        let mut inner = self.inner.lock();
        let Inner {
            orders,
            processed,
            claims,
            by_inventory_order,
            ..
        } = &mut *inner;
        let finished_before = |id: &OrderId| {
            orders
                .get(id)
                .is_none_or(|r| r.order.status.is_final() && r.order.updated_at_ms < before_ms)
        };
        let mut budget = limit;
        let mut forget = |keep: bool| {
            if keep || budget == 0 {
                return true;
            }
            budget -= 1;
            false
        };
        processed.retain(|_, at| forget(*at >= before_ms));
        claims.retain(|id, _| forget(!finished_before(id)));
        by_inventory_order.retain(|inventory_order, id| {
            let current = orders
                .get(id)
                .is_some_and(|r| r.saga.inventory_order_id == *inventory_order);
            forget(current && !finished_before(id))
        });
        ready(Ok(limit - budget))
    }

    fn request_cancel(&self, id: OrderId, now_ms: i64) -> BoxFuture<'_, Result<bool, StoreError>> {
        let mut inner = self.inner.lock();
        let done = match inner.orders.get_mut(&id) {
            Some(r) if !r.order.status.is_final() => {
                r.cancel_requested = true;
                r.order.updated_at_ms = now_ms;
                true
            }
            _ => false,
        };
        ready(Ok(done))
    }

    fn claim(
        &self,
        id: OrderId,
        owner: Uuid,
        now_ms: i64,
        lease_ms: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let mut inner = self.inner.lock();
        if !inner.orders.contains_key(&id) {
            return ready(Ok(false));
        }
        let free = match inner.claims.get(&id) {
            None => true,
            Some((holder, until)) => *holder == owner || *until <= now_ms,
        };
        if free {
            inner
                .claims
                .insert(id, (owner, now_ms.saturating_add(lease_ms)));
        }
        ready(Ok(free))
    }

    fn unclaim<'a>(
        &'a self,
        ids: &'a [OrderId],
        owner: Uuid,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut inner = self.inner.lock();
        for id in ids {
            if inner
                .claims
                .get(id)
                .is_some_and(|(holder, _)| *holder == owner)
            {
                inner.claims.remove(id);
            }
        }
        ready(Ok(()))
    }

    fn pending(
        &self,
        after: Option<OrderId>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<OrderId>, StoreError>> {
        let inner = self.inner.lock();
        let ids = inner
            .pending
            .iter()
            .filter(|id| after.is_none_or(|a| **id > a))
            .take(limit as usize)
            .copied()
            .collect();
        ready(Ok(ids))
    }

    fn record_payment<'a>(&'a self, p: &'a PaymentRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner
            .lock()
            .payments
            .entry(p.order_id)
            .or_insert_with(|| p.clone());
        ready(Ok(()))
    }

    fn record_refund<'a>(&'a self, r: &'a RefundRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner
            .lock()
            .refunds
            .entry(r.order_id)
            .or_insert_with(|| r.clone());
        ready(Ok(()))
    }

    fn money(
        &self,
        id: OrderId,
    ) -> BoxFuture<'_, Result<(Option<PaymentRecord>, Option<RefundRecord>), StoreError>> {
        let inner = self.inner.lock();
        ready(Ok((
            inner.payments.get(&id).cloned(),
            inner.refunds.get(&id).cloned(),
        )))
    }

    fn products(&self) -> BoxFuture<'_, Result<Vec<Product>, StoreError>> {
        ready(Ok(self.inner.lock().products.values().cloned().collect()))
    }

    fn products_by_id<'a>(
        &'a self,
        ids: &'a [ProductId],
    ) -> BoxFuture<'a, Result<Vec<Product>, StoreError>> {
        let inner = self.inner.lock();
        ready(Ok(ids
            .iter()
            .filter_map(|id| inner.products.get(id).cloned())
            .collect()))
    }

    fn create_product<'a>(&'a self, p: &'a Product) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut inner = self.inner.lock();
        if inner.products.contains_key(&p.id) {
            return ready(Err(StoreError::ProductExists(p.id)));
        }
        inner.products.insert(p.id, p.clone());
        ready(Ok(()))
    }

    fn update_product<'a>(&'a self, p: &'a Product) -> BoxFuture<'a, Result<bool, StoreError>> {
        let mut inner = self.inner.lock();
        let found = match inner.products.get_mut(&p.id) {
            Some(existing) => {
                *existing = p.clone();
                true
            }
            None => false,
        };
        ready(Ok(found))
    }

    fn seed_products<'a>(&'a self, ps: &'a [Product]) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut inner = self.inner.lock();
        for p in ps {
            inner.products.entry(p.id).or_insert_with(|| p.clone());
        }
        ready(Ok(()))
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        ready(Ok(()))
    }

    fn apply_hold_event<'a>(
        &'a self,
        consumer: &'a str,
        event: &'a HoldEvent,
    ) -> BoxFuture<'a, Result<HoldApplied, StoreError>> {
        let mut inner = self.inner.lock();
        let key = (consumer.to_owned(), event.event_id);
        if inner.processed.contains_key(&key) {
            return ready(Ok(HoldApplied::Duplicate));
        }
        inner.events_seen_ms = inner.events_seen_ms.max(event.hold.updated_at_ms);
        let stamp = inner.events_seen_ms;
        inner.processed.insert(key, stamp);
        let Some(order_id) = inner
            .by_inventory_order
            .get(&event.inventory_order_id)
            .copied()
        else {
            return ready(Ok(HoldApplied::UnknownOrder));
        };
        let Some(record) = inner
            .orders
            .get_mut(&order_id)
            .filter(|r| r.saga.inventory_order_id == event.inventory_order_id)
        else {
            return ready(Ok(HoldApplied::UnknownOrder));
        };
        let hold = &event.hold;
        match record
            .holds
            .iter_mut()
            .find(|h| h.reservation_id == hold.reservation_id)
        {
            Some(existing) if existing.status == super::HoldStatus::Reserved => {
                existing.status = hold.status;
                existing.updated_at_ms = hold.updated_at_ms;
            }
            Some(_) => {}
            None => {
                record.holds.push(hold.clone());
                record
                    .holds
                    .sort_by_key(|h| (h.product_id, h.reservation_id));
            }
        }
        let hands_to_saga = !record.order.status.is_final()
            && hold.status.is_lost()
            && saga_relies_on(&record.saga, event);
        ready(Ok(HoldApplied::Applied {
            order_id,
            hands_to_saga,
        }))
    }

    fn outbox(&self) -> OrdersOutbox {
        OrdersOutbox::Memory(self.outbox.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{OrderLine, OrderStatus};
    use crate::saga::SagaStep;
    use crate::store::{Hold, HoldStatus};

    const T0_MS: i64 = 1_700_000_000_000;
    const ROUND_MS: i64 = 10_000;
    const RETENTION_MS: i64 = 60_000;
    const ORDERS_PER_ROUND: usize = 20;

    fn order(at_ms: i64) -> Order {
        let line = OrderLine {
            product_id: ProductId::from_uuid(Uuid::from_u128(1)),
            name: "p".into(),
            quantity: 1,
            unit_price_minor: 100,
            line_total_minor: 100,
        };
        Order {
            id: OrderId::generate(),
            user_id: UserId::parse("soak").expect("user"),
            status: OrderStatus::Pending,
            lines: vec![line],
            total_minor: 100,
            currency: "EUR".into(),
            idempotency_key: None,
            fingerprint: "fp".into(),
            created_at_ms: at_ms,
            updated_at_ms: at_ms,
        }
    }

    /// An event delivered late (its hold changed long ago) is stamped with
    /// how far the stream had got, so pruning by age keeps its record as
    /// long as any other record applied then.
    #[tokio::test]
    async fn a_late_event_is_kept_as_long_as_its_neighbours() {
        let store = MemoryStore::new();
        let event = |updated_at_ms| HoldEvent {
            event_id: Uuid::new_v4(),
            inventory_order_id: Uuid::new_v4(),
            hold: Hold {
                reservation_id: Uuid::new_v4(),
                product_id: ProductId::from_uuid(Uuid::from_u128(1)),
                quantity: 1,
                status: HoldStatus::Reserved,
                updated_at_ms,
            },
        };
        let (fresh, late) = (event(T0_MS + 60_000), event(T0_MS));
        store.apply_hold_event("late", &fresh).await.expect("apply");
        store.apply_hold_event("late", &late).await.expect("apply");
        let pruned = store.prune(T0_MS + 1, usize::MAX).await.expect("prune");
        assert_eq!(
            pruned, 0,
            "the late event's record is as young as its neighbour's"
        );
        let again = store.apply_hold_event("late", &late).await.expect("apply");
        assert_eq!(again, HoldApplied::Duplicate);
    }

    /// Soak: round after round of orders placed, claimed, told about their
    /// holds and finished, with pruning on the way, the records kept only for
    /// events (applied event ids, claims, inventory order ids) stay flat
    /// once the retention window has passed, instead of one more per order.
    #[tokio::test]
    async fn a_long_run_keeps_event_records_flat() {
        let store = MemoryStore::new();
        let owner = Uuid::new_v4();
        let mut sizes = Vec::new();
        for round in 0..40_i64 {
            let now = T0_MS + round * ROUND_MS;
            for _ in 0..ORDERS_PER_ROUND {
                let o = order(now);
                let saga = crate::saga::SagaState::new(&o, now + 60_000);
                let created = crate::events::created(&o, None);
                store.place(&o, &saga, &created).await.expect("place");
                assert!(store.claim(o.id, owner, now, 30_000).await.expect("claim"));
                for status in [HoldStatus::Reserved, HoldStatus::Confirmed] {
                    let event = HoldEvent {
                        event_id: Uuid::new_v4(),
                        inventory_order_id: saga.inventory_order_id,
                        hold: Hold {
                            reservation_id: Uuid::new_v4(),
                            product_id: o.lines[0].product_id,
                            quantity: 1,
                            status,
                            updated_at_ms: now,
                        },
                    };
                    store.apply_hold_event("soak", &event).await.expect("apply");
                }
                let mut done = saga.clone();
                done.step = SagaStep::Done;
                let status = OrderStatus::Confirmed;
                let event = crate::events::finished(&o, status, None, now).expect("final");
                let finished = store.finish(&done, owner, status, now, &event).await;
                assert!(finished.expect("finish"));
            }
            store
                .prune(now - RETENTION_MS, usize::MAX)
                .await
                .expect("prune");
            let inner = store.inner.lock();
            sizes.push((
                inner.processed.len(),
                inner.claims.len(),
                inner.by_inventory_order.len(),
            ));
        }
        let settled = &sizes[10..];
        assert!(
            settled.windows(2).all(|w| w[0] == w[1]),
            "flat: {settled:?}"
        );
        let window_orders = (RETENTION_MS / ROUND_MS + 1) as usize * ORDERS_PER_ROUND;
        assert!(settled[0].0 <= 2 * window_orders, "{settled:?}");
        assert!(settled[0].1 <= window_orders && settled[0].2 <= window_orders);
    }
}
