//! PostgreSQL: inventory's `outbox` table drained by any number of relays at
//! once ([`PgOutbox`]), and the consumer side's `processed_events` table
//! ([`record_processed`]).
//!
//! A relay claims a batch with `SELECT ... FOR UPDATE SKIP LOCKED` in a
//! transaction it holds while publishing, then stamps `published_at` and
//! commits: two relays never hold the same row, so in normal operation no
//! row is published twice (a relay that dies after the confirm and before the
//! commit gives its rows back, and they are published again: at least once).
//!
//! Order per product survives several relays: a claimed row is only
//! published when no earlier unsent row of its product is outside the claim
//! (held by another relay that has not committed yet); otherwise that
//! product's rows are left for a later claim.

use std::time::Duration;

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::envelope::{Envelope, INVENTORY_SCHEMA_VERSION, INVENTORY_SOURCE};
use crate::handler::{Dedup, HandlerError};
use crate::source::{Claim, OutboxSource, SourceError};

/// The consumer side's deduplication table. The owning service runs this in
/// its own migrations (it is also what [`ensure_processed_events`] runs).
pub const PROCESSED_EVENTS_DDL: &str = "CREATE TABLE IF NOT EXISTS processed_events (\
    consumer     TEXT        NOT NULL, \
    event_id     UUID        NOT NULL, \
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(), \
    PRIMARY KEY (consumer, event_id))";

/// Inventory's outbox table, drained by one or many relays.
#[derive(Clone, Debug)]
pub struct PgOutbox {
    pool: PgPool,
}

impl PgOutbox {
    /// A source over the `outbox` table reachable through `pool` (its
    /// `search_path` decides the schema).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// A claimed batch: the transaction holding the rows' locks.
#[derive(Debug)]
pub struct PgClaim {
    transaction: Transaction<'static, Postgres>,
    envelopes: Vec<Envelope>,
    sequences: Vec<i64>,
}

fn failed(what: &str) -> impl Fn(sqlx::Error) -> SourceError + '_ {
    move |e| SourceError(format!("{what}: {e}"))
}

fn envelope(row: &PgRow) -> Result<(i64, Uuid, Envelope), SourceError> {
    let read = failed("read outbox row");
    let sequence: i64 = row.try_get("sequence").map_err(&read)?;
    let product_id: Uuid = row.try_get("product_id").map_err(&read)?;
    let event_type: String = row.try_get("event_type").map_err(&read)?;
    let correlation_id: Option<String> = row.try_get("correlation_id").map_err(&read)?;
    // The stored payload is inventory-core's serde form of the payload (a
    // `kind` tag and its fields), so it goes out as stored.
    let sqlx::types::Json(payload): sqlx::types::Json<serde_json::Value> =
        row.try_get("payload").map_err(&read)?;
    let envelope = Envelope::new(
        INVENTORY_SOURCE,
        &event_type,
        INVENTORY_SCHEMA_VERSION,
        row.try_get("event_id").map_err(&read)?,
        row.try_get("occurred_at_ms").map_err(&read)?,
        correlation_id.as_deref(),
        payload,
    );
    Ok((sequence, product_id, envelope))
}

impl Claim for PgClaim {
    fn envelopes(&self) -> &[Envelope] {
        &self.envelopes
    }

    async fn commit(mut self) -> Result<(), SourceError> {
        if !self.sequences.is_empty() {
            sqlx::query("UPDATE outbox SET published_at = now() WHERE sequence = ANY($1)")
                .bind(&self.sequences)
                .execute(&mut *self.transaction)
                .await
                .map_err(failed("mark outbox rows published"))?;
        }
        self.transaction
            .commit()
            .await
            .map_err(failed("commit outbox claim"))
    }
}

impl OutboxSource for PgOutbox {
    type Claim = PgClaim;

    async fn claim(&self, limit: usize) -> Result<PgClaim, SourceError> {
        let mut transaction = self.pool.begin().await.map_err(failed("begin"))?;
        let rows = sqlx::query(
            "SELECT sequence, event_id, event_type, product_id, payload, correlation_id, \
                    occurred_at_ms \
             FROM outbox WHERE published_at IS NULL \
             ORDER BY sequence LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *transaction)
        .await
        .map_err(failed("claim outbox rows"))?;
        let claimed = rows.iter().map(envelope).collect::<Result<Vec<_>, _>>()?;
        let blocked: Vec<Uuid> = if claimed.is_empty() {
            Vec::new()
        } else {
            let sequences: Vec<i64> = claimed.iter().map(|c| c.0).collect();
            let products: Vec<Uuid> = claimed.iter().map(|c| c.1).collect();
            sqlx::query_scalar(
                "SELECT c.product_id \
                 FROM (SELECT product_id, min(sequence) AS first \
                       FROM unnest($1::bigint[], $2::uuid[]) AS t(sequence, product_id) \
                       GROUP BY product_id) c \
                 WHERE EXISTS (SELECT 1 FROM outbox o \
                               WHERE o.published_at IS NULL AND o.sequence < c.first \
                                 AND o.product_id = c.product_id)",
            )
            .bind(&sequences)
            .bind(&products)
            .fetch_all(&mut *transaction)
            .await
            .map_err(failed("check order of claimed rows"))?
        };
        let (mut sequences, mut envelopes) = (Vec::new(), Vec::new());
        for (sequence, product_id, envelope) in claimed {
            if !blocked.contains(&product_id) {
                sequences.push(sequence);
                envelopes.push(envelope);
            }
        }
        Ok(PgClaim {
            transaction,
            envelopes,
            sequences,
        })
    }

    async fn depth(&self) -> Result<Option<u64>, SourceError> {
        let count: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(failed("count outbox rows"))?;
        Ok(Some(count.unsigned_abs()))
    }

    async fn prune(&self, retention: Duration, limit: usize) -> Result<u64, SourceError> {
        let done = sqlx::query(
            "DELETE FROM outbox WHERE sequence IN (\
                 SELECT sequence FROM outbox \
                 WHERE published_at < now() - make_interval(secs => $1) \
                 ORDER BY sequence LIMIT $2)",
        )
        .bind(retention.as_secs_f64())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(failed("prune outbox"))?;
        Ok(done.rows_affected())
    }
}

/// Creates `processed_events` if it does not exist (for tests and for
/// services without migrations of their own; see [`PROCESSED_EVENTS_DDL`]).
///
/// # Errors
/// The database error.
pub async fn ensure_processed_events(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query(PROCESSED_EVENTS_DDL)
        .execute(pool)
        .await
        .map(drop)
}

/// Records in the caller's transaction that `consumer` applied `event_id`;
/// `true` the first time, `false` when it was already recorded (then the
/// caller skips the effect, and commits or rolls back: either is fine).
///
/// Called in the same transaction as the event's effect, so the effect and
/// the record commit together or not at all.
///
/// # Errors
/// The database error.
pub async fn record_processed(
    transaction: &mut Transaction<'_, Postgres>,
    consumer: &str,
    event_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) \
         ON CONFLICT (consumer, event_id) DO NOTHING",
    )
    .bind(consumer)
    .bind(event_id)
    .execute(&mut **transaction)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A [`Dedup`] over `processed_events` that records in a transaction of its
/// own. Only for effects outside PostgreSQL; an effect in the database uses
/// [`record_processed`] in its own transaction instead.
#[derive(Clone, Debug)]
pub struct PgDedup {
    pool: PgPool,
}

impl PgDedup {
    /// A store over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

impl Dedup for PgDedup {
    async fn first_time(&self, consumer: &str, event_id: Uuid) -> Result<bool, HandlerError> {
        let transient = |e: sqlx::Error| HandlerError::Transient(e.to_string());
        let mut transaction = self.pool.begin().await.map_err(transient)?;
        let first = record_processed(&mut transaction, consumer, event_id)
            .await
            .map_err(transient)?;
        transaction.commit().await.map_err(transient)?;
        Ok(first)
    }
}
