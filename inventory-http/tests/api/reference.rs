//! A stand-in store for the tests: every piece of state behind one mutex,
//! deciding with inventory-core's rules. Replaced by the real stores once
//! they are available to this crate.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use inventory_core::*;

#[derive(Default)]
struct State {
    items: BTreeMap<ProductId, InventoryItem>,
    reservations: BTreeMap<ReservationId, Reservation>,
    by_order: BTreeMap<(OrderId, ProductId), ReservationId>,
    ledger: Vec<Adjustment>,
}

impl Workspace for State {
    fn item(&self, p: ProductId) -> Option<&InventoryItem> {
        self.items.get(&p)
    }
    fn item_mut(&mut self, p: ProductId) -> Option<&mut InventoryItem> {
        self.items.get_mut(&p)
    }
    fn insert_item(&mut self, item: InventoryItem) {
        self.items.insert(item.product_id(), item);
    }
    fn reservation(&self, id: ReservationId) -> Option<&Reservation> {
        self.reservations.get(&id)
    }
    fn reservation_mut(&mut self, id: ReservationId) -> Option<&mut Reservation> {
        self.reservations.get_mut(&id)
    }
    fn find_reservation(&self, o: OrderId, p: ProductId) -> Option<ReservationId> {
        self.by_order.get(&(o, p)).copied()
    }
    fn insert_reservation(&mut self, r: Reservation) {
        self.by_order.insert((r.order_id(), r.product_id()), r.id());
        self.reservations.insert(r.id(), r);
    }
    fn overdue(&self, p: ProductId, now: Timestamp, limit: usize) -> Vec<ReservationId> {
        let mut due: Vec<_> = self
            .reservations
            .values()
            .filter(|r| r.product_id() == p && r.is_overdue(now))
            .map(|r| (r.expires_at(), r.id()))
            .collect();
        due.sort();
        due.into_iter().take(limit).map(|(_, id)| id).collect()
    }
    fn record_event(&mut self, e: Event) {
        let _ = e;
    }
    fn record_adjustment(&mut self, a: Adjustment) {
        self.ledger.push(a);
    }
}

/// The stand-in store.
#[derive(Default)]
pub struct ReferenceStore(Mutex<State>);

impl ReferenceStore {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }
}

impl InventoryStore for ReferenceStore {
    async fn execute(&self, command: Command, meta: &Meta) -> Result<Outcome, Error> {
        let mut s = self.state();
        decide(&mut *s, &command, meta.now)
    }
    async fn item(&self, p: ProductId) -> Result<Option<InventoryItem>, Error> {
        Ok(self.state().items.get(&p).cloned())
    }
    async fn items(&self, ps: &[ProductId]) -> Result<Vec<InventoryItem>, Error> {
        check_bulk(ps)?;
        let s = self.state();
        Ok(ps.iter().filter_map(|p| s.items.get(p).cloned()).collect())
    }
    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, Error> {
        Ok(self.state().reservations.get(&id).cloned())
    }
    async fn reservations_of_order(&self, o: OrderId) -> Result<Vec<Reservation>, Error> {
        let s = self.state();
        Ok(s.reservations
            .values()
            .filter(|r| r.order_id() == o)
            .cloned()
            .collect())
    }
    async fn reservations_of_product(&self, p: ProductId) -> Result<Vec<Reservation>, Error> {
        let s = self.state();
        Ok(s.reservations
            .values()
            .filter(|r| r.product_id() == p)
            .cloned()
            .collect())
    }
    async fn adjustments(&self, p: ProductId, limit: usize) -> Result<Vec<Adjustment>, Error> {
        let s = self.state();
        let limit = limit.min(ADJUSTMENTS_PAGE_MAX);
        Ok(s.ledger
            .iter()
            .rev()
            .filter(|a| a.product_id == p)
            .take(limit)
            .cloned()
            .collect())
    }
    async fn expire_due(&self, meta: &Meta, limit: usize) -> Result<usize, Error> {
        let due: Vec<ReservationId> = {
            let s = self.state();
            s.reservations
                .values()
                .filter(|r| r.is_overdue(meta.now))
                .take(limit.min(EXPIRE_BATCH_MAX))
                .map(Reservation::id)
                .collect()
        };
        let mut expired = 0;
        for reservation_id in due {
            if let Outcome::Reservation { changed: true, .. } = self
                .execute(Command::Expire { reservation_id }, meta)
                .await?
            {
                expired += 1;
            }
        }
        Ok(expired)
    }
}
