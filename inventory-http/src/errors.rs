//! How the domain's errors become HTTP problems: one status and one stable code
//! per variant, and no internals in the text of operating errors.

use std::time::Duration;

use http::StatusCode;
use inventory_core::Error;
use service_kit::Problem;

/// `Retry-After` sent when the store gave up under contention.
pub const CONTENTION_RETRY_AFTER_MS: u64 = 1_000;

/// `Retry-After` sent when the queue of changes waiting for the store is full.
pub const OVERLOADED_RETRY_AFTER_MS: u64 = 1_000;

/// `Retry-After` sent when the store is unreachable.
pub const UNAVAILABLE_RETRY_AFTER_MS: u64 = 5_000;

/// The problem for a domain error. Operating errors are logged here with their
/// cause; the client sees a fixed text.
pub fn problem(error: &Error) -> Problem {
    let code = error.code();
    let detail = error.to_string();
    match error {
        Error::InsufficientStock { .. }
        | Error::BelowReserved { .. }
        | Error::InvalidTransition { .. }
        | Error::AlreadyExists { .. }
        | Error::AboveStockMax { .. }
        | Error::IdempotencyConflict { .. }
        | Error::AdjustmentKeyConflict { .. } => {
            Problem::new(StatusCode::CONFLICT, code, "Conflict", detail)
        }
        Error::ProductNotFound { .. } | Error::ReservationNotFound { .. } => {
            Problem::new(StatusCode::NOT_FOUND, code, "Not found", detail)
        }
        // The body fits the document's schema, which cannot say "each product
        // once": a rule the schema cannot state refuses it (ADR 0009).
        Error::DuplicateProduct { .. } => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            "Unprocessable content",
            detail,
        ),
        Error::ReservationExpired { .. } => Problem::new(StatusCode::GONE, code, "Gone", detail),
        Error::VersionConflict { .. } => Problem::new(
            StatusCode::PRECONDITION_FAILED,
            code,
            "Precondition failed",
            detail,
        ),
        Error::InvalidQuantity { .. } | Error::InvalidInput { .. } => {
            Problem::new(StatusCode::BAD_REQUEST, code, "Bad request", detail)
        }
        Error::Contention => {
            tracing::warn!(error = %error, "store contention");
            Problem::unavailable(
                code,
                "the store is busy; retry shortly",
                Duration::from_millis(CONTENTION_RETRY_AFTER_MS),
            )
        }
        Error::Overloaded => {
            tracing::warn!(error = %error, "write queue full");
            Problem::unavailable(
                code,
                "too many changes are waiting; retry shortly",
                Duration::from_millis(OVERLOADED_RETRY_AFTER_MS),
            )
        }
        Error::Unavailable { .. } => {
            tracing::error!(error = %error, "store unavailable");
            Problem::unavailable(
                code,
                "the store is unavailable; retry later",
                Duration::from_millis(UNAVAILABLE_RETRY_AFTER_MS),
            )
        }
        _ => {
            tracing::error!(error = %error, "store failure");
            Problem::internal()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use inventory_core::{ProductId, ReservationId, Timestamp, Version};
    use uuid::Uuid;

    /// Each variant gets the status DESIGN.md gives it; internals never leak.
    #[test]
    fn statuses_and_codes() {
        let p = ProductId::from_uuid(Uuid::nil());
        let r = ReservationId::from_uuid(Uuid::nil());
        let cases = [
            (
                Error::InsufficientStock {
                    product_id: p,
                    requested: 2,
                    available: 1,
                },
                409,
                "insufficient_stock",
            ),
            (
                Error::ProductNotFound { product_id: p },
                404,
                "product_not_found",
            ),
            (
                Error::ReservationExpired {
                    reservation_id: r,
                    expires_at: Timestamp::from_millis(0),
                },
                410,
                "reservation_expired",
            ),
            (
                Error::VersionConflict {
                    product_id: p,
                    expected: Version::new(1),
                    actual: Version::new(2),
                },
                412,
                "version_conflict",
            ),
            (
                Error::InvalidQuantity {
                    value: 0,
                    min: 1,
                    max: 5,
                },
                400,
                "invalid_quantity",
            ),
            (Error::Contention, 503, "contention"),
            (Error::Overloaded, 503, "overloaded"),
            (
                Error::Unavailable {
                    reason: "secret host".into(),
                },
                503,
                "store_unavailable",
            ),
            (
                Error::Storage {
                    reason: "secret sql".into(),
                },
                500,
                "internal_error",
            ),
        ];
        for (error, status, code) in cases {
            let problem = problem(&error);
            assert_eq!((problem.status().as_u16(), problem.code()), (status, code));
            assert!(!problem.detail().contains("secret"));
        }
    }
}
