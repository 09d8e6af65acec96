//! Throughput of the in-memory store: reserve, reserve + confirm and a 5-line
//! reserve on one thread; reserve + confirm with 2 threads on one hot product
//! and on distinct products; 100 threads on one product, straight to the
//! store and through the group-commit combiner; and a batch of reserves as
//! one `execute_batch` call against the same reserves one call each.
//!
//! Run with `cargo bench -p benches --bench memory`. Every sample starts from
//! a fresh store (made and dropped outside the timed part). Every
//! [`MAINTENANCE_EVERY`] operations the thread drains the outbox, as an
//! embedding that hands its events on does (that work is part of the time).
//! Two regimes:
//!
//! - *retaining* (plain names): finished reservations are kept, so the store's
//!   id and order indexes grow with every operation; a long sample ends with
//!   millions of entries, and random ids then miss the CPU caches.
//! - *steady* (names ending in `_steady`): finished reservations are purged at
//!   each maintenance pass too, as a long-running embedding does, so the
//!   indexes stay small.
//!
//! Criterion reports each figure as elements per second: one element is one
//! reserve, one reserve + confirm pair, or one 5-line reserve. Every group is
//! timed by the wall clock except `memory_1_thread_cpu_time`, timed by the CPU
//! time of its one thread (the throughput of one core even on a busy machine).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{criterion_main, BenchmarkGroup, Criterion, Throughput};
use inventory_combiner::{Combiner, CombinerConfig};
use inventory_core::{
    Actor, Command, Meta, OrderId, ProductId, Quantity, ReservationId, Reserve, ReserveLine,
    StockLevel, Timestamp, Ttl, STOCK_MAX,
};
use inventory_memory::MemoryStore;
use uuid::Uuid;

/// Lines of the multi-line reserve.
const LINES_PER_ORDER: usize = 5;

/// Operations between two maintenance passes.
const MAINTENANCE_EVERY: u64 = 1_024;

/// Threads of the crowd case.
const CROWD_THREADS: usize = 100;

/// Commands per batch in the batch-against-loop case.
const BATCH_SIZE: u64 = 128;

/// Each benchmark measures for this long (plus its warm-up).
const MEASUREMENT_TIME: Duration = Duration::from_secs(3);
const WARM_UP_TIME: Duration = Duration::from_secs(1);

fn meta() -> Meta {
    Meta::at(Timestamp::from_millis(1_700_000_000_000))
}

fn product(n: u64) -> ProductId {
    ProductId::from_uuid(Uuid::from_u128(0xAAAA_0000_0000 + u128::from(n)))
}

/// A fresh store holding `products` products with the most stock allowed.
fn store_with(products: u64) -> MemoryStore {
    let store = MemoryStore::new();
    for n in 0..products {
        let create = Command::CreateItem {
            product_id: product(n),
            quantity: StockLevel::new(STOCK_MAX).expect("valid stock"),
            actor: Actor::system(),
        };
        store.execute_sync(create, &meta()).expect("create");
    }
    store.drain(usize::MAX);
    store
}

/// Ids unique per (thread, operation), cheap to make.
fn id(thread: u64, n: u64) -> Uuid {
    Uuid::from_u128((u128::from(thread) + 1) << 64 | u128::from(n))
}

/// A reserve of one unit, with ids tagged by `thread` and `n`.
fn reserve_command(product_id: ProductId, thread: u64, n: u64) -> (Command, ReservationId) {
    let reservation_id = ReservationId::from_uuid(id(thread, n));
    let line = ReserveLine {
        product_id,
        quantity: Quantity::new(1).expect("valid quantity"),
        reservation_id,
    };
    let order = OrderId::from_uuid(id(thread, n));
    let command = Command::Reserve(Reserve::single(order, line, Ttl::default()));
    (command, reservation_id)
}

fn reserve_one(store: &MemoryStore, product_id: ProductId, thread: u64, n: u64) -> ReservationId {
    let (command, reservation_id) = reserve_command(product_id, thread, n);
    black_box(store.execute_sync(command, &meta()).expect("reserve"));
    reservation_id
}

fn reserve_and_confirm(store: &MemoryStore, product_id: ProductId, thread: u64, n: u64) {
    let reservation_id = reserve_one(store, product_id, thread, n);
    let confirm = Command::Confirm { reservation_id };
    black_box(store.execute_sync(confirm, &meta()).expect("confirm"));
}

/// Drains the outbox of a store whose sample is over (not timed).
fn drain_all(store: &MemoryStore) {
    while !store.drain(usize::MAX).is_empty() {}
}

/// Whether a worker purges finished reservations as it goes.
#[derive(Clone, Copy)]
enum Regime {
    Retaining,
    Steady,
}

/// Drains the outbox after every [`MAINTENANCE_EVERY`] operations, and purges
/// finished reservations too in the steady regime.
fn maintain(store: &MemoryStore, n: u64, regime: Regime) {
    if n % MAINTENANCE_EVERY == MAINTENANCE_EVERY - 1 {
        drain_all(store);
        if matches!(regime, Regime::Steady) {
            store.purge_finished(meta().now.plus_ms(1), usize::MAX);
        }
    }
}

/// `count` reserve + confirm pairs on one product, ids tagged with `thread`.
fn pairs(store: &MemoryStore, product_id: ProductId, thread: u64, count: u64, regime: Regime) {
    for n in 0..count {
        reserve_and_confirm(store, product_id, thread, n);
        maintain(store, n, regime);
    }
}

fn single_thread(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.bench_function("reserve", |b| {
        b.iter_custom(|iters| {
            let store = store_with(1);
            let start = Instant::now();
            for n in 0..iters {
                reserve_one(&store, product(0), 0, n);
                maintain(&store, n, Regime::Retaining);
            }
            let elapsed = start.elapsed();
            drain_all(&store);
            elapsed
        });
    });
    for (name, regime) in [
        ("reserve_confirm", Regime::Retaining),
        ("reserve_confirm_steady", Regime::Steady),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let store = store_with(1);
                let start = Instant::now();
                pairs(&store, product(0), 0, iters, regime);
                let elapsed = start.elapsed();
                drain_all(&store);
                elapsed
            });
        });
    }
    group.bench_function("reserve_5_lines", |b| {
        b.iter_custom(|iters| {
            let store = store_with(LINES_PER_ORDER as u64);
            let start = Instant::now();
            for n in 0..iters {
                let lines = (0..LINES_PER_ORDER as u64)
                    .map(|line| ReserveLine {
                        product_id: product(line),
                        quantity: Quantity::new(1).expect("valid quantity"),
                        reservation_id: ReservationId::from_uuid(id(line, n)),
                    })
                    .collect();
                let order = OrderId::from_uuid(id(0, n));
                let reserve = Reserve::new(order, lines, Ttl::default()).expect("valid lines");
                black_box(
                    store
                        .execute_sync(Command::Reserve(reserve), &meta())
                        .expect("reserve"),
                );
                maintain(&store, n, Regime::Retaining);
            }
            let elapsed = start.elapsed();
            drain_all(&store);
            elapsed
        });
    });
}

/// Runs `work(thread)` on `threads` threads released together; returns the
/// wall time from their common start until the last one finished.
fn on_threads(threads: u64, work: impl Fn(u64) + Clone + Send + 'static) -> Duration {
    let barrier = Arc::new(Barrier::new(threads as usize + 1));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (work, barrier) = (work.clone(), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                work(t);
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for worker in workers {
        worker.join().expect("worker panicked");
    }
    start.elapsed()
}

/// Runs `iters` reserve + confirm pairs split over `threads` threads, each on
/// the product `product_of(thread)`; returns the wall time from a common start.
fn pairs_on_threads(
    iters: u64,
    threads: u64,
    product_of: fn(u64) -> ProductId,
    regime: Regime,
) -> Duration {
    let store = Arc::new(store_with(threads));
    let per_thread = iters.div_ceil(threads);
    let shared = Arc::clone(&store);
    let elapsed = on_threads(threads, move |t| {
        pairs(&shared, product_of(t), t, per_thread, regime);
    });
    drain_all(&store);
    elapsed
}

fn two_threads(group: &mut BenchmarkGroup<'_, WallTime>) {
    let hot: fn(u64) -> ProductId = |_| product(0);
    let distinct: fn(u64) -> ProductId = product;
    for (name, product_of, regime) in [
        ("reserve_confirm_hot_product", hot, Regime::Retaining),
        ("reserve_confirm_hot_product_steady", hot, Regime::Steady),
        (
            "reserve_confirm_distinct_products",
            distinct,
            Regime::Retaining,
        ),
        (
            "reserve_confirm_distinct_products_steady",
            distinct,
            Regime::Steady,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| pairs_on_threads(iters, 2, product_of, regime));
        });
    }
}

fn crowd(group: &mut BenchmarkGroup<'_, WallTime>) {
    for (name, regime) in [
        ("reserve_confirm_one_product", Regime::Retaining),
        ("reserve_confirm_one_product_steady", Regime::Steady),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                pairs_on_threads(iters, CROWD_THREADS as u64, |_| product(0), regime)
            });
        });
    }
}

/// Like [`pairs`], each command through `combiner` (the calling thread
/// blocks on its answer, as a thread-per-request server would).
fn pairs_combined(
    combiner: &Combiner<MemoryStore>,
    product_id: ProductId,
    thread: u64,
    count: u64,
    regime: Regime,
) {
    use inventory_core::InventoryStore;
    for n in 0..count {
        let (reserve, reservation_id) = reserve_command(product_id, thread, n);
        black_box(pollster::block_on(combiner.execute(reserve, &meta())).expect("reserve"));
        let confirm = Command::Confirm { reservation_id };
        black_box(pollster::block_on(combiner.execute(confirm, &meta())).expect("confirm"));
        maintain(combiner.store(), n, regime);
    }
}

/// [`pairs_on_threads`] through a combiner whose committers run on `runtime`.
fn combined_pairs_on_threads(
    iters: u64,
    threads: u64,
    runtime: &tokio::runtime::Runtime,
    regime: Regime,
) -> Duration {
    let store = Arc::new(store_with(1));
    let combiner = Combiner::with_runtime(
        Arc::clone(&store),
        CombinerConfig::default(),
        runtime.handle().clone(),
    );
    let per_thread = iters.div_ceil(threads);
    let elapsed = on_threads(threads, move |t| {
        pairs_combined(&combiner, product(0), t, per_thread, regime);
    });
    drain_all(&store);
    elapsed
}

fn crowd_combined(group: &mut BenchmarkGroup<'_, WallTime>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    for (name, regime) in [
        ("reserve_confirm_one_product_combined", Regime::Retaining),
        (
            "reserve_confirm_one_product_steady_combined",
            Regime::Steady,
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                combined_pairs_on_threads(iters, CROWD_THREADS as u64, &runtime, regime)
            });
        });
    }
}

/// [`BATCH_SIZE`] reserves as one `execute_batch` call against the same
/// reserves one `execute_sync` call each, on one product and on as many
/// products as reserves.
fn batch_against_loop(group: &mut BenchmarkGroup<'_, WallTime>) {
    let hot: fn(u64) -> ProductId = |_| product(0);
    let distinct: fn(u64) -> ProductId = product;
    for (spread, product_of) in [("one_product", hot), ("distinct_products", distinct)] {
        for batched in [false, true] {
            let name = format!("{}_{spread}", if batched { "batch" } else { "loop" });
            group.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let store = store_with(BATCH_SIZE);
                    let mut elapsed = Duration::ZERO;
                    for round in 0..iters.div_ceil(BATCH_SIZE) {
                        let commands: Vec<(Command, Meta)> = (0..BATCH_SIZE)
                            .map(|n| {
                                let product_id = product_of(n);
                                (reserve_command(product_id, round, n).0, meta())
                            })
                            .collect();
                        let start = Instant::now();
                        if batched {
                            black_box(store.execute_batch_sync(commands).expect("batch"));
                        } else {
                            for (command, meta) in commands {
                                black_box(store.execute_sync(command, &meta).expect("reserve"));
                            }
                        }
                        elapsed += start.elapsed();
                        drain_all(&store);
                    }
                    elapsed
                });
            });
        }
    }
}

/// Time this thread has spent on a CPU, from `/proc/thread-self/schedstat`
/// (Linux only).
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace()
        .next()?
        .parse()
        .ok()
        .map(Duration::from_nanos)
}

/// Reserve + confirm on one thread, timed by the CPU time of the thread rather
/// than the wall clock: the throughput of one core, whatever else the machine
/// runs. Skipped where the OS does not report thread CPU time.
fn single_thread_cpu_time(group: &mut BenchmarkGroup<'_, WallTime>) {
    if thread_cpu_time().is_none() {
        return;
    }
    for (name, regime) in [
        ("reserve_confirm", Regime::Retaining),
        ("reserve_confirm_steady", Regime::Steady),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let store = store_with(1);
                let start = thread_cpu_time().expect("checked above");
                pairs(&store, product(0), 0, iters, regime);
                let spent = thread_cpu_time().expect("checked above") - start;
                drain_all(&store);
                spent
            });
        });
    }
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory_1_thread_cpu_time");
    group
        .throughput(Throughput::Elements(1))
        .measurement_time(MEASUREMENT_TIME)
        .warm_up_time(WARM_UP_TIME)
        .sample_size(20);
    single_thread_cpu_time(&mut group);
    group.finish();

    let mut group = c.benchmark_group("memory_1_thread");
    group
        .throughput(Throughput::Elements(1))
        .measurement_time(MEASUREMENT_TIME)
        .warm_up_time(WARM_UP_TIME)
        .sample_size(20);
    single_thread(&mut group);
    group.finish();

    let mut group = c.benchmark_group("memory_2_threads");
    group
        .throughput(Throughput::Elements(1))
        .measurement_time(MEASUREMENT_TIME)
        .warm_up_time(WARM_UP_TIME)
        .sample_size(20);
    two_threads(&mut group);
    group.finish();

    let mut group = c.benchmark_group("memory_100_threads");
    group
        .throughput(Throughput::Elements(1))
        .measurement_time(MEASUREMENT_TIME)
        .warm_up_time(WARM_UP_TIME)
        .sample_size(20);
    crowd(&mut group);
    crowd_combined(&mut group);
    group.finish();

    let mut group = c.benchmark_group("memory_batch_against_loop");
    group
        .throughput(Throughput::Elements(1))
        .measurement_time(MEASUREMENT_TIME)
        .warm_up_time(WARM_UP_TIME)
        .sample_size(20);
    batch_against_loop(&mut group);
    group.finish();
}

mod group {
    //! `criterion_group!` makes an undocumented public function.
    #![allow(missing_docs)]
    criterion::criterion_group!(memory, super::benches);
}
use group::memory;
criterion_main!(memory);
