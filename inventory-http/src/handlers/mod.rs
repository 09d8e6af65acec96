//! The route handlers: parse input into domain values, call the store, map
//! the outcome to a response. No business rule lives here.

mod ops;
mod reads;
mod reservations;
mod stock;

use std::str::FromStr;

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use inventory_core::{
    AdjustmentKey, Command, Error, InventoryStore, Meta, Outcome, ProductId, Ttl, Version,
    ADJUSTMENT_KEY_LEN_MAX,
};
use service_kit::server::RequestContext;
use service_kit::{Body, Problem};

use crate::app::App;
use crate::errors::problem;

/// `Retry-After` of a 503 from `/health/ready`.
pub(crate) const NOT_READY_RETRY_AFTER_SECS: u64 = 5;

/// Ledger entries returned when the client names no `limit`.
pub(crate) const ADJUSTMENTS_PAGE_DEFAULT: usize = 50;

type Handled = Result<Response<Body>, Problem>;

fn parse_id<T: FromStr>(text: &str, field: &str) -> Result<T, Problem> {
    T::from_str(text)
        .map_err(|_| Problem::bad_request("invalid_id", format!("{field} must be a UUID")))
}

fn ttl(seconds: Option<i64>) -> Result<Ttl, Problem> {
    seconds.map_or(Ok(Ttl::default()), |s| {
        // A negative hold is out of range like a zero one.
        Ttl::from_secs(u64::try_from(s).unwrap_or(0)).map_err(|e| problem(&e))
    })
}

fn domain<T>(r: Result<T, Error>) -> Result<T, Problem> {
    r.map_err(|e| problem(&e))
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// True when `If-None-Match` lists `tag` or `*` (weak comparison).
fn none_match(headers: &HeaderMap, tag: &HeaderValue) -> bool {
    let tag = tag.to_str().unwrap_or("");
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == tag)
}

/// What an `If-Match` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IfMatch {
    /// `*`: any current representation (RFC 9110, 13.1.1): the item exists.
    Any,
    /// Exactly one strong tag `"N"`: the item is at version N.
    Version(Version),
}

/// The precondition an `If-Match` states: `*`, or exactly one strong tag
/// `"N"`.
fn if_match(headers: &HeaderMap) -> Result<IfMatch, Problem> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Err(Problem::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
            "Precondition required",
            "send If-Match with the ETag of the item you read",
        ));
    };
    let text = raw.to_str().ok().map(str::trim);
    if text == Some("*") {
        return Ok(IfMatch::Any);
    }
    text.and_then(|t| t.strip_prefix('"')?.strip_suffix('"'))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        // A tag too large for a version is well formed but names none: it
        // matches no item (412 from the store, or 404), like any stale tag.
        .map(|n| IfMatch::Version(Version::new(n.parse::<u64>().unwrap_or(u64::MAX))))
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid_if_match",
                "If-Match must be * or one strong ETag such as \"3\"",
            )
        })
}

/// Header naming an adjustment's idempotency key.
pub(crate) const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The `Idempotency-Key` of a request, if it sent one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<AdjustmentKey>, Problem> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    raw.to_str()
        .ok()
        .and_then(|k| AdjustmentKey::new(k).ok())
        .map(Some)
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid_idempotency_key",
                format!(
                    "Idempotency-Key must be 1 to {ADJUSTMENT_KEY_LEN_MAX} visible ascii characters"
                ),
            )
        })
}

fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl<S: InventoryStore> App<S> {
    fn meta(&self, ctx: &RequestContext) -> Meta {
        Meta {
            now: inventory_core::Timestamp::from_millis(self.clock.now_ms()),
            correlation_id: Some(ctx.request_id.as_str().to_owned()),
        }
    }

    /// Runs a command, then drops the cached figures of `touched` products.
    async fn execute(
        &self,
        command: Command,
        ctx: &RequestContext,
        touched: &[ProductId],
    ) -> Result<Outcome, Error> {
        let outcome = self.writes.execute(command, &self.meta(ctx)).await;
        // Business errors may still have expired overdue reservations on the
        // way, so only operating errors (nothing committed) skip invalidation.
        let committed_something = outcome.as_ref().map_or_else(|e| !is_operating(e), |_| true);
        if let (true, Some(cache)) = (committed_something, &self.cache) {
            cache.invalidate(touched).await;
        }
        outcome
    }
}

fn is_operating(e: &Error) -> bool {
    matches!(
        e,
        Error::Contention | Error::Overloaded | Error::Unavailable { .. } | Error::Storage { .. }
    )
}

fn unexpected(outcome: &Outcome) -> Problem {
    tracing::error!(?outcome, "store returned an outcome of another command");
    Problem::internal()
}
