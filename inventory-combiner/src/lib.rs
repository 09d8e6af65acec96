//! # inventory-combiner
//!
//! Group commit in front of any inventory store. [`Combiner`] wraps a store
//! and is itself an [`InventoryStore`]: callers submit one command and await
//! their own answer, while the combiner hands the store's
//! [`InventoryStore::execute_batch`] as many waiting commands at once as it
//! can. A flash sale then costs one commit per batch instead of one per
//! buyer, and no rule moves out of `inventory-core`.
//!
//! ## How it works
//!
//! - A command waits in one bounded line ([`CombinerConfig::queue_max`];
//!   when full the caller gets [`Error::Overloaded`] at once and nothing is
//!   queued).
//! - Up to [`CombinerConfig::committers_max`] committers run at once. A
//!   committer takes, in arrival order, every waiting command whose products
//!   no other batch in flight holds, up to [`CombinerConfig::batch_max`],
//!   commits them as one batch, answers each caller, and goes again while
//!   anything can go. So commands on one product commit in arrival order (an
//!   earlier buyer of the last unit wins), and commands on other products are
//!   taken by another committer instead of waiting behind a hot one.
//! - There is no timer: a lone command finds an idle committer and commits
//!   at once; batches form only while the store is busy.
//! - Batches in flight never share a product, so within one process they
//!   never wait on each other's locks; multi-line reserves stay one command
//!   (all or nothing), and the store locks in product order (no deadlock
//!   with other processes).
//!
//! See `docs/adr/0006-group-commit.md` for the alternatives weighed.
//!
//! ## Example
//!
//! ```
//! use std::sync::Arc;
//!
//! use inventory_combiner::{Combiner, CombinerConfig};
//! use inventory_core::*;
//! use inventory_memory::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Error> {
//! let store = Combiner::new(Arc::new(MemoryStore::new()), CombinerConfig::default());
//! let product = ProductId::from_uuid(uuid::Uuid::from_u128(1));
//! let meta = Meta::at(Timestamp::from_millis(1_000));
//! let create = Command::CreateItem {
//!     product_id: product,
//!     quantity: StockLevel::new(5)?,
//!     actor: Actor::system(),
//! };
//! store.execute(create, &meta).await?;
//! assert_eq!(store.item(product).await?.map(|i| i.available()), Some(5));
//! # Ok(())
//! # }
//! ```

mod queue;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use inventory_core::{
    Adjustment, BatchResults, Command, Error, InventoryItem, InventoryStore, Meta, OrderId, Outbox,
    OutboxEntry, Outcome, ProductId, Reservation, ReservationId, Timestamp, BATCH_MAX,
};
use parking_lot::Mutex;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::queue::{keys, Line, Waiting};

/// Default most commands per batch. Past about a hundred rows a batch
/// mostly grows its statements, not its throughput, and every caller in it
/// waits for the whole batch.
pub const BATCH_MAX_DEFAULT: usize = 128;

/// Default most commands waiting. Enough for every connection of a busy
/// server to have a write in line, small enough that the last in line still
/// gets an answer within a request timeout.
pub const QUEUE_MAX_DEFAULT: usize = 4_096;

/// Default most batches in flight at once. Each holds one store connection
/// while it commits; more committers mean more parallel transactions but
/// smaller batches. Two keep a hot product's batches from holding up the
/// rest, and on PostgreSQL served random products faster than four (fewer,
/// larger transactions: `docs/benchmarks.md`).
pub const COMMITTERS_MAX_DEFAULT: usize = 2;

/// How a [`Combiner`] batches. Build with struct update syntax over
/// [`CombinerConfig::default`]; out-of-bounds values are clamped.
///
/// ```
/// use std::sync::Arc;
/// use inventory_combiner::{Combiner, CombinerConfig};
/// use inventory_memory::MemoryStore;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // A short line: past 256 waiting changes, callers hear `Overloaded` at once.
/// let config = CombinerConfig { queue_max: 256, batch_max: 0, ..CombinerConfig::default() };
/// let store = Combiner::new(Arc::new(MemoryStore::new()), config);
/// assert_eq!(store.config().queue_max, 256);
/// assert_eq!(store.config().batch_max, 1); // clamped: a batch holds at least one command
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CombinerConfig {
    /// Most commands in one batch (1 to [`BATCH_MAX`]); 1 turns batching
    /// off: every command goes straight to the store.
    pub batch_max: usize,
    /// Most commands waiting; one more gets [`Error::Overloaded`].
    pub queue_max: usize,
    /// Most batches in flight at once (at least 1).
    pub committers_max: usize,
}

impl Default for CombinerConfig {
    fn default() -> Self {
        Self {
            batch_max: BATCH_MAX_DEFAULT,
            queue_max: QUEUE_MAX_DEFAULT,
            committers_max: COMMITTERS_MAX_DEFAULT,
        }
    }
}

impl CombinerConfig {
    /// The same settings, clamped to their bounds.
    fn clamped(self) -> Self {
        Self {
            batch_max: self.batch_max.clamp(1, BATCH_MAX),
            queue_max: self.queue_max.max(1),
            committers_max: self.committers_max.max(1),
        }
    }
}

/// What a combiner reports about its batches, for metrics. Called on the
/// committer's task: keep it cheap.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use inventory_combiner::{BatchObserver, Combiner, CombinerConfig};
/// use inventory_core::{InventoryStoreExt, ProductId, Timestamp, Uuid};
/// use inventory_memory::MemoryStore;
///
/// /// Counts the commands that went through the line.
/// #[derive(Default)]
/// struct Committed(AtomicUsize);
///
/// impl BatchObserver for Committed {
///     fn batch_started(&self, size: usize, _queue_waits: &[Duration]) {
///         self.0.fetch_add(size, Ordering::Relaxed);
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), inventory_core::Error> {
/// let observer = Arc::new(Committed::default());
/// let store = Combiner::new(Arc::new(MemoryStore::new()), CombinerConfig::default())
///     .with_observer(observer.clone());
/// let product = ProductId::from(Uuid::from_u128(1));
/// store.create_item(product, 5, Timestamp::from_millis(0)).await?;
/// store.adjust(product, 3, "delivery", Timestamp::from_millis(1)).await?;
/// assert_eq!(observer.0.load(Ordering::Relaxed), 2);
/// # Ok(())
/// # }
/// ```
pub trait BatchObserver: Send + Sync + 'static {
    /// A batch of `size` commands was handed to the store; `queue_waits` is
    /// how long each of them waited in line.
    fn batch_started(&self, size: usize, queue_waits: &[Duration]);
}

/// A command in line, and where its answer goes.
struct Request {
    command: Command,
    meta: Meta,
    queued_at: Instant,
    reply: oneshot::Sender<Result<Outcome, Error>>,
}

struct Shared<S> {
    store: Arc<S>,
    config: CombinerConfig,
    state: Mutex<State>,
    observer: Option<Arc<dyn BatchObserver>>,
    runtime: Handle,
}

struct State {
    line: Line<Request>,
    committers: usize,
}

/// Group commit in front of the store `S`: see the crate documentation.
///
/// Reads, the expiry sweep and [`InventoryStore::execute_batch`] go straight
/// to the store; [`InventoryStore::execute`] goes through the line. Cheap to
/// clone (clones share the line).
pub struct Combiner<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for Combiner<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> std::fmt::Debug for Combiner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Combiner")
            .field("config", &self.shared.config)
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

impl<S: InventoryStore> Combiner<S> {
    /// A combiner in front of `store`, whose committers run on the current
    /// tokio runtime.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use inventory_combiner::{Combiner, CombinerConfig};
    /// use inventory_core::{InventoryStoreExt, OrderId, ProductId, Timestamp, Ttl, Uuid};
    /// use inventory_memory::MemoryStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), inventory_core::Error> {
    /// let memory = Arc::new(MemoryStore::new());
    /// let store = Combiner::new(Arc::clone(&memory), CombinerConfig::default());
    /// let (product, now) = (ProductId::from(Uuid::from_u128(1)), Timestamp::from_millis(0));
    /// store.create_item(product, 5, now).await?;
    /// store.reserve(OrderId::from(Uuid::from_u128(2)), product, 2, Ttl::default(), now).await?;
    ///
    /// // The same store, seen directly: the changes went through to it.
    /// assert_eq!(memory.item_sync(product).map(|i| i.available()), Some(3));
    /// assert_eq!(store.queued(), 0);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn new(store: Arc<S>, config: CombinerConfig) -> Self {
        Self::with_runtime(store, config, Handle::current())
    }

    /// A combiner whose committers run on `runtime` (callers may then await
    /// it from any executor or thread).
    pub fn with_runtime(store: Arc<S>, config: CombinerConfig, runtime: Handle) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                config: config.clamped(),
                state: Mutex::new(State {
                    line: Line::default(),
                    committers: 0,
                }),
                observer: None,
                runtime,
            }),
        }
    }

    /// The same combiner, reporting its batches to `observer`. Call before
    /// cloning or submitting anything.
    ///
    /// # Panics
    /// When the combiner was already cloned.
    #[must_use]
    pub fn with_observer(mut self, observer: Arc<dyn BatchObserver>) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("an observer is set before the combiner is shared")
            .observer = Some(observer);
        self
    }
}

impl<S> Combiner<S> {
    /// The store behind the combiner.
    pub fn store(&self) -> &Arc<S> {
        &self.shared.store
    }

    /// The settings in force (clamped to their bounds).
    pub fn config(&self) -> CombinerConfig {
        self.shared.config
    }

    /// How many commands wait in line now.
    pub fn queued(&self) -> usize {
        self.shared.state.lock().line.len()
    }
}

impl<S: InventoryStore> Combiner<S> {
    /// Queues `command` and waits for its answer.
    async fn submit(&self, command: Command, meta: Meta) -> Result<Outcome, Error> {
        let (reply, answer) = oneshot::channel();
        {
            let mut state = self.shared.state.lock();
            if state.line.len() >= self.shared.config.queue_max {
                return Err(Error::Overloaded);
            }
            let keys = keys(&command);
            let can_go_now = !state.line.is_held(&keys);
            state.line.push(Waiting {
                keys,
                item: Request {
                    command,
                    meta,
                    queued_at: Instant::now(),
                    reply,
                },
            });
            // A held command is taken by the committer holding its keys
            // when that one comes round again.
            if can_go_now && state.committers < self.shared.config.committers_max {
                state.committers += 1;
                let shared = Arc::clone(&self.shared);
                self.shared.runtime.spawn(commit_while_any(shared));
            }
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::Storage {
                reason: "the batch committer stopped before answering".to_owned(),
            })
        })
    }
}

/// One committer: takes batches and commits them until nothing can go.
async fn commit_while_any<S: InventoryStore>(shared: Arc<Shared<S>>) {
    loop {
        let (batch, keys) = {
            let mut state = shared.state.lock();
            let (batch, keys) = state.line.take(shared.config.batch_max);
            if batch.is_empty() {
                state.committers -= 1;
                return;
            }
            (batch, keys)
        };
        if let Some(observer) = &shared.observer {
            let now = Instant::now();
            let waits: Vec<Duration> = batch.iter().map(|r| now - r.queued_at).collect();
            observer.batch_started(batch.len(), &waits);
        }
        let mut replies = Vec::with_capacity(batch.len());
        let commands: Vec<(Command, Meta)> = batch
            .into_iter()
            .map(|r| {
                replies.push(r.reply);
                (r.command, r.meta)
            })
            .collect();
        let size = commands.len();
        // A panicking store must not strand the callers or the held keys.
        let result = AssertUnwindSafe(shared.store.execute_batch(commands))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                Err(Error::Storage {
                    reason: "the store panicked while committing a batch".to_owned(),
                })
            });
        shared.state.lock().line.release(&keys);
        match result {
            Ok(answers) if answers.len() == size => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    // A caller that stopped waiting is simply not told.
                    let _ = reply.send(answer);
                }
            }
            Ok(answers) => {
                let error = Error::Storage {
                    reason: format!("the store answered {} of {size} commands", answers.len()),
                };
                replies
                    .into_iter()
                    .for_each(|r| drop(r.send(Err(error.clone()))));
            }
            Err(error) => {
                replies
                    .into_iter()
                    .for_each(|r| drop(r.send(Err(error.clone()))));
            }
        }
    }
}

impl<S: InventoryStore> InventoryStore for Combiner<S> {
    async fn execute(&self, command: Command, meta: &Meta) -> Result<Outcome, Error> {
        if self.shared.config.batch_max == 1 {
            return self.shared.store.execute(command, meta).await;
        }
        self.submit(command, meta.clone()).await
    }

    fn execute_batch(
        &self,
        batch: Vec<(Command, Meta)>,
    ) -> impl Future<Output = Result<BatchResults, Error>> + Send {
        self.shared.store.execute_batch(batch)
    }

    fn item(
        &self,
        product_id: ProductId,
    ) -> impl Future<Output = Result<Option<InventoryItem>, Error>> + Send {
        self.shared.store.item(product_id)
    }

    fn items(
        &self,
        product_ids: &[ProductId],
    ) -> impl Future<Output = Result<Vec<InventoryItem>, Error>> + Send {
        self.shared.store.items(product_ids)
    }

    fn reservation(
        &self,
        id: ReservationId,
    ) -> impl Future<Output = Result<Option<Reservation>, Error>> + Send {
        self.shared.store.reservation(id)
    }

    fn reservations_of_order(
        &self,
        order_id: OrderId,
    ) -> impl Future<Output = Result<Vec<Reservation>, Error>> + Send {
        self.shared.store.reservations_of_order(order_id)
    }

    fn reservations_of_product(
        &self,
        product_id: ProductId,
    ) -> impl Future<Output = Result<Vec<Reservation>, Error>> + Send {
        self.shared.store.reservations_of_product(product_id)
    }

    fn adjustments(
        &self,
        product_id: ProductId,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Adjustment>, Error>> + Send {
        self.shared.store.adjustments(product_id, limit)
    }

    fn expire_due(
        &self,
        meta: &Meta,
        limit: usize,
    ) -> impl Future<Output = Result<usize, Error>> + Send {
        self.shared.store.expire_due(meta, limit)
    }

    fn purge_finished(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<usize, Error>> + Send {
        self.shared.store.purge_finished(before, limit)
    }
}

impl<S: Outbox> Outbox for Combiner<S> {
    fn unpublished(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>, Error>> + Send {
        self.shared.store.unpublished(limit)
    }

    fn mark_published(&self, sequences: &[u64]) -> impl Future<Output = Result<(), Error>> + Send {
        self.shared.store.mark_published(sequences)
    }
}

// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
