//! After the load: wait until the system is quiet, then check what the
//! library's SQL checks ([`faults::check`]) cannot see: the queues, and the
//! system as its APIs serve it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use sqlx::PgPool;
use uuid::Uuid;

use faults::check::Finding;

use crate::cluster;
use crate::http::Http;
use crate::load::{Seen, World};

/// Pause between quiescence polls.
const QUIET_POLL: Duration = Duration::from_millis(500);

/// API reads at once while checking orders.
const API_CHECKS_IN_FLIGHT: usize = 16;

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

/// The queues of the run are empty and nothing was dead-lettered.
pub(crate) async fn queues() -> anyhow::Result<Finding> {
    let queues = tokio::task::spawn_blocking(cluster::queue_depths).await??;
    Ok(Finding::new(
        "events: every queue drained, nothing dead-lettered",
        queues
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(q, n)| format!("{q}: {n} messages"))
            .collect(),
    ))
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
        Finding::new("api: each product's counters as stored", stock),
        Finding::new("api: each acknowledged order as stored", orders),
    ])
}
