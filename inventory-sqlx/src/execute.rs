//! One command as one transaction: load what it needs into a [`Snapshot`], run
//! [`decide`], write the snapshot's changes, commit.
//!
//! Loads always read items before the reservations that hang off them, and every
//! reservation change also changes its item (core bumps the item's version), so
//! the item's version guards the reservations too: with row locks nothing can
//! move under the transaction, and without them a concurrent change makes the
//! versioned `UPDATE` of the item fail and the command runs again.

use inventory_core::{
    decide, Changes, Command, Error, Meta, Outcome, ProductId, Reservation, ReservationId,
    Snapshot, LAZY_EXPIRY_MAX,
};
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::fail::{classify, unique_violation, Fail};
use crate::options::Concurrency;
use crate::retry::Retrier;
use crate::rows::{self, to_i64, ITEM_COLUMNS, RESERVATION_COLUMNS};
use crate::store::PgStore;

/// How a load reads item rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ItemLock {
    /// A plain read (optimistic mode): the versioned update checks later.
    None,
    /// `FOR NO KEY UPDATE` (the lock an `UPDATE` takes, which leaves foreign
    /// key checks alone): wait for the rows and hold them until commit.
    Wait,
    /// `FOR NO KEY UPDATE SKIP LOCKED`: take the rows no one else holds, skip the rest.
    SkipLocked,
}

impl ItemLock {
    fn clause(self) -> &'static str {
        match self {
            ItemLock::None => "",
            ItemLock::Wait => " FOR NO KEY UPDATE",
            ItemLock::SkipLocked => " FOR NO KEY UPDATE SKIP LOCKED",
        }
    }

    fn of(concurrency: Concurrency) -> Self {
        match concurrency {
            Concurrency::Locking => ItemLock::Wait,
            Concurrency::Optimistic => ItemLock::None,
        }
    }
}

/// Runs `command`, again after each conflict, at most `retries_max` more times.
pub(crate) async fn execute(
    store: &PgStore,
    command: &Command,
    meta: &Meta,
) -> Result<Outcome, Error> {
    let mut retrier = Retrier::new(store.options(), store.counters());
    loop {
        retrier.attempt();
        match attempt(store, command, meta).await {
            Ok(result) => return result,
            Err(Fail::Give(e)) => return Err(e),
            Err(Fail::Retry(why)) => {
                if !retrier.backoff(why).await {
                    return Err(Error::Contention);
                }
            }
        }
    }
}

/// One attempt. The outer `Result` is a failed attempt (rolled back); the
/// inner one is the command's answer, committed with whatever it changed
/// (a business error may still have expired overdue reservations on the way).
async fn attempt(
    store: &PgStore,
    command: &Command,
    meta: &Meta,
) -> Result<Result<Outcome, Error>, Fail> {
    let mut tx = store
        .pool()
        .begin()
        .await
        .map_err(|e| classify("begin transaction", e))?;
    let lock = ItemLock::of(store.options().concurrency);
    let run = async {
        let mut snapshot = Snapshot::new();
        load(&mut tx, &mut snapshot, command, meta, lock).await?;
        let result = decide(&mut snapshot, command, meta.now);
        let changes = snapshot.into_changes();
        let wrote = !changes.is_empty();
        if wrote {
            persist(&mut tx, changes, meta).await?;
        }
        Ok::<_, Fail>((result, wrote))
    }
    .await;
    finish(tx, run).await
}

/// Commits when the attempt wrote something, rolls back otherwise.
pub(crate) async fn finish<T>(
    tx: Transaction<'static, Postgres>,
    run: Result<(T, bool), Fail>,
) -> Result<T, Fail> {
    match run {
        Ok((value, true)) => {
            tx.commit().await.map_err(|e| classify("commit", e))?;
            Ok(value)
        }
        Ok((value, false)) => {
            // Nothing to keep: release the locks; a failed rollback loses nothing.
            let _ = tx.rollback().await;
            Ok(value)
        }
        Err(fail) => {
            let _ = tx.rollback().await;
            Err(fail)
        }
    }
}

/// Loads everything `command` may read into `snapshot`.
async fn load(
    conn: &mut PgConnection,
    snapshot: &mut Snapshot,
    command: &Command,
    meta: &Meta,
    lock: ItemLock,
) -> Result<(), Fail> {
    if let Some(id) = command.reservation_id() {
        // The reservation names its item; lock or read the item, then read the
        // reservation again, now that nothing can change it unseen.
        let Some(first) = fetch_reservation(conn, id).await? else {
            return Ok(());
        };
        for item in fetch_items(conn, &[first.product_id()], lock).await? {
            snapshot.load_item(item);
        }
        if let Some(reservation) = fetch_reservation(conn, id).await? {
            snapshot.load_reservation(reservation);
        }
        return Ok(());
    }
    let products = command.products();
    let items = fetch_items(conn, &products, lock).await?;
    if let Command::Reserve(reserve) = command {
        // Lazy expiry only runs for a line its item cannot serve as it stands.
        let short: Vec<ProductId> = reserve
            .lines()
            .iter()
            .filter(|line| {
                items.iter().any(|item| {
                    item.product_id() == line.product_id && item.available() < line.quantity.get()
                })
            })
            .map(|line| line.product_id)
            .collect();
        for item in items {
            snapshot.load_item(item);
        }
        for r in fetch_order_lines(conn, reserve.order_id().as_uuid(), &products).await? {
            snapshot.load_reservation(r);
        }
        if !short.is_empty() {
            for r in fetch_overdue(conn, &short, meta).await? {
                snapshot.load_reservation(r);
            }
        }
    } else {
        for item in items {
            snapshot.load_item(item);
        }
    }
    Ok(())
}

fn uuids(products: &[ProductId]) -> Vec<Uuid> {
    products.iter().map(ProductId::as_uuid).collect()
}

/// The items of `products`, in ascending product order (the lock order).
pub(crate) async fn fetch_items(
    conn: &mut PgConnection,
    products: &[ProductId],
    lock: ItemLock,
) -> Result<Vec<inventory_core::InventoryItem>, Fail> {
    if products.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM inventory_items WHERE product_id = ANY($1) \
         ORDER BY product_id{}",
        lock.clause()
    );
    let rows = sqlx::query(&sql)
        .bind(uuids(products))
        .fetch_all(conn)
        .await
        .map_err(|e| classify("load items", e))?;
    Ok(rows.iter().map(rows::item).collect::<Result<_, _>>()?)
}

async fn fetch_reservation(
    conn: &mut PgConnection,
    id: ReservationId,
) -> Result<Option<Reservation>, Fail> {
    let sql = format!("SELECT {RESERVATION_COLUMNS} FROM reservations WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id.as_uuid())
        .fetch_optional(conn)
        .await
        .map_err(|e| classify("load reservation", e))?;
    Ok(row.as_ref().map(rows::reservation).transpose()?)
}

async fn fetch_order_lines(
    conn: &mut PgConnection,
    order_id: Uuid,
    products: &[ProductId],
) -> Result<Vec<Reservation>, Fail> {
    let sql = format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations \
         WHERE order_id = $1 AND product_id = ANY($2)"
    );
    let rows = sqlx::query(&sql)
        .bind(order_id)
        .bind(uuids(products))
        .fetch_all(conn)
        .await
        .map_err(|e| classify("load order lines", e))?;
    Ok(rows
        .iter()
        .map(rows::reservation)
        .collect::<Result<_, _>>()?)
}

/// Up to [`LAZY_EXPIRY_MAX`] overdue pending reservations of each product.
async fn fetch_overdue(
    conn: &mut PgConnection,
    products: &[ProductId],
    meta: &Meta,
) -> Result<Vec<Reservation>, Fail> {
    let sql = format!(
        "SELECT r.* FROM UNNEST($1::uuid[]) AS p(product_id) CROSS JOIN LATERAL ( \
           SELECT {RESERVATION_COLUMNS} FROM reservations \
           WHERE product_id = p.product_id AND status = 'pending' AND expires_at_ms <= $2 \
           ORDER BY expires_at_ms, id LIMIT $3) AS r"
    );
    let rows = sqlx::query(&sql)
        .bind(uuids(products))
        .bind(meta.now.as_millis())
        .bind(LAZY_EXPIRY_MAX as i64)
        .fetch_all(conn)
        .await
        .map_err(|e| classify("load overdue reservations", e))?;
    Ok(rows
        .iter()
        .map(rows::reservation)
        .collect::<Result<_, _>>()?)
}

/// Writes what a change did. A failed version check is a conflict (retry).
pub(crate) async fn persist(
    conn: &mut PgConnection,
    changes: Changes,
    meta: &Meta,
) -> Result<(), Fail> {
    for item in &changes.new_items {
        insert_item(conn, item).await?;
    }
    for (item, loaded) in &changes.updated_items {
        let done = sqlx::query(
            "UPDATE inventory_items SET quantity = $3, reserved = $4, version = $5, \
             updated_at_ms = $6 WHERE product_id = $1 AND version = $2",
        )
        .bind(item.product_id().as_uuid())
        .bind(to_i64(loaded.get()))
        .bind(to_i64(item.quantity()))
        .bind(to_i64(item.reserved()))
        .bind(to_i64(item.version().get()))
        .bind(item.updated_at().as_millis())
        .execute(&mut *conn)
        .await
        .map_err(|e| classify("update item", e))?;
        if done.rows_affected() != 1 {
            return Err(Fail::Retry("item version changed"));
        }
    }
    insert_reservations(conn, &changes.new_reservations).await?;
    update_reservations(conn, &changes.updated_reservations).await?;
    insert_adjustments(conn, &changes).await?;
    insert_events(conn, &changes, meta).await
}

async fn insert_item(
    conn: &mut PgConnection,
    item: &inventory_core::InventoryItem,
) -> Result<(), Fail> {
    let sql =
        format!("INSERT INTO inventory_items ({ITEM_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)");
    sqlx::query(&sql)
        .bind(item.product_id().as_uuid())
        .bind(to_i64(item.quantity()))
        .bind(to_i64(item.reserved()))
        .bind(to_i64(item.version().get()))
        .bind(item.created_at().as_millis())
        .bind(item.updated_at().as_millis())
        .execute(conn)
        .await
        .map_err(|e| match unique_violation(&e) {
            Some(_) => Fail::Give(Error::AlreadyExists {
                product_id: item.product_id(),
            }),
            None => classify("insert item", e),
        })?;
    Ok(())
}

async fn insert_reservations(conn: &mut PgConnection, new: &[Reservation]) -> Result<(), Fail> {
    if new.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO reservations ({RESERVATION_COLUMNS}) SELECT * FROM UNNEST( \
         $1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::text[], $6::bigint[], \
         $7::bigint[], $8::bigint[])"
    );
    sqlx::query(&sql)
        .bind(new.iter().map(|r| r.id().as_uuid()).collect::<Vec<_>>())
        .bind(
            new.iter()
                .map(|r| r.order_id().as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|r| r.product_id().as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|r| to_i64(r.quantity().get()))
                .collect::<Vec<_>>(),
        )
        .bind(new.iter().map(|r| r.status().as_str()).collect::<Vec<_>>())
        .bind(
            new.iter()
                .map(|r| r.expires_at().as_millis())
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|r| r.created_at().as_millis())
                .collect::<Vec<_>>(),
        )
        .bind(
            new.iter()
                .map(|r| r.updated_at().as_millis())
                .collect::<Vec<_>>(),
        )
        .execute(conn)
        .await
        .map_err(|e| match unique_violation(&e).as_deref() {
            // A concurrent reserve of the same (order, product) won: run again,
            // and the repeat finds its reservation (an idempotent answer).
            Some("reservations_order_product_key") => {
                Fail::Retry("order line reserved concurrently")
            }
            Some(_) => Fail::Give(Error::InvalidInput {
                field: "reservation_id",
                reason: "already used by another reservation".to_owned(),
            }),
            None => classify("insert reservations", e),
        })?;
    Ok(())
}

async fn update_reservations(conn: &mut PgConnection, changed: &[Reservation]) -> Result<(), Fail> {
    if changed.is_empty() {
        return Ok(());
    }
    let done = sqlx::query(
        "UPDATE reservations AS r SET status = u.status, updated_at_ms = u.updated_at_ms \
         FROM UNNEST($1::uuid[], $2::text[], $3::bigint[]) AS u(id, status, updated_at_ms) \
         WHERE r.id = u.id",
    )
    .bind(changed.iter().map(|r| r.id().as_uuid()).collect::<Vec<_>>())
    .bind(
        changed
            .iter()
            .map(|r| r.status().as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        changed
            .iter()
            .map(|r| r.updated_at().as_millis())
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await
    .map_err(|e| classify("update reservations", e))?;
    if done.rows_affected() != changed.len() as u64 {
        return Err(Fail::Give(Error::Storage {
            reason: format!(
                "update reservations: {} of {} rows found",
                done.rows_affected(),
                changed.len()
            ),
        }));
    }
    Ok(())
}

async fn insert_adjustments(conn: &mut PgConnection, changes: &Changes) -> Result<(), Fail> {
    let new = &changes.adjustments;
    if new.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO stock_adjustments \
         (product_id, delta, quantity_before, quantity_after, reason, actor, at_ms) \
         SELECT product_id, delta, quantity_before, quantity_after, reason, actor, at_ms \
         FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], \
                     $6::text[], $7::bigint[]) WITH ORDINALITY \
           AS a(product_id, delta, quantity_before, quantity_after, reason, actor, at_ms, n) \
         ORDER BY n",
    )
    .bind(
        new.iter()
            .map(|a| a.product_id.as_uuid())
            .collect::<Vec<_>>(),
    )
    .bind(new.iter().map(|a| a.delta).collect::<Vec<_>>())
    .bind(
        new.iter()
            .map(|a| to_i64(a.quantity_before))
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|a| to_i64(a.quantity_after))
            .collect::<Vec<_>>(),
    )
    .bind(new.iter().map(|a| a.reason.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|a| a.actor.as_str()).collect::<Vec<_>>())
    .bind(new.iter().map(|a| a.at.as_millis()).collect::<Vec<_>>())
    .execute(conn)
    .await
    .map_err(|e| classify("insert ledger entries", e))?;
    Ok(())
}

async fn insert_events(
    conn: &mut PgConnection,
    changes: &Changes,
    meta: &Meta,
) -> Result<(), Fail> {
    let events = &changes.events;
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO outbox \
         (event_id, event_type, product_id, payload, correlation_id, occurred_at_ms) \
         SELECT event_id, event_type, product_id, payload, $5, occurred_at_ms \
         FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::jsonb[], $6::bigint[]) \
           WITH ORDINALITY AS e(event_id, event_type, product_id, payload, occurred_at_ms, n) \
         ORDER BY n",
    )
    .bind(events.iter().map(|_| Uuid::new_v4()).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.payload.event_type())
            .collect::<Vec<_>>(),
    )
    .bind(
        events
            .iter()
            .map(|e| e.payload.product_id().as_uuid())
            .collect::<Vec<_>>(),
    )
    .bind(
        events
            .iter()
            .map(|e| rows::payload_to_json(&e.payload))
            .collect::<Vec<_>>(),
    )
    .bind(meta.correlation_id.as_deref())
    .bind(
        events
            .iter()
            .map(|e| e.occurred_at.as_millis())
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await
    .map_err(|e| classify("insert outbox entries", e))?;
    Ok(())
}
