//! The order saga: after an order is accepted, reserve every line in one
//! all-or-nothing call, take the payment, confirm every reservation; undo what
//! was done when a step fails. Progress is persisted before each step relies
//! on it, so a restarted service resumes every unfinished saga.

mod engine;
pub mod machine;
mod state;

pub use engine::{
    CancelOutcome, SagaConfig, SagaEngine, CANCEL_WAIT_MS_DEFAULT, DEDUP_RETENTION_MS_DEFAULT,
    LEASE_MS_DEFAULT, PARK_INTERVAL_MS_DEFAULT, PAYMENT_SETTLE_MS_DEFAULT,
    PENDING_DEADLINE_MS_DEFAULT, PRUNE_BATCH_MAX, RESERVE_ATTEMPTS_MAX_DEFAULT,
    RESUME_INTERVAL_MS_DEFAULT, RESUME_PAGE_MAX, RETRIES_MAX_DEFAULT, RETRY_DELAY_MAX_MS_DEFAULT,
    RETRY_DELAY_MIN_MS_DEFAULT, RETRY_TOTAL_MS_DEFAULT,
};
pub use state::{HeldLine, SagaState, SagaStep};

#[cfg(test)]
mod tests;
