//! Payments: the [`PaymentProvider`] port and [`PaymentSimulator`], the
//! built-in provider with configurable latency, decline rate, transient
//! failures and a fraud limit, reproducible from a seed and idempotent per
//! order.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::domain::OrderId;
use crate::store::BoxFuture;

/// A charge to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeRequest {
    /// The order paid for (the idempotency key of the charge).
    pub order_id: OrderId,
    /// Amount, in minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: String,
}

/// Why a payment call did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The charge was refused; retrying will not help.
    #[error("payment declined")]
    Declined,
    /// The charge was refused as likely fraud; retrying will not help.
    #[error("payment refused as suspected fraud")]
    FraudSuspected,
    /// The provider failed this time; nothing was charged; retry later.
    #[error("payment provider failed: {0}")]
    Transient(String),
}

/// A payment provider. Both calls are idempotent per order: repeating one
/// returns the first outcome and never charges or refunds twice.
pub trait PaymentProvider: Send + Sync + 'static {
    /// Charges an order; returns the payment id.
    ///
    /// # Errors
    /// [`PaymentError`].
    fn charge(&self, request: ChargeRequest) -> BoxFuture<'_, Result<String, PaymentError>>;

    /// What the provider charged for an order: the payment id of its
    /// successful charge, `None` when nothing was charged. Settles a charge
    /// whose answer was lost.
    ///
    /// # Errors
    /// [`PaymentError::Transient`] when the provider cannot tell now.
    fn charge_of(&self, order_id: OrderId) -> BoxFuture<'_, Result<Option<String>, PaymentError>>;

    /// Refunds an order's payment in full; returns the refund id.
    ///
    /// # Errors
    /// [`PaymentError::Transient`] when it should be retried.
    fn refund(
        &self,
        order_id: OrderId,
        payment_id: String,
        amount_minor: i64,
    ) -> BoxFuture<'_, Result<String, PaymentError>>;
}

/// Default fraud limit: orders above 10 000.00 are refused.
pub const FRAUD_LIMIT_MINOR_DEFAULT: i64 = 1_000_000;

/// Settings of the simulator.
#[derive(Clone, Debug, PartialEq)]
pub struct SimulatorConfig {
    /// Time each call takes, in milliseconds.
    pub latency_ms: u64,
    /// Share of orders declined, 0.0 to 1.0 (decided per order from the seed,
    /// so a retry of the same order gets the same answer).
    pub decline_rate: f64,
    /// Share of calls that fail transiently, 0.0 to 1.0.
    pub transient_failure_rate: f64,
    /// Amounts above this (minor units) are refused as fraud.
    pub fraud_limit_minor: i64,
    /// Seed of every random decision.
    pub seed: u64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            decline_rate: 0.0,
            transient_failure_rate: 0.0,
            fraud_limit_minor: FRAUD_LIMIT_MINOR_DEFAULT,
            seed: 0,
        }
    }
}

#[derive(Default)]
struct Ledger {
    charges: HashMap<OrderId, Result<String, PaymentError>>,
    refunds: HashMap<OrderId, String>,
}

/// A payment provider that pretends, deterministically from its seed.
pub struct PaymentSimulator {
    config: SimulatorConfig,
    transient: Mutex<StdRng>,
    ledger: Mutex<Ledger>,
}

impl PaymentSimulator {
    /// A simulator with these settings.
    pub fn new(config: SimulatorConfig) -> Self {
        Self {
            transient: Mutex::new(StdRng::seed_from_u64(config.seed)),
            config,
            ledger: Mutex::new(Ledger::default()),
        }
    }

    /// How many orders were charged successfully.
    pub fn charged(&self) -> usize {
        self.ledger
            .lock()
            .charges
            .values()
            .filter(|c| c.is_ok())
            .count()
    }

    /// How many orders were refunded.
    pub fn refunded(&self) -> usize {
        self.ledger.lock().refunds.len()
    }

    /// Whether `order_id` was refunded.
    pub fn refunded_order(&self, order_id: OrderId) -> bool {
        self.ledger.lock().refunds.contains_key(&order_id)
    }

    fn decide(&self, request: &ChargeRequest) -> Result<String, PaymentError> {
        if request.amount_minor > self.config.fraud_limit_minor {
            return Err(PaymentError::FraudSuspected);
        }
        let (hi, lo) = request.order_id.as_uuid().as_u64_pair();
        let mut per_order = StdRng::seed_from_u64(self.config.seed ^ hi ^ lo.rotate_left(17));
        if per_order.random::<f64>() < self.config.decline_rate {
            return Err(PaymentError::Declined);
        }
        Ok(format!("pay_{}", request.order_id.as_uuid().simple()))
    }

    fn transient_failure(&self) -> bool {
        self.config.transient_failure_rate > 0.0
            && self.transient.lock().random::<f64>() < self.config.transient_failure_rate
    }

    async fn latency(&self) {
        if self.config.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.config.latency_ms)).await;
        }
    }
}

impl PaymentProvider for PaymentSimulator {
    fn charge(&self, request: ChargeRequest) -> BoxFuture<'_, Result<String, PaymentError>> {
        Box::pin(async move {
            self.latency().await;
            if let Some(done) = self.ledger.lock().charges.get(&request.order_id) {
                return done.clone();
            }
            if self.transient_failure() {
                return Err(PaymentError::Transient("simulated provider failure".into()));
            }
            let outcome = self.decide(&request);
            self.ledger
                .lock()
                .charges
                .entry(request.order_id)
                .or_insert(outcome)
                .clone()
        })
    }

    fn charge_of(&self, order_id: OrderId) -> BoxFuture<'_, Result<Option<String>, PaymentError>> {
        Box::pin(async move {
            self.latency().await;
            if self.transient_failure() {
                return Err(PaymentError::Transient("simulated provider failure".into()));
            }
            let ledger = self.ledger.lock();
            Ok(ledger.charges.get(&order_id).and_then(|c| c.clone().ok()))
        })
    }

    fn refund(
        &self,
        order_id: OrderId,
        payment_id: String,
        amount_minor: i64,
    ) -> BoxFuture<'_, Result<String, PaymentError>> {
        Box::pin(async move {
            self.latency().await;
            if let Some(done) = self.ledger.lock().refunds.get(&order_id) {
                return Ok(done.clone());
            }
            if self.transient_failure() {
                return Err(PaymentError::Transient("simulated provider failure".into()));
            }
            tracing::info!(%order_id, %payment_id, amount_minor, "payment refunded");
            let id = format!("ref_{}", order_id.as_uuid().simple());
            Ok(self
                .ledger
                .lock()
                .refunds
                .entry(order_id)
                .or_insert(id)
                .clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(amount: i64) -> ChargeRequest {
        ChargeRequest {
            order_id: OrderId::generate(),
            amount_minor: amount,
            currency: "EUR".into(),
        }
    }

    /// The same order gets the same answer; declines follow the rate.
    #[tokio::test]
    async fn idempotent_and_rate_driven() {
        let all = PaymentSimulator::new(SimulatorConfig {
            decline_rate: 1.0,
            ..Default::default()
        });
        assert_eq!(all.charge(charge(100)).await, Err(PaymentError::Declined));
        let none = PaymentSimulator::new(SimulatorConfig::default());
        let req = charge(100);
        let first = none.charge(req.clone()).await.unwrap();
        assert_eq!(none.charge(req.clone()).await.unwrap(), first);
        assert_eq!(none.charged(), 1);
        let r1 = none.refund(req.order_id, first.clone(), 100).await.unwrap();
        assert_eq!(none.refund(req.order_id, first, 100).await.unwrap(), r1);
        assert_eq!(none.refunded(), 1);
        let half = PaymentSimulator::new(SimulatorConfig {
            decline_rate: 0.5,
            seed: 7,
            ..Default::default()
        });
        let mut declined = 0;
        for _ in 0..400 {
            if half.charge(charge(1)).await.is_err() {
                declined += 1;
            }
        }
        assert!((120..280).contains(&declined), "{declined}");
    }

    /// Amounts over the fraud limit are refused; transient failures charge nothing.
    #[tokio::test]
    async fn fraud_limit_and_transient_failures() {
        let sim = PaymentSimulator::new(SimulatorConfig {
            fraud_limit_minor: 500,
            ..Default::default()
        });
        assert_eq!(
            sim.charge(charge(501)).await,
            Err(PaymentError::FraudSuspected)
        );
        assert!(sim.charge(charge(500)).await.is_ok());
        let flaky = PaymentSimulator::new(SimulatorConfig {
            transient_failure_rate: 1.0,
            ..Default::default()
        });
        assert!(matches!(
            flaky.charge(charge(1)).await,
            Err(PaymentError::Transient(_))
        ));
        assert_eq!(flaky.charged(), 0);
    }
}
