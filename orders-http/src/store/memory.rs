//! The in-memory store: one mutex over plain maps. Every method holds it for a
//! few map operations and never across an await, so it is atomic and cannot
//! deadlock. Events go to an in-memory outbox pushed under the same lock, and
//! the ids of applied inventory events are remembered under it too.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use event_bus::orders::EnvelopeOutbox;
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
    /// `(consumer, event_id)` of every inventory event applied.
    processed: HashSet<(String, Uuid)>,
}

impl Inner {
    /// Refuses a saga write of a pending order by anyone but its claim's holder.
    fn fence(&self, id: OrderId, owner: Uuid) -> Result<(), StoreError> {
        let pending = self
            .orders
            .get(&id)
            .is_some_and(|r| !r.order.status.is_final());
        let holds = self.claims.get(&id).is_some_and(|(h, _)| *h == owner);
        if pending && !holds {
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

fn outbox_full(e: event_bus::orders::OutboxFull) -> StoreError {
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
        if self.outbox.len() >= event_bus::orders::MEMORY_OUTBOX_LEN_MAX {
            return ready(Err(outbox_full(event_bus::orders::OutboxFull)));
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
        if self.outbox.len() >= event_bus::orders::MEMORY_OUTBOX_LEN_MAX {
            return ready(Err(outbox_full(event_bus::orders::OutboxFull)));
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
        if !inner
            .processed
            .insert((consumer.to_owned(), event.event_id))
        {
            return ready(Ok(HoldApplied::Duplicate));
        }
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
