//! PostgreSQL: an outbox table drained by any number of relays at once
//! ([`PgOutbox`]: inventory's `outbox`, or the generic `event_outbox` of
//! [`ENVELOPE_OUTBOX_DDL`] that another service fills with [`enqueue`]), and
//! the consumer side's `processed_events` table ([`record_processed`]).
//!
//! A relay claims a batch with `SELECT ... FOR UPDATE SKIP LOCKED` in a
//! transaction it holds while publishing, then stamps `published_at` and
//! commits: two relays never hold the same row, so in normal operation no
//! row is published twice (a relay that dies after the confirm and before the
//! commit gives its rows back, and they are published again: at least once).
//!
//! Order per product survives several relays: a claimed row is only
//! published when no earlier unsent row of its product is outside the claim
//! (held by another relay that has not committed yet); otherwise it and the
//! product's later rows are left for a later claim.

use std::collections::{HashMap, HashSet};
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

/// A generic outbox of whole envelopes, for a service whose events are not
/// inventory-core's (orders). Run it in the service's migrations; rows are
/// written with [`enqueue`] in the transaction of the change.
pub const ENVELOPE_OUTBOX_DDL: &str = "CREATE TABLE IF NOT EXISTS event_outbox (\
    sequence     BIGSERIAL   PRIMARY KEY, \
    event_id     UUID        NOT NULL UNIQUE, \
    event_type   TEXT        NOT NULL, \
    ordering_key TEXT        NOT NULL, \
    envelope     JSONB       NOT NULL, \
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(), \
    published_at TIMESTAMPTZ); \
    CREATE INDEX IF NOT EXISTS event_outbox_unpublished_idx \
    ON event_outbox (sequence) WHERE published_at IS NULL; \
    CREATE INDEX IF NOT EXISTS event_outbox_published_idx \
    ON event_outbox (published_at) WHERE published_at IS NOT NULL";

/// Which outbox table a [`PgOutbox`] drains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// inventory-sqlx's `outbox`: payload columns, ordered per `product_id`.
    Inventory,
    /// [`ENVELOPE_OUTBOX_DDL`]'s `event_outbox`: whole envelopes, ordered per
    /// `ordering_key`.
    Envelopes,
}

impl Layout {
    fn table(self) -> &'static str {
        match self {
            Self::Inventory => "outbox",
            Self::Envelopes => "event_outbox",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Self::Inventory => "product_id::text",
            Self::Envelopes => "ordering_key",
        }
    }

    fn columns(self) -> &'static str {
        match self {
            Self::Inventory => {
                "sequence, product_id::text AS ordering_key, event_id, event_type, payload, \
                 correlation_id, occurred_at_ms"
            }
            Self::Envelopes => "sequence, ordering_key, envelope",
        }
    }
}

/// An outbox table, drained by one or many relays.
#[derive(Clone, Debug)]
pub struct PgOutbox {
    pool: PgPool,
    layout: Layout,
}

impl PgOutbox {
    /// A source over inventory-sqlx's `outbox` table reachable through
    /// `pool` (its `search_path` decides the schema).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            layout: Layout::Inventory,
        }
    }

    /// A source over the `event_outbox` table of [`ENVELOPE_OUTBOX_DDL`].
    pub fn envelopes(pool: PgPool) -> Self {
        Self {
            pool,
            layout: Layout::Envelopes,
        }
    }
}

/// Writes `envelope` to `event_outbox` in the caller's transaction (the one
/// that makes the change the event describes).
///
/// # Errors
/// The database error (a repeated `event_id` is a unique violation).
pub async fn enqueue(
    transaction: &mut Transaction<'_, Postgres>,
    envelope: &Envelope,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO event_outbox (event_id, event_type, ordering_key, envelope) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(envelope.event_id)
    .bind(&envelope.event_type)
    .bind(envelope.ordering_key())
    .bind(sqlx::types::Json(envelope))
    .execute(&mut **transaction)
    .await
    .map(drop)
}

/// A claimed batch: the transaction holding the rows' locks.
#[derive(Debug)]
pub struct PgClaim {
    transaction: Transaction<'static, Postgres>,
    table: &'static str,
    envelopes: Vec<Envelope>,
    sequences: Vec<i64>,
}

fn failed(what: &str) -> impl Fn(sqlx::Error) -> SourceError + '_ {
    move |e| SourceError(format!("{what}: {e}"))
}

fn envelope(layout: Layout, row: &PgRow) -> Result<(i64, String, Envelope), SourceError> {
    let read = failed("read outbox row");
    let sequence: i64 = row.try_get("sequence").map_err(&read)?;
    let key: String = row.try_get("ordering_key").map_err(&read)?;
    if layout == Layout::Envelopes {
        let sqlx::types::Json(envelope): sqlx::types::Json<Envelope> =
            row.try_get("envelope").map_err(&read)?;
        return Ok((sequence, key, envelope));
    }
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
    Ok((sequence, key, envelope))
}

impl Claim for PgClaim {
    fn envelopes(&self) -> &[Envelope] {
        &self.envelopes
    }

    async fn release(self) {
        // A failed rollback ends with the connection; the rows are free then.
        let _ = self.transaction.rollback().await;
    }

    async fn commit(mut self) -> Result<(), SourceError> {
        if !self.sequences.is_empty() {
            let mark = format!(
                "UPDATE {} SET published_at = now() WHERE sequence = ANY($1)",
                self.table
            );
            sqlx::query(&mark)
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

/// The claimed rows that have an earlier unsent row of their key outside the
/// claim, given the unsent rows before the claim's last one.
fn held_back(claimed: &[(i64, String, Envelope)], unsent: Vec<(i64, String)>) -> Vec<i64> {
    let in_claim: HashSet<i64> = claimed.iter().map(|c| c.0).collect();
    let mut first_outside: HashMap<String, i64> = HashMap::new();
    for (sequence, key) in unsent {
        if !in_claim.contains(&sequence) {
            let first = first_outside.entry(key).or_insert(sequence);
            *first = (*first).min(sequence);
        }
    }
    claimed
        .iter()
        .filter(|(sequence, key, _)| first_outside.get(key).is_some_and(|first| first < sequence))
        .map(|c| c.0)
        .collect()
}

/// The claimed rows that may be published now: for each key, those before
/// its first row that has an unsent predecessor outside the claim (`gaps`).
fn publishable(claimed: Vec<(i64, String, Envelope)>, gaps: &[i64]) -> (Vec<i64>, Vec<Envelope>) {
    let gaps: HashSet<i64> = gaps.iter().copied().collect();
    let mut held_from: HashMap<String, i64> = HashMap::new();
    for (sequence, key, _) in &claimed {
        if gaps.contains(sequence) {
            let first = held_from.entry(key.clone()).or_insert(*sequence);
            *first = (*first).min(*sequence);
        }
    }
    claimed
        .into_iter()
        .filter(|(sequence, key, _)| held_from.get(key).is_none_or(|first| sequence < first))
        .map(|(sequence, _, envelope)| (sequence, envelope))
        .unzip()
}

impl OutboxSource for PgOutbox {
    type Claim = PgClaim;

    async fn claim(&self, limit: usize) -> Result<PgClaim, SourceError> {
        let (table, key) = (self.layout.table(), self.layout.key());
        let mut transaction = self.pool.begin().await.map_err(failed("begin"))?;
        let select = format!(
            "SELECT {} FROM {table} WHERE published_at IS NULL \
             ORDER BY sequence LIMIT $1 FOR UPDATE SKIP LOCKED",
            self.layout.columns()
        );
        let rows = sqlx::query(&select)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *transaction)
            .await
            .map_err(failed("claim outbox rows"))?;
        let claimed = rows
            .iter()
            .map(|row| envelope(self.layout, row))
            .collect::<Result<Vec<_>, _>>()?;
        let gaps = if claimed.is_empty() {
            Vec::new()
        } else {
            // Unsent rows before the claim's last one that the claim skipped:
            // another relay holds them and has not committed (or their
            // transaction has not), so publishing a later row of their key
            // first would reorder that key's events. The claim took the
            // lowest unsent rows it could lock, so this reads the claim
            // itself plus what others hold: linear in the claim, whatever
            // the backlog.
            let last = claimed.iter().map(|c| c.0).max().unwrap_or_default();
            let earlier = format!(
                "SELECT sequence, {key} FROM {table} \
                 WHERE published_at IS NULL AND sequence < $1"
            );
            let unsent: Vec<(i64, String)> = sqlx::query_as(&earlier)
                .bind(last)
                .fetch_all(&mut *transaction)
                .await
                .map_err(failed("check order of claimed rows"))?;
            held_back(&claimed, unsent)
        };
        let (sequences, envelopes) = publishable(claimed, &gaps);
        Ok(PgClaim {
            transaction,
            table,
            envelopes,
            sequences,
        })
    }

    async fn depth(&self) -> Result<Option<u64>, SourceError> {
        let count = format!(
            "SELECT count(*) FROM {} WHERE published_at IS NULL",
            self.layout.table()
        );
        let count: i64 = sqlx::query_scalar(&count)
            .fetch_one(&self.pool)
            .await
            .map_err(failed("count outbox rows"))?;
        Ok(Some(count.unsigned_abs()))
    }

    async fn prune(&self, retention: Duration, limit: usize) -> Result<u64, SourceError> {
        let prune = format!(
            "DELETE FROM {table} WHERE sequence IN (\
                 SELECT sequence FROM {table} \
                 WHERE published_at < now() - make_interval(secs => $1) \
                 ORDER BY published_at LIMIT $2)",
            table = self.layout.table()
        );
        let done = sqlx::query(&prune)
            .bind(retention.as_secs_f64())
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .execute(&self.pool)
            .await
            .map_err(failed("prune outbox"))?;
        Ok(done.rows_affected())
    }
}

/// Creates `event_outbox` if it does not exist (for tests and for services
/// without migrations of their own; see [`ENVELOPE_OUTBOX_DDL`]).
///
/// # Errors
/// The database error.
pub async fn ensure_envelope_outbox(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(ENVELOPE_OUTBOX_DDL)
        .execute(pool)
        .await
        .map(drop)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(rows: &[(i64, &str)]) -> Vec<(i64, String, Envelope)> {
        rows.iter()
            .map(|(sequence, key)| {
                let envelope = Envelope::new(
                    "inventory",
                    "t",
                    1,
                    Uuid::nil(),
                    *sequence,
                    None,
                    serde_json::Value::Null,
                );
                (*sequence, (*key).to_owned(), envelope)
            })
            .collect()
    }

    /// A key's rows are held from its first row with a gap before it; other
    /// keys, and the key's rows before that, go out.
    #[test]
    fn rows_after_a_gap_are_held_back_per_key() {
        let rows = claimed(&[(11, "p"), (12, "q"), (13, "p"), (14, "p"), (15, "q")]);
        let (sequences, envelopes) = publishable(rows, &[13, 14]);
        assert_eq!(sequences, [11, 12, 15]);
        assert_eq!(envelopes.len(), 3);
        let rows = claimed(&[(11, "p"), (12, "q")]);
        assert_eq!(publishable(rows, &[]).0, [11, 12]);
    }

    /// A claimed row is held back when an unsent row of its key, outside the
    /// claim, comes before it; the claim's own rows never hold it back.
    #[test]
    fn held_back_by_unsent_rows_outside_the_claim() {
        let rows = claimed(&[(11, "p"), (13, "p"), (14, "q"), (16, "p")]);
        let unsent = [
            (10, "q"),
            (11, "p"),
            (12, "p"),
            (13, "p"),
            (14, "q"),
            (15, "r"),
        ]
        .map(|(s, k)| (s, k.to_owned()))
        .to_vec();
        assert_eq!(held_back(&rows, unsent), [13, 14, 16]);
        let own_only = vec![(11, "p".to_owned()), (13, "p".to_owned())];
        assert!(held_back(&rows, own_only).is_empty());
    }
}
