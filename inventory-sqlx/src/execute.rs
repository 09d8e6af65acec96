//! One command as one transaction: load what it needs into a [`Snapshot`], run
//! [`decide`], write the snapshot's changes, commit.
//!
//! Loads always read items before the reservations that hang off them, and every
//! reservation change also changes its item (core bumps the item's version), so
//! the item's version guards the reservations too: with row locks nothing can
//! move under the transaction, and without them a concurrent change makes the
//! versioned `UPDATE` of the item fail and the command runs again.

use inventory_core::{
    decide, Changes, Command, Error, InventoryItem, Meta, Outcome, ProductId, Reservation,
    ReservationId, Snapshot, LAZY_EXPIRY_MAX,
};
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::fail::{classify, unique_violation, Fail};
use crate::options::Concurrency;
use crate::retry::Retrier;
use crate::rows::{self, to_i64, ITEM_COLUMNS, RESERVATION_COLUMNS, RESERVATION_JOINED_COLUMNS};
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
        if lock == ItemLock::None {
            // Without row locks, every read of the attempt must see one
            // snapshot, or an item and its reservations could be read at
            // different commits; a concurrent commit then fails the attempt
            // with 40001 (retried) instead of passing unnoticed.
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await
                .map_err(|e| classify("set isolation", e))?;
        }
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
        // Lock (or read) the item the reservation names, then read the
        // reservation in a later statement: it then sees every change that
        // whoever held the lock before committed.
        for item in fetch_item_of_reservation(conn, id, lock).await? {
            snapshot.load_item(item);
        }
        if let Some(reservation) = fetch_reservation(conn, id).await? {
            snapshot.load_reservation(reservation);
        }
        return Ok(());
    }
    let products = command.products();
    let Command::Reserve(reserve) = command else {
        for item in fetch_items(conn, &products, lock).await? {
            snapshot.load_item(item);
        }
        return Ok(());
    };
    let (items, lines) =
        fetch_items_with_lines(conn, &products, reserve.order_id().as_uuid(), lock).await?;
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
    for r in lines {
        snapshot.load_reservation(r);
    }
    if !short.is_empty() {
        for r in fetch_overdue(conn, &short, meta).await? {
            snapshot.load_reservation(r);
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
) -> Result<Vec<InventoryItem>, Fail> {
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

/// The item a reservation names (none when the reservation does not exist).
async fn fetch_item_of_reservation(
    conn: &mut PgConnection,
    id: ReservationId,
    lock: ItemLock,
) -> Result<Vec<InventoryItem>, Fail> {
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM inventory_items \
         WHERE product_id = (SELECT product_id FROM reservations WHERE id = $1){}",
        lock.clause()
    );
    let rows = sqlx::query(&sql)
        .bind(id.as_uuid())
        .fetch_all(conn)
        .await
        .map_err(|e| classify("load item of reservation", e))?;
    Ok(rows.iter().map(rows::item).collect::<Result<_, _>>()?)
}

/// The items of `products` in ascending product order (the lock order), and
/// the order's existing reservation of each, in one round trip.
///
/// Under row locks the join reads the statement's snapshot, taken before a
/// lock wait: a line that the previous lock holder created may be missing.
/// Core then creates it again and the unique key on `(order_id, product_id)`
/// refuses the insert, which runs the command again (and the repeat finds the
/// line). The items themselves are read after the wait, as they are then.
async fn fetch_items_with_lines(
    conn: &mut PgConnection,
    products: &[ProductId],
    order_id: Uuid,
    lock: ItemLock,
) -> Result<(Vec<InventoryItem>, Vec<Reservation>), Fail> {
    let sql = format!(
        "WITH items AS MATERIALIZED ( \
           SELECT {ITEM_COLUMNS} FROM inventory_items WHERE product_id = ANY($1) \
           ORDER BY product_id{}) \
         SELECT items.*, {RESERVATION_JOINED_COLUMNS} FROM items \
         LEFT JOIN reservations AS r ON r.order_id = $2 AND r.product_id = items.product_id \
         ORDER BY items.product_id",
        lock.clause()
    );
    let found = sqlx::query(&sql)
        .bind(uuids(products))
        .bind(order_id)
        .fetch_all(conn)
        .await
        .map_err(|e| classify("load items and order lines", e))?;
    let mut items = Vec::with_capacity(found.len());
    let mut lines = Vec::new();
    for row in &found {
        items.push(rows::item(row)?);
        lines.extend(rows::joined_reservation(row)?);
    }
    Ok((items, lines))
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

/// Every write of a change but new items, in one statement (one round
/// trip): versioned item updates, new reservations, settled reservations,
/// ledger entries and outbox entries. Returns how many items and reservations
/// the guarded updates found.
const PERSIST_SQL: &str = "WITH \
  items AS ( \
    UPDATE inventory_items AS i SET quantity = u.quantity, reserved = u.reserved, \
      version = u.version, updated_at_ms = u.updated_at_ms \
    FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], \
                $6::bigint[]) AS u(product_id, loaded, quantity, reserved, version, updated_at_ms) \
    WHERE i.product_id = ANY($1) AND i.product_id = u.product_id AND i.version = u.loaded \
    RETURNING 1), \
  created AS ( \
    INSERT INTO reservations (id, order_id, product_id, quantity, status, expires_at_ms, \
      created_at_ms, updated_at_ms) \
    SELECT * FROM UNNEST($7::uuid[], $8::uuid[], $9::uuid[], $10::bigint[], $11::text[], \
                         $12::bigint[], $13::bigint[], $14::bigint[]) RETURNING 1), \
  settled AS ( \
    UPDATE reservations AS r SET status = u.status, updated_at_ms = u.updated_at_ms \
    FROM UNNEST($15::uuid[], $16::text[], $17::bigint[]) AS u(id, status, updated_at_ms) \
    WHERE r.id = u.id AND r.status = 'pending' RETURNING 1), \
  ledger AS ( \
    INSERT INTO stock_adjustments \
      (product_id, delta, quantity_before, quantity_after, reason, actor, at_ms) \
    SELECT product_id, delta, quantity_before, quantity_after, reason, actor, at_ms \
    FROM UNNEST($18::uuid[], $19::bigint[], $20::bigint[], $21::bigint[], $22::text[], \
                $23::text[], $24::bigint[]) WITH ORDINALITY \
      AS a(product_id, delta, quantity_before, quantity_after, reason, actor, at_ms, n) \
    ORDER BY n RETURNING 1), \
  events AS ( \
    INSERT INTO outbox \
      (event_id, event_type, product_id, payload, correlation_id, occurred_at_ms) \
    SELECT event_id, event_type, product_id, payload, $30, occurred_at_ms \
    FROM UNNEST($25::uuid[], $26::text[], $27::uuid[], $28::jsonb[], $29::bigint[]) \
      WITH ORDINALITY AS e(event_id, event_type, product_id, payload, occurred_at_ms, n) \
    ORDER BY n RETURNING 1) \
SELECT (SELECT COUNT(*) FROM items) AS items, (SELECT COUNT(*) FROM settled) AS settled";

/// Writes what a change did. An item whose version moved, or a reservation
/// that is no longer pending, is a conflict (run the command again).
pub(crate) async fn persist(
    conn: &mut PgConnection,
    changes: Changes,
    meta: &Meta,
) -> Result<(), Fail> {
    for item in &changes.new_items {
        insert_item(conn, item).await?;
    }
    let items = &changes.updated_items;
    let created = &changes.new_reservations;
    let settled = &changes.updated_reservations;
    let ledger = &changes.adjustments;
    let events = &changes.events;
    let found: (i64, i64) = sqlx::query_as(PERSIST_SQL)
        .bind(
            items
                .iter()
                .map(|(i, _)| i.product_id().as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            items
                .iter()
                .map(|(_, v)| to_i64(v.get()))
                .collect::<Vec<_>>(),
        )
        .bind(
            items
                .iter()
                .map(|(i, _)| to_i64(i.quantity()))
                .collect::<Vec<_>>(),
        )
        .bind(
            items
                .iter()
                .map(|(i, _)| to_i64(i.reserved()))
                .collect::<Vec<_>>(),
        )
        .bind(
            items
                .iter()
                .map(|(i, _)| to_i64(i.version().get()))
                .collect::<Vec<_>>(),
        )
        .bind(
            items
                .iter()
                .map(|(i, _)| i.updated_at().as_millis())
                .collect::<Vec<_>>(),
        )
        .bind(created.iter().map(|r| r.id().as_uuid()).collect::<Vec<_>>())
        .bind(
            created
                .iter()
                .map(|r| r.order_id().as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            created
                .iter()
                .map(|r| r.product_id().as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(
            created
                .iter()
                .map(|r| to_i64(r.quantity().get()))
                .collect::<Vec<_>>(),
        )
        .bind(
            created
                .iter()
                .map(|r| r.status().as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            created
                .iter()
                .map(|r| r.expires_at().as_millis())
                .collect::<Vec<_>>(),
        )
        .bind(
            created
                .iter()
                .map(|r| r.created_at().as_millis())
                .collect::<Vec<_>>(),
        )
        .bind(
            created
                .iter()
                .map(|r| r.updated_at().as_millis())
                .collect::<Vec<_>>(),
        )
        .bind(settled.iter().map(|r| r.id().as_uuid()).collect::<Vec<_>>())
        .bind(
            settled
                .iter()
                .map(|r| r.status().as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            settled
                .iter()
                .map(|r| r.updated_at().as_millis())
                .collect::<Vec<_>>(),
        )
        .bind(
            ledger
                .iter()
                .map(|a| a.product_id.as_uuid())
                .collect::<Vec<_>>(),
        )
        .bind(ledger.iter().map(|a| a.delta).collect::<Vec<_>>())
        .bind(
            ledger
                .iter()
                .map(|a| to_i64(a.quantity_before))
                .collect::<Vec<_>>(),
        )
        .bind(
            ledger
                .iter()
                .map(|a| to_i64(a.quantity_after))
                .collect::<Vec<_>>(),
        )
        .bind(ledger.iter().map(|a| a.reason.as_str()).collect::<Vec<_>>())
        .bind(ledger.iter().map(|a| a.actor.as_str()).collect::<Vec<_>>())
        .bind(ledger.iter().map(|a| a.at.as_millis()).collect::<Vec<_>>())
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
        .bind(
            events
                .iter()
                .map(|e| e.occurred_at.as_millis())
                .collect::<Vec<_>>(),
        )
        .bind(meta.correlation_id.as_deref())
        .fetch_one(conn)
        .await
        .map_err(persist_error)?;
    if found.0 != items.len() as i64 {
        return Err(Fail::Retry("item version changed"));
    }
    if found.1 != settled.len() as i64 {
        return Err(Fail::Retry("reservation settled concurrently"));
    }
    Ok(())
}

fn persist_error(e: sqlx::Error) -> Fail {
    match unique_violation(&e).as_deref() {
        // A concurrent reserve of the same (order, product) won: run again,
        // and the repeat finds its reservation (an idempotent answer).
        Some("reservations_order_product_key") => Fail::Retry("order line reserved concurrently"),
        Some("reservations_pkey") => Fail::Give(Error::InvalidInput {
            field: "reservation_id",
            reason: "already used by another reservation".to_owned(),
        }),
        _ => classify("write changes", e),
    }
}

async fn insert_item(conn: &mut PgConnection, item: &InventoryItem) -> Result<(), Fail> {
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
