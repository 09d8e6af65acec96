//! The invariants of the whole system, checked in SQL once it is quiet:
//! inventory's tables in `public` and orders' tables in the `orders`
//! schema of one database (how `fault-run` deploys them).
//!
//! Each [`Finding`] names a check and what broke it; none with violations
//! means the run lost nothing, oversold nothing and left no money behind.
//!
//! ```no_run
//! # async fn demo(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
//! let expected = faults::check::Expected::default();
//! for f in faults::check::invariants(&pool, &expected).await? {
//!     assert_eq!(f.violations, 0, "{}: {:?}", f.check, f.examples);
//! }
//! # Ok(()) }
//! ```

use std::collections::HashSet;

use sqlx::PgPool;
use uuid::Uuid;

/// Most examples kept per check.
pub const EXAMPLES_MAX: usize = 5;

/// One check and what it found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// What is checked.
    pub check: &'static str,
    /// How many rows break it.
    pub violations: u64,
    /// Up to [`EXAMPLES_MAX`] of them, described.
    pub examples: Vec<String>,
}

impl Finding {
    /// A finding from every violation found.
    pub fn new(check: &'static str, found: Vec<String>) -> Self {
        Self {
            check,
            violations: found.len() as u64,
            examples: found.into_iter().take(EXAMPLES_MAX).collect(),
        }
    }
}

/// What the clients of a run know, to hold the database to.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    /// Each product and the stock it was created with.
    pub initial_stock: Vec<(Uuid, u64)>,
    /// Orders whose placement was acknowledged.
    pub orders: Vec<Uuid>,
    /// Stock adjustments acknowledged: product and idempotency key.
    pub adjustments: Vec<(Uuid, String)>,
}

/// Per product: the ledger, stock, holds, units sold, units returned to
/// stock by orders' undo, and units bought by confirmed orders.
const STOCK: &str = "WITH s AS ( \
    SELECT i.product_id, i.quantity, i.reserved, \
      (SELECT coalesce(sum(delta), 0)::bigint FROM stock_adjustments a \
        WHERE a.product_id = i.product_id) AS ledger, \
      (SELECT coalesce(sum(quantity), 0)::bigint FROM reservations r \
        WHERE r.product_id = i.product_id AND r.status = 'confirmed') AS sold, \
      (SELECT coalesce(sum(quantity), 0)::bigint FROM reservations r \
        WHERE r.product_id = i.product_id AND r.status = 'pending') AS held, \
      (SELECT coalesce(sum(delta), 0)::bigint FROM stock_adjustments a \
        WHERE a.product_id = i.product_id AND a.idempotency_key LIKE 'order-%') AS restocked, \
      (SELECT coalesce(sum(l.quantity), 0)::bigint FROM orders.order_lines l \
        JOIN orders.orders o ON o.id = l.order_id \
        WHERE o.status = 'confirmed' AND l.product_id = i.product_id) AS bought \
    FROM inventory_items i) ";

/// Each check: its name and the query listing what breaks it.
const CHECKS: &[(&str, &str)] = &[
    (
        "stock: ledger (initial + adjustments) = on hand + units sold",
        "SELECT format('%s: ledger %s, on hand %s, sold %s', product_id, ledger, quantity, sold) \
         FROM s WHERE ledger <> quantity + sold",
    ),
    (
        "stock: reserved = units of pending holds, within on hand",
        "SELECT format('%s: reserved %s, held %s, on hand %s', product_id, reserved, held, quantity) \
         FROM s WHERE reserved <> held OR reserved > quantity OR reserved < 0",
    ),
    (
        "stock: units sold (less units returned) = units of confirmed orders",
        "SELECT format('%s: sold %s, returned %s, confirmed orders bought %s', product_id, sold, restocked, bought) \
         FROM s WHERE sold - restocked <> bought",
    ),
    (
        "orders: every order terminal",
        "SELECT format('%s is %s', id, status) FROM orders.orders \
         WHERE status NOT IN ('confirmed', 'cancelled')",
    ),
    (
        "orders: every confirmed order paid once, in full, never refunded",
        "SELECT format('%s: paid %s of %s, refunded %s', o.id, p.amount_minor, o.total_minor, r.amount_minor) \
         FROM orders.orders o LEFT JOIN orders.payments p ON p.order_id = o.id \
         LEFT JOIN orders.refunds r ON r.order_id = o.id \
         WHERE o.status = 'confirmed' \
           AND (p.order_id IS NULL OR p.amount_minor <> o.total_minor OR r.order_id IS NOT NULL)",
    ),
    (
        "orders: every line of a confirmed order sold exactly once",
        "SELECT format('%s line %s: %s confirmed holds', o.id, l.product_id, count(h.order_id)) \
         FROM orders.orders o JOIN orders.order_lines l ON l.order_id = o.id \
         LEFT JOIN (SELECT h.order_id, r.product_id, r.quantity FROM orders.order_holds h \
             JOIN reservations r ON r.id = h.reservation_id WHERE r.status = 'confirmed') h \
           ON h.order_id = o.id AND h.product_id = l.product_id \
         WHERE o.status = 'confirmed' \
         GROUP BY o.id, l.product_id, l.quantity \
         HAVING count(h.order_id) <> 1 OR bool_or(h.quantity <> l.quantity)",
    ),
    (
        "orders: every cancelled order's charge refunded in full",
        "SELECT format('%s: paid %s, refunded %s', o.id, p.amount_minor, r.amount_minor) \
         FROM orders.orders o JOIN orders.payments p ON p.order_id = o.id \
         LEFT JOIN orders.refunds r ON r.order_id = o.id \
         WHERE o.status = 'cancelled' AND (r.order_id IS NULL OR r.amount_minor <> p.amount_minor)",
    ),
    (
        "orders: every cancelled order's holds released (or sold units returned)",
        "SELECT format('%s: hold %s is %s', o.id, r.id, r.status) \
         FROM orders.order_holds h JOIN orders.orders o ON o.id = h.order_id \
         JOIN reservations r ON r.id = h.reservation_id \
         WHERE o.status = 'cancelled' AND (r.status = 'pending' OR (r.status = 'confirmed' AND NOT EXISTS \
           (SELECT 1 FROM stock_adjustments a WHERE a.product_id = r.product_id \
             AND a.idempotency_key = 'order-' || o.id || '-' || r.id)))",
    ),
    (
        "inventory: every unit sold belongs to an order",
        "SELECT format('reservation %s (inventory order %s) confirmed, no order holds it', r.id, r.order_id) \
         FROM reservations r WHERE r.status = 'confirmed' AND NOT EXISTS \
           (SELECT 1 FROM orders.order_holds h WHERE h.reservation_id = r.id)",
    ),
    (
        "orders: its record of each hold agrees with inventory",
        "SELECT format('%s: hold %s is %s in orders, %s in inventory', h.order_id, h.reservation_id, h.status, r.status) \
         FROM orders.order_holds h JOIN reservations r ON r.id = h.reservation_id \
         WHERE (CASE h.status WHEN 'reserved' THEN 'pending' ELSE h.status END) <> r.status",
    ),
    (
        "events: every outbox row published",
        "SELECT format('inventory event %s unpublished', event_id) FROM outbox WHERE published_at IS NULL \
         UNION ALL SELECT format('orders event %s unpublished', event_id) \
           FROM orders.event_outbox WHERE published_at IS NULL",
    ),
    (
        "events: every hold event of inventory applied by orders",
        "SELECT format('%s %s not applied', e.event_type, e.event_id) FROM outbox e \
         WHERE e.event_type IN ('inventory.stock.reserved', 'inventory.stock.confirmed', \
           'inventory.stock.released', 'inventory.stock.expired') \
         AND NOT EXISTS (SELECT 1 FROM orders.processed_events p \
           WHERE p.consumer = 'orders' AND p.event_id = e.event_id)",
    ),
];

/// Runs every check against the database of `pool` (analyzing it first).
///
/// # Errors
/// The database's, when a query fails.
pub async fn invariants(pool: &PgPool, expected: &Expected) -> Result<Vec<Finding>, sqlx::Error> {
    // Tables filled by a run may never have been analyzed: without
    // statistics the planner may pick plans that take minutes.
    sqlx::raw_sql("ANALYZE").execute(pool).await?;
    let mut out = Vec::new();
    for (check, query) in CHECKS {
        let found: Vec<String> = sqlx::query_scalar(&format!("{STOCK}{query}"))
            .fetch_all(pool)
            .await?;
        out.push(Finding::new(check, found));
    }
    let mut initial = Vec::new();
    for (product, quantity) in &expected.initial_stock {
        let first: Option<i64> = sqlx::query_scalar(
            "SELECT delta FROM stock_adjustments WHERE product_id = $1 ORDER BY id LIMIT 1",
        )
        .bind(product)
        .fetch_optional(pool)
        .await?;
        if first != i64::try_from(*quantity).ok() {
            initial.push(format!(
                "{product}: created with {first:?}, expected {quantity}"
            ));
        }
    }
    out.push(Finding::new(
        "stock: the ledger starts with the initial stock",
        initial,
    ));
    let found: HashSet<Uuid> =
        sqlx::query_scalar("SELECT id FROM orders.orders WHERE id = ANY($1)")
            .bind(&expected.orders)
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    out.push(Finding::new(
        "writes: every order acknowledged exists",
        expected
            .orders
            .iter()
            .filter(|id| !found.contains(id))
            .map(|id| format!("order {id} acknowledged, not stored"))
            .collect(),
    ));
    let (products, keys): (Vec<Uuid>, Vec<String>) = expected.adjustments.iter().cloned().unzip();
    let lost: Vec<String> = sqlx::query_scalar(
        "SELECT format('adjustment %s of %s acknowledged, not in the ledger', k, p) \
         FROM unnest($1::uuid[], $2::text[]) AS t(p, k) WHERE NOT EXISTS \
           (SELECT 1 FROM stock_adjustments a WHERE a.product_id = t.p AND a.idempotency_key = t.k)",
    )
    .bind(&products)
    .bind(&keys)
    .fetch_all(pool)
    .await?;
    out.push(Finding::new(
        "writes: every adjustment acknowledged is in the ledger",
        lost,
    ));
    Ok(out)
}
