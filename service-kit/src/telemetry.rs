//! Telemetry: one JSON tracing subscriber per process.

use tracing_subscriber::{fmt, EnvFilter};

/// Filter used when `RUST_LOG` is not set.
pub const LOG_FILTER_DEFAULT: &str = "info";

/// Installs the process-wide JSON subscriber (filter from `RUST_LOG`, else
/// `default_filter`). Each line carries the fields of the spans it is in, so a
/// request's `request_id` appears on every line logged while serving it.
///
/// Call it once, first thing in `main`; later calls (for example from tests)
/// leave the first subscriber in place and return false.
pub fn init(default_filter: &str) -> bool {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(true)
        .with_target(true)
        .try_init()
        .is_ok()
}
