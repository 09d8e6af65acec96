//! The saga's steps: reserve, pay, confirm, compensate, each running its
//! calls through bounded retry bursts and saving progress before the next
//! step relies on it.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use uuid::Uuid;

use super::{Next, SagaEngine, PAYMENT_SETTLE_MS};
use crate::domain::{CancelReason, Order, OrderId, OrderStatus};
use crate::inventory::{InventoryError, ReservedLine};
use crate::metrics::{FinishLabels, StepLabels};
use crate::payment::{ChargeRequest, PaymentError};
use crate::saga::state::{SagaState, SagaStep};
use crate::store::{HoldStatus, OrderRecord, PaymentRecord, RefundRecord, StoreError};

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
                .unwrap_or_else(|e| Self::store_failed(saga.order_id, &e));
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
        result.unwrap_or_else(|e| Self::store_failed(saga.order_id, &e))
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

    async fn reserve(&self, saga: &mut SagaState) -> Result<Next, StoreError> {
        let lines: Vec<(Uuid, u32)> = saga
            .lines
            .iter()
            .filter(|l| !l.confirmed)
            .map(|l| (l.product_id.as_uuid(), l.quantity))
            .collect();
        let result = self.reserve_call(saga, &lines).await;
        let paid = saga.payment_id.is_some();
        match result {
            Ok(reserved) => {
                saga.reserve_settled = true;
                saga.hold(&reserved);
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
                    saga.enter(if paid {
                        SagaStep::Confirm
                    } else {
                        SagaStep::Pay
                    });
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
                // All or nothing: a refused reserve holds nothing.
                saga.reserve_settled = true;
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
        // Saved before the charge is sent: an undo waits at least
        // PAYMENT_SETTLE_MS from here before it believes nothing was charged.
        saga.charge_sent_ms = Some(self.clock.now_ms());
        self.save_fenced(saga).await?;
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
                saga.enter(SagaStep::Confirm);
            }
            Err(refused @ (PaymentError::Declined | PaymentError::FraudSuspected)) => {
                // A definite refusal (repeated for the order, never a
                // charge): no money is held, nothing to look up on undo.
                saga.charge_attempted = false;
                saga.charge_sent_ms = None;
                let reason = if refused == PaymentError::Declined {
                    CancelReason::PaymentDeclined
                } else {
                    CancelReason::FraudSuspected
                };
                saga.step = SagaStep::Compensate { reason };
            }
            Err(PaymentError::Transient(e)) => {
                // A charge sent in the burst may still be completing: the
                // settle window runs from the burst's end.
                saga.charge_sent_ms = Some(self.clock.now_ms());
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
            self.still_mine(saga.order_id).await?;
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
                    // The confirm may have been made: only inventory's answer
                    // settles it, so the saga asks again (confirms are
                    // idempotent) however long that takes. The deadline does
                    // not cancel a paid order whose holds may still be valid.
                    tracing::info!(order_id = %saga.order_id, error = %e, "confirm outcome unknown, order waits");
                    return Ok(match self.save(saga).await {
                        Next::Stop => Next::Stop,
                        _ => Next::Park,
                    });
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
        // Every other hold of the attempt is settled first: given back now
        // rather than at its TTL, or found sold (a confirm whose answer was
        // lost), so a line is never reserved again after it was sold.
        if let Some(next) = self.settle_holds(saga, None).await? {
            return Ok(next);
        }
        if saga.lines.iter().all(|l| l.confirmed) {
            // Every line turned out sold: nothing is left to hold.
            saga.step = SagaStep::Confirm;
            return Ok(self.save(saga).await);
        }
        if saga.reserve_attempts < self.config.reserve_attempts_max {
            saga.next_reserve_attempt();
        } else {
            saga.step = SagaStep::Compensate {
                reason: CancelReason::ReservationExpired,
            };
        }
        Ok(self.save(saga).await)
    }

    /// Undoes an order: money first (a refund needs only the payment
    /// provider, so an inventory outage never delays it), then inventory:
    /// learn what a lost reserve answer held, give back every hold (or find
    /// it sold), return the units of sold lines to stock, then cancel.
    async fn compensate(
        &self,
        saga: &mut SagaState,
        reason: CancelReason,
        order: &Order,
    ) -> Result<Next, StoreError> {
        if let Some(next) = self.recover_charge(saga, order).await? {
            return Ok(next);
        }
        if let Some(next) = self.refund(saga, order.total_minor).await? {
            return Ok(next);
        }
        let give_up_ms = saga
            .deadline_ms
            .saturating_add(i64::try_from(self.config.pending_deadline_ms).unwrap_or(i64::MAX));
        self.learn_holds(saga).await?;
        if let Some(next) = self.settle_holds(saga, Some(give_up_ms)).await? {
            return Ok(next);
        }
        if let Some(next) = self.return_sold(saga).await? {
            return Ok(next);
        }
        self.finish(saga, order, OrderStatus::Cancelled(reason))
            .await
    }

    /// A charge may have been made but its payment id was never saved (lost
    /// answer, crash, failed save): asks the provider, and records what it
    /// charged so the refund that follows sees it. `Some(Park)` while the
    /// provider cannot tell: an order is never cancelled while money for it
    /// may be held.
    async fn recover_charge(
        &self,
        saga: &mut SagaState,
        order: &Order,
    ) -> Result<Option<Next>, StoreError> {
        if saga.payment_id.is_some() || !saga.charge_attempted {
            return Ok(None);
        }
        let order_id = saga.order_id;
        self.still_mine(order_id).await?;
        let result = self
            .burst(
                "charge_lookup",
                || self.payments.charge_of(order_id),
                |e| matches!(e, PaymentError::Transient(_)),
            )
            .await;
        match result {
            Ok(None) => {
                let settled_ms = saga
                    .charge_sent_ms
                    .map_or(i64::MIN, |sent| sent.saturating_add(PAYMENT_SETTLE_MS));
                if self.clock.now_ms() < settled_ms {
                    tracing::info!(%order_id, "no charge found yet; a charge sent lately may still land");
                    return Ok(Some(Next::Park));
                }
                Ok(None)
            }
            Ok(Some(payment_id)) => {
                tracing::warn!(%order_id, %payment_id, "found a charge the saga had not recorded");
                self.store
                    .record_payment(&PaymentRecord {
                        order_id,
                        payment_id: payment_id.clone(),
                        amount_minor: order.total_minor,
                        currency: order.currency.clone(),
                        at_ms: self.clock.now_ms(),
                    })
                    .await?;
                saga.payment_id = Some(payment_id);
                self.save_fenced(saga).await?;
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(%order_id, error = %e, "cannot learn whether the order was charged, will ask again");
                Ok(Some(Next::Park))
            }
        }
    }

    /// A reserve whose answer was lost may have held stock under ids the saga
    /// never saw: the same (idempotent) reserve again returns them. With
    /// inventory unreachable, the holds (if any) are left to end at their
    /// TTL rather than keep the customer's cancel waiting: no confirm was
    /// sent for them, so nothing can sell them.
    async fn learn_holds(&self, saga: &mut SagaState) -> Result<(), StoreError> {
        let lines = saga.unknown_lines();
        if saga.reserve_settled || lines.is_empty() {
            return Ok(());
        }
        let result = self.reserve_call(saga, &lines).await;
        match result {
            Ok(reserved) => saga.hold(&reserved),
            Err(e) if e.is_transient() => {
                tracing::warn!(order_id = %saga.order_id, error = %e, "cannot learn the holds of a lost reserve; they end at their ttl");
            }
            Err(_) => {}
        }
        saga.reserve_settled = true;
        self.save_fenced(saga).await
    }

    /// Gives back every held, unconfirmed line, or finds it sold (marking it
    /// confirmed). `Some(Park)` while inventory cannot be reached; with
    /// `give_up_ms`, past it, holds no confirm was ever sent for are left to
    /// their TTL, but a hold that may have been confirmed never is.
    async fn settle_holds(
        &self,
        saga: &mut SagaState,
        give_up_ms: Option<i64>,
    ) -> Result<Option<Next>, StoreError> {
        let correlation = Self::correlation(saga);
        let mut found_sold = false;
        for i in 0..saga.lines.len() {
            let line = &saga.lines[i];
            let Some(rid) = line.reservation_id.filter(|_| !line.confirmed) else {
                continue;
            };
            self.still_mine(saga.order_id).await?;
            match self.settle_hold(rid, &correlation).await {
                Ok(sold) => {
                    saga.lines[i].confirmed |= sold;
                    found_sold |= sold;
                }
                Err(e) => {
                    let may_wait = !saga.confirm_attempted
                        && give_up_ms.is_some_and(|g| self.clock.now_ms() >= g);
                    if may_wait {
                        tracing::warn!(order_id = %saga.order_id, reservation_id = %rid, error = %e, "release failed; the hold ends at its ttl");
                        continue;
                    }
                    if found_sold {
                        self.save_fenced(saga).await?;
                    }
                    return Ok(Some(Next::Park));
                }
            }
        }
        if found_sold {
            self.save_fenced(saga).await?;
        }
        Ok(None)
    }

    /// Releases one hold. A refused release is never taken as given back:
    /// inventory is asked where the reservation stands. `Ok(true)` when it
    /// was sold (confirmed), `Ok(false)` when it no longer holds stock.
    ///
    /// # Errors
    /// The call's error while inventory cannot say.
    async fn settle_hold(&self, rid: Uuid, correlation: &str) -> Result<bool, InventoryError> {
        let released = self
            .burst(
                "release",
                || self.inventory.release(rid, correlation),
                InventoryError::is_transient,
            )
            .await;
        match released {
            Ok(()) => return Ok(false),
            Err(e) if e.is_transient() => return Err(e),
            Err(_) => {}
        }
        let status = self
            .burst(
                "reservation",
                || self.inventory.reservation_status(rid, correlation),
                InventoryError::is_transient,
            )
            .await;
        match status {
            Ok(HoldStatus::Confirmed) => {
                tracing::warn!(reservation_id = %rid, "release refused: the hold was sold");
                Ok(true)
            }
            Ok(HoldStatus::Released | HoldStatus::Expired) => Ok(false),
            Err(InventoryError::NotFound(_)) => {
                tracing::error!(reservation_id = %rid, "release refused and inventory no longer knows the reservation");
                Ok(false)
            }
            Ok(HoldStatus::Reserved) => Err(InventoryError::Unavailable(
                "release refused for a hold inventory reports held".into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// Puts the units of every sold line of a cancelled order back on hand,
    /// once per line (the adjustment is keyed by order and reservation).
    /// `Some(Park)` while inventory cannot be reached.
    async fn return_sold(&self, saga: &mut SagaState) -> Result<Option<Next>, StoreError> {
        let correlation = Self::correlation(saga);
        for line in saga.lines.iter().filter(|l| l.confirmed) {
            let Some(rid) = line.reservation_id else {
                continue;
            };
            let key = format!("order-{}-{rid}", saga.order_id);
            let (product, units) = (line.product_id.as_uuid(), line.quantity);
            self.still_mine(saga.order_id).await?;
            let result = self
                .burst(
                    "restock",
                    || self.inventory.restock(product, units, &key, &correlation),
                    InventoryError::is_transient,
                )
                .await;
            match result {
                Ok(()) => {
                    tracing::info!(order_id = %saga.order_id, reservation_id = %rid, units, "sold units of a cancelled order returned to stock");
                }
                Err(e) if e.is_transient() => return Ok(Some(Next::Park)),
                Err(e) => {
                    tracing::error!(order_id = %saga.order_id, reservation_id = %rid, error = %e, "inventory refused to take back the units of a cancelled order");
                }
            }
        }
        Ok(None)
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
        self.still_mine(saga.order_id).await?;
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
                self.save_fenced(saga).await?;
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
