//! HTTP metrics: request count and latency by route template, method and
//! status, in a `prometheus-client` registry the server owns.

use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use service_guard::Authenticator;

use crate::Body;

/// Media type of the metrics exposition.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency buckets, in seconds: 100 µs to 5 s.
pub const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Labels of one HTTP series. `route` is a template (`/api/items/{id}`) from a
/// fixed table, never a raw path, so the number of series stays bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// Route template, or `unmatched`.
    pub route: &'static str,
    /// HTTP method (only those the router knows, else `other`).
    pub method: &'static str,
    /// Status code.
    pub status: u16,
}

type HistogramFamily = Family<HttpLabels, Histogram, fn() -> Histogram>;

/// Request count and latency histogram, registered once per server.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    requests: Family<HttpLabels, Counter>,
    duration: HistogramFamily,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_SECONDS)
}

impl HttpMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let requests = Family::<HttpLabels, Counter>::default();
        let duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_requests",
            "HTTP requests handled, by route template, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to produce a response, by route template, method and status",
            duration.clone(),
        );
        Self { requests, duration }
    }

    /// Records one request.
    pub fn observe(
        &self,
        route: &'static str,
        method: &http::Method,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let labels = HttpLabels {
            route,
            method: method_label(method),
            status: status.as_u16(),
        };
        self.requests.get_or_create(&labels).inc();
        self.duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

/// A bounded label for a method: the standard ones by name, anything else `other`.
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Raises `counter` to `total`, a running count kept elsewhere (a relay's,
/// a consumer's), so it is exported as a counter. Counters only grow; two
/// renders at once may both add, so the difference is taken from the
/// counter's own value.
///
/// ```
/// use prometheus_client::metrics::counter::Counter;
///
/// let published = Counter::<u64>::default();
/// service_kit::metrics::catch_up(&published, 5);
/// service_kit::metrics::catch_up(&published, 3); // never goes back
/// assert_eq!(published.get(), 5);
/// ```
pub fn catch_up(counter: &Counter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

/// Exposes `auth_key_reloads_failed_total`, read from `authenticator` at
/// each scrape: reloads of the token verification keys that failed and kept
/// the previous keys (a bad key file to fix).
///
/// ```
/// let mut registry = prometheus_client::registry::Registry::default();
/// service_kit::metrics::register_key_reloads(&mut registry, service_guard::Authenticator::disabled());
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
/// assert!(text.contains("auth_key_reloads_failed_total 0"));
/// ```
pub fn register_key_reloads(registry: &mut Registry, authenticator: Authenticator) {
    registry.register_collector(Box::new(KeyReloads(authenticator)));
}

#[derive(Debug)]
struct KeyReloads(Authenticator);

impl Collector for KeyReloads {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let failed = ConstCounter::new(self.0.failed_reloads());
        let metric = encoder.encode_descriptor(
            "auth_key_reloads_failed",
            "Reloads of the token verification keys that failed (the previous keys stay in use)",
            None,
            failed.metric_type(),
        )?;
        failed.encode(metric)
    }
}

/// A count as a gauge's value (saturating).
pub fn gauge_value(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// The text exposition of `registry` as a response.
pub fn render(registry: &Registry) -> Response<Body> {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::error!(error = %e, "metrics encoding failed");
        return crate::response::empty(StatusCode::INTERNAL_SERVER_ERROR);
    }
    crate::response::bytes_with_type(StatusCode::OK, Bytes::from(text), METRICS_CONTENT_TYPE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Observed requests appear in the exposition under their route template.
    #[test]
    fn exposition_contains_route_and_status() {
        let mut registry = Registry::default();
        let m = HttpMetrics::register(&mut registry);
        m.observe(
            "/items/{id}",
            &http::Method::GET,
            StatusCode::OK,
            Duration::from_millis(2),
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                "http_requests_total{route=\"/items/{id}\",method=\"GET\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("http_request_duration_seconds_bucket"),
            "{text}"
        );
    }
}
