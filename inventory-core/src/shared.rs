//! "Any store" as one type: [`DynInventoryStore`] is the storage port with
//! boxed futures, so it can be a trait object, and [`SharedStore`] (an
//! `Arc<dyn DynInventoryStore>`) implements [`InventoryStore`] again. Code that
//! picks its store at run time (memory in tests, PostgreSQL in production, a
//! group-commit layer in front of either) holds a `SharedStore` instead of an
//! enum written by hand.
//!
//! Each call costs one allocation for its boxed future, next to what the
//! store itself does; generic code over `S: InventoryStore` pays nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::command::{Command, Outcome};
use crate::error::Error;
use crate::event::OutboxEntry;
use crate::ids::{OrderId, ProductId, ReservationId};
use crate::item::{Adjustment, InventoryItem};
use crate::port::{BatchResults, InventoryStore, Meta, Outbox};
use crate::reservation::Reservation;
use crate::value::Timestamp;

/// A future a [`DynInventoryStore`] returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Any store, behind a pointer: see [`DynInventoryStore`].
///
/// ```
/// use std::sync::Arc;
/// use inventory_core::{InventoryStore, SharedStore};
///
/// /// Picks a store at run time; callers see one type.
/// fn open<S: InventoryStore>(store: S) -> SharedStore {
///     Arc::new(store)
/// }
/// ```
pub type SharedStore = Arc<dyn DynInventoryStore>;

/// The storage port in a form that can be a trait object: every
/// [`InventoryStore`] is one (a blanket implementation), and [`SharedStore`]
/// is an [`InventoryStore`] again. Its methods mean exactly what the port's
/// do; call them through [`InventoryStore`] (or
/// [`crate::InventoryStoreExt`]) on a [`SharedStore`].
///
/// ```
/// use inventory_core::{Error, InventoryStoreExt, ProductId, SharedStore};
///
/// /// Not generic: one function, whichever store the program was started with.
/// async fn in_stock(store: &SharedStore, product: ProductId) -> Result<bool, Error> {
///     Ok(store.availability(product).await?.is_some_and(|units| units > 0))
/// }
/// ```
#[allow(missing_docs)] // each method is the port's method of the same name
pub trait DynInventoryStore: Send + Sync + 'static {
    fn execute_dyn<'a>(
        &'a self,
        command: Command,
        meta: &'a Meta,
    ) -> BoxFuture<'a, Result<Outcome, Error>>;
    fn execute_batch_dyn(
        &self,
        batch: Vec<(Command, Meta)>,
    ) -> BoxFuture<'_, Result<BatchResults, Error>>;
    fn item_dyn(
        &self,
        product_id: ProductId,
    ) -> BoxFuture<'_, Result<Option<InventoryItem>, Error>>;
    fn items_dyn<'a>(
        &'a self,
        product_ids: &'a [ProductId],
    ) -> BoxFuture<'a, Result<Vec<InventoryItem>, Error>>;
    fn reservation_dyn(
        &self,
        id: ReservationId,
    ) -> BoxFuture<'_, Result<Option<Reservation>, Error>>;
    fn reservations_of_order_dyn(
        &self,
        order_id: OrderId,
    ) -> BoxFuture<'_, Result<Vec<Reservation>, Error>>;
    fn reservations_of_product_dyn(
        &self,
        product_id: ProductId,
    ) -> BoxFuture<'_, Result<Vec<Reservation>, Error>>;
    fn adjustments_dyn(
        &self,
        product_id: ProductId,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Adjustment>, Error>>;
    fn expire_due_dyn<'a>(
        &'a self,
        meta: &'a Meta,
        limit: usize,
    ) -> BoxFuture<'a, Result<usize, Error>>;
    fn purge_finished_dyn(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<usize, Error>>;
}

impl<S: InventoryStore> DynInventoryStore for S {
    fn execute_dyn<'a>(
        &'a self,
        command: Command,
        meta: &'a Meta,
    ) -> BoxFuture<'a, Result<Outcome, Error>> {
        Box::pin(self.execute(command, meta))
    }
    fn execute_batch_dyn(
        &self,
        batch: Vec<(Command, Meta)>,
    ) -> BoxFuture<'_, Result<BatchResults, Error>> {
        Box::pin(self.execute_batch(batch))
    }
    fn item_dyn(
        &self,
        product_id: ProductId,
    ) -> BoxFuture<'_, Result<Option<InventoryItem>, Error>> {
        Box::pin(self.item(product_id))
    }
    fn items_dyn<'a>(
        &'a self,
        product_ids: &'a [ProductId],
    ) -> BoxFuture<'a, Result<Vec<InventoryItem>, Error>> {
        Box::pin(self.items(product_ids))
    }
    fn reservation_dyn(
        &self,
        id: ReservationId,
    ) -> BoxFuture<'_, Result<Option<Reservation>, Error>> {
        Box::pin(self.reservation(id))
    }
    fn reservations_of_order_dyn(
        &self,
        order_id: OrderId,
    ) -> BoxFuture<'_, Result<Vec<Reservation>, Error>> {
        Box::pin(self.reservations_of_order(order_id))
    }
    fn reservations_of_product_dyn(
        &self,
        product_id: ProductId,
    ) -> BoxFuture<'_, Result<Vec<Reservation>, Error>> {
        Box::pin(self.reservations_of_product(product_id))
    }
    fn adjustments_dyn(
        &self,
        product_id: ProductId,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<Adjustment>, Error>> {
        Box::pin(self.adjustments(product_id, limit))
    }
    fn expire_due_dyn<'a>(
        &'a self,
        meta: &'a Meta,
        limit: usize,
    ) -> BoxFuture<'a, Result<usize, Error>> {
        Box::pin(self.expire_due(meta, limit))
    }
    fn purge_finished_dyn(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> BoxFuture<'_, Result<usize, Error>> {
        Box::pin(self.purge_finished(before, limit))
    }
}

impl InventoryStore for SharedStore {
    async fn execute(&self, command: Command, meta: &Meta) -> Result<Outcome, Error> {
        (**self).execute_dyn(command, meta).await
    }
    async fn execute_batch(&self, batch: Vec<(Command, Meta)>) -> Result<BatchResults, Error> {
        (**self).execute_batch_dyn(batch).await
    }
    async fn item(&self, product_id: ProductId) -> Result<Option<InventoryItem>, Error> {
        (**self).item_dyn(product_id).await
    }
    async fn items(&self, product_ids: &[ProductId]) -> Result<Vec<InventoryItem>, Error> {
        (**self).items_dyn(product_ids).await
    }
    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, Error> {
        (**self).reservation_dyn(id).await
    }
    async fn reservations_of_order(&self, order_id: OrderId) -> Result<Vec<Reservation>, Error> {
        (**self).reservations_of_order_dyn(order_id).await
    }
    async fn reservations_of_product(
        &self,
        product_id: ProductId,
    ) -> Result<Vec<Reservation>, Error> {
        (**self).reservations_of_product_dyn(product_id).await
    }
    async fn adjustments(
        &self,
        product_id: ProductId,
        limit: usize,
    ) -> Result<Vec<Adjustment>, Error> {
        (**self).adjustments_dyn(product_id, limit).await
    }
    async fn expire_due(&self, meta: &Meta, limit: usize) -> Result<usize, Error> {
        (**self).expire_due_dyn(meta, limit).await
    }
    async fn purge_finished(&self, before: Timestamp, limit: usize) -> Result<usize, Error> {
        (**self).purge_finished_dyn(before, limit).await
    }
}

/// Any outbox, behind a pointer: see [`DynOutbox`].
pub type SharedOutbox = Arc<dyn DynOutbox>;

/// The [`Outbox`] port in a form that can be a trait object, as
/// [`DynInventoryStore`] is for the store: every [`Outbox`] is one, and
/// [`SharedOutbox`] is an [`Outbox`] again.
///
/// ```
/// use std::sync::Arc;
/// use inventory_core::{InventoryStore, Outbox, SharedOutbox, SharedStore};
///
/// /// One store seen as both ports, each as one type.
/// fn share<S: InventoryStore + Outbox>(store: S) -> (SharedStore, SharedOutbox) {
///     let store = Arc::new(store);
///     (store.clone(), store)
/// }
/// ```
#[allow(missing_docs)] // each method is the port's method of the same name
pub trait DynOutbox: Send + Sync + 'static {
    fn unpublished_dyn(&self, limit: usize) -> BoxFuture<'_, Result<Vec<OutboxEntry>, Error>>;
    fn mark_published_dyn<'a>(&'a self, sequences: &'a [u64]) -> BoxFuture<'a, Result<(), Error>>;
}

impl<O: Outbox> DynOutbox for O {
    fn unpublished_dyn(&self, limit: usize) -> BoxFuture<'_, Result<Vec<OutboxEntry>, Error>> {
        Box::pin(self.unpublished(limit))
    }
    fn mark_published_dyn<'a>(&'a self, sequences: &'a [u64]) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.mark_published(sequences))
    }
}

impl Outbox for SharedOutbox {
    async fn unpublished(&self, limit: usize) -> Result<Vec<OutboxEntry>, Error> {
        (**self).unpublished_dyn(limit).await
    }
    async fn mark_published(&self, sequences: &[u64]) -> Result<(), Error> {
        (**self).mark_published_dyn(sequences).await
    }
}
