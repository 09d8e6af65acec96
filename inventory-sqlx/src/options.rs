//! How a [`crate::PgStore`] connects and how it keeps concurrent changes apart.

/// Connections a store's pool opens at most, by default. Each in-flight
/// command holds one for the length of its transaction; PostgreSQL's own limit
/// (`max_connections`, 100 by default) is shared by every instance.
pub const POOL_SIZE_DEFAULT: u32 = 16;

/// How long a command waits for a free connection before the store reports
/// itself unavailable, by default.
pub const ACQUIRE_TIMEOUT_DEFAULT_MS: u64 = 5_000;

/// Most times one command is run again after a conflict, by default (so at most
/// `RETRIES_DEFAULT_MAX + 1` attempts before [`inventory_core::Error::Contention`]).
pub const RETRIES_DEFAULT_MAX: u32 = 8;

/// First backoff step after a conflict, by default; each further step doubles it.
pub const BACKOFF_BASE_DEFAULT_MS: u64 = 1;

/// Longest backoff between two attempts, by default.
pub const BACKOFF_CAP_DEFAULT_MS: u64 = 50;

/// How concurrent changes of one item are kept apart.
///
/// ```
/// use inventory_sqlx::{Concurrency, PgOptions};
///
/// assert_eq!(Concurrency::default(), Concurrency::Locking);
/// // Many products, little contention on any one: skip the row locks.
/// let options = PgOptions { concurrency: Concurrency::Optimistic, ..PgOptions::default() };
/// assert_eq!(options.concurrency, Concurrency::Optimistic);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Concurrency {
    /// Lock the command's items with `SELECT ... FOR NO KEY UPDATE` in ascending
    /// product order, then decide and write. Changes of one item queue behind
    /// each other; the version check never fails, so load on one product
    /// causes no retries and no contention errors (the only retry left is two
    /// reserves of the same order line at once, whose repeat is idempotent).
    #[default]
    Locking,
    /// Read without locks, then write with `UPDATE ... WHERE version = $n`; on
    /// a conflict, roll back and run the command again after a jittered
    /// backoff, at most [`PgOptions::retries_max`] times.
    Optimistic,
}

/// Settings of a [`crate::PgStore`]. Build with struct update syntax over
/// [`PgOptions::default`].
///
/// ```
/// use inventory_sqlx::{PgOptions, POOL_SIZE_DEFAULT};
///
/// // A small instance: fewer connections, fail fast when none is free.
/// let options = PgOptions { pool_size_max: 4, acquire_timeout_ms: 500, ..PgOptions::default() };
/// assert_eq!(PgOptions::default().pool_size_max, POOL_SIZE_DEFAULT);
/// assert_eq!(options.retries_max, PgOptions::default().retries_max);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgOptions {
    /// How concurrent changes are kept apart.
    pub concurrency: Concurrency,
    /// Most connections the pool opens (used by [`crate::PgStore::connect`]).
    pub pool_size_max: u32,
    /// How long to wait for a connection before reporting the store
    /// unavailable (used by [`crate::PgStore::connect`]).
    pub acquire_timeout_ms: u64,
    /// Most times one command is run again after a conflict (a failed version
    /// check, a serialization failure or a deadlock).
    pub retries_max: u32,
    /// First backoff step after a conflict; doubles with each retry.
    pub backoff_base_ms: u64,
    /// Longest backoff step.
    pub backoff_cap_ms: u64,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            concurrency: Concurrency::default(),
            pool_size_max: POOL_SIZE_DEFAULT,
            acquire_timeout_ms: ACQUIRE_TIMEOUT_DEFAULT_MS,
            retries_max: RETRIES_DEFAULT_MAX,
            backoff_base_ms: BACKOFF_BASE_DEFAULT_MS,
            backoff_cap_ms: BACKOFF_CAP_DEFAULT_MS,
        }
    }
}
