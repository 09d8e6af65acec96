//! The storage port of `inventory-core` on [`MemoryStore`]: each method runs
//! its synchronous twin when first polled (nothing in this store waits).

use inventory_core::{
    Adjustment, BatchResults, Command, Error, InventoryItem, InventoryStore, Meta, OrderId, Outbox,
    OutboxEntry, Outcome, ProductId, Reservation, ReservationId, Timestamp,
};

use crate::MemoryStore;

impl InventoryStore for MemoryStore {
    async fn execute(&self, command: Command, meta: &Meta) -> Result<Outcome, Error> {
        self.execute_sync(command, meta)
    }

    async fn execute_batch(&self, batch: Vec<(Command, Meta)>) -> Result<BatchResults, Error> {
        self.execute_batch_sync(batch)
    }

    async fn item(&self, product_id: ProductId) -> Result<Option<InventoryItem>, Error> {
        Ok(self.item_sync(product_id))
    }

    async fn items(&self, product_ids: &[ProductId]) -> Result<Vec<InventoryItem>, Error> {
        self.items_sync(product_ids)
    }

    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, Error> {
        Ok(self.reservation_sync(id))
    }

    async fn reservations_of_order(&self, order_id: OrderId) -> Result<Vec<Reservation>, Error> {
        Ok(self.reservations_of_order_sync(order_id))
    }

    async fn reservations_of_product(
        &self,
        product_id: ProductId,
    ) -> Result<Vec<Reservation>, Error> {
        Ok(self.reservations_of_product_sync(product_id))
    }

    async fn adjustments(
        &self,
        product_id: ProductId,
        limit: usize,
    ) -> Result<Vec<Adjustment>, Error> {
        Ok(self.adjustments_sync(product_id, limit))
    }

    async fn expire_due(&self, meta: &Meta, limit: usize) -> Result<usize, Error> {
        Ok(self.expire_due_sync(meta, limit))
    }

    async fn purge_finished(&self, before: Timestamp, limit: usize) -> Result<usize, Error> {
        Ok(MemoryStore::purge_finished(self, before, limit))
    }
}

impl Outbox for MemoryStore {
    async fn unpublished(&self, limit: usize) -> Result<Vec<OutboxEntry>, Error> {
        Ok(self.unpublished_sync(limit))
    }

    async fn mark_published(&self, sequences: &[u64]) -> Result<(), Error> {
        self.mark_published_sync(sequences);
        Ok(())
    }
}
