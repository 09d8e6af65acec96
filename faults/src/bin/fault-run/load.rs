//! The load: customers placing multi-line orders and cancelling some, an
//! admin adjusting stock, and reads, all through the gateway at a fixed
//! rate (open loop: a slow answer does not slow the next request). Every
//! request and its answer is recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::{watch, Semaphore};
use uuid::Uuid;

use crate::http::{Http, NoAnswer};

/// Most requests in flight at once; a tick finding none free is counted as
/// not sent (the system is slower than the rate asked).
const IN_FLIGHT_MAX: usize = 1024;

/// Orders a cancel or a read picks from: the most recent ones placed.
const RECENT_ORDERS: usize = 200;

/// Most lines in one order, and most units in one line.
const LINES_MAX: usize = 3;
const UNITS_MAX: u32 = 3;

/// What a request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Op {
    PlaceOrder,
    CancelOrder,
    Adjust,
    ReadStock,
    ReadOrder,
}

impl Op {
    pub(crate) const ALL: [Op; 5] = [
        Op::PlaceOrder,
        Op::CancelOrder,
        Op::Adjust,
        Op::ReadStock,
        Op::ReadOrder,
    ];

    /// Weight in the mix, out of 100.
    fn weight(self) -> u32 {
        match self {
            Op::PlaceOrder => 40,
            Op::CancelOrder => 8,
            Op::Adjust => 10,
            Op::ReadStock => 27,
            Op::ReadOrder => 15,
        }
    }

    /// Refusals that are a right answer to a valid request of this kind:
    /// cancelling an order already confirmed, taking out more stock than
    /// is free.
    pub(crate) fn refusal_expected(self, status: u16) -> bool {
        matches!((self, status), (Op::CancelOrder | Op::Adjust, 409))
    }
}

/// One request and what came back.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Record {
    pub(crate) op: Op,
    /// When it was sent and answered, in ms since the run started.
    pub(crate) start_ms: u64,
    pub(crate) end_ms: u64,
    /// The status, 0 when no answer came.
    pub(crate) status: u16,
    /// Why no answer came, or the body of a 5xx.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl Record {
    pub(crate) fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub(crate) fn failed(&self) -> bool {
        !self.ok() && !self.op.refusal_expected(self.status)
    }
}

/// A product of the run.
#[derive(Clone, Debug)]
pub(crate) struct Product {
    pub(crate) id: Uuid,
    pub(crate) initial: u64,
    /// Few units: customers contend for them.
    pub(crate) scarce: bool,
}

/// A customer and their token.
#[derive(Clone, Debug)]
pub(crate) struct Customer {
    pub(crate) token: String,
}

/// What the load works on.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) gateway: String,
    pub(crate) products: Vec<Product>,
    pub(crate) customers: Vec<Customer>,
    pub(crate) admin: String,
}

/// An order the system acknowledged.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placed {
    pub(crate) order_id: Uuid,
    pub(crate) customer: usize,
}

/// A stock adjustment the system acknowledged.
#[derive(Clone, Debug)]
pub(crate) struct Adjusted {
    pub(crate) product_id: Uuid,
    pub(crate) key: String,
}

/// Everything the load saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) records: Vec<Record>,
    pub(crate) placed: Vec<Placed>,
    pub(crate) adjusted: Vec<Adjusted>,
    /// Ticks that found [`IN_FLIGHT_MAX`] requests in flight.
    pub(crate) not_sent: u64,
}

/// Runs the load at `rate` requests per second until `stop` turns true.
pub(crate) async fn run(
    world: Arc<World>,
    http: Http,
    rate: u32,
    seed: u64,
    epoch: Instant,
    seen: Arc<Mutex<Seen>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let slots = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            seen.lock().not_sent += 1;
            continue;
        };
        let request = plan(&mut rng, &world, &seen);
        let (world, http, seen) = (world.clone(), http.clone(), seen.clone());
        tasks.spawn(async move {
            send(&world, &http, request, epoch, &seen).await;
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// A request chosen, not yet sent.
struct Planned {
    op: Op,
    method: Method,
    path: String,
    token: Option<String>,
    key: Option<String>,
    body: Option<serde_json::Value>,
    customer: usize,
    product: Option<Uuid>,
}

fn plan(rng: &mut StdRng, world: &World, seen: &Mutex<Seen>) -> Planned {
    let mut pick = rng.random_range(0..100);
    let mut op = Op::ReadStock;
    for candidate in Op::ALL {
        if pick < candidate.weight() {
            op = candidate;
            break;
        }
        pick -= candidate.weight();
    }
    let recent = {
        let seen = seen.lock();
        let from = seen.placed.len().saturating_sub(RECENT_ORDERS);
        let slice = &seen.placed[from..];
        (!slice.is_empty()).then(|| slice[rng.random_range(0..slice.len())])
    };
    let customer = rng.random_range(0..world.customers.len());
    let product = &world.products[rng.random_range(0..world.products.len())];
    match (op, recent) {
        (Op::PlaceOrder, _) | (Op::CancelOrder | Op::ReadOrder, None) => {
            let lines = rng.random_range(1..=LINES_MAX);
            let mut items: Vec<serde_json::Value> = Vec::new();
            let mut chosen: Vec<Uuid> = Vec::new();
            while chosen.len() < lines {
                let p = &world.products[rng.random_range(0..world.products.len())];
                if chosen.contains(&p.id) {
                    continue;
                }
                chosen.push(p.id);
                let units = if p.scarce {
                    1
                } else {
                    rng.random_range(1..=UNITS_MAX)
                };
                items.push(serde_json::json!({"product_id": p.id, "quantity": units}));
            }
            Planned {
                op: Op::PlaceOrder,
                method: Method::POST,
                path: "/api/orders".to_owned(),
                token: Some(world.customers[customer].token.clone()),
                key: Some(Uuid::new_v4().to_string()),
                body: Some(serde_json::json!({ "items": items })),
                customer,
                product: None,
            }
        }
        (Op::CancelOrder, Some(placed)) => Planned {
            op,
            method: Method::POST,
            path: format!("/api/orders/{}/cancel", placed.order_id),
            token: Some(world.customers[placed.customer].token.clone()),
            key: None,
            body: None,
            customer: placed.customer,
            product: None,
        },
        (Op::ReadOrder, Some(placed)) => Planned {
            op,
            method: Method::GET,
            path: format!("/api/orders/{}", placed.order_id),
            token: Some(world.customers[placed.customer].token.clone()),
            key: None,
            body: None,
            customer: placed.customer,
            product: None,
        },
        (Op::Adjust, _) => {
            let delta: i64 = if rng.random_bool(0.1) {
                -1
            } else {
                rng.random_range(1..=5)
            };
            Planned {
                op,
                method: Method::POST,
                path: format!("/api/inventory/{}/adjustments", product.id),
                token: Some(world.admin.clone()),
                key: Some(Uuid::new_v4().to_string()),
                body: Some(serde_json::json!({"delta": delta, "reason": "fault run"})),
                customer,
                product: Some(product.id),
            }
        }
        (Op::ReadStock, _) => Planned {
            op,
            method: Method::GET,
            path: format!("/api/inventory/{}", product.id),
            token: None,
            key: None,
            body: None,
            customer,
            product: Some(product.id),
        },
    }
}

async fn send(world: &World, http: &Http, p: Planned, epoch: Instant, seen: &Mutex<Seen>) {
    let url = format!("{}{}", world.gateway, p.path);
    let start_ms = epoch.elapsed().as_millis() as u64;
    let answer = http
        .call(
            p.method,
            &url,
            p.token.as_deref(),
            p.key.as_deref(),
            p.body.as_ref(),
        )
        .await;
    let end_ms = epoch.elapsed().as_millis() as u64;
    let (status, error, body) = match answer {
        Ok((status, body)) => {
            let error = (status >= 500).then(|| String::from_utf8_lossy(&body).into_owned());
            (status, error, Some(body))
        }
        Err(NoAnswer::Timeout) => (0, Some("timeout".to_owned()), None),
        Err(NoAnswer::Io(e)) => (0, Some(e), None),
    };
    let mut seen = seen.lock();
    if (200..300).contains(&status) {
        match p.op {
            Op::PlaceOrder => {
                let id = body
                    .as_ref()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                    .and_then(|v| v.get("id")?.as_str()?.parse().ok());
                if let Some(order_id) = id {
                    seen.placed.push(Placed {
                        order_id,
                        customer: p.customer,
                    });
                }
            }
            Op::Adjust => {
                if let (Some(product_id), Some(key)) = (p.product, p.key) {
                    seen.adjusted.push(Adjusted { product_id, key });
                }
            }
            _ => {}
        }
    }
    seen.records.push(Record {
        op: p.op,
        start_ms,
        end_ms,
        status,
        error,
    });
}
