//! The server's metrics: HTTP requests (from service-kit), reservations by
//! outcome, reservations expired by the sweep, and stock gauges. Every label
//! has a bounded set of values: route templates, stable error codes, and at
//! most a configured number of product ids.

use std::collections::HashMap;
use std::time::Duration;

use event_bus::RelayHealth;
use inventory_combiner::BatchObserver;
use inventory_core::{InventoryItem, ProductId};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use service_kit::metrics::{catch_up, gauge_value, HttpMetrics};

/// Label of a reservation outcome: `created`, `repeated`, or an error code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// The outcome.
    pub outcome: &'static str,
}

/// Label of a per-product stock gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProductLabel {
    /// The product id.
    pub product_id: String,
}

/// All metrics of the server, registered in one registry.
#[derive(Debug)]
pub struct InventoryMetrics {
    /// Request count and latency.
    pub http: HttpMetrics,
    reservations: Family<OutcomeLabel, Counter>,
    expired_by_sweep: Counter,
    available: Family<ProductLabel, Gauge>,
    reserved: Family<ProductLabel, Gauge>,
    tracked: Mutex<HashMap<ProductId, (Gauge, Gauge)>>,
    tracked_max: usize,
    outbox_depth: Gauge,
    events_published: Counter,
    event_relay_failures: Counter,
    batches: BatchMetrics,
}

/// Sizes of the batches writes are committed in, and how long each write
/// waited for its batch: what the write combiner reports.
#[derive(Clone, Debug)]
pub struct BatchMetrics {
    size: Histogram,
    queue_wait: Histogram,
}

impl BatchMetrics {
    fn register(registry: &mut Registry) -> Self {
        // 1, 2, 4 ... 1024 commands.
        let size = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "inventory_batch_size",
            "Writes committed together in one batch",
            size.clone(),
        );
        // 50 us to about 3 s.
        let queue_wait = Histogram::new(exponential_buckets(0.000_05, 3.0, 11));
        registry.register(
            "inventory_batch_queue_wait_seconds",
            "Time a write waited in line before its batch started",
            queue_wait.clone(),
        );
        Self { size, queue_wait }
    }
}

impl BatchObserver for BatchMetrics {
    fn batch_started(&self, size: usize, queue_waits: &[Duration]) {
        self.size.observe(size as f64);
        for wait in queue_waits {
            self.queue_wait.observe(wait.as_secs_f64());
        }
    }
}

impl InventoryMetrics {
    /// Creates the metrics in `registry`; at most `tracked_max` products get
    /// their own stock gauges.
    pub fn register(registry: &mut Registry, tracked_max: usize) -> Self {
        let http = HttpMetrics::register(registry);
        let reservations = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "inventory_reservations",
            "Reserve requests by outcome (created, repeated, or the error code)",
            reservations.clone(),
        );
        let expired_by_sweep = Counter::default();
        registry.register(
            "inventory_expired_by_sweep",
            "Reservations expired by the background sweep",
            expired_by_sweep.clone(),
        );
        let available = Family::default();
        registry.register(
            "inventory_stock_available",
            "Units available, for the first tracked products (last value seen by this instance)",
            available.clone(),
        );
        let reserved = Family::default();
        registry.register(
            "inventory_stock_reserved",
            "Units reserved, for the first tracked products (last value seen by this instance)",
            reserved.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register(
            "inventory_outbox_depth",
            "Stock events waiting in the outbox (last measurement of this instance's relay)",
            outbox_depth.clone(),
        );
        let events_published = Counter::default();
        registry.register(
            "inventory_events_published",
            "Stock events this instance's relay published and the broker confirmed",
            events_published.clone(),
        );
        let event_relay_failures = Counter::default();
        registry.register(
            "inventory_event_relay_failures",
            "Failed relay attempts (broker or outbox), each followed by a back-off",
            event_relay_failures.clone(),
        );
        let batches = BatchMetrics::register(registry);
        Self {
            http,
            reservations,
            expired_by_sweep,
            available,
            reserved,
            tracked: Mutex::new(HashMap::new()),
            tracked_max,
            outbox_depth,
            events_published,
            event_relay_failures,
            batches,
        }
    }

    /// What the write combiner reports to.
    pub fn batches(&self) -> &BatchMetrics {
        &self.batches
    }

    /// Brings the event metrics up to `health`'s counts (called before
    /// rendering; the relay keeps the counts, this copies them).
    pub fn events(&self, health: &RelayHealth) {
        self.outbox_depth.set(gauge_value(health.outbox_depth()));
        catch_up(&self.events_published, health.published());
        catch_up(&self.event_relay_failures, health.failures());
    }

    /// Counts one reserve request's outcome.
    pub fn reservation(&self, outcome: &'static str) {
        self.reservations
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// Counts reservations expired by the sweep.
    pub fn expired(&self, count: usize) {
        self.expired_by_sweep.inc_by(count as u64);
    }

    /// Updates the stock gauges of `item`'s product, if it is tracked (or
    /// there is room to track it).
    pub fn stock(&self, item: &InventoryItem) {
        let mut tracked = self.tracked.lock();
        let gauges = match tracked.get(&item.product_id()) {
            Some(g) => g,
            None if tracked.len() >= self.tracked_max => return,
            None => {
                let label = ProductLabel {
                    product_id: item.product_id().to_string(),
                };
                let pair = (
                    self.available.get_or_create(&label).clone(),
                    self.reserved.get_or_create(&label).clone(),
                );
                tracked.entry(item.product_id()).or_insert(pair)
            }
        };
        gauges.0.set(gauge_value(item.available()));
        gauges.1.set(gauge_value(item.reserved()));
    }
}
