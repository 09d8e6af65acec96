//! Throughput of the PostgreSQL store against plain SQL doing the same work.
//!
//! Measures reserve, and reserve followed by confirm, through
//! `inventory_sqlx::PgStore` at 1, 8 and 32 concurrent tasks, on random
//! products and on one hot product, for both concurrency modes (row locks and
//! optimistic retries). In the same run it measures the plain SQL baseline:
//! per reserve one transaction with one conditional
//! `UPDATE inventory_items SET reserved = reserved + $n WHERE product_id = $1
//! AND quantity - reserved >= $n` plus the reservation `INSERT` (and per
//! confirm one transaction with two `UPDATE`s). Then it drives the optimistic
//! store with many tasks on one hot product and reports how many attempts
//! conflicted.
//!
//! It also measures [`BATCH_SIZE`] reserves as one `execute_batch` call (one
//! transaction) against the same reserves as one `execute` call each, on the
//! hot product and on random products.
//!
//! Run with `cargo bench -p benches --bench postgres`. The database comes from
//! `BENCH_DATABASE_URL` or `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); without a reachable server the
//! bench prints why and does nothing. It works in a schema of its own and
//! drops it at the end. After criterion's own report it prints, to stderr, a
//! table of store / baseline ratios measured in paired rounds (baseline and
//! both modes back to back, median of the rounds, so load from outside the
//! bench skews all three alike), the optimistic conflict rates, and a probe
//! with 64 clients on one hot product.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use inventory_core::{
    Actor, Command, InventoryStore, Meta, OrderId, Outcome, ProductId, Quantity, ReservationId,
    Reserve, ReserveLine, StockLevel, Timestamp, Ttl, STOCK_MAX,
};
use inventory_sqlx::{Concurrency, PgOptions, PgStore};
use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

const DATABASE_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Concurrent tasks of the measured cases.
const TASK_COUNTS: [usize; 3] = [1, 8, 32];

/// Connections of the measured pool: one per task of the largest case, and
/// well below PostgreSQL's default `max_connections` of 100.
const POOL_SIZE: u32 = 40;

/// Products the "random" cases spread their reserves over.
const RANDOM_PRODUCTS: usize = 1_000;

/// Tasks and connections of the contention probe: many clients on one
/// product, as close to 100 as the server's connection limit allows.
const PROBE_TASKS: usize = 64;

/// Operations each task of the contention probe runs.
const PROBE_OPS_PER_TASK: usize = 20;

/// Reserves per batch in the batch-against-loop case.
const BATCH_SIZE: u64 = 64;

/// Rounds of the paired comparison.
const PAIRED_ROUNDS: usize = 5;

/// Operations per task in one paired round.
const PAIRED_OPS_PER_TASK: usize = 15;

/// Each benchmark warms up and measures for this long.
const WARM_UP_TIME: Duration = Duration::from_millis(500);
const MEASUREMENT_TIME: Duration = Duration::from_millis(1_500);

/// Units per reserve.
const UNITS: u64 = 1;

fn meta() -> Meta {
    // Far from any hold's end: nothing expires during the bench.
    Meta::at(Timestamp::from_millis(1_700_000_000_000))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Work {
    Reserve,
    ReserveConfirm,
}

impl Work {
    fn name(self) -> &'static str {
        match self {
            Work::Reserve => "reserve",
            Work::ReserveConfirm => "reserve_confirm",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Spread {
    Random,
    Hot,
}

impl Spread {
    fn name(self) -> &'static str {
        match self {
            Spread::Random => "random",
            Spread::Hot => "hot",
        }
    }
}

/// What runs the work: the store in one of its modes, or plain SQL.
#[derive(Clone)]
enum Runner {
    Store(PgStore),
    Baseline(PgPool),
}

/// Products of one run.
#[derive(Clone)]
struct Products {
    random: Arc<Vec<ProductId>>,
    hot: ProductId,
}

impl Products {
    fn pick(&self, spread: Spread) -> ProductId {
        match spread {
            Spread::Hot => self.hot,
            Spread::Random => {
                let i = rand::rng().random_range(0..self.random.len());
                self.random[i]
            }
        }
    }
}

fn reserve_command(product_id: ProductId) -> (Command, ReservationId) {
    let reservation_id = ReservationId::from_uuid(Uuid::new_v4());
    let line = ReserveLine {
        product_id,
        quantity: Quantity::new(UNITS).expect("valid quantity"),
        reservation_id,
    };
    let order = OrderId::from_uuid(Uuid::new_v4());
    (
        Command::Reserve(Reserve::single(order, line, Ttl::default())),
        reservation_id,
    )
}

/// One operation through the store; false when it failed.
async fn store_op(store: &PgStore, work: Work, product_id: ProductId) -> bool {
    let (command, reservation_id) = reserve_command(product_id);
    let reserved = matches!(
        store.execute(command, &meta()).await,
        Ok(Outcome::Reserved { created: true, .. })
    );
    if !reserved || work == Work::Reserve {
        return reserved;
    }
    let confirm = Command::Confirm { reservation_id };
    matches!(
        store.execute(confirm, &meta()).await,
        Ok(Outcome::Reservation { changed: true, .. })
    )
}

/// The same work in plain SQL.
async fn baseline_op(
    pool: &PgPool,
    work: Work,
    product_id: ProductId,
) -> Result<bool, sqlx::Error> {
    let now = meta().now.as_millis();
    let id = Uuid::new_v4();
    let mut tx = pool.begin().await?;
    let held = sqlx::query(
        "UPDATE inventory_items SET reserved = reserved + $2, version = version + 1, \
         updated_at_ms = $3 WHERE product_id = $1 AND quantity - reserved >= $2",
    )
    .bind(product_id.as_uuid())
    .bind(UNITS as i64)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if held.rows_affected() != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO reservations (id, order_id, product_id, quantity, status, expires_at_ms, \
         created_at_ms, updated_at_ms) VALUES ($1, $2, $3, $4, 'pending', $5, $6, $6)",
    )
    .bind(id)
    .bind(Uuid::new_v4())
    .bind(product_id.as_uuid())
    .bind(UNITS as i64)
    .bind(now + 900_000)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if work == Work::Reserve {
        return Ok(true);
    }
    let mut tx = pool.begin().await?;
    let confirmed: Option<(Uuid, i64)> = sqlx::query_as(
        "UPDATE reservations SET status = 'confirmed', updated_at_ms = $2 \
         WHERE id = $1 AND status = 'pending' RETURNING product_id, quantity",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((product, units)) = confirmed else {
        tx.rollback().await?;
        return Ok(false);
    };
    sqlx::query(
        "UPDATE inventory_items SET quantity = quantity - $2, reserved = reserved - $2, \
         version = version + 1, updated_at_ms = $3 WHERE product_id = $1",
    )
    .bind(product)
    .bind(units)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

async fn run_op(runner: &Runner, work: Work, product_id: ProductId) -> bool {
    match runner {
        Runner::Store(store) => store_op(store, work, product_id).await,
        Runner::Baseline(pool) => baseline_op(pool, work, product_id).await.unwrap_or(false),
    }
}

/// Runs `ops` operations split over `tasks` tasks; returns the wall time and
/// how many failed.
async fn run_batch(
    runner: &Runner,
    products: &Products,
    work: Work,
    spread: Spread,
    tasks: usize,
    ops: u64,
) -> (Duration, u64) {
    let started = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks as u64 {
        let share = ops / tasks as u64 + u64::from(t < ops % tasks as u64);
        let (runner, products) = (runner.clone(), products.clone());
        handles.push(tokio::spawn(async move {
            let mut failed = 0;
            for _ in 0..share {
                if !run_op(&runner, work, products.pick(spread)).await {
                    failed += 1;
                }
            }
            failed
        }));
    }
    let mut failed = 0;
    for handle in handles {
        failed += handle.await.expect("bench task");
    }
    (started.elapsed(), failed)
}

/// At least `ops` reserves in rounds of [`BATCH_SIZE`], each round one
/// `execute_batch` call or one `execute` call per reserve; the time of the
/// calls.
async fn batch_or_loop(
    store: &PgStore,
    products: &Products,
    spread: Spread,
    batched: bool,
    ops: u64,
) -> Duration {
    let mut elapsed = Duration::ZERO;
    for _ in 0..ops.div_ceil(BATCH_SIZE) {
        let commands: Vec<(Command, Meta)> = (0..BATCH_SIZE)
            .map(|_| (reserve_command(products.pick(spread)).0, meta()))
            .collect();
        let started = Instant::now();
        if batched {
            let answers = store.execute_batch(commands).await.expect("batch");
            assert!(answers.iter().all(Result::is_ok), "every reserve holds");
        } else {
            for (command, meta) in commands {
                store.execute(command, &meta).await.expect("reserve");
            }
        }
        elapsed += started.elapsed();
    }
    elapsed
}

/// A schema of its own on the bench server, and one pool on it.
struct BenchDb {
    url: String,
    schema: String,
}

impl BenchDb {
    async fn create() -> Result<Self, String> {
        let url = std::env::var("BENCH_DATABASE_URL")
            .or_else(|_| std::env::var("TEST_DATABASE_URL"))
            .unwrap_or_else(|_| DATABASE_URL_DEFAULT.to_owned());
        let connect = tokio::time::timeout(Duration::from_secs(3), PgConnection::connect(&url));
        let mut conn = match connect.await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(format!("PostgreSQL at {url} is unreachable: {e}")),
            Err(_) => return Err(format!("PostgreSQL at {url} did not answer in time")),
        };
        let schema = format!("bench_{:016x}", rand::rng().random::<u64>());
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .map_err(|e| format!("create schema: {e}"))?;
        Ok(Self { url, schema })
    }

    async fn pool(&self, size: u32) -> PgPool {
        let options = PgConnectOptions::from_str(&self.url)
            .expect("valid database url")
            .options([("search_path", self.schema.as_str())]);
        PgPoolOptions::new()
            .max_connections(size)
            .min_connections(size)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .expect("connect to the bench schema")
    }

    async fn drop_schema(self) {
        if let Ok(mut conn) = PgConnection::connect(&self.url).await {
            let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
            if let Err(e) = sqlx::query(&sql).execute(&mut conn).await {
                eprintln!("could not drop bench schema {}: {e}", self.schema);
            }
        }
    }
}

async fn create_products(store: &PgStore) -> Products {
    let mut random = Vec::with_capacity(RANDOM_PRODUCTS);
    for _ in 0..=RANDOM_PRODUCTS {
        let product_id = ProductId::from_uuid(Uuid::new_v4());
        let create = Command::CreateItem {
            product_id,
            quantity: StockLevel::new(STOCK_MAX).expect("valid stock"),
            actor: Actor::system(),
        };
        store.execute(create, &meta()).await.expect("create item");
        random.push(product_id);
    }
    let hot = random.pop().expect("one extra product");
    Products {
        random: Arc::new(random),
        hot,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let db = match runtime.block_on(BenchDb::create()) {
        Ok(db) => db,
        Err(reason) => {
            eprintln!("skipped: {reason}");
            return;
        }
    };
    let pool = runtime.block_on(db.pool(POOL_SIZE));
    let locking = PgStore::from_pool(pool.clone());
    runtime
        .block_on(locking.migrate())
        .expect("migrate the bench schema");
    let optimistic = PgStore::from_pool_with(
        pool.clone(),
        PgOptions {
            concurrency: Concurrency::Optimistic,
            ..PgOptions::default()
        },
    );
    let products = runtime.block_on(create_products(&locking));
    let runners: [(&'static str, Runner); 3] = [
        ("baseline", Runner::Baseline(pool.clone())),
        ("locking", Runner::Store(locking.clone())),
        ("optimistic", Runner::Store(optimistic.clone())),
    ];

    let mut criterion = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(WARM_UP_TIME)
        .measurement_time(MEASUREMENT_TIME);
    for work in [Work::Reserve, Work::ReserveConfirm] {
        let mut group = criterion.benchmark_group(format!("postgres_{}", work.name()));
        group.throughput(Throughput::Elements(1));
        for spread in [Spread::Random, Spread::Hot] {
            for tasks in TASK_COUNTS {
                for (name, runner) in &runners {
                    let id = BenchmarkId::new(*name, format!("{}/{tasks}", spread.name()));
                    group.bench_function(id, |b| {
                        b.iter_custom(|iters| {
                            runtime
                                .block_on(run_batch(runner, &products, work, spread, tasks, iters))
                                .0
                        });
                    });
                }
            }
        }
        group.finish();
    }
    let mut group = criterion.benchmark_group("postgres_batch_against_loop");
    group.throughput(Throughput::Elements(1));
    for spread in [Spread::Random, Spread::Hot] {
        for batched in [false, true] {
            let name = if batched { "batch" } else { "loop" };
            let id = BenchmarkId::new(name, format!("{}/{BATCH_SIZE}", spread.name()));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(batch_or_loop(&locking, &products, spread, batched, iters))
                });
            });
        }
    }
    group.finish();
    criterion.final_summary();
    runtime.block_on(paired_ratios(&runners, &optimistic, &products));
    runtime.block_on(pool.close());
    runtime.block_on(contention_probe(&db, &products));
    runtime.block_on(db.drop_schema());
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Ratios measured in rounds that run the baseline and both store modes back
/// to back on the same work (in a rotating order), so that load from outside
/// the bench hits all three alike; the table shows the median of the rounds.
async fn paired_ratios(
    runners: &[(&'static str, Runner); 3],
    optimistic: &PgStore,
    products: &Products,
) {
    eprintln!();
    eprintln!(
        "paired rounds: median of {PAIRED_ROUNDS} rounds; ops/s (one op = one reserve, or one \
         reserve + confirm); ratio = store time / baseline time; optimistic conflicts = share of \
         attempts that conflicted, gave up = share of ops that ended in a contention error"
    );
    eprintln!(
        "{:<16} {:<7} {:>5} {:>9} {:>9} {:>9} {:>7} {:>7} {:>9} {:>8}",
        "work",
        "spread",
        "tasks",
        "baseline",
        "locking",
        "optimist",
        "lock/b",
        "opt/b",
        "conflicts",
        "gave up"
    );
    for work in [Work::Reserve, Work::ReserveConfirm] {
        for spread in [Spread::Random, Spread::Hot] {
            for tasks in TASK_COUNTS {
                let ops = (PAIRED_OPS_PER_TASK * tasks) as u64;
                let mut rates: [Vec<f64>; 3] = Default::default();
                let mut ratios: [Vec<f64>; 2] = Default::default();
                let before = optimistic.retry_stats();
                for round in 0..PAIRED_ROUNDS {
                    let mut secs = [0.0; 3];
                    for k in 0..3 {
                        let i = (round + k) % 3;
                        let (elapsed, _) =
                            run_batch(&runners[i].1, products, work, spread, tasks, ops).await;
                        secs[i] = elapsed.as_secs_f64();
                        rates[i].push(ops as f64 / secs[i]);
                    }
                    ratios[0].push(secs[1] / secs[0]);
                    ratios[1].push(secs[2] / secs[0]);
                }
                let stats = optimistic.retry_stats().since(&before);
                let total_ops = ops * PAIRED_ROUNDS as u64;
                let [base, lock, opt] = rates.map(median);
                let [lock_ratio, opt_ratio] = ratios.map(median);
                eprintln!(
                    "{:<16} {:<7} {:>5} {:>9.0} {:>9.0} {:>9.0} {:>7.2} {:>7.2} {:>8.1}% {:>7.1}%",
                    work.name(),
                    spread.name(),
                    tasks,
                    base,
                    lock,
                    opt,
                    lock_ratio,
                    opt_ratio,
                    stats.conflict_rate() * 100.0,
                    stats.gave_up as f64 * 100.0 / total_ops as f64,
                );
            }
        }
    }
}

/// Many optimistic clients on one hot product: how many attempts conflict,
/// and how many commands run out of retries.
async fn contention_probe(db: &BenchDb, products: &Products) {
    let pool = db.pool(PROBE_TASKS as u32).await;
    eprintln!();
    eprintln!(
        "contention probe: {PROBE_TASKS} tasks x {PROBE_OPS_PER_TASK} reserves on one hot product"
    );
    for (name, options) in [
        ("locking", PgOptions::default()),
        (
            "optimistic",
            PgOptions {
                concurrency: Concurrency::Optimistic,
                ..PgOptions::default()
            },
        ),
    ] {
        let store = PgStore::from_pool_with(pool.clone(), options);
        let runner = Runner::Store(store.clone());
        let ops = (PROBE_TASKS * PROBE_OPS_PER_TASK) as u64;
        let (elapsed, failed) = run_batch(
            &runner,
            products,
            Work::Reserve,
            Spread::Hot,
            PROBE_TASKS,
            ops,
        )
        .await;
        let stats = store.retry_stats();
        eprintln!(
            "  {name:<10} {:>8.0} ok ops/s, attempts {}, conflicts {} ({:.1}% of attempts), \
             gave up {} ({:.1}% of commands, contention error)",
            (ops - failed) as f64 / elapsed.as_secs_f64(),
            stats.attempts,
            stats.conflicts,
            stats.conflict_rate() * 100.0,
            stats.gave_up,
            stats.gave_up as f64 * 100.0 / ops as f64,
        );
    }
    pool.close().await;
}
