//! The combiner in front of the memory store: the conformance kit through it,
//! and its own promises (batches form while the store is busy, arrival order
//! for the last unit, a bounded line, no waiting behind another product, a
//! failed batch fails each of its callers).

use std::sync::Arc;
use std::time::Duration;

use inventory_combiner::{BatchObserver, Combiner, CombinerConfig};
use inventory_core::testkit::{self, at, create, new_order, reserve_one, Harness, Task};
use inventory_core::*;
use inventory_memory::MemoryStore;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

/// Tasks on the test's multi-thread runtime.
struct Tasks;

impl Harness for Tasks {
    type Store = Combiner<MemoryStore>;

    async fn store(&self) -> Self::Store {
        Combiner::new(Arc::new(MemoryStore::new()), CombinerConfig::default())
    }

    async fn run_concurrently(&self, tasks: Vec<Task>) {
        let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
        for handle in handles {
            handle.await.expect("a concurrent task panicked");
        }
    }
}

/// The memory store behind a combiner passes every rule of the kit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_kit_through_the_combiner() {
    testkit::run_all(&Tasks).await;
}

/// A memory store whose batches naming `gated` wait for a permit, so a test
/// decides when a batch in flight finishes; it also records batch sizes.
struct Gated {
    inner: MemoryStore,
    gated: Mutex<Option<ProductId>>,
    gate: Semaphore,
    sizes: Mutex<Vec<usize>>,
    fail_next: Mutex<bool>,
}

impl Gated {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryStore::new(),
            gated: Mutex::new(None),
            gate: Semaphore::new(0),
            sizes: Mutex::new(Vec::new()),
            fail_next: Mutex::new(false),
        })
    }

    fn open(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

impl InventoryStore for Gated {
    async fn execute(&self, command: Command, meta: &Meta) -> Result<Outcome, Error> {
        let mut answers = self.execute_batch(vec![(command, meta.clone())]).await?;
        answers.pop().expect("one answer")
    }
    async fn execute_batch(&self, batch: Vec<(Command, Meta)>) -> Result<BatchResults, Error> {
        self.sizes.lock().push(batch.len());
        let fail = std::mem::take(&mut *self.fail_next.lock());
        let gated = *self.gated.lock();
        if batch
            .iter()
            .any(|(c, _)| gated.is_some_and(|p| c.products().contains(&p)))
        {
            self.gate.acquire().await.expect("gate open").forget();
        }
        if fail {
            return Err(Error::Unavailable {
                reason: "connection lost".into(),
            });
        }
        self.inner.execute_batch(batch).await
    }
    async fn item(&self, p: ProductId) -> Result<Option<InventoryItem>, Error> {
        self.inner.item(p).await
    }
    async fn items(&self, p: &[ProductId]) -> Result<Vec<InventoryItem>, Error> {
        self.inner.items(p).await
    }
    async fn reservation(&self, id: ReservationId) -> Result<Option<Reservation>, Error> {
        self.inner.reservation(id).await
    }
    async fn reservations_of_order(&self, o: OrderId) -> Result<Vec<Reservation>, Error> {
        self.inner.reservations_of_order(o).await
    }
    async fn reservations_of_product(&self, p: ProductId) -> Result<Vec<Reservation>, Error> {
        self.inner.reservations_of_product(p).await
    }
    async fn adjustments(&self, p: ProductId, limit: usize) -> Result<Vec<Adjustment>, Error> {
        self.inner.adjustments(p, limit).await
    }
    async fn expire_due(&self, meta: &Meta, limit: usize) -> Result<usize, Error> {
        self.inner.expire_due(meta, limit).await
    }
}

/// Records what the combiner reports.
#[derive(Default)]
struct Seen(Mutex<Vec<usize>>);

impl BatchObserver for Seen {
    fn batch_started(&self, size: usize, queue_waits: &[Duration]) {
        assert_eq!(queue_waits.len(), size);
        self.0.lock().push(size);
    }
}

/// A product with `stock` units, and a combiner whose first batch on it
/// stays in flight (holding the product) until the gate opens.
async fn held_product(
    stock: u64,
    config: CombinerConfig,
) -> (
    Arc<Gated>,
    Combiner<Gated>,
    ProductId,
    tokio::task::JoinHandle<Result<Outcome, Error>>,
) {
    let store = Gated::new();
    let product = create(&store.inner, stock).await;
    *store.gated.lock() = Some(product);
    let combiner = Combiner::new(Arc::clone(&store), config);
    let first = {
        let combiner = combiner.clone();
        tokio::spawn(async move {
            combiner
                .execute(reserve_one(new_order(), product, 1, 60), &at(1))
                .await
        })
    };
    wait_until(|| store.sizes.lock().len() == 1).await;
    (store, combiner, product, first)
}

/// Submits `commands` one after another, each queued before the next, and
/// returns their tasks in submission order.
async fn submit_in_order(
    combiner: &Combiner<Gated>,
    commands: Vec<Command>,
) -> Vec<tokio::task::JoinHandle<Result<Outcome, Error>>> {
    let mut tasks = Vec::new();
    for command in commands {
        let before = combiner.queued();
        let c = combiner.clone();
        tasks.push(tokio::spawn(
            async move { c.execute(command, &at(1)).await },
        ));
        wait_until(|| combiner.queued() == before + 1).await;
    }
    tasks
}

async fn wait_until(mut condition: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if condition() {
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("condition not met in time");
}

/// Buyers who queued behind a batch in flight commit together, in arrival
/// order: of nine buyers for the last unit, the first in line wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_buyers_commit_as_one_batch_in_arrival_order() {
    let (store, combiner, product, first) = held_product(2, CombinerConfig::default()).await;
    let buyers: Vec<Command> = (0..9)
        .map(|_| reserve_one(new_order(), product, 1, 60))
        .collect();
    let tasks = submit_in_order(&combiner, buyers).await;

    store.open();
    assert!(first.await.unwrap().is_ok());
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }

    assert!(
        answers[0].is_ok(),
        "the first in line wins: {:?}",
        answers[0]
    );
    for answer in &answers[1..] {
        assert!(
            matches!(answer, Err(Error::InsufficientStock { .. })),
            "{answer:?}"
        );
    }
    assert_eq!(*store.sizes.lock(), [1, 9]);
    assert_eq!(testkit::item(&store.inner, product).await.available(), 0);
}

/// The observer sees each batch and how long each command waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_sees_batch_sizes() {
    let store = Gated::new();
    let product = create(&store.inner, 10).await;
    *store.gated.lock() = Some(product);
    let seen = Arc::new(Seen::default());
    let combiner = Combiner::new(Arc::clone(&store), CombinerConfig::default())
        .with_observer(Arc::clone(&seen) as Arc<dyn BatchObserver>);
    let first = {
        let c = combiner.clone();
        tokio::spawn(async move {
            c.execute(reserve_one(new_order(), product, 1, 60), &at(1))
                .await
        })
    };
    wait_until(|| store.sizes.lock().len() == 1).await;
    let tasks = submit_in_order(
        &combiner,
        (0..3)
            .map(|_| reserve_one(new_order(), product, 1, 60))
            .collect(),
    )
    .await;

    store.open();
    first.await.unwrap().unwrap();
    for task in tasks {
        task.await.unwrap().unwrap();
    }

    assert_eq!(*seen.0.lock(), [1, 3]);
}

/// A full line refuses at once with `Overloaded` and queues nothing: what
/// was refused is never committed, what was queued is committed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_line_refuses_and_commits_nothing_twice() {
    let config = CombinerConfig {
        queue_max: 3,
        ..CombinerConfig::default()
    };
    let (store, combiner, product, first) = held_product(100, config).await;
    let queued = submit_in_order(
        &combiner,
        (0..3)
            .map(|_| reserve_one(new_order(), product, 1, 60))
            .collect(),
    )
    .await;
    let refused_order = new_order();

    let refused = combiner
        .execute(reserve_one(refused_order, product, 1, 60), &at(1))
        .await;

    assert_eq!(refused, Err(Error::Overloaded));
    store.open();
    first.await.unwrap().unwrap();
    for task in queued {
        task.await.unwrap().unwrap();
    }
    let item = testkit::item(&store.inner, product).await;
    assert_eq!(item.reserved(), 4, "the first and the three queued");
    let refused_lines = store
        .inner
        .reservations_of_order(refused_order)
        .await
        .unwrap();
    assert!(refused_lines.is_empty());
}

/// While a batch on a hot product is in flight, a command on another product
/// is taken by a second committer and answered without waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_products_do_not_wait_behind_a_held_one() {
    let (store, combiner, hot, first) = held_product(100, CombinerConfig::default()).await;
    let behind = submit_in_order(&combiner, vec![reserve_one(new_order(), hot, 1, 60)]).await;
    let other = create(&store.inner, 5).await;

    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        combiner.execute(reserve_one(new_order(), other, 1, 60), &at(1)),
    )
    .await
    .expect("not held up by the hot product");

    assert!(answer.is_ok(), "{answer:?}");
    assert!(
        !behind[0].is_finished(),
        "the hot product's next buyer still waits"
    );
    store.open();
    first.await.unwrap().unwrap();
    for task in behind {
        task.await.unwrap().unwrap();
    }
}

/// A batch the store fails gives every caller in it the store's error and
/// commits nothing; the line then goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_batch_fails_each_caller_and_the_line_goes_on() {
    let (store, combiner, product, first) = held_product(100, CombinerConfig::default()).await;
    let orders: Vec<OrderId> = (0..4).map(|_| new_order()).collect();
    let tasks = submit_in_order(
        &combiner,
        orders
            .iter()
            .map(|o| reserve_one(*o, product, 1, 60))
            .collect(),
    )
    .await;
    *store.fail_next.lock() = true;

    store.open();
    first.await.unwrap().unwrap();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let after = combiner
        .execute(reserve_one(new_order(), product, 1, 60), &at(1))
        .await;

    for answer in &answers {
        assert!(
            matches!(answer, Err(Error::Unavailable { .. })),
            "{answer:?}"
        );
    }
    for order in &orders {
        assert!(store
            .inner
            .reservations_of_order(*order)
            .await
            .unwrap()
            .is_empty());
    }
    assert!(after.is_ok(), "{after:?}");
    assert_eq!(*store.sizes.lock(), [1, 4, 1]);
    assert_eq!(testkit::item(&store.inner, product).await.reserved(), 2);
}

/// With `batch_max` 1 every command goes straight to the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_max_one_is_a_pass_through() {
    let store = Gated::new();
    let product = create(&store.inner, 3).await;
    let combiner = Combiner::new(
        Arc::clone(&store),
        CombinerConfig {
            batch_max: 1,
            ..CombinerConfig::default()
        },
    );

    let outcome = combiner
        .execute(reserve_one(new_order(), product, 1, 60), &at(1))
        .await;

    assert!(outcome.is_ok());
    assert_eq!(combiner.queued(), 0);
    assert_eq!(*store.sizes.lock(), [1]);
}

/// Reads and maintenance go straight to the wrapped store: a purge through
/// the combiner forgets what the store would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_reaches_the_store() {
    let store = Arc::new(MemoryStore::new());
    let combiner = Combiner::new(Arc::clone(&store), CombinerConfig::default());
    let t = Timestamp::from_millis(1_000);
    let product = ProductId::from(Uuid::from_u128(1));
    combiner.create_item(product, 1, t).await.unwrap();
    let order = OrderId::from(Uuid::from_u128(2));
    let held = combiner
        .reserve(order, product, 1, Ttl::default(), t)
        .await
        .unwrap();
    combiner.confirm(held.id(), t).await.unwrap();
    let purged = combiner.purge_finished(t.plus_ms(1), 10).await.unwrap();
    assert_eq!(purged, 1);
    assert!(store.reservation_sync(held.id()).is_none());
}
