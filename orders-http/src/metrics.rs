//! Metrics of the orders service besides HTTP: orders placed and finished,
//! saga retries, the inventory client (calls by outcome, breaker state,
//! calls refused by the open breaker), and events (outbox depth, broker
//! state, events published, consumed and dead-lettered).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of an inventory call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// `reserve`, `confirm` or `release`.
    pub op: &'static str,
    /// `ok`, `insufficient_stock`, `expired`, `not_found`, `conflict`,
    /// `rejected`, `unavailable` or `circuit_open`.
    pub outcome: &'static str,
}

/// Labels of a finished order.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FinishLabels {
    /// `confirmed` or `cancelled`.
    pub status: &'static str,
    /// The cancel reason, or `none`.
    pub reason: &'static str,
}

/// Labels of a saga retry.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    /// The saga step.
    pub step: &'static str,
}

/// Every non-HTTP metric of the service. Cheap to clone (shared counters).
#[derive(Clone, Debug, Default)]
pub struct OrderMetrics {
    /// Orders accepted.
    pub orders_placed: Counter,
    /// Orders confirmed or cancelled, by status and reason.
    pub orders_finished: Family<FinishLabels, Counter>,
    /// Saga steps retried after a transient failure, by step.
    pub saga_retries: Family<StepLabels, Counter>,
    /// Inventory calls by operation and outcome.
    pub inventory_calls: Family<CallLabels, Counter>,
    /// Calls refused without trying because the breaker was open.
    pub breaker_rejected: Counter,
    /// Breaker state: 0 closed, 1 open, 2 half-open.
    pub breaker_state: Gauge,
    /// Times the breaker opened.
    pub breaker_opened: Counter,
    /// Unsent events in the outbox at the relay's last measurement.
    pub events_outbox_depth: Gauge,
    /// 1 while the event broker is usable, else 0.
    pub events_broker_up: Gauge,
    /// Events the relay published and marked sent (`_total`).
    pub events_published: Counter,
    /// Inventory events the consumer applied (RabbitMQ only; `_total`).
    pub events_consumed: Counter,
    /// Inventory events sent to the dead-letter queue (RabbitMQ only; `_total`).
    pub events_dead_lettered: Counter,
}

impl OrderMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register("orders_placed", "Orders accepted", m.orders_placed.clone());
        registry.register(
            "orders_finished",
            "Orders confirmed or cancelled, by status and reason",
            m.orders_finished.clone(),
        );
        registry.register(
            "saga_retries",
            "Saga steps retried after a transient failure",
            m.saga_retries.clone(),
        );
        registry.register(
            "inventory_calls",
            "Calls to the inventory service by operation and outcome",
            m.inventory_calls.clone(),
        );
        registry.register(
            "inventory_breaker_rejected",
            "Inventory calls refused because the circuit breaker was open",
            m.breaker_rejected.clone(),
        );
        registry.register(
            "inventory_breaker_state",
            "Inventory circuit breaker state: 0 closed, 1 open, 2 half-open",
            m.breaker_state.clone(),
        );
        registry.register(
            "inventory_breaker_opened",
            "Times the inventory circuit breaker opened",
            m.breaker_opened.clone(),
        );
        registry.register(
            "events_outbox_depth",
            "Order events waiting in the outbox to be published",
            m.events_outbox_depth.clone(),
        );
        registry.register(
            "events_broker_up",
            "1 while the event broker is usable, else 0",
            m.events_broker_up.clone(),
        );
        registry.register(
            "events_published",
            "Order events published by this instance's relay",
            m.events_published.clone(),
        );
        registry.register(
            "events_consumed",
            "Inventory events applied by this instance's consumer (RabbitMQ)",
            m.events_consumed.clone(),
        );
        registry.register(
            "events_dead_lettered",
            "Inventory events this instance sent to the dead-letter queue (RabbitMQ)",
            m.events_dead_lettered.clone(),
        );
        m
    }
}
