//! After the load: wait until the system is quiet, then check it, in SQL
//! (inventory's tables in `public`, orders' in the `orders` schema of the
//! same database) and through the APIs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::stream::{self, StreamExt};
use sqlx::PgPool;
use uuid::Uuid;

use crate::cluster;
use crate::http::Http;
use crate::load::{Seen, World};

/// Pause between quiescence polls.
const QUIET_POLL: Duration = Duration::from_millis(500);

/// API reads at once while checking orders.
const API_CHECKS_IN_FLIGHT: usize = 16;

/// One check and what it found.
#[derive(Debug)]
pub(crate) struct Finding {
    pub(crate) check: &'static str,
    /// How many violations, and a few of them.
    pub(crate) violations: u64,
    pub(crate) examples: Vec<String>,
}

/// Most examples kept per check.
const EXAMPLES_MAX: usize = 5;

fn finding(check: &'static str, found: Vec<String>) -> Finding {
    Finding {
        check,
        violations: found.len() as u64,
        examples: found.into_iter().take(EXAMPLES_MAX).collect(),
    }
}

/// What the wait for quiet saw last.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Busy {
    pub(crate) pending_orders: i64,
    pub(crate) pending_holds: i64,
    pub(crate) unpublished_inventory: i64,
    pub(crate) unpublished_orders: i64,
    pub(crate) queued: u64,
}

impl Busy {
    fn quiet(&self) -> bool {
        *self == Busy::default()
    }
}

async fn busy(pool: &PgPool) -> anyhow::Result<Busy> {
    let (pending_orders, pending_holds, unpublished_inventory, unpublished_orders) =
        sqlx::query_as::<_, (i64, i64, i64, i64)>(
            "SELECT (SELECT count(*) FROM orders.orders WHERE status = 'pending'), \
                    (SELECT count(*) FROM reservations WHERE status = 'pending'), \
                    (SELECT count(*) FROM outbox WHERE published_at IS NULL), \
                    (SELECT count(*) FROM orders.event_outbox WHERE published_at IS NULL)",
        )
        .fetch_one(pool)
        .await?;
    let queued = tokio::task::spawn_blocking(cluster::queue_depths)
        .await??
        .values()
        .sum();
    Ok(Busy {
        pending_orders,
        pending_holds,
        unpublished_inventory,
        unpublished_orders,
        queued,
    })
}

/// Waits until no order is pending, no hold is open, every event is sent
/// and every queue is empty; how long that took, or what was still busy at
/// `timeout`.
pub(crate) async fn wait_quiet(pool: &PgPool, timeout: Duration) -> Result<Duration, Busy> {
    let started = Instant::now();
    let mut last = Busy::default();
    while started.elapsed() < timeout {
        match busy(pool).await {
            Ok(b) if b.quiet() => return Ok(started.elapsed()),
            Ok(b) => last = b,
            Err(_) => {}
        }
        tokio::time::sleep(QUIET_POLL).await;
    }
    Err(last)
}

async fn rows(pool: &PgPool, sql: &str) -> anyhow::Result<Vec<String>> {
    sqlx::query_scalar::<_, String>(sql)
        .fetch_all(pool)
        .await
        .with_context(|| sql.to_owned())
}

/// Every check in SQL.
pub(crate) async fn sql(pool: &PgPool, world: &World, seen: &Seen) -> anyhow::Result<Vec<Finding>> {
    let mut out = Vec::new();
    let stock = "WITH s AS ( \
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
    out.push(finding(
        "stock: ledger (initial + adjustments) = on hand + units sold",
        rows(pool, &format!("{stock} SELECT format('%s: ledger %s, on hand %s, sold %s', product_id, ledger, quantity, sold) FROM s WHERE ledger <> quantity + sold")).await?,
    ));
    out.push(finding(
        "stock: reserved = units of pending holds, within on hand",
        rows(pool, &format!("{stock} SELECT format('%s: reserved %s, held %s, on hand %s', product_id, reserved, held, quantity) FROM s WHERE reserved <> held OR reserved > quantity OR reserved < 0")).await?,
    ));
    out.push(finding(
        "stock: units sold (less units returned) = units of confirmed orders",
        rows(pool, &format!("{stock} SELECT format('%s: sold %s, returned %s, confirmed orders bought %s', product_id, sold, restocked, bought) FROM s WHERE sold - restocked <> bought")).await?,
    ));
    let mut initial = Vec::new();
    for p in &world.products {
        let first: Option<i64> = sqlx::query_scalar(
            "SELECT delta FROM stock_adjustments WHERE product_id = $1 ORDER BY id LIMIT 1",
        )
        .bind(p.id)
        .fetch_optional(pool)
        .await?;
        if first != Some(p.initial as i64) {
            initial.push(format!(
                "{}: created with {first:?}, expected {}",
                p.id, p.initial
            ));
        }
    }
    out.push(finding(
        "stock: the ledger starts with the initial stock",
        initial,
    ));
    out.push(finding(
        "orders: every order terminal",
        rows(pool, "SELECT format('%s is %s', id, status) FROM orders.orders WHERE status NOT IN ('confirmed', 'cancelled')").await?,
    ));
    out.push(finding(
        "orders: every confirmed order paid once, in full, never refunded",
        rows(pool, "SELECT format('%s: paid %s of %s, refunded %s', o.id, p.amount_minor, o.total_minor, r.amount_minor) \
             FROM orders.orders o LEFT JOIN orders.payments p ON p.order_id = o.id \
             LEFT JOIN orders.refunds r ON r.order_id = o.id \
             WHERE o.status = 'confirmed' AND (p.order_id IS NULL OR p.amount_minor <> o.total_minor OR r.order_id IS NOT NULL)").await?,
    ));
    out.push(finding(
        "orders: every line of a confirmed order sold exactly once",
        rows(pool, "SELECT format('%s line %s: %s confirmed holds', o.id, l.product_id, \
               (SELECT count(*) FROM orders.order_holds h JOIN reservations r ON r.id = h.reservation_id \
                 WHERE h.order_id = o.id AND r.product_id = l.product_id AND r.status = 'confirmed')) \
             FROM orders.orders o JOIN orders.order_lines l ON l.order_id = o.id \
             WHERE o.status = 'confirmed' AND \
               (SELECT count(*) FROM orders.order_holds h JOIN reservations r ON r.id = h.reservation_id \
                 WHERE h.order_id = o.id AND r.product_id = l.product_id AND r.status = 'confirmed' \
                   AND r.quantity = l.quantity) <> 1").await?,
    ));
    out.push(finding(
        "orders: every cancelled order's charge refunded in full",
        rows(pool, "SELECT format('%s: paid %s, refunded %s', o.id, p.amount_minor, r.amount_minor) \
             FROM orders.orders o JOIN orders.payments p ON p.order_id = o.id \
             LEFT JOIN orders.refunds r ON r.order_id = o.id \
             WHERE o.status = 'cancelled' AND (r.order_id IS NULL OR r.amount_minor <> p.amount_minor)").await?,
    ));
    out.push(finding(
        "orders: every cancelled order's holds released (or sold units returned)",
        rows(pool, "SELECT format('%s: hold %s is %s', o.id, r.id, r.status) \
             FROM orders.order_holds h JOIN orders.orders o ON o.id = h.order_id \
             JOIN reservations r ON r.id = h.reservation_id \
             WHERE o.status = 'cancelled' AND (r.status = 'pending' OR (r.status = 'confirmed' AND NOT EXISTS \
               (SELECT 1 FROM stock_adjustments a WHERE a.product_id = r.product_id \
                 AND a.idempotency_key = 'order-' || o.id || '-' || r.id)))").await?,
    ));
    out.push(finding(
        "inventory: every unit sold belongs to an order",
        rows(pool, "SELECT format('reservation %s (inventory order %s) confirmed, no order holds it', r.id, r.order_id) \
             FROM reservations r WHERE r.status = 'confirmed' AND NOT EXISTS \
               (SELECT 1 FROM orders.order_holds h WHERE h.reservation_id = r.id)").await?,
    ));
    out.push(finding(
        "orders: its record of each hold agrees with inventory",
        rows(pool, "SELECT format('%s: hold %s is %s in orders, %s in inventory', h.order_id, h.reservation_id, h.status, r.status) \
             FROM orders.order_holds h JOIN reservations r ON r.id = h.reservation_id \
             WHERE (CASE h.status WHEN 'reserved' THEN 'pending' ELSE h.status END) <> r.status").await?,
    ));
    out.push(finding(
        "events: every outbox row published",
        rows(pool, "SELECT format('inventory event %s unpublished', event_id) FROM outbox WHERE published_at IS NULL \
             UNION ALL SELECT format('orders event %s unpublished', event_id) FROM orders.event_outbox WHERE published_at IS NULL").await?,
    ));
    out.push(finding(
        "events: every hold event of inventory applied by orders",
        rows(
            pool,
            "SELECT format('%s %s not applied', e.event_type, e.event_id) FROM outbox e \
             WHERE e.event_type IN ('inventory.stock.reserved', 'inventory.stock.confirmed', \
               'inventory.stock.released', 'inventory.stock.expired') \
             AND NOT EXISTS (SELECT 1 FROM orders.processed_events p \
               WHERE p.consumer = 'orders' AND p.event_id = e.event_id)",
        )
        .await?,
    ));
    let placed: Vec<Uuid> = seen.placed.iter().map(|p| p.order_id).collect();
    let found: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM orders.orders WHERE id = ANY($1)")
        .bind(&placed)
        .fetch_all(pool)
        .await?;
    let found: std::collections::HashSet<Uuid> = found.into_iter().collect();
    out.push(finding(
        "writes: every order acknowledged exists",
        placed
            .iter()
            .filter(|id| !found.contains(id))
            .map(|id| format!("order {id} acknowledged, not stored"))
            .collect(),
    ));
    let keys: Vec<String> = seen.adjusted.iter().map(|a| a.key.clone()).collect();
    let products: Vec<Uuid> = seen.adjusted.iter().map(|a| a.product_id).collect();
    let lost = rows_bound(
        pool,
        "SELECT format('adjustment %s of %s acknowledged, not in the ledger', k, p) \
         FROM unnest($1::uuid[], $2::text[]) AS t(p, k) WHERE NOT EXISTS \
           (SELECT 1 FROM stock_adjustments a WHERE a.product_id = t.p AND a.idempotency_key = t.k)",
        &products,
        &keys,
    )
    .await?;
    out.push(finding(
        "writes: every adjustment acknowledged is in the ledger",
        lost,
    ));
    let queues = tokio::task::spawn_blocking(cluster::queue_depths).await??;
    out.push(finding(
        "events: every queue drained, nothing dead-lettered",
        queues
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(q, n)| format!("{q}: {n} messages"))
            .collect(),
    ));
    Ok(out)
}

async fn rows_bound(
    pool: &PgPool,
    sql: &str,
    products: &[Uuid],
    keys: &[String],
) -> anyhow::Result<Vec<String>> {
    sqlx::query_scalar::<_, String>(sql)
        .bind(products)
        .bind(keys)
        .fetch_all(pool)
        .await
        .with_context(|| sql.to_owned())
}

/// The checks through the gateway: each product's counters as inventory
/// serves them, each acknowledged order as orders serves it, against the
/// database.
pub(crate) async fn api(
    pool: &PgPool,
    http: &Http,
    world: &World,
    seen: &Seen,
) -> anyhow::Result<Vec<Finding>> {
    let mut stock = Vec::new();
    for p in &world.products {
        let (quantity, reserved): (i64, i64) =
            sqlx::query_as("SELECT quantity, reserved FROM inventory_items WHERE product_id = $1")
                .bind(p.id)
                .fetch_one(pool)
                .await?;
        let url = format!("{}/api/inventory/{}", world.gateway, p.id);
        let served = match http.get(&url, None).await {
            Ok((200, body)) => serde_json::from_slice::<serde_json::Value>(&body).ok(),
            _ => None,
        };
        let served = served.map(|v| (v["quantity"].as_i64(), v["reserved"].as_i64()));
        if served != Some((Some(quantity), Some(reserved))) {
            stock.push(format!(
                "{}: served {served:?}, stored on hand {quantity}, reserved {reserved}",
                p.id
            ));
        }
    }
    let stored: BTreeMap<Uuid, String> =
        sqlx::query_as::<_, (Uuid, String)>("SELECT id, status FROM orders.orders")
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    let orders: Vec<String> = stream::iter(seen.placed.iter().copied())
        .map(|placed| {
            let url = format!("{}/api/orders/{}", world.gateway, placed.order_id);
            let token = world.customers[placed.customer].token.clone();
            let expected = stored.get(&placed.order_id).cloned();
            async move {
                let served = match http.get(&url, Some(&token)).await {
                    Ok((200, body)) => serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["status"].as_str().map(str::to_owned)),
                    Ok((status, _)) => Some(format!("HTTP {status}")),
                    Err(e) => Some(format!("{e:?}")),
                };
                (served != expected).then(|| {
                    format!(
                        "{}: served {served:?}, stored {expected:?}",
                        placed.order_id
                    )
                })
            }
        })
        .buffer_unordered(API_CHECKS_IN_FLIGHT)
        .filter_map(|x| async move { x })
        .collect()
        .await;
    Ok(vec![
        finding("api: each product's counters as stored", stock),
        finding("api: each acknowledged order as stored", orders),
    ])
}
