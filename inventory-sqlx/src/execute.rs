//! A batch of commands as one transaction with a constant number of round
//! trips, whatever its size: lock every item the batch names with one
//! statement (in product order), load the reservations it needs with one
//! more, run [`decide`] for each command in order on one [`Snapshot`], write
//! every change with one set-based statement, commit. A single command is a
//! batch of one.
//!
//! Items are always read (and, under row locks, locked) before the
//! reservations that hang off them, in a later statement, so the
//! reservations are read as the last holder of the item lock left them; and
//! every reservation change also changes its item (core bumps the item's
//! version), so the item's version guards the reservations too. What a
//! concurrent transaction can still slip in (a reservation committed between
//! the two statements, a reservation id or `(order, product)` taken
//! meanwhile, an item created meanwhile) makes the attempt fail and the whole
//! batch run again, bounded.

use std::collections::{BTreeMap, BTreeSet};

use inventory_core::{
    decide, AdjustmentKey, BatchResults, Changes, Command, Error, InventoryItem, Meta, ProductId,
    Reservation, Snapshot, Timestamp, LAZY_EXPIRY_MAX,
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

/// Runs `batch`, again after each conflict, at most `retries_max` more times.
/// The caller has checked its length.
pub(crate) async fn execute_batch(
    store: &PgStore,
    batch: &[(Command, Meta)],
) -> Result<BatchResults, Error> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut retrier = Retrier::new(store.options(), store.counters());
    loop {
        retrier.attempt();
        match attempt(store, batch).await {
            Ok(results) => return Ok(results),
            Err(Fail::Give(e)) => return Err(e),
            Err(Fail::Retry(why)) => {
                if !retrier.backoff(why).await {
                    return Err(Error::Contention);
                }
            }
        }
    }
}

/// One attempt: the answers of every command, committed together with
/// whatever they changed (a business error may still have expired overdue
/// reservations on the way), or a failed attempt, rolled back.
async fn attempt(store: &PgStore, batch: &[(Command, Meta)]) -> Result<BatchResults, Fail> {
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
        let (wants, mut loaded) = load(&mut tx, batch, lock).await?;
        let (mut snapshot, mut results, mut correlation_ids) = loaded.decide_all(batch);
        // Holds of a product are loaded only where the batch looked short of
        // stock; a reserve that still ran short elsewhere (an earlier command
        // of the batch took the stock) is decided again with them all.
        if loaded.missed_expiry(&results) {
            let rest = wants.reserved_not_in(&loaded.overdue_loaded);
            loaded.add_overdue(fetch_overdue(&mut tx, &rest, wants.now).await?, rest);
            (snapshot, results, correlation_ids) = loaded.decide_all(batch);
        }
        let changes = snapshot.into_changes();
        let wrote = !changes.is_empty();
        if wrote {
            persist(&mut tx, changes, &correlation_ids).await?;
        }
        Ok::<_, Fail>((results, wrote))
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

/// What a batch names, gathered before anything is read.
#[derive(Default)]
struct Wants {
    /// Products named directly (creates, reserve lines, adjustments).
    products: BTreeSet<ProductId>,
    /// Reservations confirmed, released or expired: their items are locked.
    named: Vec<Uuid>,
    /// Ids new reservations would take: read only to see whether they are taken.
    probed: Vec<Uuid>,
    /// `(order, product)` of every reserve line.
    lines: (Vec<Uuid>, Vec<Uuid>),
    /// `(product, idempotency key)` of every keyed adjustment.
    keys: (Vec<Uuid>, Vec<String>),
    /// Units the batch's reserves ask of each product, and how many reserves
    /// ask.
    asked: BTreeMap<ProductId, (u64, i64)>,
    /// The latest instant of the batch.
    now: Timestamp,
}

impl Wants {
    fn of(batch: &[(Command, Meta)]) -> Self {
        let mut wants = Wants::default();
        for (command, meta) in batch {
            wants.now = wants.now.max(meta.now);
            wants.products.extend(command.products());
            if let Some(id) = command.reservation_id() {
                wants.named.push(id.as_uuid());
            }
            if let Command::Adjust {
                product_id,
                key: Some(key),
                ..
            } = command
            {
                wants.keys.0.push(product_id.as_uuid());
                wants.keys.1.push(key.as_str().to_owned());
            }
            if let Command::Reserve(reserve) = command {
                for line in reserve.lines() {
                    wants.probed.push(line.reservation_id.as_uuid());
                    wants.lines.0.push(reserve.order_id().as_uuid());
                    wants.lines.1.push(line.product_id.as_uuid());
                    let asked = wants.asked.entry(line.product_id).or_default();
                    asked.0 += line.quantity.get();
                    asked.1 += 1;
                }
            }
        }
        wants
    }

    /// Products whose stock cannot serve every reserve of the batch as it
    /// stands: only there can lazy expiry run, unless an earlier command of
    /// the batch takes stock.
    fn short(&self, items: &[InventoryItem]) -> Overdue {
        let short = items.iter().filter(|item| {
            let asked = self.asked.get(&item.product_id()).map_or(0, |a| a.0);
            item.available() < asked
        });
        self.overdue_limits(short.map(InventoryItem::product_id))
    }

    /// Products the batch reserves whose holds are not in `loaded`.
    fn reserved_not_in(&self, loaded: &BTreeSet<ProductId>) -> Overdue {
        self.overdue_limits(self.asked.keys().copied().filter(|p| !loaded.contains(p)))
    }

    /// Each product with the most overdue holds the batch's reserves of it
    /// may expire: [`LAZY_EXPIRY_MAX`] per reserve.
    fn overdue_limits(&self, products: impl Iterator<Item = ProductId>) -> Overdue {
        let mut overdue = Overdue::default();
        for product in products {
            let reserves = self.asked.get(&product).map_or(0, |a| a.1);
            overdue.products.push(product.as_uuid());
            overdue.limits.push(reserves * LAZY_EXPIRY_MAX as i64);
        }
        overdue
    }
}

/// Products whose overdue holds to load, each with how many at most.
#[derive(Default)]
struct Overdue {
    products: Vec<Uuid>,
    limits: Vec<i64>,
}

/// What an attempt read, decided on afresh for each pass.
struct Loaded {
    items: Vec<InventoryItem>,
    reservations: Vec<Reservation>,
    /// Ledger entries made under the keys of the batch's adjustments.
    keyed: Vec<(ProductId, AdjustmentKey, i64)>,
    /// Products whose overdue holds are loaded, as many as the batch may
    /// expire.
    overdue_loaded: BTreeSet<ProductId>,
}

impl Loaded {
    /// Every command of `batch` in order on one fresh snapshot of what was
    /// read: the snapshot, the answers, and each event's correlation id.
    fn decide_all<'b>(
        &self,
        batch: &'b [(Command, Meta)],
    ) -> (Snapshot, BatchResults, Vec<Option<&'b str>>) {
        let mut snapshot = Snapshot::new();
        self.items
            .iter()
            .cloned()
            .for_each(|i| snapshot.load_item(i));
        for reservation in &self.reservations {
            snapshot.load_reservation(reservation.clone());
        }
        for (product, key, delta) in &self.keyed {
            snapshot.load_adjustment_key(*product, key.clone(), *delta);
        }
        let mut results = Vec::with_capacity(batch.len());
        let mut correlation_ids = Vec::new();
        for (command, meta) in batch {
            results.push(decide(&mut snapshot, command, meta.now));
            let recorded = snapshot.events_recorded() - correlation_ids.len();
            correlation_ids.extend(std::iter::repeat_n(
                meta.correlation_id.as_deref(),
                recorded,
            ));
        }
        (snapshot, results, correlation_ids)
    }

    /// True when a reserve ran short on a product whose overdue holds were
    /// not loaded (lazy expiry could have served it).
    fn missed_expiry(&self, results: &BatchResults) -> bool {
        results.iter().any(|result| match result {
            Err(Error::InsufficientStock { product_id, .. }) => {
                !self.overdue_loaded.contains(product_id)
            }
            _ => false,
        })
    }

    fn add_overdue(&mut self, holds: Vec<Reservation>, loaded: Overdue) {
        self.reservations.extend(holds);
        let products = loaded.products.into_iter().map(ProductId::from_uuid);
        self.overdue_loaded.extend(products);
    }
}

/// Reads everything `batch` may need: two statements.
async fn load(
    conn: &mut PgConnection,
    batch: &[(Command, Meta)],
    lock: ItemLock,
) -> Result<(Wants, Loaded), Fail> {
    let wants = Wants::of(batch);
    let products: Vec<Uuid> = wants.products.iter().map(ProductId::as_uuid).collect();
    let items = lock_items(conn, &products, &wants.named, lock).await?;
    let short = wants.short(&items);
    let keyed = if wants.keys.0.is_empty() {
        Vec::new()
    } else {
        fetch_keyed(conn, &wants.keys).await?
    };
    let mut loaded = Loaded {
        items,
        reservations: Vec::new(),
        keyed,
        overdue_loaded: BTreeSet::new(),
    };
    if wants.named.is_empty() && wants.probed.is_empty() {
        return Ok((wants, loaded));
    }
    let locked: BTreeSet<ProductId> = loaded.items.iter().map(InventoryItem::product_id).collect();
    let named: BTreeSet<Uuid> = wants.named.iter().copied().collect();
    let reservations = fetch_reservations(conn, &wants, &short).await?;
    for reservation in &reservations {
        // A reservation a command names must have its item locked. One
        // committed after the items were locked names an item that may not
        // be: run again, and the lock statement finds it.
        let is_named = named.contains(&reservation.id().as_uuid());
        if is_named && !locked.contains(&reservation.product_id()) {
            return Err(Fail::Retry(
                "reservation committed after its item was locked",
            ));
        }
    }
    loaded.add_overdue(reservations, short);
    Ok((wants, loaded))
}

/// Locks (or reads) the items of `products` and of the reservations `named`,
/// in ascending product order (the lock order), in one statement.
async fn lock_items(
    conn: &mut PgConnection,
    products: &[Uuid],
    named: &[Uuid],
    lock: ItemLock,
) -> Result<Vec<InventoryItem>, Fail> {
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM inventory_items WHERE product_id = ANY($1::uuid[] || \
           ARRAY(SELECT product_id FROM reservations WHERE id = ANY($2))) \
         ORDER BY product_id{}",
        lock.clause()
    );
    let rows = sqlx::query(&sql)
        .bind(products)
        .bind(named)
        .fetch_all(conn)
        .await
        .map_err(|e| classify("lock items", e))?;
    Ok(rows.iter().map(rows::item).collect::<Result<_, _>>()?)
}

/// The reservations a batch names or probes, the existing lines of its
/// reserves, and the overdue pending holds of the `short` products (each up
/// to its limit), in one statement (a reservation may come twice).
///
/// Each lateral lookup has a `LIMIT` (at most one line per order and
/// product), which keeps it a lookup per line: without it PostgreSQL may join
/// the whole table instead, a plan it favours while the table is small and
/// then keeps (the statements are planned once per connection).
async fn fetch_reservations(
    conn: &mut PgConnection,
    wants: &Wants,
    short: &Overdue,
) -> Result<Vec<Reservation>, Fail> {
    let sql = format!(
        "SELECT {RESERVATION_COLUMNS} FROM reservations WHERE id = ANY($1::uuid[] || $2::uuid[]) \
         UNION ALL \
         SELECT r.* FROM UNNEST($3::uuid[], $4::uuid[]) AS l(order_id, product_id) \
           CROSS JOIN LATERAL (SELECT {RESERVATION_COLUMNS} FROM reservations \
             WHERE order_id = l.order_id AND product_id = l.product_id LIMIT 1) AS r \
         UNION ALL {OVERDUE_SQL}",
        OVERDUE_SQL = overdue_sql(5)
    );
    let rows = sqlx::query(&sql)
        .bind(&wants.named)
        .bind(&wants.probed)
        .bind(&wants.lines.0)
        .bind(&wants.lines.1)
        .bind(&short.products)
        .bind(&short.limits)
        .bind(wants.now.as_millis())
        .fetch_all(conn)
        .await
        .map_err(|e| classify("load reservations", e))?;
    Ok(rows
        .iter()
        .map(rows::reservation)
        .collect::<Result<_, _>>()?)
}

/// The ledger entries made under `keys` (`(product, key)` pairs), as
/// `(product, key, delta)`.
async fn fetch_keyed(
    conn: &mut PgConnection,
    keys: &(Vec<Uuid>, Vec<String>),
) -> Result<Vec<(ProductId, AdjustmentKey, i64)>, Fail> {
    let rows: Vec<(Uuid, String, i64)> = sqlx::query_as(
        "SELECT a.product_id, a.idempotency_key, a.delta \
         FROM UNNEST($1::uuid[], $2::text[]) AS k(product_id, key) \
         JOIN stock_adjustments AS a \
           ON a.product_id = k.product_id AND a.idempotency_key = k.key",
    )
    .bind(&keys.0)
    .bind(&keys.1)
    .fetch_all(conn)
    .await
    .map_err(|e| classify("load adjustment keys", e))?;
    rows.into_iter()
        .map(|(product, key, delta)| {
            let key = AdjustmentKey::new(&key).map_err(|e| rows::corrupt("adjustment key", e))?;
            Ok((ProductId::from_uuid(product), key, delta))
        })
        .collect()
}

/// The overdue pending holds of each product (`$n`), earliest first, at most
/// its limit (`$n+1`), due at `$n+2`. Ordered by the whole key of the index
/// of pending holds by product (the product is fixed, so the order is by
/// expiry), which makes that index the planner's only sensible choice.
fn overdue_sql(n: usize) -> String {
    format!(
        "SELECT r.* FROM UNNEST(${n}::uuid[], ${}::bigint[]) AS p(product_id, lim) \
         CROSS JOIN LATERAL (SELECT {RESERVATION_COLUMNS} FROM reservations \
           WHERE product_id = p.product_id AND status = 'pending' AND expires_at_ms <= ${} \
           ORDER BY product_id, expires_at_ms, id LIMIT p.lim) AS r",
        n + 1,
        n + 2
    )
}

/// The overdue holds of `overdue`'s products, due at `now`.
async fn fetch_overdue(
    conn: &mut PgConnection,
    overdue: &Overdue,
    now: Timestamp,
) -> Result<Vec<Reservation>, Fail> {
    let rows = sqlx::query(&overdue_sql(1))
        .bind(&overdue.products)
        .bind(&overdue.limits)
        .bind(now.as_millis())
        .fetch_all(conn)
        .await
        .map_err(|e| classify("load overdue reservations", e))?;
    Ok(rows
        .iter()
        .map(rows::reservation)
        .collect::<Result<_, _>>()?)
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

/// Every write of a change in one statement (one round trip): versioned
/// item updates, new items, new reservations, settled reservations, ledger
/// entries and outbox entries. Returns how many items and reservations the
/// guarded updates found.
///
/// The updates find their rows by primary key (`= ANY` of the ids), whatever
/// the table's statistics (see [`crate::SESSION_SETTINGS`]); a settled
/// reservation is "not yet finished" rather than `status = 'pending'`, which
/// would let the planner walk the whole partial index of pending holds.
const PERSIST_SQL: &str = "WITH \
  items AS ( \
    UPDATE inventory_items AS i SET quantity = u.quantity, reserved = u.reserved, \
      version = u.version, updated_at_ms = u.updated_at_ms \
    FROM UNNEST($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], \
                $6::bigint[]) AS u(product_id, loaded, quantity, reserved, version, updated_at_ms) \
    WHERE i.product_id = ANY($1) AND i.product_id = u.product_id AND i.version = u.loaded \
    RETURNING 1), \
  new_items AS ( \
    INSERT INTO inventory_items \
      (product_id, quantity, reserved, version, created_at_ms, updated_at_ms) \
    SELECT * FROM UNNEST($7::uuid[], $8::bigint[], $9::bigint[], $10::bigint[], \
                         $11::bigint[], $12::bigint[]) RETURNING 1), \
  created AS ( \
    INSERT INTO reservations (id, order_id, product_id, quantity, status, expires_at_ms, \
      created_at_ms, updated_at_ms) \
    SELECT * FROM UNNEST($13::uuid[], $14::uuid[], $15::uuid[], $16::bigint[], $17::text[], \
                         $18::bigint[], $19::bigint[], $20::bigint[]) RETURNING 1), \
  settled AS ( \
    UPDATE reservations AS r SET status = u.status, updated_at_ms = u.updated_at_ms \
    FROM UNNEST($21::uuid[], $22::text[], $23::bigint[]) AS u(id, status, updated_at_ms) \
    WHERE r.id = ANY($21) AND r.id = u.id \
      AND r.status <> ALL ('{confirmed,released,expired}') RETURNING 1), \
  ledger AS ( \
    INSERT INTO stock_adjustments \
      (product_id, delta, quantity_before, quantity_after, reason, actor, at_ms, \
       idempotency_key) \
    SELECT product_id, delta, quantity_before, quantity_after, reason, actor, at_ms, \
      idempotency_key \
    FROM UNNEST($24::uuid[], $25::bigint[], $26::bigint[], $27::bigint[], $28::text[], \
                $29::text[], $30::bigint[], $37::text[]) WITH ORDINALITY \
      AS a(product_id, delta, quantity_before, quantity_after, reason, actor, at_ms, \
           idempotency_key, n) \
    ORDER BY n RETURNING 1), \
  events AS ( \
    INSERT INTO outbox \
      (event_id, event_type, product_id, payload, correlation_id, occurred_at_ms) \
    SELECT event_id, event_type, product_id, payload, correlation_id, occurred_at_ms \
    FROM UNNEST($31::uuid[], $32::text[], $33::uuid[], $34::jsonb[], $35::text[], \
                $36::bigint[]) WITH ORDINALITY \
      AS e(event_id, event_type, product_id, payload, correlation_id, occurred_at_ms, n) \
    ORDER BY n RETURNING 1) \
SELECT (SELECT COUNT(*) FROM items) AS items, (SELECT COUNT(*) FROM settled) AS settled";

/// One column of a set-based write: a field of every row.
fn column<'a, T, U>(rows: &'a [T], field: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(field).collect()
}

/// Writes what a change did; `correlation_ids` has one entry per event. An
/// item whose version moved, or a reservation that is no longer pending, is
/// a conflict (run the batch again).
pub(crate) async fn persist(
    conn: &mut PgConnection,
    changes: Changes,
    correlation_ids: &[Option<&str>],
) -> Result<(), Fail> {
    debug_assert_eq!(correlation_ids.len(), changes.events.len());
    let items = &changes.updated_items;
    let fresh = &changes.new_items;
    let created = &changes.new_reservations;
    let settled = &changes.updated_reservations;
    let ledger = &changes.adjustments;
    let events = &changes.events;
    let found: (i64, i64) = sqlx::query_as(PERSIST_SQL)
        .bind(column(items, |(i, _)| i.product_id().as_uuid()))
        .bind(column(items, |(_, v)| to_i64(v.get())))
        .bind(column(items, |(i, _)| to_i64(i.quantity())))
        .bind(column(items, |(i, _)| to_i64(i.reserved())))
        .bind(column(items, |(i, _)| to_i64(i.version().get())))
        .bind(column(items, |(i, _)| i.updated_at().as_millis()))
        .bind(column(fresh, |i| i.product_id().as_uuid()))
        .bind(column(fresh, |i| to_i64(i.quantity())))
        .bind(column(fresh, |i| to_i64(i.reserved())))
        .bind(column(fresh, |i| to_i64(i.version().get())))
        .bind(column(fresh, |i| i.created_at().as_millis()))
        .bind(column(fresh, |i| i.updated_at().as_millis()))
        .bind(column(created, |r| r.id().as_uuid()))
        .bind(column(created, |r| r.order_id().as_uuid()))
        .bind(column(created, |r| r.product_id().as_uuid()))
        .bind(column(created, |r| to_i64(r.quantity())))
        .bind(column(created, |r| r.status().as_str()))
        .bind(column(created, |r| r.expires_at().as_millis()))
        .bind(column(created, |r| r.created_at().as_millis()))
        .bind(column(created, |r| r.updated_at().as_millis()))
        .bind(column(settled, |r| r.id().as_uuid()))
        .bind(column(settled, |r| r.status().as_str()))
        .bind(column(settled, |r| r.updated_at().as_millis()))
        .bind(column(ledger, |a| a.product_id.as_uuid()))
        .bind(column(ledger, |a| a.delta))
        .bind(column(ledger, |a| to_i64(a.quantity_before)))
        .bind(column(ledger, |a| to_i64(a.quantity_after)))
        .bind(column(ledger, |a| a.reason.as_str()))
        .bind(column(ledger, |a| a.actor.as_str()))
        .bind(column(ledger, |a| a.at.as_millis()))
        // Time-ordered ids (UUIDv7): the unique index on event_id grows at
        // its end instead of dirtying a random page per event.
        .bind(column(events, |_| Uuid::now_v7()))
        .bind(column(events, |e| e.payload.event_type()))
        .bind(column(events, |e| e.payload.product_id().as_uuid()))
        .bind(column(events, |e| rows::payload_to_json(&e.payload)))
        .bind(correlation_ids)
        .bind(column(events, |e| e.occurred_at.as_millis()))
        .bind(column(ledger, |a| {
            a.key.as_ref().map(AdjustmentKey::as_str)
        }))
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

/// A key taken by a concurrent transaction is a conflict: the batch runs
/// again, and the repeat reads what that transaction wrote, so the rules
/// answer (an idempotent reserve, a refused id, an item that exists).
fn persist_error(e: sqlx::Error) -> Fail {
    match unique_violation(&e).as_deref() {
        Some("reservations_order_product_key") => Fail::Retry("order line reserved concurrently"),
        Some("reservations_pkey") => Fail::Retry("reservation id taken concurrently"),
        Some("inventory_items_pkey") => Fail::Retry("item created concurrently"),
        Some("stock_adjustments_key_idx") => Fail::Retry("adjustment key used concurrently"),
        _ => classify("write changes", e),
    }
}
