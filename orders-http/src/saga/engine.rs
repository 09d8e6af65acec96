//! Runs sagas: one tokio task per pending order, a resumer that picks up
//! unfinished sagas from the store (at start and periodically), bounded retries
//! with exponential backoff and jitter for transient failures, and a pending
//! deadline after which an order that still cannot reach inventory is
//! cancelled `inventory_unavailable`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{broadcast, Notify};
use tokio::task::AbortHandle;
use uuid::Uuid;

mod steps;
use crate::clock::Clock;
use crate::domain::OrderId;
use crate::inventory::InventoryApi;
use crate::metrics::OrderMetrics;
use crate::payment::PaymentProvider;
use crate::store::{OrderRecord, OrderStore, StoreError};

/// Default time an order may wait for inventory before it is cancelled
/// `inventory_unavailable`, in milliseconds.
pub const PENDING_DEADLINE_MS_DEFAULT: u64 = 120_000;

/// Default first retry delay of a transient failure, in milliseconds.
pub const RETRY_DELAY_MIN_MS_DEFAULT: u64 = 50;

/// Default longest retry delay, in milliseconds.
pub const RETRY_DELAY_MAX_MS_DEFAULT: u64 = 1_000;

/// Default retries in one burst (after the first try).
pub const RETRIES_MAX_DEFAULT: usize = 4;

/// Default cap on the total delay of one burst, in milliseconds.
pub const RETRY_TOTAL_MS_DEFAULT: u64 = 3_000;

/// Default wait between bursts while a dependency is down, in milliseconds.
pub const PARK_INTERVAL_MS_DEFAULT: u64 = 1_000;

/// Default reservation attempts per order (the first, plus re-reserves after
/// an expired hold).
pub const RESERVE_ATTEMPTS_MAX_DEFAULT: u32 = 2;

/// Default interval of the resumer's sweep for pending orders, in milliseconds.
pub const RESUME_INTERVAL_MS_DEFAULT: u64 = 30_000;

/// Default lease of a saga claim, in milliseconds: renewed before every step,
/// longer than any step takes, so a second instance takes a saga over only
/// after its owner stopped.
pub const LEASE_MS_DEFAULT: u64 = 30_000;

/// Pending orders read per page by the resumer.
pub const RESUME_PAGE_MAX: u32 = 500;

/// Default longest a cancel request waits for the saga to finish, in
/// milliseconds (then it answers 202 and the saga finishes later).
pub const CANCEL_WAIT_MS_DEFAULT: u64 = 3_000;

/// Default time the record of an applied inventory event (and the claims
/// and inventory order ids of finished orders) is kept, in milliseconds: 8
/// days, longer than inventory's outbox keeps sent events for redelivery (7
/// days).
pub const DEDUP_RETENTION_MS_DEFAULT: u64 = 8 * 24 * 3_600_000;

/// Default time after a charge was sent before the provider's "nothing
/// charged" is trusted, in milliseconds: longer than any charge call can
/// still be completing (a burst of retries with their timeouts).
pub const PAYMENT_SETTLE_MS_DEFAULT: u64 = 60_000;

/// Most records one prune (one resumer run) forgets.
pub const PRUNE_BATCH_MAX: usize = 10_000;

/// Capacity of the channel announcing finished orders.
const FINISHED_CHANNEL_CAPACITY: usize = 1_024;

/// How sagas retry and when they give up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SagaConfig {
    /// Hold duration asked of inventory; its default when `None`.
    pub reservation_ttl_seconds: Option<u64>,
    /// Longest an order waits for inventory, in milliseconds.
    pub pending_deadline_ms: u64,
    /// First retry delay, in milliseconds.
    pub retry_delay_min_ms: u64,
    /// Longest retry delay, in milliseconds.
    pub retry_delay_max_ms: u64,
    /// Retries in one burst.
    pub retries_max: usize,
    /// Cap on the delays of one burst, in milliseconds.
    pub retry_total_ms: u64,
    /// Wait between bursts while a dependency is down, in milliseconds.
    pub park_interval_ms: u64,
    /// Reservation attempts per order.
    pub reserve_attempts_max: u32,
    /// Interval of the resumer's sweep, in milliseconds.
    pub resume_interval_ms: u64,
    /// Longest a cancel request waits for the saga to finish, in milliseconds.
    pub cancel_wait_ms: u64,
    /// Lease of a saga claim, in milliseconds.
    pub lease_ms: u64,
    /// How long the records kept to deduplicate and route events live, in
    /// milliseconds (0 keeps them forever); pruned on every resumer run.
    pub dedup_retention_ms: u64,
    /// How long after a charge was sent the provider's "nothing charged" is
    /// trusted, in milliseconds (see [`PAYMENT_SETTLE_MS_DEFAULT`]).
    pub payment_settle_ms: u64,
}

impl Default for SagaConfig {
    fn default() -> Self {
        Self {
            reservation_ttl_seconds: None,
            pending_deadline_ms: PENDING_DEADLINE_MS_DEFAULT,
            retry_delay_min_ms: RETRY_DELAY_MIN_MS_DEFAULT,
            retry_delay_max_ms: RETRY_DELAY_MAX_MS_DEFAULT,
            retries_max: RETRIES_MAX_DEFAULT,
            retry_total_ms: RETRY_TOTAL_MS_DEFAULT,
            park_interval_ms: PARK_INTERVAL_MS_DEFAULT,
            reserve_attempts_max: RESERVE_ATTEMPTS_MAX_DEFAULT,
            resume_interval_ms: RESUME_INTERVAL_MS_DEFAULT,
            cancel_wait_ms: CANCEL_WAIT_MS_DEFAULT,
            lease_ms: LEASE_MS_DEFAULT,
            dedup_retention_ms: DEDUP_RETENTION_MS_DEFAULT,
            payment_settle_ms: PAYMENT_SETTLE_MS_DEFAULT,
        }
    }
}

/// What a cancel request came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The order is (now) cancelled or finished otherwise: here it is.
    Finished(Box<OrderRecord>),
    /// The cancel is recorded; the saga has not finished undoing yet.
    Accepted(Box<OrderRecord>),
    /// The order was no longer pending.
    NotPending(Box<OrderRecord>),
    /// No such order.
    NotFound,
}

/// What a step leaves the saga loop to do next.
enum Next {
    /// Run the next step now.
    Continue,
    /// Wait (a park interval, or until woken) and try again.
    Park,
    /// The order is final.
    Finished,
    /// Another instance took the saga over: this task ends without
    /// announcing anything.
    Stop,
}

struct Running {
    wake: Arc<Notify>,
    abort: AbortHandle,
}

/// Runs the sagas of one service instance.
pub struct SagaEngine {
    store: Arc<dyn OrderStore>,
    inventory: Arc<dyn InventoryApi>,
    payments: Arc<dyn PaymentProvider>,
    clock: Arc<dyn Clock>,
    config: SagaConfig,
    metrics: OrderMetrics,
    running: Mutex<HashMap<OrderId, Running>>,
    finished: broadcast::Sender<OrderId>,
    stopped: AtomicBool,
    owner: Uuid,
    resumer: Mutex<Option<AbortHandle>>,
}

impl SagaEngine {
    /// An engine; nothing runs until [`SagaEngine::start`] or
    /// [`SagaEngine::spawn_resumer`].
    pub fn new(
        store: Arc<dyn OrderStore>,
        inventory: Arc<dyn InventoryApi>,
        payments: Arc<dyn PaymentProvider>,
        clock: Arc<dyn Clock>,
        config: SagaConfig,
        metrics: OrderMetrics,
    ) -> Arc<Self> {
        let (finished, _) = broadcast::channel(FINISHED_CHANNEL_CAPACITY);
        Arc::new(Self {
            store,
            inventory,
            payments,
            clock,
            config,
            metrics,
            running: Mutex::new(HashMap::new()),
            finished,
            stopped: AtomicBool::new(false),
            owner: Uuid::new_v4(),
            resumer: Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SagaConfig {
        &self.config
    }

    /// Sagas running in this instance now.
    pub fn running(&self) -> usize {
        self.running.lock().len()
    }

    /// Runs the saga of `order_id` in a task of its own, unless one runs
    /// already (then it is woken).
    pub fn start(self: &Arc<Self>, order_id: OrderId) {
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        let mut running = self.running.lock();
        if let Some(r) = running.get(&order_id) {
            r.wake.notify_one();
            return;
        }
        let wake = Arc::new(Notify::new());
        let engine = Arc::clone(self);
        let task_wake = Arc::clone(&wake);
        let handle = tokio::spawn(async move {
            engine.drive(order_id, &task_wake).await;
            engine.running.lock().remove(&order_id);
        });
        running.insert(
            order_id,
            Running {
                wake,
                abort: handle.abort_handle(),
            },
        );
    }

    /// Starts every pending saga of the store now, then again every
    /// `resume_interval_ms`, until [`SagaEngine::shutdown`]; each run also
    /// prunes what is past `dedup_retention_ms`.
    pub fn spawn_resumer(self: &Arc<Self>) {
        let engine = Arc::clone(self);
        let interval = Duration::from_millis(self.config.resume_interval_ms.max(1));
        let handle = tokio::spawn(async move {
            loop {
                if let Err(e) = engine.resume_all().await {
                    tracing::warn!(error = %e, "resuming pending orders failed");
                }
                if let Err(e) = engine.prune().await {
                    tracing::warn!(error = %e, "pruning event records failed");
                }
                tokio::time::sleep(interval).await;
            }
        });
        *self.resumer.lock() = Some(handle.abort_handle());
    }

    /// Forgets, up to [`PRUNE_BATCH_MAX`] at a time, the event records older
    /// than `dedup_retention_ms`; returns how many.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    pub async fn prune(&self) -> Result<usize, StoreError> {
        if self.config.dedup_retention_ms == 0 {
            return Ok(0);
        }
        let retention = i64::try_from(self.config.dedup_retention_ms).unwrap_or(i64::MAX);
        let before_ms = self.clock.now_ms().saturating_sub(retention);
        let pruned = self.store.prune(before_ms, PRUNE_BATCH_MAX).await?;
        if pruned > 0 {
            tracing::info!(pruned, "forgot old event records");
        }
        Ok(pruned)
    }

    /// Starts the saga of every pending order of the store.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot list them.
    pub async fn resume_all(self: &Arc<Self>) -> Result<usize, StoreError> {
        let mut after = None;
        let mut count = 0;
        loop {
            let page = self.store.pending(after, RESUME_PAGE_MAX).await?;
            let Some(last) = page.last().copied() else {
                break;
            };
            count += page.len();
            for id in page {
                self.start(id);
            }
            after = Some(last);
        }
        if count > 0 {
            tracing::info!(count, "resumed pending orders");
        }
        Ok(count)
    }

    /// Stops the resumer and every saga task where it stands (as a crash
    /// would; the store keeps their progress), then gives up this instance's
    /// claims so another instance can take the sagas over at once.
    pub async fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        if let Some(r) = self.resumer.lock().take() {
            r.abort();
        }
        let ids: Vec<OrderId> = {
            let mut running = self.running.lock();
            for r in running.values() {
                r.abort.abort();
            }
            running.drain().map(|(id, _)| id).collect()
        };
        if let Err(e) = self.store.unclaim(&ids, self.owner).await {
            tracing::warn!(error = %e, "giving up saga claims failed; they run out with their lease");
        }
    }

    /// Asks to cancel a pending order and waits (at most `cancel_wait_ms`)
    /// for its saga to undo what it did.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    pub async fn cancel(self: &Arc<Self>, order_id: OrderId) -> Result<CancelOutcome, StoreError> {
        let mut finished = self.finished.subscribe();
        if !self
            .store
            .request_cancel(order_id, self.clock.now_ms())
            .await?
        {
            return Ok(match self.store.get(order_id).await? {
                Some(r) => CancelOutcome::NotPending(Box::new(r)),
                None => CancelOutcome::NotFound,
            });
        }
        self.start(order_id);
        let wait = async {
            loop {
                match finished.recv().await {
                    Ok(id) if id == order_id => break,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Ok(Some(r)) = self.store.get(order_id).await {
                            if r.order.status.is_final() {
                                break;
                            }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        };
        let done =
            tokio::time::timeout(Duration::from_millis(self.config.cancel_wait_ms), wait).await;
        let record = self.store.get(order_id).await?;
        Ok(match (record, done) {
            (None, _) => CancelOutcome::NotFound,
            (Some(r), _) if r.order.status.is_final() => CancelOutcome::Finished(Box::new(r)),
            (Some(r), _) => CancelOutcome::Accepted(Box::new(r)),
        })
    }

    async fn drive(self: &Arc<Self>, order_id: OrderId, wake: &Notify) {
        let park = Duration::from_millis(self.config.park_interval_ms.max(1));
        let lease_ms = i64::try_from(self.config.lease_ms).unwrap_or(i64::MAX);
        loop {
            let claimed = self
                .store
                .claim(order_id, self.owner, self.clock.now_ms(), lease_ms)
                .await;
            let next = match claimed {
                Ok(true) => self.load_and_step(order_id).await,
                Ok(false) => {
                    // Another instance runs this saga; the resumer tries again
                    // after its lease runs out.
                    tracing::debug!(%order_id, "saga claimed by another instance");
                    return;
                }
                Err(e) => {
                    tracing::warn!(%order_id, error = %e, "saga cannot claim its order");
                    Next::Park
                }
            };
            match next {
                Next::Continue => {}
                Next::Finished => break,
                Next::Stop => return,
                Next::Park => {
                    tokio::select! {
                        () = tokio::time::sleep(park) => {}
                        () = wake.notified() => {}
                    }
                }
            }
        }
        let _ = self.finished.send(order_id);
    }

    async fn load_and_step(&self, order_id: OrderId) -> Next {
        match self.store.get(order_id).await {
            Ok(Some(record)) => self.step(record).await,
            Ok(None) => Next::Finished,
            Err(e) => {
                tracing::warn!(%order_id, error = %e, "saga cannot load its order");
                Next::Park
            }
        }
    }
}
