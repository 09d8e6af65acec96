//! The expiry sweep: expires due pending reservations in bounded batches.
//!
//! Lock order is the same as every other change: items first, in ascending
//! product order, then the reservations under them. A batch picks the products
//! that have due reservations (no locks), locks those items with
//! `FOR NO KEY UPDATE SKIP LOCKED` (so sweepers on several instances split the work
//! instead of queueing, and never wait on a buyer), then reads the due
//! reservations of the items it holds and expires them through core. Under the
//! item lock the state is re-checked, so no reservation is expired twice.
//! When every product it picked is held by someone else (a hot product whose
//! holds are the earliest due), it picks again past them, a bounded number of
//! times, so the other products' due holds still go.

use inventory_core::{
    decide, Command, Error, Meta, Outcome, ProductId, Snapshot, EXPIRE_BATCH_MAX,
};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::execute::{fetch_items, finish, persist, ItemLock};
use crate::fail::{classify, Fail};
use crate::retry::Retrier;
use crate::rows::{self, RESERVATION_COLUMNS};
use crate::store::PgStore;

/// Expires up to `limit` (at most [`EXPIRE_BATCH_MAX`]) due reservations.
pub(crate) async fn expire_due(store: &PgStore, meta: &Meta, limit: usize) -> Result<usize, Error> {
    let limit = limit.min(EXPIRE_BATCH_MAX);
    if limit == 0 {
        return Ok(0);
    }
    let mut retrier = Retrier::new(store.options(), store.counters());
    loop {
        retrier.attempt();
        match attempt(store, meta, limit).await {
            Ok(expired) => return Ok(expired),
            Err(Fail::Give(e)) => return Err(e),
            Err(Fail::Retry(why)) => {
                if !retrier.backoff(why).await {
                    return Err(Error::Contention);
                }
            }
        }
    }
}

async fn attempt(store: &PgStore, meta: &Meta, limit: usize) -> Result<usize, Fail> {
    let mut tx = store
        .pool()
        .begin()
        .await
        .map_err(|e| classify("begin transaction", e))?;
    let run = batch(&mut tx, meta, limit).await;
    let run = run.map(|expired| (expired, expired > 0));
    let expired = finish(tx, run).await?;
    if expired > 0 {
        tracing::debug!(expired, "expired due reservations");
    }
    Ok(expired)
}

/// Rounds of looking for due products past the ones another transaction
/// holds. Each round skips every product found locked in the rounds before,
/// so a hot product whose holds are the earliest due cannot stall the sweep
/// of the others; the bound keeps one step's work bounded.
const SKIP_ROUNDS_MAX: usize = 4;

async fn batch(conn: &mut PgConnection, meta: &Meta, limit: usize) -> Result<usize, Fail> {
    let now = meta.now.as_millis();
    let mut skipped: Vec<Uuid> = Vec::new();
    let mut items = Vec::new();
    for _ in 0..SKIP_ROUNDS_MAX {
        let candidates: Vec<Uuid> = sqlx::query_scalar(
            "SELECT DISTINCT product_id FROM ( \
               SELECT product_id FROM reservations \
               WHERE status = 'pending' AND expires_at_ms <= $1 \
                 AND product_id <> ALL($3) \
               ORDER BY expires_at_ms LIMIT $2) AS due",
        )
        .bind(now)
        .bind(limit as i64)
        .bind(&skipped)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify("find due reservations", e))?;
        if candidates.is_empty() {
            return Ok(0);
        }
        let mut products: Vec<ProductId> = candidates
            .iter()
            .copied()
            .map(ProductId::from_uuid)
            .collect();
        products.sort_unstable();
        items = fetch_items(conn, &products, ItemLock::SkipLocked).await?;
        if !items.is_empty() {
            break;
        }
        skipped.extend(candidates);
    }
    if items.is_empty() {
        return Ok(0);
    }
    let held: Vec<Uuid> = items.iter().map(|i| i.product_id().as_uuid()).collect();
    let sql = format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations \
         WHERE product_id = ANY($1) AND status = 'pending' AND expires_at_ms <= $2 \
         ORDER BY expires_at_ms, id LIMIT $3"
    );
    let due = sqlx::query(&sql)
        .bind(held)
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| classify("load due reservations", e))?;
    let mut snapshot = Snapshot::new();
    for item in items {
        snapshot.load_item(item);
    }
    let mut ids = Vec::with_capacity(due.len());
    for row in &due {
        let reservation = rows::reservation(row)?;
        ids.push(reservation.id());
        snapshot.load_reservation(reservation);
    }
    let mut expired = 0;
    for reservation_id in ids {
        let command = Command::Expire { reservation_id };
        if let Ok(Outcome::Reservation { changed: true, .. }) =
            decide(&mut snapshot, &command, meta.now)
        {
            expired += 1;
        }
    }
    if expired > 0 {
        let changes = snapshot.into_changes();
        let correlation_ids = vec![meta.correlation_id.as_deref(); changes.events.len()];
        persist(conn, changes, &correlation_ids).await?;
    }
    Ok(expired)
}
