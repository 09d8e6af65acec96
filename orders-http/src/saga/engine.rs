//! Runs sagas: one tokio task per pending order, a resumer that picks up
//! unfinished sagas from the store (at start and periodically), bounded retries
//! with exponential backoff and jitter for transient failures, and a pending
//! deadline after which an order that still cannot reach inventory is
//! cancelled `inventory_unavailable`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use parking_lot::Mutex;
use tokio::sync::{broadcast, Notify};
use tokio::task::AbortHandle;
use uuid::Uuid;

use super::state::{SagaState, SagaStep};
use crate::clock::Clock;
use crate::domain::{CancelReason, OrderId, OrderStatus};
use crate::inventory::{InventoryApi, InventoryError};
use crate::metrics::{FinishLabels, OrderMetrics, StepLabels};
use crate::payment::{ChargeRequest, PaymentError, PaymentProvider};
use crate::store::{OrderRecord, OrderStore, PaymentRecord, RefundRecord, StoreError};

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
pub const CANCEL_WAIT_MS_DEFAULT: u64 = 5_000;

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
    /// `resume_interval_ms`, until [`SagaEngine::stop`].
    pub fn spawn_resumer(self: &Arc<Self>) {
        let engine = Arc::clone(self);
        let interval = Duration::from_millis(self.config.resume_interval_ms.max(1));
        let handle = tokio::spawn(async move {
            loop {
                if let Err(e) = engine.resume_all().await {
                    tracing::warn!(error = %e, "resuming pending orders failed");
                }
                tokio::time::sleep(interval).await;
            }
        });
        *self.resumer.lock() = Some(handle.abort_handle());
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

    async fn step(&self, record: OrderRecord) -> Next {
        if record.order.status.is_final() {
            return Next::Finished;
        }
        let mut saga = record.saga;
        let cancellable = match saga.step {
            SagaStep::Reserve | SagaStep::Pay => true,
            SagaStep::Confirm => saga.lines.iter().all(|l| !l.confirmed),
            _ => false,
        };
        if record.cancel_requested && cancellable {
            saga.step = SagaStep::Compensate {
                reason: CancelReason::CancelledByUser,
            };
            return self.save(&saga).await;
        }
        let order = &record.order;
        let result = match saga.step {
            SagaStep::Reserve => self.reserve(&mut saga).await,
            SagaStep::Pay => {
                self.pay(&mut saga, order.total_minor, &order.currency)
                    .await
            }
            SagaStep::Confirm => self.confirm(&mut saga).await,
            SagaStep::Compensate { reason } => {
                self.compensate(&mut saga, reason, order.total_minor).await
            }
            SagaStep::Done => Ok(Next::Finished),
        };
        result.unwrap_or_else(|e| {
            tracing::warn!(order_id = %saga.order_id, error = %e, "saga step failed on the store");
            Next::Park
        })
    }

    async fn save(&self, saga: &SagaState) -> Next {
        match self.store.save_saga(saga, self.clock.now_ms()).await {
            Ok(()) => Next::Continue,
            Err(e) => {
                tracing::warn!(order_id = %saga.order_id, error = %e, "saving saga progress failed");
                Next::Park
            }
        }
    }

    fn correlation(saga: &SagaState) -> String {
        format!("order-{}", saga.order_id)
    }

    fn past_deadline(&self, saga: &SagaState) -> bool {
        self.clock.now_ms() >= saga.deadline_ms
    }

    /// Runs `call` with bounded retries (exponential backoff with jitter) while
    /// `transient` says the failure may pass.
    async fn burst<T, E, F, Fut>(
        &self,
        step: &'static str,
        call: F,
        transient: fn(&E) -> bool,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let policy = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.config.retry_delay_min_ms))
            .with_max_delay(Duration::from_millis(self.config.retry_delay_max_ms))
            .with_max_times(self.config.retries_max)
            .with_total_delay(Some(Duration::from_millis(self.config.retry_total_ms)))
            .with_jitter();
        let retries = self
            .metrics
            .saga_retries
            .get_or_create(&StepLabels { step })
            .clone();
        call.retry(policy)
            .sleep(tokio::time::sleep)
            .when(transient)
            .notify(move |_, _| {
                retries.inc();
            })
            .await
    }

    async fn reserve(&self, saga: &mut SagaState) -> Result<Next, StoreError> {
        let lines: Vec<(Uuid, u32)> = saga
            .lines
            .iter()
            .filter(|l| !l.confirmed)
            .map(|l| (l.product_id.as_uuid(), l.quantity))
            .collect();
        let correlation = Self::correlation(saga);
        let (inventory_order_id, ttl) =
            (saga.inventory_order_id, self.config.reservation_ttl_seconds);
        let result = self
            .burst(
                "reserve",
                || {
                    self.inventory
                        .reserve(inventory_order_id, &lines, ttl, &correlation)
                },
                InventoryError::is_transient,
            )
            .await;
        let paid = saga.payment_id.is_some();
        match result {
            Ok(reserved) => {
                for line in saga.lines.iter_mut().filter(|l| !l.confirmed) {
                    let held = reserved
                        .iter()
                        .find(|r| r.product_id == line.product_id.as_uuid());
                    line.reservation_id = held.map(|r| r.reservation_id);
                }
                if saga
                    .lines
                    .iter()
                    .any(|l| !l.confirmed && l.reservation_id.is_none())
                {
                    tracing::error!(order_id = %saga.order_id, "inventory held fewer lines than asked");
                    saga.step = SagaStep::Compensate {
                        reason: CancelReason::OutOfStock,
                    };
                } else {
                    saga.step = if paid {
                        SagaStep::Confirm
                    } else {
                        SagaStep::Pay
                    };
                }
            }
            Err(e) if e.is_transient() => {
                if !self.past_deadline(saga) {
                    tracing::info!(order_id = %saga.order_id, error = %e, "inventory unavailable, order waits");
                    return Ok(Next::Park);
                }
                saga.step = SagaStep::Compensate {
                    reason: CancelReason::InventoryUnavailable,
                };
            }
            Err(e) => {
                tracing::info!(order_id = %saga.order_id, error = %e, "reservation refused");
                let reason = if paid {
                    CancelReason::ReservationExpired
                } else {
                    CancelReason::OutOfStock
                };
                saga.step = SagaStep::Compensate { reason };
            }
        }
        Ok(self.save(saga).await)
    }

    async fn pay(
        &self,
        saga: &mut SagaState,
        amount_minor: i64,
        currency: &str,
    ) -> Result<Next, StoreError> {
        let request = ChargeRequest {
            order_id: saga.order_id,
            amount_minor,
            currency: currency.to_owned(),
        };
        let result = self
            .burst(
                "pay",
                || self.payments.charge(request.clone()),
                |e| matches!(e, PaymentError::Transient(_)),
            )
            .await;
        match result {
            Ok(payment_id) => {
                self.store
                    .record_payment(&PaymentRecord {
                        order_id: saga.order_id,
                        payment_id: payment_id.clone(),
                        amount_minor,
                        currency: currency.to_owned(),
                        at_ms: self.clock.now_ms(),
                    })
                    .await?;
                saga.payment_id = Some(payment_id);
                saga.step = SagaStep::Confirm;
            }
            Err(PaymentError::Declined) => {
                saga.step = SagaStep::Compensate {
                    reason: CancelReason::PaymentDeclined,
                };
            }
            Err(PaymentError::FraudSuspected) => {
                saga.step = SagaStep::Compensate {
                    reason: CancelReason::FraudSuspected,
                };
            }
            Err(PaymentError::Transient(e)) => {
                if !self.past_deadline(saga) {
                    tracing::info!(order_id = %saga.order_id, error = %e, "payment provider failing, order waits");
                    return Ok(Next::Park);
                }
                saga.step = SagaStep::Compensate {
                    reason: CancelReason::PaymentDeclined,
                };
            }
        }
        Ok(self.save(saga).await)
    }

    async fn confirm(&self, saga: &mut SagaState) -> Result<Next, StoreError> {
        let correlation = Self::correlation(saga);
        let mut expired = false;
        for i in 0..saga.lines.len() {
            let line = &saga.lines[i];
            let Some(reservation_id) = line.reservation_id.filter(|_| !line.confirmed) else {
                continue;
            };
            let result = self
                .burst(
                    "confirm",
                    || self.inventory.confirm(reservation_id, &correlation),
                    InventoryError::is_transient,
                )
                .await;
            match result {
                Ok(()) => saga.lines[i].confirmed = true,
                Err(e) if e.is_transient() => {
                    if self.past_deadline(saga) {
                        saga.step = SagaStep::Compensate {
                            reason: CancelReason::InventoryUnavailable,
                        };
                        return Ok(self.save(saga).await);
                    }
                    let _ = self.save(saga).await;
                    return Ok(Next::Park);
                }
                Err(e) => {
                    tracing::info!(order_id = %saga.order_id, error = %e, "confirm refused, hold is gone");
                    expired = true;
                    break;
                }
            }
        }
        if !expired {
            return self.finish(saga, OrderStatus::Confirmed).await;
        }
        for rid in saga.held_unconfirmed() {
            // Best effort: a hold that did not expire yet is given back now
            // rather than at its TTL.
            let _ = self.inventory.release(rid, &correlation).await;
        }
        if saga.reserve_attempts < self.config.reserve_attempts_max {
            saga.reserve_attempts += 1;
            saga.inventory_order_id = Uuid::new_v4();
            for line in saga.lines.iter_mut().filter(|l| !l.confirmed) {
                line.reservation_id = None;
            }
            saga.step = SagaStep::Reserve;
        } else {
            saga.step = SagaStep::Compensate {
                reason: CancelReason::ReservationExpired,
            };
        }
        Ok(self.save(saga).await)
    }

    async fn compensate(
        &self,
        saga: &mut SagaState,
        reason: CancelReason,
        amount_minor: i64,
    ) -> Result<Next, StoreError> {
        // Money first: a refund needs only the payment provider, so an
        // inventory outage never delays it.
        if let Some(next) = self.refund(saga, amount_minor).await? {
            return Ok(next);
        }
        let correlation = Self::correlation(saga);
        let give_up_ms = saga
            .deadline_ms
            .saturating_add(i64::try_from(self.config.pending_deadline_ms).unwrap_or(i64::MAX));
        for rid in saga.held_unconfirmed() {
            let result = self
                .burst(
                    "release",
                    || self.inventory.release(rid, &correlation),
                    InventoryError::is_transient,
                )
                .await;
            if let Err(e) = result {
                if e.is_transient() && self.clock.now_ms() < give_up_ms {
                    return Ok(Next::Park);
                }
                tracing::warn!(order_id = %saga.order_id, reservation_id = %rid, error = %e, "release failed; the hold ends at its ttl");
            }
        }
        self.finish(saga, OrderStatus::Cancelled(reason)).await
    }

    /// Refunds the payment of a saga being undone, if one was taken and not
    /// refunded yet, and records the refund. `Some(Park)` when the provider
    /// failed and the refund must be tried again later.
    async fn refund(
        &self,
        saga: &mut SagaState,
        amount_minor: i64,
    ) -> Result<Option<Next>, StoreError> {
        let (Some(payment_id), None) = (saga.payment_id.clone(), saga.refund_id.as_ref()) else {
            return Ok(None);
        };
        let result = self
            .burst(
                "refund",
                || {
                    self.payments
                        .refund(saga.order_id, payment_id.clone(), amount_minor)
                },
                |e| matches!(e, PaymentError::Transient(_)),
            )
            .await;
        match result {
            Ok(refund_id) => {
                self.store
                    .record_refund(&RefundRecord {
                        order_id: saga.order_id,
                        refund_id: refund_id.clone(),
                        payment_id,
                        amount_minor,
                        at_ms: self.clock.now_ms(),
                    })
                    .await?;
                saga.refund_id = Some(refund_id);
                self.store.save_saga(saga, self.clock.now_ms()).await?;
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(order_id = %saga.order_id, error = %e, "refund failed, will retry");
                Ok(Some(Next::Park))
            }
        }
    }

    async fn finish(&self, saga: &mut SagaState, status: OrderStatus) -> Result<Next, StoreError> {
        saga.step = SagaStep::Done;
        if self.store.finish(saga, status, self.clock.now_ms()).await? {
            let labels = FinishLabels {
                status: status.as_str(),
                reason: status.reason().map_or("none", CancelReason::as_str),
            };
            self.metrics.orders_finished.get_or_create(&labels).inc();
            tracing::info!(order_id = %saga.order_id, status = status.as_str(), reason = labels.reason, "order finished");
        }
        Ok(Next::Finished)
    }
}
