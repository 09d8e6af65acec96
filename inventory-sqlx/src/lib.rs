//! # inventory-sqlx
//!
//! The PostgreSQL store of the inventory: [`PgStore`] implements
//! [`inventory_core::InventoryStore`] and [`inventory_core::Outbox`] with sqlx.
//!
//! Business rules stay in `inventory-core`. For every command the store opens
//! one transaction, loads what the command needs into an
//! [`inventory_core::Snapshot`], runs [`inventory_core::decide()`], writes the
//! snapshot's changes (items with `UPDATE ... WHERE version = $n`,
//! reservations, ledger rows and outbox rows) and commits. How concurrent
//! transactions are kept apart is chosen with [`Concurrency`]: row locks taken
//! in product order (the default), or optimistic version checks with bounded,
//! jittered retries. See `docs/adr/0002-postgres-concurrency.md`.
//!
//! ## Map
//!
//! - [`PgStore`] and [`PgOptions`]: connecting, migrating, the storage port.
//! - `execute`: one command as one transaction (load, decide, persist).
//! - `sweep`: the expiry sweep, in bounded batches, safe to run on many instances.
//! - `rows`: rows to domain values and back, event payloads as JSON.
//! - `fail`: database errors to the domain's [`inventory_core::Error`].
//! - `migrations/`: the schema, embedded with `sqlx::migrate!` and also
//!   runnable with `sqlx migrate run --source inventory-sqlx/migrations`.
//!
//! ## Example
//!
//! ```no_run
//! use inventory_core::*;
//! use inventory_sqlx::{PgOptions, PgStore};
//! use uuid::Uuid;
//!
//! # async fn run() -> Result<(), Error> {
//! let store = PgStore::connect("postgres://postgres@127.0.0.1:5432/shop", PgOptions::default()).await?;
//! store.migrate().await?;
//!
//! let now = Meta::at(Timestamp::from_millis(1_700_000_000_000));
//! let product = ProductId::from_uuid(Uuid::new_v4());
//! let create = Command::CreateItem {
//!     product_id: product,
//!     quantity: StockLevel::new(10)?,
//!     actor: Actor::system(),
//! };
//! store.execute(create, &now).await?;
//!
//! let line = ReserveLine {
//!     product_id: product,
//!     quantity: Quantity::new(2)?,
//!     reservation_id: ReservationId::from_uuid(Uuid::new_v4()),
//! };
//! let order = OrderId::from_uuid(Uuid::new_v4());
//! let reserve = Command::Reserve(Reserve::single(order, line, Ttl::default()));
//! let outcome = store.execute(reserve, &now).await?;
//! assert!(matches!(outcome, Outcome::Reserved { created: true, .. }));
//! assert_eq!(store.item(product).await?.map(|i| i.available()), Some(8));
//! # Ok(())
//! # }
//! ```

mod execute;
mod fail;
mod options;
mod retry;
mod rows;
mod store;
mod sweep;

pub use fail::is_unavailable;
pub use options::{
    Concurrency, PgOptions, ACQUIRE_TIMEOUT_DEFAULT_MS, BACKOFF_BASE_DEFAULT_MS,
    BACKOFF_CAP_DEFAULT_MS, POOL_SIZE_DEFAULT, RETRIES_DEFAULT_MAX,
};
pub use retry::RetryStats;
pub use store::{PgStore, PING_IDLE_AFTER_MS, SESSION_SETTINGS};

/// The embedded migrations (the files of `migrations/`), for callers that run
/// them on a pool of their own.
///
/// ```
/// use inventory_sqlx::MIGRATOR;
///
/// /// Brings a pool's database up to date (what `PgStore::migrate` does).
/// async fn migrate(pool: &sqlx::PgPool) -> Result<(), sqlx::migrate::MigrateError> {
///     MIGRATOR.run(pool).await
/// }
///
/// // Versions only grow, so a database at an older one can be brought forward.
/// let versions: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
/// assert!(!versions.is_empty());
/// assert!(versions.windows(2).all(|pair| pair[0] < pair[1]));
/// ```
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
