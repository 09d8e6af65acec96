//! The PostgreSQL store (sqlx, runtime-checked queries, embedded migrations).
//! Each port method is one statement or one transaction; an idempotency key is
//! claimed by its unique `(user_id, key)` row inside the transaction that
//! inserts the order, so concurrent repeats agree on one order.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::types::Json;
use sqlx::Row;
use uuid::Uuid;

use event_bus::Envelope;

use super::pg_rows::{
    fail, hold_from_row, line_from_row, product_from_row, record_from_row, status_parts,
};
use super::{
    saga_relies_on, BoxFuture, HoldApplied, HoldEvent, OrderRecord, OrderStore, OrdersOutbox, Page,
    PaymentRecord, Placed, RefundRecord, StoreError,
};
use crate::catalog::Product;
use crate::domain::{IdempotencyKey, Order, OrderId, OrderStatus, ProductId, UserId};
use crate::saga::SagaState;

/// The embedded migrations of `orders-http/migrations`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connections the pool opens at most, by default.
pub const POOL_SIZE_DEFAULT: u32 = 16;

/// How long a query waits for a free connection before the store reports
/// itself unavailable, by default.
pub const ACQUIRE_TIMEOUT_DEFAULT_MS: u64 = 5_000;

/// Longest schema name PostgreSQL keeps, in bytes.
pub const SCHEMA_NAME_LEN_MAX: usize = 63;

fn valid_schema(name: &str) -> bool {
    name.len() <= SCHEMA_NAME_LEN_MAX
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// How a [`PgOrderStore`] connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgOrderOptions {
    /// Most connections open at once.
    pub pool_size_max: u32,
    /// Wait for a connection, in milliseconds.
    pub acquire_timeout_ms: u64,
    /// Schema to work in (`search_path`, created if missing): lower-case
    /// letters, digits and `_`, at most [`SCHEMA_NAME_LEN_MAX`] bytes. The
    /// server's default when `None`.
    pub schema: Option<String>,
}

impl Default for PgOrderOptions {
    fn default() -> Self {
        Self {
            pool_size_max: POOL_SIZE_DEFAULT,
            acquire_timeout_ms: ACQUIRE_TIMEOUT_DEFAULT_MS,
            schema: None,
        }
    }
}

/// Orders in PostgreSQL.
#[derive(Clone, Debug)]
pub struct PgOrderStore {
    pool: PgPool,
}

impl PgOrderStore {
    /// Connects a pool to `url` (creating `options.schema` if it is missing).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database cannot be reached or the
    /// url is invalid; [`StoreError::Internal`] for an invalid schema name.
    pub async fn connect(url: &str, options: PgOrderOptions) -> Result<Self, StoreError> {
        Self::connect_with_root_cert(url, None, options).await
    }

    /// [`PgOrderStore::connect`], checking the server's certificate (with
    /// `sslmode=verify-ca` or `verify-full` in the URL) against `root_cert`
    /// too, when given.
    ///
    /// # Errors
    /// As [`PgOrderStore::connect`].
    pub async fn connect_with_root_cert(
        url: &str,
        root_cert: Option<std::path::PathBuf>,
        options: PgOrderOptions,
    ) -> Result<Self, StoreError> {
        let mut connect =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        if let Some(path) = root_cert {
            connect = connect.ssl_root_cert(path);
        }
        if let Some(schema) = &options.schema {
            if !valid_schema(schema) {
                return Err(StoreError::Internal(format!(
                    "invalid schema name {schema:?}"
                )));
            }
            connect = connect.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size_max.max(1))
            .acquire_timeout(Duration::from_millis(options.acquire_timeout_ms))
            .connect_with(connect)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        if let Some(schema) = &options.schema {
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .execute(&pool)
                .await
                .map_err(fail)?;
        }
        Ok(Self { pool })
    }

    /// A store over an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs the embedded migrations.
    ///
    /// # Errors
    /// [`StoreError::Internal`] when a migration fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))
    }

    async fn load(&self, ids: &[Uuid]) -> Result<Vec<OrderRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT o.id, o.user_id, o.status, o.cancel_reason, o.total_minor, o.currency, \
                    o.idempotency_key, o.fingerprint, o.cancel_requested, o.created_at_ms, \
                    o.updated_at_ms, s.state \
             FROM orders o JOIN saga_states s ON s.order_id = o.id \
             WHERE o.id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(fail)?;
        let line_rows = sqlx::query(
            "SELECT order_id, product_id, name, quantity, unit_price_minor, line_total_minor \
             FROM order_lines WHERE order_id = ANY($1) ORDER BY order_id, line_no",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(fail)?;
        let hold_rows = sqlx::query(
            "SELECT order_id, reservation_id, product_id, quantity, status, updated_at_ms \
             FROM order_holds WHERE order_id = ANY($1) ORDER BY order_id, product_id, reservation_id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(fail)?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut record = record_from_row(row)?;
            let id = record.order.id.as_uuid();
            for l in line_rows
                .iter()
                .filter(|l| l.get::<Uuid, _>("order_id") == id)
            {
                record.order.lines.push(line_from_row(l)?);
            }
            for h in hold_rows
                .iter()
                .filter(|h| h.get::<Uuid, _>("order_id") == id)
            {
                record.holds.push(hold_from_row(h)?);
            }
            records.push(record);
        }
        // Keep the caller's order.
        records.sort_by_key(|r| ids.iter().position(|i| *i == r.order.id.as_uuid()));
        Ok(records)
    }

    async fn place_tx(
        &self,
        order: &Order,
        saga: &SagaState,
        event: &Envelope,
    ) -> Result<Placed, StoreError> {
        let mut tx = self.pool.begin().await.map_err(fail)?;
        let (status, reason) = status_parts(order.status);
        sqlx::query(
            "INSERT INTO orders (id, user_id, status, cancel_reason, total_minor, currency, \
                 idempotency_key, fingerprint, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(order.id.as_uuid())
        .bind(order.user_id.as_str())
        .bind(status)
        .bind(reason)
        .bind(order.total_minor)
        .bind(&order.currency)
        .bind(order.idempotency_key.as_ref().map(IdempotencyKey::as_str))
        .bind(&order.fingerprint)
        .bind(order.created_at_ms)
        .bind(order.updated_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        let line_no: Vec<i32> = (0..order.lines.len() as i32).collect();
        let products: Vec<Uuid> = order.lines.iter().map(|l| l.product_id.as_uuid()).collect();
        let names: Vec<String> = order.lines.iter().map(|l| l.name.clone()).collect();
        let quantities: Vec<i32> = order.lines.iter().map(|l| l.quantity as i32).collect();
        let prices: Vec<i64> = order.lines.iter().map(|l| l.unit_price_minor).collect();
        let totals: Vec<i64> = order.lines.iter().map(|l| l.line_total_minor).collect();
        sqlx::query(
            "INSERT INTO order_lines (order_id, line_no, product_id, name, quantity, \
                 unit_price_minor, line_total_minor) \
             SELECT $1, * FROM UNNEST($2::int[], $3::uuid[], $4::text[], $5::int[], $6::bigint[], $7::bigint[])",
        )
        .bind(order.id.as_uuid())
        .bind(&line_no)
        .bind(&products)
        .bind(&names)
        .bind(&quantities)
        .bind(&prices)
        .bind(&totals)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        sqlx::query(
            "INSERT INTO saga_states (order_id, step, state, updated_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(order.id.as_uuid())
        .bind(saga.step.name())
        .bind(Json(saga))
        .bind(order.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        if let Some(key) = &order.idempotency_key {
            let claimed = sqlx::query(
                "INSERT INTO idempotency_keys (user_id, key, order_id, created_at_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, key) DO NOTHING",
            )
            .bind(order.user_id.as_str())
            .bind(key.as_str())
            .bind(order.id.as_uuid())
            .bind(order.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
            if claimed.rows_affected() == 0 {
                tx.rollback().await.map_err(fail)?;
                let existing: Uuid = sqlx::query_scalar(
                    "SELECT order_id FROM idempotency_keys WHERE user_id = $1 AND key = $2",
                )
                .bind(order.user_id.as_str())
                .bind(key.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(fail)?;
                let record =
                    self.load(&[existing]).await?.pop().ok_or_else(|| {
                        StoreError::Internal("idempotency key without order".into())
                    })?;
                return Ok(Placed::Existing(Box::new(record)));
            }
        }
        event_bus::pg::enqueue(&mut tx, event).await.map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(Placed::Created)
    }

    async fn finish_tx(
        &self,
        saga: &SagaState,
        owner: Uuid,
        status: OrderStatus,
        now_ms: i64,
        event: &Envelope,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(fail)?;
        // The claim row is locked until commit, so no other owner can take
        // the saga over between this check and the write.
        let holder: Option<Option<Uuid>> =
            sqlx::query_scalar("SELECT claimed_by FROM saga_states WHERE order_id = $1 FOR UPDATE")
                .bind(saga.order_id.as_uuid())
                .fetch_optional(&mut *tx)
                .await
                .map_err(fail)?;
        match holder {
            None => {
                tx.rollback().await.map_err(fail)?;
                return Ok(false);
            }
            Some(h) if h != Some(owner) => {
                tx.rollback().await.map_err(fail)?;
                return Err(StoreError::LeaseLost(saga.order_id));
            }
            Some(_) => {}
        }
        let (status_text, reason) = status_parts(status);
        let updated = sqlx::query(
            "UPDATE orders SET status = $2, cancel_reason = $3, updated_at_ms = $4 \
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(saga.order_id.as_uuid())
        .bind(status_text)
        .bind(reason)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        if updated.rows_affected() == 0 {
            tx.rollback().await.map_err(fail)?;
            return Ok(false);
        }
        save_saga_on(&mut *tx, saga, now_ms).await?;
        event_bus::pg::enqueue(&mut tx, event).await.map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        Ok(true)
    }

    async fn apply_hold_tx(
        &self,
        consumer: &str,
        event: &HoldEvent,
    ) -> Result<HoldApplied, StoreError> {
        let mut tx = self.pool.begin().await.map_err(fail)?;
        if !event_bus::pg::record_processed(&mut tx, consumer, event.event_id)
            .await
            .map_err(fail)?
        {
            tx.rollback().await.map_err(fail)?;
            return Ok(HoldApplied::Duplicate);
        }
        let found = sqlx::query(HOLD_OWNER_SQL)
            .bind(event.inventory_order_id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(fail)?;
        let Some(row) = found else {
            tx.commit().await.map_err(fail)?;
            return Ok(HoldApplied::UnknownOrder);
        };
        let order_id: Uuid = row.try_get("id").map_err(fail)?;
        let status: String = row.try_get("status").map_err(fail)?;
        let Json(saga): Json<SagaState> = row.try_get("state").map_err(fail)?;
        let hold = &event.hold;
        sqlx::query(
            "INSERT INTO order_holds (order_id, reservation_id, product_id, quantity, status, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (order_id, reservation_id) DO UPDATE \
             SET status = EXCLUDED.status, updated_at_ms = EXCLUDED.updated_at_ms \
             WHERE order_holds.status = 'reserved'",
        )
        .bind(order_id)
        .bind(hold.reservation_id)
        .bind(hold.product_id.as_uuid())
        .bind(i32::try_from(hold.quantity).unwrap_or(i32::MAX))
        .bind(hold.status.as_str())
        .bind(hold.updated_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        let hands_to_saga =
            status == "pending" && hold.status.is_lost() && saga_relies_on(&saga, event);
        Ok(HoldApplied::Applied {
            order_id: OrderId::from_uuid(order_id),
            hands_to_saga,
        })
    }
}

/// The order (id, status, saga state) whose saga holds the inventory order
/// `$1`. An inventory order id belongs to one saga, and the `LIMIT` tells
/// the planner so: without it, an expression index the table's statistics
/// do not cover yet is estimated at thousands of rows and the join scans
/// every order, a cost per event that grows with the table (a fault run's
/// soak saw the consumer of inventory's events fall to 90 events/s).
#[doc(hidden)]
pub const HOLD_OWNER_SQL: &str = "SELECT o.id, o.status, s.state FROM \
       (SELECT order_id, state FROM saga_states \
         WHERE state ->> 'inventory_order_id' = $1 LIMIT 1) s \
     JOIN orders o ON o.id = s.order_id";

async fn save_saga_on<'e, E>(executor: E, saga: &SagaState, now_ms: i64) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    sqlx::query(
        "UPDATE saga_states SET step = $2, state = $3, updated_at_ms = $4 WHERE order_id = $1",
    )
    .bind(saga.order_id.as_uuid())
    .bind(saga.step.name())
    .bind(Json(saga))
    .bind(now_ms)
    .execute(executor)
    .await
    .map_err(fail)?;
    Ok(())
}

const PRODUCT_COLUMNS: &str = "id, name, price_minor, currency, active, updated_at_ms";

impl OrderStore for PgOrderStore {
    fn place<'a>(
        &'a self,
        order: &'a Order,
        saga: &'a SagaState,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<Placed, StoreError>> {
        Box::pin(self.place_tx(order, saga, event))
    }

    fn by_key<'a>(
        &'a self,
        user: &'a UserId,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Option<OrderRecord>, StoreError>> {
        Box::pin(async move {
            let id: Option<Uuid> = sqlx::query_scalar(
                "SELECT order_id FROM idempotency_keys WHERE user_id = $1 AND key = $2",
            )
            .bind(user.as_str())
            .bind(key.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(fail)?;
            match id {
                Some(id) => Ok(self.load(&[id]).await?.pop()),
                None => Ok(None),
            }
        })
    }

    fn get(&self, id: OrderId) -> BoxFuture<'_, Result<Option<OrderRecord>, StoreError>> {
        Box::pin(async move { Ok(self.load(&[id.as_uuid()]).await?.pop()) })
    }

    fn list<'a>(
        &'a self,
        user: &'a UserId,
        offset: u64,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page, StoreError>> {
        Box::pin(async move {
            let total: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE user_id = $1")
                .bind(user.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(fail)?;
            let ids: Vec<Uuid> = sqlx::query_scalar(
                "SELECT id FROM orders WHERE user_id = $1 \
                 ORDER BY created_at_ms DESC, id DESC OFFSET $2 LIMIT $3",
            )
            .bind(user.as_str())
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(fail)?;
            Ok(Page {
                records: self.load(&ids).await?,
                total: u64::try_from(total).unwrap_or(0),
            })
        })
    }

    fn save_saga<'a>(
        &'a self,
        saga: &'a SagaState,
        owner: Uuid,
        now_ms: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            // Saved only by the claim's holder; a saga whose claim is
            // another's (or nobody's) is a lost lease, pending or not.
            let fenced: Option<bool> = sqlx::query_scalar(
                "WITH saved AS ( \
                   UPDATE saga_states s SET step = $2, state = $3, updated_at_ms = $4 \
                   FROM orders o WHERE s.order_id = $1 AND o.id = s.order_id \
                     AND o.status = 'pending' AND s.claimed_by = $5 RETURNING 1) \
                 SELECT s.claimed_by IS DISTINCT FROM $5 FROM saga_states s \
                 WHERE s.order_id = $1 AND NOT EXISTS (SELECT 1 FROM saved)",
            )
            .bind(saga.order_id.as_uuid())
            .bind(saga.step.name())
            .bind(Json(saga))
            .bind(now_ms)
            .bind(owner)
            .fetch_optional(&self.pool)
            .await
            .map_err(fail)?;
            if fenced == Some(true) {
                return Err(StoreError::LeaseLost(saga.order_id));
            }
            Ok(())
        })
    }

    fn finish<'a>(
        &'a self,
        saga: &'a SagaState,
        owner: Uuid,
        status: OrderStatus,
        now_ms: i64,
        event: &'a Envelope,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(self.finish_tx(saga, owner, status, now_ms, event))
    }

    fn apply_hold_event<'a>(
        &'a self,
        consumer: &'a str,
        event: &'a HoldEvent,
    ) -> BoxFuture<'a, Result<HoldApplied, StoreError>> {
        Box::pin(self.apply_hold_tx(consumer, event))
    }

    fn outbox(&self) -> OrdersOutbox {
        OrdersOutbox::Postgres(self.pool.clone())
    }

    fn prune(&self, before_ms: i64, limit: usize) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async move {
            // Claims live on the saga row and inventory order ids in the
            // saga's state: only the record of applied events grows.
            let r = sqlx::query(
                "DELETE FROM processed_events WHERE ctid = ANY(ARRAY( \
                   SELECT ctid FROM processed_events \
                   WHERE processed_at < to_timestamp($1::double precision / 1000) LIMIT $2))",
            )
            .bind(before_ms as f64)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(fail)?;
            Ok(usize::try_from(r.rows_affected()).unwrap_or(usize::MAX))
        })
    }

    fn request_cancel(&self, id: OrderId, now_ms: i64) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let r = sqlx::query(
                "UPDATE orders SET cancel_requested = true, updated_at_ms = $2 \
                 WHERE id = $1 AND status = 'pending'",
            )
            .bind(id.as_uuid())
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(fail)?;
            Ok(r.rows_affected() == 1)
        })
    }

    fn claim(
        &self,
        id: OrderId,
        owner: Uuid,
        now_ms: i64,
        lease_ms: i64,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            let r = sqlx::query(
                "UPDATE saga_states SET claimed_by = $2, claimed_until_ms = $3 + $4 \
                 WHERE order_id = $1 \
                   AND (claimed_by IS NULL OR claimed_by = $2 OR claimed_until_ms <= $3)",
            )
            .bind(id.as_uuid())
            .bind(owner)
            .bind(now_ms)
            .bind(lease_ms)
            .execute(&self.pool)
            .await
            .map_err(fail)?;
            Ok(r.rows_affected() == 1)
        })
    }

    fn unclaim<'a>(
        &'a self,
        ids: &'a [OrderId],
        owner: Uuid,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let uuids: Vec<Uuid> = ids.iter().map(OrderId::as_uuid).collect();
            sqlx::query(
                "UPDATE saga_states SET claimed_by = NULL, claimed_until_ms = NULL \
                 WHERE order_id = ANY($1) AND claimed_by = $2",
            )
            .bind(&uuids)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(fail)?;
            Ok(())
        })
    }

    fn pending(
        &self,
        after: Option<OrderId>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<OrderId>, StoreError>> {
        Box::pin(async move {
            let ids: Vec<Uuid> = sqlx::query_scalar(
                "SELECT id FROM orders WHERE status = 'pending' AND ($1::uuid IS NULL OR id > $1) \
                 ORDER BY id LIMIT $2",
            )
            .bind(after.map(|a| a.as_uuid()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(fail)?;
            Ok(ids.into_iter().map(OrderId::from_uuid).collect())
        })
    }

    fn record_payment<'a>(&'a self, p: &'a PaymentRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO payments (order_id, payment_id, amount_minor, currency, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(p.order_id.as_uuid())
            .bind(&p.payment_id)
            .bind(p.amount_minor)
            .bind(&p.currency)
            .bind(p.at_ms)
            .execute(&self.pool)
            .await
            .map_err(fail)?;
            Ok(())
        })
    }

    fn record_refund<'a>(&'a self, r: &'a RefundRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO refunds (order_id, refund_id, payment_id, amount_minor, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id) DO NOTHING",
            )
            .bind(r.order_id.as_uuid())
            .bind(&r.refund_id)
            .bind(&r.payment_id)
            .bind(r.amount_minor)
            .bind(r.at_ms)
            .execute(&self.pool)
            .await
            .map_err(fail)?;
            Ok(())
        })
    }

    fn money(
        &self,
        id: OrderId,
    ) -> BoxFuture<'_, Result<(Option<PaymentRecord>, Option<RefundRecord>), StoreError>> {
        Box::pin(async move {
            let payment = sqlx::query(
                "SELECT payment_id, amount_minor, currency, created_at_ms FROM payments WHERE order_id = $1",
            )
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(fail)?
            .map(|row| -> Result<PaymentRecord, StoreError> {
                Ok(PaymentRecord {
                    order_id: id,
                    payment_id: row.try_get("payment_id").map_err(fail)?,
                    amount_minor: row.try_get("amount_minor").map_err(fail)?,
                    currency: row.try_get("currency").map_err(fail)?,
                    at_ms: row.try_get("created_at_ms").map_err(fail)?,
                })
            })
            .transpose()?;
            let refund = sqlx::query(
                "SELECT refund_id, payment_id, amount_minor, created_at_ms FROM refunds WHERE order_id = $1",
            )
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(fail)?
            .map(|row| -> Result<RefundRecord, StoreError> {
                Ok(RefundRecord {
                    order_id: id,
                    refund_id: row.try_get("refund_id").map_err(fail)?,
                    payment_id: row.try_get("payment_id").map_err(fail)?,
                    amount_minor: row.try_get("amount_minor").map_err(fail)?,
                    at_ms: row.try_get("created_at_ms").map_err(fail)?,
                })
            })
            .transpose()?;
            Ok((payment, refund))
        })
    }

    fn products(&self) -> BoxFuture<'_, Result<Vec<Product>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!(
                "SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id"
            ))
            .fetch_all(&self.pool)
            .await
            .map_err(fail)?;
            rows.iter().map(product_from_row).collect()
        })
    }

    fn products_by_id<'a>(
        &'a self,
        ids: &'a [ProductId],
    ) -> BoxFuture<'a, Result<Vec<Product>, StoreError>> {
        Box::pin(async move {
            let uuids: Vec<Uuid> = ids.iter().map(ProductId::as_uuid).collect();
            let rows = sqlx::query(&format!(
                "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ANY($1) ORDER BY id"
            ))
            .bind(&uuids)
            .fetch_all(&self.pool)
            .await
            .map_err(fail)?;
            rows.iter().map(product_from_row).collect()
        })
    }

    fn create_product<'a>(&'a self, p: &'a Product) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let r = sqlx::query(&format!(
                "INSERT INTO products ({PRODUCT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (id) DO NOTHING"
            ))
            .bind(p.id.as_uuid())
            .bind(&p.name)
            .bind(p.price_minor)
            .bind(&p.currency)
            .bind(p.active)
            .bind(p.updated_at_ms)
            .execute(&self.pool)
            .await
            .map_err(fail)?;
            if r.rows_affected() == 0 {
                return Err(StoreError::ProductExists(p.id));
            }
            Ok(())
        })
    }

    fn update_product<'a>(&'a self, p: &'a Product) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let r = sqlx::query(
                "UPDATE products SET name = $2, price_minor = $3, currency = $4, active = $5, \
                 updated_at_ms = $6 WHERE id = $1",
            )
            .bind(p.id.as_uuid())
            .bind(&p.name)
            .bind(p.price_minor)
            .bind(&p.currency)
            .bind(p.active)
            .bind(p.updated_at_ms)
            .execute(&self.pool)
            .await
            .map_err(fail)?;
            Ok(r.rows_affected() == 1)
        })
    }

    fn seed_products<'a>(&'a self, ps: &'a [Product]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            for p in ps {
                match self.create_product(p).await {
                    Ok(()) | Err(StoreError::ProductExists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(fail)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::valid_schema;

    /// The events migrations create event-bus's tables and indexes exactly
    /// as event-bus defines them.
    #[test]
    fn events_migrations_hold_event_bus_ddl() {
        let squash = |s: &str| s.split_whitespace().collect::<String>();
        let migrations = squash(concat!(
            include_str!("../../migrations/0003_events.sql"),
            include_str!("../../migrations/0004_event_outbox_published.sql"),
        ));
        for ddl in [
            event_bus::pg::ENVELOPE_OUTBOX_DDL,
            event_bus::pg::PROCESSED_EVENTS_DDL,
        ] {
            for statement in ddl.split(';') {
                assert!(migrations.contains(&squash(statement)), "{statement}");
            }
        }
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(valid_schema("orders"));
        assert!(valid_schema("_t_01"));
        for bad in ["", "Orders", "1abc", "a-b", "a;drop", &"a".repeat(64)] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }
}
