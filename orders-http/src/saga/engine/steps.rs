//! The saga's steps: reserve, pay, confirm, compensate, each running its
//! calls through bounded retry bursts and saving progress before the next
//! step relies on it.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use uuid::Uuid;

use super::{Next, SagaEngine};
use crate::domain::{CancelReason, Order, OrderStatus};
use crate::inventory::InventoryError;
use crate::metrics::{FinishLabels, StepLabels};
use crate::payment::{ChargeRequest, PaymentError};
use crate::saga::state::{SagaState, SagaStep};
use crate::store::{OrderRecord, PaymentRecord, RefundRecord, StoreError};

impl SagaEngine {
    pub(super) async fn step(&self, record: OrderRecord) -> Next {
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
        let lost = matches!(saga.step, SagaStep::Pay | SagaStep::Confirm)
            && record
                .holds
                .iter()
                .any(|h| h.status.is_lost() && saga.held_unconfirmed().contains(&h.reservation_id));
        if lost {
            tracing::info!(order_id = %saga.order_id, "inventory reports a hold of this order gone");
            return self
                .hold_lost(&mut saga)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(order_id = %saga.order_id, error = %e, "saga step failed on the store");
                    Next::Park
                });
        }
        let result = match saga.step {
            SagaStep::Reserve => self.reserve(&mut saga).await,
            SagaStep::Pay => {
                self.pay(&mut saga, order.total_minor, &order.currency)
                    .await
            }
            SagaStep::Confirm => self.confirm(&mut saga, order).await,
            SagaStep::Compensate { reason } => self.compensate(&mut saga, reason, order).await,
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

    /// The request id of the request that placed the order (orders saved
    /// before it was recorded fall back to the order id).
    fn correlation(saga: &SagaState) -> String {
        saga.request_id
            .clone()
            .unwrap_or_else(|| format!("order-{}", saga.order_id))
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

    async fn confirm(&self, saga: &mut SagaState, order: &Order) -> Result<Next, StoreError> {
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
            return self.finish(saga, order, OrderStatus::Confirmed).await;
        }
        self.hold_lost(saga).await
    }

    /// The expired-hold policy, for a saga that lost a hold it relied on
    /// (confirm refused, or inventory's events reported it expired or
    /// released): give back the rest of the attempt's holds, then reserve
    /// again under a fresh inventory order id while attempts remain, else
    /// undo (refunding any payment) as `reservation_expired`.
    async fn hold_lost(&self, saga: &mut SagaState) -> Result<Next, StoreError> {
        let correlation = Self::correlation(saga);
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
        order: &Order,
    ) -> Result<Next, StoreError> {
        // Money first: a refund needs only the payment provider, so an
        // inventory outage never delays it.
        if let Some(next) = self.refund(saga, order.total_minor).await? {
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
        self.finish(saga, order, OrderStatus::Cancelled(reason))
            .await
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

    async fn finish(
        &self,
        saga: &mut SagaState,
        order: &Order,
        status: OrderStatus,
    ) -> Result<Next, StoreError> {
        saga.step = SagaStep::Done;
        let now_ms = self.clock.now_ms();
        let correlation = Self::correlation(saga);
        let Some(event) = crate::events::finished(order, status, Some(&correlation), now_ms) else {
            return Ok(Next::Park);
        };
        if self.store.finish(saga, status, now_ms, &event).await? {
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
