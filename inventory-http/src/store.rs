//! The store the binary runs on: in memory by default, PostgreSQL when a
//! database URL is configured. One enum dispatching the port's calls, because
//! the port's async methods make it unusable as a trait object.

use inventory_core::{
    Adjustment, BatchResults, Command, Error, InventoryItem, InventoryStore, Meta, OrderId,
    Outcome, ProductId, Reservation, ReservationId, Timestamp,
};
use std::str::FromStr;

use inventory_memory::MemoryStore;
use inventory_sqlx::{PgOptions, PgStore};
use service_guard::TlsClient;
use sqlx::postgres::PgConnectOptions;

use crate::config::Config;

/// Either store.
#[derive(Debug)]
pub enum AnyStore {
    /// The in-memory store (the embedded default; state dies with the process).
    Memory(Box<MemoryStore>),
    /// The PostgreSQL store.
    Postgres(PgStore),
}

impl AnyStore {
    /// Opens the store `config` names: PostgreSQL (migrated) when
    /// `database_url` is set, memory otherwise. With `sslmode=verify-ca` or
    /// `verify-full` in the URL, the server's certificate is checked against
    /// the URL's `sslrootcert`, else against `tls`'s extra CA file (and the
    /// system's roots).
    ///
    /// # Errors
    /// The store's error when PostgreSQL cannot be reached or migrated.
    pub async fn open(config: &Config, tls: &TlsClient) -> Result<Self, Error> {
        let Some(url) = &config.database_url else {
            tracing::info!("using the in-memory store");
            return Ok(Self::Memory(Box::default()));
        };
        let options = PgOptions {
            pool_size_max: config.db_pool_size,
            acquire_timeout_ms: config.db_acquire_timeout_ms,
            ..PgOptions::default()
        };
        let mut connect = PgConnectOptions::from_str(url).map_err(|e| Error::InvalidInput {
            field: "database_url",
            reason: e.to_string(),
        })?;
        if let Some(ca_file) = tls.postgres_root_cert(url) {
            connect = connect.ssl_root_cert(ca_file);
        }
        let store = PgStore::connect_with(connect, options).await?;
        store.migrate().await?;
        tracing::info!("using the PostgreSQL store (migrated)");
        Ok(Self::Postgres(store))
    }

    /// The store's kind, for logs and readiness.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Postgres(_) => "postgres",
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Memory($store) => $call,
            AnyStore::Postgres($store) => $call,
        }
    };
}

impl InventoryStore for AnyStore {
    async fn execute(&self, command: Command, meta: &Meta) -> Result<Outcome, Error> {
        dispatch!(self, s => s.execute(command, meta).await)
    }

    async fn execute_batch(&self, batch: Vec<(Command, Meta)>) -> Result<BatchResults, Error> {
        dispatch!(self, s => s.execute_batch(batch).await)
    }

    async fn item(&self, product_id: ProductId) -> Result<Option<InventoryItem>, Error> {
        dispatch!(self, s => s.item(product_id).await)
    }

    async fn items(&self, product_ids: &[ProductId]) -> Result<Vec<InventoryItem>, Error> {
        dispatch!(self, s => s.items(product_ids).await)
    }

    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, Error> {
        dispatch!(self, s => s.reservation(id).await)
    }

    async fn reservations_of_order(&self, order_id: OrderId) -> Result<Vec<Reservation>, Error> {
        dispatch!(self, s => s.reservations_of_order(order_id).await)
    }

    async fn reservations_of_product(
        &self,
        product_id: ProductId,
    ) -> Result<Vec<Reservation>, Error> {
        dispatch!(self, s => s.reservations_of_product(product_id).await)
    }

    async fn adjustments(
        &self,
        product_id: ProductId,
        limit: usize,
    ) -> Result<Vec<Adjustment>, Error> {
        dispatch!(self, s => s.adjustments(product_id, limit).await)
    }

    async fn expire_due(&self, meta: &Meta, limit: usize) -> Result<usize, Error> {
        dispatch!(self, s => s.expire_due(meta, limit).await)
    }

    async fn purge_finished(&self, before: Timestamp, limit: usize) -> Result<usize, Error> {
        match self {
            AnyStore::Memory(s) => InventoryStore::purge_finished(&**s, before, limit).await,
            AnyStore::Postgres(s) => InventoryStore::purge_finished(s, before, limit).await,
        }
    }
}
