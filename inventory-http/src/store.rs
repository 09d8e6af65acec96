//! The store the binary runs on: in memory by default, PostgreSQL when a
//! database URL is configured (feature `postgres`). One enum dispatching the
//! port's calls, because the port's async methods make it unusable as a
//! trait object.

use inventory_core::{
    Adjustment, BatchResults, Command, Error, InventoryItem, InventoryStore, Meta, OrderId, Outbox,
    OutboxEntry, Outcome, ProductId, Reservation, ReservationId, Timestamp,
};

use inventory_memory::MemoryStore;
#[cfg(feature = "postgres")]
use inventory_sqlx::PgStore;
use service_guard::TlsClient;

use crate::config::Config;

/// Either store.
#[derive(Debug)]
pub enum AnyStore {
    /// The in-memory store (the embedded default; state dies with the process).
    Memory(Box<MemoryStore>),
    /// The PostgreSQL store (feature `postgres`).
    #[cfg(feature = "postgres")]
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
    /// The store's error when PostgreSQL cannot be reached or migrated, or
    /// [`Error::InvalidInput`] for a database URL in a build without the
    /// `postgres` feature.
    pub async fn open(config: &Config, tls: &TlsClient) -> Result<Self, Error> {
        let Some(url) = &config.database_url else {
            tracing::info!("using the in-memory store");
            return Ok(Self::Memory(Box::default()));
        };
        open_postgres(url, config, tls).await
    }

    /// The store's kind, for logs and readiness.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            #[cfg(feature = "postgres")]
            Self::Postgres(_) => "postgres",
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Memory($store) => $call,
            #[cfg(feature = "postgres")]
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
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(s) => InventoryStore::purge_finished(s, before, limit).await,
        }
    }
}

impl Outbox for AnyStore {
    async fn unpublished(&self, limit: usize) -> Result<Vec<OutboxEntry>, Error> {
        dispatch!(self, s => s.unpublished(limit).await)
    }

    async fn mark_published(&self, sequences: &[u64]) -> Result<(), Error> {
        dispatch!(self, s => s.mark_published(sequences).await)
    }
}

/// Opens and migrates the PostgreSQL store at `url`.
#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, config: &Config, tls: &TlsClient) -> Result<AnyStore, Error> {
    use inventory_sqlx::PgOptions;
    use sqlx::postgres::PgConnectOptions;
    use std::str::FromStr;

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
    Ok(AnyStore::Postgres(store))
}

/// A database URL in a build without PostgreSQL: refused, naming the feature.
#[cfg(not(feature = "postgres"))]
async fn open_postgres(_url: &str, config: &Config, _tls: &TlsClient) -> Result<AnyStore, Error> {
    let not_built = config
        .check_backends()
        .expect_err("a database url in a build without postgres");
    Err(Error::InvalidInput {
        field: "database_url",
        reason: not_built.to_string(),
    })
}
