//! The engine's side of a saga step: build the [`View`], ask the pure
//! [`machine`](crate::saga::machine) what to do, perform it (calls through
//! bounded retry bursts, the claim renewed first), fold the outcome back
//! and save.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use uuid::Uuid;

use super::{Next, SagaEngine};
use crate::domain::{CancelReason, Order, OrderId, OrderStatus};
use crate::inventory::{InventoryError, ReservedLine};
use crate::metrics::{FinishLabels, StepLabels};
use crate::payment::{ChargeRequest, PaymentError};
use crate::saga::machine::{self, Call, Decision, Outcome, View};
use crate::saga::state::{SagaState, SagaStep};
use crate::store::{OrderRecord, PaymentRecord, RefundRecord, StoreError};

impl SagaEngine {
    pub(super) async fn step(&self, record: OrderRecord) -> Next {
        if record.order.status.is_final() {
            return Next::Finished;
        }
        let view = self.view(&record);
        let mut saga = record.saga;
        let order = &record.order;
        let result = match machine::decide(&saga, &view) {
            Decision::Done => Ok(Next::Finished),
            Decision::Wait => Ok(Next::Park),
            Decision::Become(next) => {
                if next.step != saga.step {
                    tracing::info!(order_id = %saga.order_id, from = saga.step.name(), to = next.step.name(), "saga moves on");
                }
                Ok(self.save(&next).await)
            }
            Decision::Finish(status) => self.finish(&mut saga, order, status).await,
            Decision::Call(call) => self.perform(&mut saga, order, view, call).await,
        };
        result.unwrap_or_else(|e| Self::store_failed(saga.order_id, &e))
    }

    /// What the saga sees now besides its state.
    fn view(&self, record: &OrderRecord) -> View {
        let pending_deadline_ms =
            i64::try_from(self.config.pending_deadline_ms).unwrap_or(i64::MAX);
        View {
            now_ms: self.clock.now_ms(),
            cancel_requested: record.cancel_requested,
            lost: record
                .holds
                .iter()
                .filter(|h| h.status.is_lost())
                .map(|h| h.reservation_id)
                .collect(),
            reserve_attempts_max: self.config.reserve_attempts_max,
            give_up_ms: record.saga.deadline_ms.saturating_add(pending_deadline_ms),
            payment_settle_ms: i64::try_from(self.config.payment_settle_ms).unwrap_or(i64::MAX),
        }
    }

    /// Makes `call` (the claim renewed first), folds its outcome into the
    /// saga, records a payment or refund it brought, and saves.
    async fn perform(
        &self,
        saga: &mut SagaState,
        order: &Order,
        view: View,
        call: Call,
    ) -> Result<Next, StoreError> {
        self.still_mine(saga.order_id).await?;
        if machine::prepare(saga, &call, self.clock.now_ms()) {
            self.save_fenced(saga).await?;
        }
        let outcome = self.call(saga, order, &call).await;
        let view = View {
            now_ms: self.clock.now_ms(),
            ..view
        };
        let applied = machine::apply(saga, &view, &call, outcome);
        if let Some(payment_id) = applied.record_payment {
            self.store
                .record_payment(&PaymentRecord {
                    order_id: saga.order_id,
                    payment_id,
                    amount_minor: order.total_minor,
                    currency: order.currency.clone(),
                    at_ms: self.clock.now_ms(),
                })
                .await?;
        }
        if let (Some(refund_id), Some(payment_id)) = (applied.record_refund, &saga.payment_id) {
            self.store
                .record_refund(&RefundRecord {
                    order_id: saga.order_id,
                    refund_id,
                    payment_id: payment_id.clone(),
                    amount_minor: order.total_minor,
                    at_ms: self.clock.now_ms(),
                })
                .await?;
        }
        if applied.save {
            self.save_fenced(saga).await?;
        }
        Ok(if applied.wait {
            Next::Park
        } else {
            Next::Continue
        })
    }

    /// Makes one call, through a retry burst.
    async fn call(&self, saga: &SagaState, order: &Order, call: &Call) -> Outcome {
        let correlation = Self::correlation(saga);
        let order_id = saga.order_id;
        let paying = |e: &PaymentError| matches!(e, PaymentError::Transient(_));
        let outcome = match call {
            Call::Reserve(lines) | Call::LearnHolds(lines) => {
                Outcome::Reserved(self.reserve_call(saga, lines).await)
            }
            Call::Charge => {
                let request = ChargeRequest {
                    order_id,
                    amount_minor: order.total_minor,
                    currency: order.currency.clone(),
                };
                let charge = || self.payments.charge(request.clone());
                Outcome::Charged(self.burst("pay", charge, paying).await)
            }
            Call::Confirm(rid) => {
                let confirm = || self.inventory.confirm(*rid, &correlation);
                Outcome::Done(
                    self.burst("confirm", confirm, InventoryError::is_transient)
                        .await,
                )
            }
            Call::Release(rid) => {
                let release = || self.inventory.release(*rid, &correlation);
                Outcome::Done(
                    self.burst("release", release, InventoryError::is_transient)
                        .await,
                )
            }
            Call::ReadHold(rid) => {
                let read = || self.inventory.reservation_status(*rid, &correlation);
                Outcome::Hold(
                    self.burst("reservation", read, InventoryError::is_transient)
                        .await,
                )
            }
            Call::LookupCharge => {
                let lookup = || self.payments.charge_of(order_id);
                Outcome::Lookup(self.burst("charge_lookup", lookup, paying).await)
            }
            Call::Refund(payment_id) => {
                let refund = || {
                    self.payments
                        .refund(order_id, payment_id.clone(), order.total_minor)
                };
                Outcome::Refunded(self.burst("refund", refund, paying).await)
            }
            Call::Restock {
                product,
                units,
                key,
                ..
            } => {
                let restock = || self.inventory.restock(*product, *units, key, &correlation);
                Outcome::Done(
                    self.burst("restock", restock, InventoryError::is_transient)
                        .await,
                )
            }
        };
        log_outcome(order_id, call, &outcome);
        outcome
    }

    /// What a failed store call leaves the loop to do: stop when another
    /// instance took the saga over, else wait and try again.
    fn store_failed(order_id: OrderId, e: &StoreError) -> Next {
        if let StoreError::LeaseLost(_) = e {
            tracing::info!(%order_id, "saga taken over by another instance; this task stops");
            return Next::Stop;
        }
        tracing::warn!(%order_id, error = %e, "saga step failed on the store");
        Next::Park
    }

    async fn save(&self, saga: &SagaState) -> Next {
        match self.save_fenced(saga).await {
            Ok(()) => Next::Continue,
            Err(e) => Self::store_failed(saga.order_id, &e),
        }
    }

    /// Renews this instance's claim before a call to another service, so a
    /// step that runs long never calls on after another instance took over.
    ///
    /// # Errors
    /// [`StoreError::LeaseLost`] when the claim is another's now.
    async fn still_mine(&self, order_id: OrderId) -> Result<(), StoreError> {
        let lease_ms = i64::try_from(self.config.lease_ms).unwrap_or(i64::MAX);
        let now_ms = self.clock.now_ms();
        if self
            .store
            .claim(order_id, self.owner, now_ms, lease_ms)
            .await?
        {
            return Ok(());
        }
        Err(StoreError::LeaseLost(order_id))
    }

    /// Saves progress as this instance, the claim's holder.
    async fn save_fenced(&self, saga: &SagaState) -> Result<(), StoreError> {
        self.store
            .save_saga(saga, self.owner, self.clock.now_ms())
            .await
    }

    /// The request id of the request that placed the order (orders saved
    /// before it was recorded fall back to the order id).
    fn correlation(saga: &SagaState) -> String {
        saga.request_id
            .clone()
            .unwrap_or_else(|| format!("order-{}", saga.order_id))
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

    /// One reserve burst of `lines` under the saga's inventory order id.
    async fn reserve_call(
        &self,
        saga: &SagaState,
        lines: &[(Uuid, u32)],
    ) -> Result<Vec<ReservedLine>, InventoryError> {
        let correlation = Self::correlation(saga);
        let (inventory_order_id, ttl) =
            (saga.inventory_order_id, self.config.reservation_ttl_seconds);
        self.burst(
            "reserve",
            || {
                self.inventory
                    .reserve(inventory_order_id, lines, ttl, &correlation)
            },
            InventoryError::is_transient,
        )
        .await
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
        if self
            .store
            .finish(saga, self.owner, status, now_ms, &event)
            .await?
        {
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

/// Logs what an operator wants to know of a call's outcome.
fn log_outcome(order_id: OrderId, call: &Call, outcome: &Outcome) {
    match (call, outcome) {
        (Call::Confirm(rid), Outcome::Done(Err(e))) if e.is_transient() => {
            tracing::info!(%order_id, reservation_id = %rid, error = %e, "confirm outcome unknown, order waits");
        }
        (Call::Confirm(rid), Outcome::Done(Err(e))) => {
            tracing::info!(%order_id, reservation_id = %rid, error = %e, "confirm refused, hold is gone");
        }
        (Call::Release(rid), Outcome::Done(Err(e))) if !e.is_transient() => {
            tracing::warn!(%order_id, reservation_id = %rid, error = %e, "release refused; reading the hold");
        }
        (Call::ReadHold(rid), Outcome::Hold(Ok(status))) => {
            tracing::info!(%order_id, reservation_id = %rid, status = status.as_str(), "hold read after a refused release");
        }
        (Call::Restock { reservation, .. }, Outcome::Done(Err(e))) if !e.is_transient() => {
            tracing::error!(%order_id, reservation_id = %reservation, error = %e, "inventory refused to take back the units of a cancelled order");
        }
        (Call::LookupCharge, Outcome::Lookup(Ok(Some(payment_id)))) => {
            tracing::warn!(%order_id, %payment_id, "found a charge the saga had not recorded");
        }
        (Call::Reserve(_) | Call::Charge | Call::Refund(_) | Call::LookupCharge, _) => {
            tracing::debug!(%order_id, ?outcome, "saga call answered");
        }
        _ => {}
    }
}
