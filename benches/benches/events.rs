//! Events: throughput from a memory-store outbox to a consumer through the
//! relay and RabbitMQ (and through the in-process bus for comparison), and
//! what running the relay adds to the latency of a reservation.
//!
//! Run with `cargo bench -p benches --bench events`. Needs RabbitMQ at
//! `AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`); without one
//! it prints `skipped: <reason>` and exits. Each run declares uniquely named
//! exchanges and queues and deletes them at the end.
//!
//! - `events_throughput`: one element is one event; a sample writes
//!   [`EVENTS_PER_SAMPLE`] adjustments and waits until the consumer applied
//!   them all (persistent messages, publisher confirms, consumer acks).
//! - `events_reserve_latency`: one element is one reserve + release pair on
//!   the memory store, with no relay (the outbox drained outside the timed
//!   part) versus the relay publishing to RabbitMQ and a consumer draining
//!   the queue, all on the same machine. A probe after the benches prints
//!   p50/p99/p999 of single reserves in both modes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use event_bus::rabbit::{
    self, ConsumerConfig, RabbitConfig, RabbitConsumer, RabbitPublisher, LOCAL_AMQP_URL,
};
use event_bus::{
    relay, Envelope, Handler, HandlerError, InProcessBus, InventoryOutbox, QueueSpec, Relay,
    RelayConfig,
};
use inventory_core::{
    Actor, Command, Meta, OrderId, ProductId, Quantity, Reason, ReservationId, Reserve,
    ReserveLine, StockDelta, StockLevel, Timestamp, Ttl, STOCK_MAX,
};
use inventory_memory::MemoryStore;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use tokio::runtime::Runtime;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

/// Events written per throughput sample.
const EVENTS_PER_SAMPLE: u64 = 10_000;

/// Products the events are spread over.
const PRODUCTS: u64 = 16;

/// Reserves timed one by one in the latency probe, per mode.
const PROBE_RESERVES: usize = 100_000;

/// Longest wait for one sample's events to arrive.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(120);

fn meta() -> Meta {
    Meta::at(Timestamp::from_millis(1_700_000_000_000))
}

fn product(n: u64) -> ProductId {
    ProductId::from_uuid(Uuid::from_u128(0xE0E0_0000_0000 + u128::from(n)))
}

fn store() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    for n in 0..PRODUCTS {
        let create = Command::CreateItem {
            product_id: product(n),
            quantity: StockLevel::new(STOCK_MAX / 2).expect("valid stock"),
            actor: Actor::system(),
        };
        store.execute_sync(create, &meta()).expect("create");
    }
    store.drain(usize::MAX);
    store
}

fn adjust(store: &MemoryStore, n: u64) {
    let command = Command::Adjust {
        product_id: product(n % PRODUCTS),
        delta: StockDelta::new(1).expect("valid delta"),
        reason: Reason::new("bench").expect("valid reason"),
        actor: Actor::system(),
        key: None,
    };
    store.execute_sync(command, &meta()).expect("adjust");
}

/// One reserve and its release; returns the time of the reserve alone.
fn reserve_release(store: &MemoryStore, n: u64) -> Duration {
    let reservation_id = ReservationId::from_uuid(Uuid::from_u128(u128::from(n) << 64 | 1));
    let line = ReserveLine {
        product_id: product(n % PRODUCTS),
        quantity: Quantity::new(1).expect("valid quantity"),
        reservation_id,
    };
    let order = OrderId::from_uuid(Uuid::from_u128(u128::from(n) << 64 | 2));
    let reserve = Command::Reserve(Reserve::single(order, line, Ttl::default()));
    let started = Instant::now();
    store.execute_sync(reserve, &meta()).expect("reserve");
    let took = started.elapsed();
    store
        .execute_sync(Command::Release { reservation_id }, &meta())
        .expect("release");
    took
}

/// Counts what arrives.
#[derive(Clone)]
struct Counter(Arc<watch::Sender<u64>>);

impl Handler for Counter {
    async fn handle(&self, _envelope: &Envelope) -> Result<(), HandlerError> {
        self.0.send_modify(|n| *n += 1);
        Ok(())
    }
}

/// Relay + RabbitMQ + consumer over one store, until dropped.
struct Pipeline {
    arrived: watch::Receiver<u64>,
    stops: Vec<oneshot::Sender<()>>,
    publisher: RabbitPublisher,
}

impl Pipeline {
    fn start(runtime: &Runtime, url: &str, spec: &QueueSpec, store: &Arc<MemoryStore>) -> Self {
        let _guard = runtime.enter();
        let counter = Counter(Arc::new(watch::channel(0).0));
        let arrived = counter.0.subscribe();
        let publisher = RabbitPublisher::new(RabbitConfig {
            url: url.to_owned(),
            exchange: spec.exchange.clone(),
            queues: vec![spec.clone()],
            connection_name: "bench-relay".to_owned(),
        });
        let relay = Relay::new(
            InventoryOutbox::new(Arc::clone(store)),
            publisher.clone(),
            RelayConfig::default(),
        );
        let (stop_relay, relay_signal) = oneshot::channel::<()>();
        relay::spawn(relay, async move {
            let _ = relay_signal.await;
        });
        let consumer = RabbitConsumer::new(
            ConsumerConfig::new(url, spec.clone(), "bench-consumer"),
            counter,
        );
        let (stop_consumer, consumer_signal) = oneshot::channel::<()>();
        tokio::spawn(consumer.run(async move {
            let _ = consumer_signal.await;
        }));
        Self {
            arrived,
            stops: vec![stop_relay, stop_consumer],
            publisher,
        }
    }

    fn stop(self, runtime: &Runtime) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        runtime.block_on(self.publisher.close());
    }
}

fn wait_for(runtime: &Runtime, arrived: &mut watch::Receiver<u64>, target: u64) {
    runtime.block_on(async {
        tokio::time::timeout(SAMPLE_TIMEOUT, arrived.wait_for(|n| *n >= target))
            .await
            .expect("events arrive in time")
            .expect("consumer alive");
    });
}

fn throughput(c: &mut Criterion, runtime: &Runtime, url: &str, spec: &QueueSpec) {
    let mut group = c.benchmark_group("events_throughput");
    group
        .throughput(Throughput::Elements(EVENTS_PER_SAMPLE))
        .sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .warm_up_time(Duration::from_secs(2));

    let store = store();
    let mut pipeline = Pipeline::start(runtime, url, spec, &store);
    let mut written = 0_u64;
    group.bench_function("outbox_to_consumer_rabbitmq", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                for _ in 0..EVENTS_PER_SAMPLE {
                    adjust(&store, written);
                    written += 1;
                }
                wait_for(runtime, &mut pipeline.arrived, written);
            }
            started.elapsed()
        });
    });
    pipeline.stop(runtime);

    let store = self::store();
    let bus = InProcessBus::new();
    let arrived = Arc::new(AtomicU64::new(0));
    let (stop, signal) = oneshot::channel::<()>();
    let mut subscription = bus.subscribe("").expect("subscribe");
    let seen = Arc::clone(&arrived);
    let (count_tx, mut count_rx) = watch::channel(0_u64);
    runtime.spawn(async move {
        while subscription.recv().await.is_some() {
            count_tx.send_replace(seen.fetch_add(1, Ordering::Relaxed) + 1);
        }
    });
    let relay = Relay::new(
        InventoryOutbox::new(Arc::clone(&store)),
        bus,
        RelayConfig::default(),
    );
    runtime.spawn(relay.run(async move {
        let _ = signal.await;
    }));
    let mut written = 0_u64;
    group.bench_function("outbox_to_subscriber_in_process", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                for _ in 0..EVENTS_PER_SAMPLE {
                    adjust(&store, written);
                    written += 1;
                }
                wait_for(runtime, &mut count_rx, written);
            }
            started.elapsed()
        });
    });
    let _ = stop.send(());
    group.finish();
}

fn reserve_latency(c: &mut Criterion, runtime: &Runtime, url: &str, spec: &QueueSpec) {
    let mut group = c.benchmark_group("events_reserve_latency");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(20)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));

    let store = store();
    let mut n = 0_u64;
    group.bench_function("relay_off", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                reserve_release(&store, n);
                n += 1;
            }
            let took = started.elapsed();
            store.drain(usize::MAX);
            store.purge_finished(Timestamp::from_millis(i64::MAX), usize::MAX);
            took
        });
    });

    let store = self::store();
    let pipeline = Pipeline::start(runtime, url, spec, &store);
    group.bench_function("relay_on_rabbitmq", |b| {
        b.iter_custom(|iters| {
            let started = Instant::now();
            for _ in 0..iters {
                reserve_release(&store, n);
                n += 1;
            }
            let took = started.elapsed();
            store.purge_finished(Timestamp::from_millis(i64::MAX), usize::MAX);
            took
        });
    });
    pipeline.stop(runtime);
    group.finish();
}

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    format!(
        "p50 {:>6.2} us, p99 {:>6.2} us, p999 {:>7.2} us",
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        at(0.999).as_secs_f64() * 1e6
    )
}

fn latency_probe(runtime: &Runtime, url: &str, spec: &QueueSpec) {
    eprintln!();
    eprintln!("latency probe: {PROBE_RESERVES} single reserves (each followed by a release)");
    let store = store();
    let off: Vec<Duration> = (0..PROBE_RESERVES as u64)
        .map(|n| reserve_release(&store, (1 << 40) + n))
        .collect();
    eprintln!("  relay off          {}", percentiles(off));
    let store = self::store();
    let pipeline = Pipeline::start(runtime, url, spec, &store);
    let on: Vec<Duration> = (0..PROBE_RESERVES as u64)
        .map(|n| reserve_release(&store, (1 << 41) + n))
        .collect();
    eprintln!("  relay on, RabbitMQ {}", percentiles(on));
    pipeline.stop(runtime);
}

fn delete_topology(runtime: &Runtime, url: &str, spec: &QueueSpec) {
    runtime.block_on(async {
        let Ok(connection) = rabbit::connect(url, "bench-cleanup").await else {
            return;
        };
        if let Ok(channel) = connection.create_channel().await {
            for queue in [&spec.queue, &spec.dead_letter_queue] {
                let _ = channel
                    .queue_delete(queue, QueueDeleteOptions::default())
                    .await;
            }
            for exchange in [&spec.exchange, &spec.dead_letter_exchange] {
                let _ = channel
                    .exchange_delete(exchange, ExchangeDeleteOptions::default())
                    .await;
            }
        }
        let _ = connection.close(200, "done").await;
    });
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| LOCAL_AMQP_URL.to_owned());
    match runtime.block_on(rabbit::connect(&url, "bench-probe")) {
        Ok(connection) => {
            let _ = runtime.block_on(connection.close(200, "probe"));
        }
        Err(reason) => {
            eprintln!("skipped: RabbitMQ at {url} is unreachable: {reason}");
            return;
        }
    }
    let suffix = format!("{:x}", Uuid::new_v4().as_u128() as u64);
    let spec = QueueSpec::new(
        &format!("bench.events.queue.{suffix}"),
        &format!("bench.events.exchange.{suffix}"),
        "inventory.stock.#",
    );
    let mut criterion = Criterion::default().configure_from_args();
    throughput(&mut criterion, &runtime, &url, &spec);
    reserve_latency(&mut criterion, &runtime, &url, &spec);
    criterion.final_summary();
    latency_probe(&runtime, &url, &spec);
    delete_topology(&runtime, &url, &spec);
}
