//! Running a simulation and checking what it recorded.
//!
//! [`run_scheduled`] is the deterministic run: one thread, a seeded
//! scheduler that interleaves the clients' calls in three moves each (call,
//! execute, answer), so calls overlap in logical time as on a real server,
//! and a simulated clock with an expiry sweep every [`SWEEP_PERIOD_MS`]. The
//! same seed gives the same run on the memory store. [`run_concurrent`] runs
//! the clients as tasks at once (for a real database): the schedule is
//! seeded, the interleaving is the machine's, and the same checks apply.
//! After either, the history is checked for linearizability per product and
//! the store for its invariants.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use inventory_core::{
    Actor, Command, Error, EventPayload, InventoryStore, Meta, Outbox, ProductId, ReservationId,
    ReservationStatus, StockLevel, Timestamp, EXPIRE_BATCH_MAX,
};
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::check::{check, Verdict};
use crate::faults::{FaultCounts, FaultRates, Faulty};
use crate::gen::{ClientMemory, Generator, Shape};
use crate::history::{is_unknown, project, Answer, Call, Request};
use crate::model::ProductState;

/// Simulated time between expiry sweeps, in milliseconds.
pub const SWEEP_PERIOD_MS: i64 = 5_000;

/// Real time between sweeps of a concurrent run, in milliseconds.
pub const SWEEP_PAUSE_MS: u64 = 5;

/// Longest simulated time one scheduler move lets pass, in milliseconds.
pub const TICK_MS_MAX: i64 = 700;

/// Faults of a default run: one write in twenty fails before it commits,
/// one in twenty commits and loses its answer.
pub const FAULTS_DEFAULT: FaultRates = FaultRates {
    before_commit: 0.05,
    after_commit: 0.05,
};

/// Where the run's clock starts (ms).
pub const T0_MS: i64 = 1_700_000_000_000;

/// What a run found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// An answer no state of the rules can give to what was asked.
    Unexplained {
        /// What was wrong.
        why: String,
    },
    /// No order of a product's calls, consistent with real time, explains
    /// every answer.
    NotLinearizable {
        /// The product.
        product: ProductId,
        /// Its calls.
        calls: usize,
    },
    /// The search gave up on a product (too many calls in flight).
    Undecided {
        /// The product.
        product: ProductId,
    },
    /// A rule the store must keep after every change does not hold.
    Invariant {
        /// Which and where.
        why: String,
    },
    /// The run panicked (an assertion of the store or the rules fired).
    Panicked {
        /// The panic's message.
        message: String,
    },
}

/// [`run_scheduled`] with a panic turned into a report of it.
pub fn run_scheduled_caught<S: InventoryStore + Outbox>(
    store: S,
    seed: u64,
    shape: &Shape,
    faults: FaultRates,
) -> Result<Report, Error> {
    let run = std::panic::AssertUnwindSafe(|| run_scheduled(store, seed, shape, faults));
    std::panic::catch_unwind(run).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        Ok(Report {
            seed,
            calls: 0,
            unknown: 0,
            faults: FaultCounts::default(),
            anomalies: vec![Anomaly::Panicked { message }],
            history: Vec::new(),
        })
    })
}

/// What one run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Calls recorded.
    pub calls: usize,
    /// Calls whose outcome stayed unknown.
    pub unknown: usize,
    /// Faults injected.
    pub faults: FaultCounts,
    /// What was found wrong (empty: the run passed).
    pub anomalies: Vec<Anomaly>,
    /// Every call of the run, in the order made.
    pub history: Vec<Call>,
}

struct Inflight {
    call: usize,
    request: Request,
    executed: Option<Answer>,
}

struct Client {
    memory: ClientMemory,
    inflight: Option<Inflight>,
    rng: StdRng,
}

/// Runs `request` against `store` at once; the answer as recorded.
async fn execute<S: InventoryStore>(store: &Faulty<S>, request: &Request) -> Answer {
    match request {
        Request::One(command, now) => Answer::One(store.execute(command.clone(), &at(*now)).await),
        Request::Batch(commands) => {
            let batch = commands
                .iter()
                .map(|(c, now)| (c.clone(), at(*now)))
                .collect();
            Answer::Batch(store.execute_batch(batch).await)
        }
        Request::Sweep(now) => {
            // Sweeps are the system's own; they do not fail by injection.
            match store.inner().expire_due(&at(*now), EXPIRE_BATCH_MAX).await {
                Ok(n) => Answer::Swept(n),
                Err(e) => Answer::One(Err(e)),
            }
        }
    }
}

fn at(ms: i64) -> Meta {
    Meta::at(Timestamp::from_millis(ms))
}

/// Whether an answer leaves the outcome unknown.
fn unknown(answer: &Answer) -> bool {
    match answer {
        Answer::None => true,
        Answer::One(Err(e)) | Answer::Batch(Err(e)) => is_unknown(e),
        Answer::Batch(Ok(results)) => results.iter().any(|r| matches!(r, Err(e) if is_unknown(e))),
        _ => false,
    }
}

/// Creates the run's products, each with 0 to `stock_max` units; their ids
/// come from the seed, mixed with `nonce` (0 for a fresh store; random for a
/// database that keeps earlier runs' products).
async fn create_products<S: InventoryStore>(
    store: &S,
    rng: &mut StdRng,
    shape: &Shape,
    nonce: u128,
) -> Result<Vec<(ProductId, u64)>, Error> {
    let mut products = Vec::new();
    for _ in 0..shape.products {
        let product_id = ProductId::from_uuid(Uuid::from_u128(rng.random::<u128>() ^ nonce));
        let quantity = rng.random_range(0..=shape.stock_max);
        let create = Command::CreateItem {
            product_id,
            quantity: StockLevel::new(quantity).expect("small"),
            actor: Actor::system(),
        };
        store.execute(create, &at(T0_MS)).await?;
        products.push((product_id, quantity));
    }
    Ok(products)
}

/// The deterministic run of `seed` on `store` (fresh or not: the run's
/// products are its own), stopping after `shape.steps` scheduler moves.
///
/// # Errors
/// The store's error when it cannot create the products.
pub fn run_scheduled<S: InventoryStore + Outbox>(
    store: S,
    seed: u64,
    shape: &Shape,
    faults: FaultRates,
) -> Result<Report, Error> {
    pollster::block_on(scheduled(store, seed, shape, faults))
}

async fn scheduled<S: InventoryStore + Outbox>(
    store: S,
    seed: u64,
    shape: &Shape,
    faults: FaultRates,
) -> Result<Report, Error> {
    let mut rng = StdRng::seed_from_u64(seed);
    let store = Faulty::new(store, faults, seed ^ 0x5eed);
    let products = create_products(store.inner(), &mut rng, shape, 0).await?;
    let mut generator = Generator::new(products.iter().map(|p| p.0).collect(), 0);
    let mut clients: Vec<Client> = (0..shape.clients)
        .map(|i| Client {
            memory: ClientMemory::default(),
            inflight: None,
            rng: StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(i as u64)),
        })
        .collect();
    let mut calls: Vec<Call> = Vec::new();
    let mut anomalies = Vec::new();
    let mut events = EventLog::default();
    let (mut tick, mut now, mut next_sweep) = (0_u64, T0_MS, T0_MS + SWEEP_PERIOD_MS);
    for _ in 0..shape.steps {
        now += rng.random_range(0..=TICK_MS_MAX);
        if now >= next_sweep {
            next_sweep = now + SWEEP_PERIOD_MS;
            tick += 1;
            let invoked = tick;
            let answer = execute(&store, &Request::Sweep(now)).await;
            tick += 1;
            calls.push(Call {
                client: usize::MAX,
                invoked,
                answered: Some(tick),
                request: Request::Sweep(now),
                answer,
            });
            for (p, _) in &products {
                check_swept(store.inner(), *p, now, &mut anomalies).await;
            }
        }
        let c = rng.random_range(0..clients.len());
        let client = &mut clients[c];
        tick += 1;
        match client.inflight.take() {
            None => {
                let versions = versions(store.inner(), &generator.products).await;
                let request = generator.request(&mut client.rng, &mut client.memory, now, |p| {
                    versions.get(&p).copied().unwrap_or(1)
                });
                calls.push(Call {
                    client: c,
                    invoked: tick,
                    answered: None,
                    request: request.clone(),
                    answer: Answer::None,
                });
                client.inflight = Some(Inflight {
                    call: calls.len() - 1,
                    request,
                    executed: None,
                });
            }
            Some(mut inflight) if inflight.executed.is_none() => {
                inflight.executed = Some(execute(&store, &inflight.request).await);
                events.drain(store.inner(), &mut anomalies).await;
                for (p, _) in &products {
                    check_item(store.inner(), *p, &mut anomalies).await;
                }
                client.inflight = Some(inflight);
            }
            Some(inflight) => {
                let answer = inflight.executed.expect("executed");
                if unknown(&answer) {
                    client.memory.unknown = Some(inflight.request);
                }
                let call = &mut calls[inflight.call];
                call.answered = Some(tick);
                call.answer = answer;
            }
        }
    }
    events.drain(store.inner(), &mut anomalies).await;
    events
        .check_final(store.inner(), &generator, &mut anomalies)
        .await;
    check_all_or_nothing(store.inner(), &calls, &mut anomalies).await;
    finish(
        seed,
        calls,
        &products,
        &generator,
        store.counts(),
        anomalies,
    )
}

/// The current version of each product (what a client reads before a set).
async fn versions<S: InventoryStore>(
    store: &S,
    products: &[ProductId],
) -> BTreeMap<ProductId, u64> {
    let mut versions = BTreeMap::new();
    for p in products {
        let read = store.item(*p).await.ok().flatten();
        versions.insert(*p, read.map_or(1, |i| i.version().get()));
    }
    versions
}

/// Checks the recorded history and builds the report.
fn finish(
    seed: u64,
    calls: Vec<Call>,
    products: &[(ProductId, u64)],
    generator: &Generator,
    faults: FaultCounts,
    mut anomalies: Vec<Anomaly>,
) -> Result<Report, Error> {
    let unknown_calls = calls.iter().filter(|c| unknown(&c.answer)).count();
    let all: Vec<ProductId> = products.iter().map(|p| p.0).collect();
    match project(&calls, &all, &generator.products_of) {
        Err(e) => anomalies.push(Anomaly::Unexplained {
            why: format!("call {}: {}", e.call, e.why),
        }),
        Ok(per_product) => {
            for (product, initial) in products {
                let steps = per_product.get(product).map_or(&[][..], Vec::as_slice);
                match check(&ProductState::new(*initial), steps) {
                    Verdict::Linearizable => {}
                    Verdict::NotLinearizable => anomalies.push(Anomaly::NotLinearizable {
                        product: *product,
                        calls: steps.len(),
                    }),
                    Verdict::Undecided => anomalies.push(Anomaly::Undecided { product: *product }),
                }
            }
        }
    }
    Ok(Report {
        seed,
        calls: calls.len(),
        unknown: unknown_calls,
        faults,
        anomalies,
        history: calls,
    })
}

/// After a change: the item's counters agree with its reservations and its
/// ledger (stock on hand = every adjustment - every unit sold).
async fn check_item<S: InventoryStore>(store: &S, p: ProductId, anomalies: &mut Vec<Anomaly>) {
    let (Ok(Some(item)), Ok(holds), Ok(ledger)) = (
        store.item(p).await,
        store.reservations_of_product(p).await,
        store
            .adjustments(p, inventory_core::ADJUSTMENTS_PAGE_MAX)
            .await,
    ) else {
        anomalies.push(Anomaly::Invariant {
            why: format!("{p}: cannot read the item"),
        });
        return;
    };
    let pending: u64 = holds
        .iter()
        .filter(|r| r.status() == ReservationStatus::Pending)
        .map(|r| r.quantity())
        .sum();
    let sold: u64 = holds
        .iter()
        .filter(|r| r.status() == ReservationStatus::Confirmed)
        .map(|r| r.quantity())
        .sum();
    let adjusted: i64 = ledger.iter().map(|a| a.delta).sum();
    if item.reserved() != pending {
        anomalies.push(Anomaly::Invariant {
            why: format!(
                "{p}: reserved {} but pending holds {pending}",
                item.reserved()
            ),
        });
    }
    if ledger.len() < inventory_core::ADJUSTMENTS_PAGE_MAX
        && adjusted - sold as i64 != item.quantity() as i64
    {
        anomalies.push(Anomaly::Invariant {
            why: format!(
                "{p}: {} on hand but adjustments {adjusted} minus sold {sold}",
                item.quantity()
            ),
        });
    }
}

/// Every reserve of the history, answered or not, holds all its lines or
/// none: what the per-product check cannot see for a reserve whose outcome
/// is unknown. (Orders are never reused, so an order's reservations are the
/// ones its reserve made, whatever happened to them since.)
async fn check_all_or_nothing<S: InventoryStore>(
    store: &S,
    calls: &[Call],
    anomalies: &mut Vec<Anomaly>,
) {
    let reserves = calls.iter().flat_map(|call| match &call.request {
        Request::One(command, _) => vec![command],
        Request::Batch(commands) => commands.iter().map(|(c, _)| c).collect(),
        Request::Sweep(_) => vec![],
    });
    for command in reserves {
        let Command::Reserve(reserve) = command else {
            continue;
        };
        let Ok(made) = store.reservations_of_order(reserve.order_id()).await else {
            anomalies.push(Anomaly::Invariant {
                why: format!("order {}: cannot read its reservations", reserve.order_id()),
            });
            continue;
        };
        if !made.is_empty() && made.len() != reserve.lines().len() {
            anomalies.push(Anomaly::Invariant {
                why: format!(
                    "order {}: {} of its {} lines reserved",
                    reserve.order_id(),
                    made.len(),
                    reserve.lines().len()
                ),
            });
        }
    }
}

/// Right after a sweep at `now`: no hold of `p` is still pending past its end.
async fn check_swept<S: InventoryStore>(
    store: &S,
    p: ProductId,
    now: i64,
    anomalies: &mut Vec<Anomaly>,
) {
    let holds = store.reservations_of_product(p).await.unwrap_or_default();
    let overdue = holds
        .iter()
        .filter(|r| r.status() == ReservationStatus::Pending)
        .filter(|r| r.expires_at().as_millis() <= now)
        .count();
    if overdue > 0 {
        anomalies.push(Anomaly::Invariant {
            why: format!("{p}: {overdue} holds pending past their end after a sweep"),
        });
    }
}

/// The events a run's store wrote, per reservation, in order.
#[derive(Default)]
struct EventLog {
    by_reservation: BTreeMap<ReservationId, Vec<&'static str>>,
    ids: std::collections::HashSet<Uuid>,
}

impl EventLog {
    async fn drain<S: Outbox>(&mut self, store: &S, anomalies: &mut Vec<Anomaly>) {
        loop {
            let Ok(entries) = store.unpublished(inventory_core::OUTBOX_BATCH_MAX).await else {
                return;
            };
            if entries.is_empty() {
                return;
            }
            let sequences: Vec<u64> = entries.iter().map(|e| e.sequence).collect();
            for entry in &entries {
                if !self.ids.insert(entry.event_id) {
                    anomalies.push(Anomaly::Invariant {
                        why: format!("event {} written twice", entry.event_id),
                    });
                }
                let (rid, kind) = match &entry.event.payload {
                    EventPayload::Reserved { reservation_id, .. } => (*reservation_id, "reserved"),
                    EventPayload::Confirmed { reservation_id, .. } => {
                        (*reservation_id, "confirmed")
                    }
                    EventPayload::Released { reservation_id, .. } => (*reservation_id, "released"),
                    EventPayload::Expired { reservation_id, .. } => (*reservation_id, "expired"),
                    _ => continue,
                };
                self.by_reservation.entry(rid).or_default().push(kind);
            }
            if store.mark_published(&sequences).await.is_err() {
                return;
            }
        }
    }

    /// Every reservation has exactly its events: one `reserved`, then one
    /// event of its final state if it left pending; nothing for others.
    async fn check_final<S: InventoryStore>(
        &self,
        store: &S,
        generator: &Generator,
        anomalies: &mut Vec<Anomaly>,
    ) {
        for rid in generator.products_of.keys() {
            let got = self.by_reservation.get(rid).cloned().unwrap_or_default();
            let want: Vec<&str> = match store.reservation(*rid).await.ok().flatten() {
                None => vec![],
                Some(r) => match r.status() {
                    ReservationStatus::Pending => vec!["reserved"],
                    ReservationStatus::Confirmed => vec!["reserved", "confirmed"],
                    ReservationStatus::Released => vec!["reserved", "released"],
                    ReservationStatus::Expired => vec!["reserved", "expired"],
                },
            };
            if got != want {
                anomalies.push(Anomaly::Invariant {
                    why: format!("reservation {rid}: events {got:?}, state says {want:?}"),
                });
            }
        }
    }
}

/// Runs the clients of `seed` at once against `store`, `shape.steps` calls
/// each, with a sweeper beside them. Every id (products, orders,
/// reservations) is drawn from the seed mixed with a random nonce, since a
/// database keeps earlier runs' rows.
///
/// # Errors
/// The store's error when it cannot create the products.
pub async fn run_concurrent<S: InventoryStore + Outbox>(
    store: Arc<Faulty<S>>,
    seed: u64,
    shape: &Shape,
) -> Result<Report, Error> {
    let mut rng = StdRng::seed_from_u64(seed);
    let nonce = Uuid::new_v4().as_u128();
    let products = create_products(store.inner(), &mut rng, shape, nonce).await?;
    let generator = Arc::new(Mutex::new(Generator::new(
        products.iter().map(|p| p.0).collect(),
        nonce,
    )));
    let calls = Arc::new(Mutex::new(Vec::<Call>::new()));
    let tick = Arc::new(AtomicU64::new(0));
    let now = Arc::new(AtomicI64::new(T0_MS));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..shape.clients {
        let (store, generator, calls, tick, now) = (
            Arc::clone(&store),
            Arc::clone(&generator),
            Arc::clone(&calls),
            Arc::clone(&tick),
            Arc::clone(&now),
        );
        let mut client_rng = StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(c as u64));
        let steps = shape.steps;
        tasks.spawn(async move {
            let mut memory = ClientMemory::default();
            for _ in 0..steps {
                let at_ms = now.fetch_add(
                    client_rng.random_range(0..=TICK_MS_MAX / 4),
                    Ordering::SeqCst,
                );
                let products = generator.lock().products.clone();
                let versions = versions(store.inner(), &products).await;
                let request = generator
                    .lock()
                    .request(&mut client_rng, &mut memory, at_ms, |p| {
                        versions.get(&p).copied().unwrap_or(1)
                    });
                let invoked = tick.fetch_add(1, Ordering::SeqCst);
                let answer = execute(&store, &request).await;
                let answered = tick.fetch_add(1, Ordering::SeqCst);
                if unknown(&answer) {
                    memory.unknown = Some(request.clone());
                }
                calls.lock().push(Call {
                    client: c,
                    invoked,
                    answered: Some(answered),
                    request,
                    answer,
                });
            }
        });
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sweeper = {
        let (store, calls, tick, now, stop) = (
            Arc::clone(&store),
            Arc::clone(&calls),
            Arc::clone(&tick),
            Arc::clone(&now),
            Arc::clone(&stop),
        );
        tokio::spawn(async move {
            // Stopped between sweeps, never inside one: a sweep's
            // transaction must be over before the store is read.
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(SWEEP_PAUSE_MS)).await;
                let request = Request::Sweep(now.load(Ordering::SeqCst));
                let invoked = tick.fetch_add(1, Ordering::SeqCst);
                let answer = execute(&store, &request).await;
                let answered = tick.fetch_add(1, Ordering::SeqCst);
                calls.lock().push(Call {
                    client: usize::MAX,
                    invoked,
                    answered: Some(answered),
                    request,
                    answer,
                });
            }
        })
    };
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    stop.store(true, Ordering::SeqCst);
    if let Err(e) = sweeper.await {
        std::panic::resume_unwind(e.into_panic());
    }
    let mut anomalies = Vec::new();
    for (p, _) in &products {
        check_item(store.inner(), *p, &mut anomalies).await;
    }
    let calls = std::mem::take(&mut *calls.lock());
    check_all_or_nothing(store.inner(), &calls, &mut anomalies).await;
    let generator = generator.lock();
    finish(
        seed,
        calls,
        &products,
        &generator,
        store.counts(),
        anomalies,
    )
}
