//! [`PgStore`]: connecting, migrating, and the storage port over PostgreSQL.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use inventory_core::{
    check_batch, check_bulk, Adjustment, BatchResults, Command, Error, InventoryItem,
    InventoryStore, Meta, OrderId, Outbox, OutboxEntry, Outcome, ProductId, Reservation,
    ReservationId, ADJUSTMENTS_PAGE_MAX, OUTBOX_BATCH_MAX,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use crate::fail::to_error;
use crate::options::PgOptions;
use crate::retry::{Counters, RetryStats};
use crate::rows::{self, ITEM_COLUMNS, RESERVATION_COLUMNS};
use crate::{execute, sweep, MIGRATOR};

/// Session settings of the store's connections: how they plan the store's
/// prepared statements.
///
/// - `plan_cache_mode = force_generic_plan`: the statements take arrays whose
///   lengths vary with every batch, so PostgreSQL would plan them afresh on
///   every call (a custom plan looks cheaper than the generic one), which
///   cost more than running them.
/// - `enable_seqscan = off`: a generic plan is made once per connection, from
///   the statistics of that moment; made while a table is still small (a
///   fresh database, or one whose statistics are stale), it could scan the
///   table, and keep scanning it as the table grows. Every statement of the
///   store reads by key, so an index plan is always the right one; this makes
///   the planner choose it whatever the statistics say (a scan still runs
///   where no index serves).
///
/// A pool handed to [`PgStore::from_pool`] should set the same.
pub const SESSION_SETTINGS: [(&str, &str); 2] = [
    ("plan_cache_mode", "force_generic_plan"),
    ("enable_seqscan", "off"),
];

/// A pooled connection idle at least this long is checked (one round trip)
/// before use; one in steady use is not, since the pool checks every
/// connection as it comes back.
pub const PING_IDLE_AFTER_MS: u64 = 1_000;

/// The PostgreSQL inventory store. Cheap to clone: clones share one pool and
/// one set of retry counters.
///
/// Any number of stores, in one process or many, may work on one database at
/// once; every change is one transaction.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    options: Arc<PgOptions>,
    counters: Arc<Counters>,
}

impl PgStore {
    /// Opens a pool on the database at `url` (for example
    /// `postgres://user@host:5432/db`) and checks that it answers.
    ///
    /// ```no_run
    /// use inventory_core::{InventoryStoreExt, ProductId, Timestamp, Uuid};
    /// use inventory_sqlx::{Concurrency, PgOptions, PgStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), inventory_core::Error> {
    /// let options = PgOptions { concurrency: Concurrency::Optimistic, ..PgOptions::default() };
    /// let store = PgStore::connect("postgres://shop@db.internal:5432/shop?sslmode=disable", options).await?;
    /// store.migrate().await?;
    /// let product = ProductId::from(Uuid::new_v4());
    /// store.create_item(product, 10, Timestamp::from(std::time::SystemTime::now())).await?;
    /// assert_eq!(store.availability(product).await?, Some(10));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A URL that does not parse is refused before any connection is tried:
    ///
    /// ```
    /// use inventory_core::Error;
    /// use inventory_sqlx::{PgOptions, PgStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let refused = PgStore::connect("not a url", PgOptions::default()).await;
    /// assert!(matches!(refused, Err(Error::InvalidInput { field: "database_url", .. })));
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `database_url` when `url` does not
    /// parse; [`Error::Unavailable`] when the database cannot be reached.
    pub async fn connect(url: &str, options: PgOptions) -> Result<Self, Error> {
        let connect = PgConnectOptions::from_str(url).map_err(|e| Error::InvalidInput {
            field: "database_url",
            reason: e.to_string(),
        })?;
        Self::connect_with(connect, options).await
    }

    /// Like [`PgStore::connect`], with connection options built by the caller
    /// (for example with a `search_path` set). The store adds
    /// [`SESSION_SETTINGS`] to them,
    /// and checks a pooled connection before use only when it was idle
    /// [`PING_IDLE_AFTER_MS`] or more.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the database cannot be reached;
    /// [`Error::Storage`] for other failures.
    pub async fn connect_with(
        connect: PgConnectOptions,
        options: PgOptions,
    ) -> Result<Self, Error> {
        let connect = connect.options(SESSION_SETTINGS);
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size_max)
            .acquire_timeout(Duration::from_millis(options.acquire_timeout_ms))
            // The pool already checks a connection when it comes back (a
            // round trip); checking it again on the way out only pays off
            // when it has been idle a while.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= Duration::from_millis(PING_IDLE_AFTER_MS) {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(connect)
            .await
            .map_err(|e| to_error("connect", e))?;
        Ok(Self::from_pool_with(pool, options))
    }

    /// A store over an existing pool, with default [`PgOptions`] (the pool's
    /// own size and timeouts apply).
    pub fn from_pool(pool: PgPool) -> Self {
        Self::from_pool_with(pool, PgOptions::default())
    }

    /// A store over an existing pool, with `options` (their pool settings are
    /// ignored: the pool's own apply).
    pub fn from_pool_with(pool: PgPool, options: PgOptions) -> Self {
        Self {
            pool,
            options: Arc::new(options),
            counters: Arc::new(Counters::default()),
        }
    }

    /// Applies the embedded migrations that the database has not seen yet.
    /// Safe to call from several instances at once (sqlx serializes them with
    /// an advisory lock).
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the database cannot be reached;
    /// [`Error::Storage`] when a migration fails or the applied ones differ
    /// from the embedded ones.
    pub async fn migrate(&self) -> Result<(), Error> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => to_error("migrate", e),
            other => Error::Storage {
                reason: format!("migrate: {other}"),
            },
        })
    }

    /// The pool, for callers that need plain SQL next to the store.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The settings this store runs with.
    pub fn options(&self) -> &PgOptions {
        &self.options
    }

    /// How often transactions ran, conflicted and gave up so far.
    pub fn retry_stats(&self) -> RetryStats {
        self.counters.read()
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }
}

impl InventoryStore for PgStore {
    #[tracing::instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn execute(&self, command: Command, meta: &Meta) -> Result<Outcome, Error> {
        let mut results = self.execute_batch(vec![(command, meta.clone())]).await?;
        results.pop().expect("one answer per command")
    }

    #[tracing::instrument(level = "debug", skip_all, fields(size = batch.len()), err(level = "debug"))]
    async fn execute_batch(&self, batch: Vec<(Command, Meta)>) -> Result<BatchResults, Error> {
        check_batch(&batch)?;
        // The transaction runs on a task of its own, to the end, even when
        // the caller stops waiting: a transaction cut off between sending a
        // statement and reading its answer could hand its connection back
        // to the pool still inside that transaction.
        let store = self.clone();
        tokio::spawn(async move { execute::execute_batch(&store, &batch).await })
            .await
            .unwrap_or_else(|e| {
                Err(Error::Storage {
                    reason: format!("batch task failed: {e}"),
                })
            })
    }

    async fn item(&self, product_id: ProductId) -> Result<Option<InventoryItem>, Error> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM inventory_items WHERE product_id = $1");
        let row = sqlx::query(&sql)
            .bind(product_id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| to_error("read item", e))?;
        row.as_ref().map(rows::item).transpose()
    }

    async fn items(&self, product_ids: &[ProductId]) -> Result<Vec<InventoryItem>, Error> {
        check_bulk(product_ids)?;
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM inventory_items \
             JOIN UNNEST($1::uuid[]) WITH ORDINALITY AS asked(id, n) ON product_id = asked.id \
             ORDER BY asked.n"
        );
        let ids: Vec<Uuid> = product_ids.iter().map(ProductId::as_uuid).collect();
        let found = sqlx::query(&sql)
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| to_error("read items", e))?;
        // A product named twice is answered twice, like every other store.
        found.iter().map(rows::item).collect()
    }

    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, Error> {
        let sql = format!("SELECT {RESERVATION_COLUMNS} FROM reservations WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| to_error("read reservation", e))?;
        row.as_ref().map(rows::reservation).transpose()
    }

    async fn reservations_of_order(&self, order_id: OrderId) -> Result<Vec<Reservation>, Error> {
        let sql = format!(
            "SELECT {RESERVATION_COLUMNS} FROM reservations WHERE order_id = $1 ORDER BY product_id"
        );
        let found = sqlx::query(&sql)
            .bind(order_id.as_uuid())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| to_error("read reservations of order", e))?;
        found.iter().map(rows::reservation).collect()
    }

    /// Reads the whole table (no index leads with the product: see the
    /// migration that dropped it): for operators and tests, as the port says.
    async fn reservations_of_product(
        &self,
        product_id: ProductId,
    ) -> Result<Vec<Reservation>, Error> {
        let sql = format!(
            "SELECT {RESERVATION_COLUMNS} FROM reservations WHERE product_id = $1 ORDER BY id"
        );
        let found = sqlx::query(&sql)
            .bind(product_id.as_uuid())
            .fetch_all(&self.pool)
            .await
            .map_err(|e| to_error("read reservations of product", e))?;
        found.iter().map(rows::reservation).collect()
    }

    async fn adjustments(
        &self,
        product_id: ProductId,
        limit: usize,
    ) -> Result<Vec<Adjustment>, Error> {
        let limit = limit.min(ADJUSTMENTS_PAGE_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let found = sqlx::query(
            "SELECT product_id, delta, quantity_before, quantity_after, reason, actor, at_ms, \
               idempotency_key FROM stock_adjustments WHERE product_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(product_id.as_uuid())
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| to_error("read ledger", e))?;
        found.iter().map(rows::adjustment).collect()
    }

    #[tracing::instrument(level = "debug", skip_all, fields(limit), err(level = "debug"))]
    async fn expire_due(&self, meta: &Meta, limit: usize) -> Result<usize, Error> {
        sweep::expire_due(self, meta, limit).await
    }
}

impl Outbox for PgStore {
    async fn unpublished(&self, limit: usize) -> Result<Vec<OutboxEntry>, Error> {
        let limit = limit.min(OUTBOX_BATCH_MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let found = sqlx::query(
            "SELECT sequence, event_id, event_type, payload, correlation_id, occurred_at_ms \
             FROM outbox WHERE published_at IS NULL ORDER BY sequence LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| to_error("read outbox", e))?;
        found.iter().map(rows::outbox_entry).collect()
    }

    async fn mark_published(&self, sequences: &[u64]) -> Result<(), Error> {
        if sequences.is_empty() {
            return Ok(());
        }
        let sequences: Vec<i64> = sequences
            .iter()
            .filter_map(|s| i64::try_from(*s).ok())
            .collect();
        sqlx::query(
            "UPDATE outbox SET published_at = now() \
             WHERE sequence = ANY($1) AND published_at IS NULL",
        )
        .bind(sequences)
        .execute(&self.pool)
        .await
        .map_err(|e| to_error("mark outbox entries published", e))?;
        Ok(())
    }
}
