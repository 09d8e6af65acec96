//! The maintenance duties of a store, done for you: hand the outbox's events
//! on (drain), give back holds whose time ran out (sweep), and forget
//! finished reservations older than a retention window (purge).
//!
//! The memory store does none of these by itself: an embedder that never
//! drains its outbox or sweeps its holds sees memory grow and expired holds
//! linger until a reserve runs short. [`Maintenance`] does the three in one
//! [`Maintenance::run_once`], and (feature `maintenance`) on a schedule in a
//! tokio task with [`Maintenance::spawn`]. It works on any store of the port
//! (PostgreSQL too), though a server with a broker relays its outbox with
//! `event-bus` instead.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use inventory_core::{InventoryStoreExt, OrderId, ProductId, Timestamp, Ttl, Uuid};
//! use inventory_memory::maintenance::{Maintenance, MaintenanceSettings};
//! use inventory_memory::MemoryStore;
//!
//! # pollster::block_on(async {
//! let store = Arc::new(MemoryStore::new());
//! let product = ProductId::from(Uuid::from_u128(1));
//! let t0 = Timestamp::from_millis(0);
//! store.create_item(product, 3, t0).await?;
//! store.reserve(OrderId::from(Uuid::from_u128(2)), product, 1, Ttl::from_secs(60)?, t0).await?;
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&seen);
//! let mut upkeep = Maintenance::new(Arc::clone(&store), MaintenanceSettings::default())
//!     .on_event(move |entry| sink.lock().unwrap().push(entry.event.payload.event_type()));
//!
//! // Two minutes later the unpaid hold is given back and every event handed on.
//! let report = upkeep.run_once(Timestamp::from_millis(120_000)).await?;
//! assert_eq!((report.expired, report.drained), (1, 3));
//! assert_eq!(store.availability(product).await?, Some(3));
//! assert_eq!(seen.lock().unwrap().last(), Some(&"inventory.stock.expired"));
//! # Ok::<(), inventory_core::Error>(())
//! # }).unwrap();
//! ```

use std::sync::Arc;
use std::time::Duration;

use inventory_core::{
    Error, InventoryStore, Meta, Outbox, OutboxEntry, Timestamp, EXPIRE_BATCH_MAX, OUTBOX_BATCH_MAX,
};

use crate::PURGE_BATCH_MAX;

/// Default time between two runs of [`Maintenance::spawn`]'s loop.
pub const MAINTENANCE_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);

/// Default most expiry batches (of [`EXPIRE_BATCH_MAX`]) one run makes, so a
/// backlog is worked off over several runs rather than in one long one.
pub const EXPIRE_BATCHES_PER_RUN_DEFAULT: usize = 10;

/// Default most outbox batches (of [`OUTBOX_BATCH_MAX`]) one run drains.
pub const DRAIN_BATCHES_PER_RUN_DEFAULT: usize = 100;

/// What [`Maintenance`] does, and how often. Build with struct update
/// syntax over [`MaintenanceSettings::default`].
///
/// ```
/// use std::time::Duration;
/// use inventory_memory::maintenance::{MaintenanceSettings, EXPIRE_BATCHES_PER_RUN_DEFAULT};
///
/// // Sweep four times a second and keep a week of history.
/// let settings = MaintenanceSettings {
///     interval: Duration::from_millis(250),
///     retention: Some(Duration::from_secs(7 * 86_400)),
///     ..MaintenanceSettings::default()
/// };
/// assert_eq!(settings.expire_batches_per_run, EXPIRE_BATCHES_PER_RUN_DEFAULT);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaintenanceSettings {
    /// Time between runs of the spawned loop.
    pub interval: Duration,
    /// Most expiry batches per run.
    pub expire_batches_per_run: usize,
    /// Most outbox batches per run.
    pub drain_batches_per_run: usize,
    /// Finished reservations and ledger entries older than this are
    /// forgotten (see [`InventoryStore::purge_finished`]); `None` keeps them.
    pub retention: Option<Duration>,
}

impl Default for MaintenanceSettings {
    /// Every second; expiry and draining in bounded batches; a day of history
    /// kept (longer than any retry a client makes).
    fn default() -> Self {
        Self {
            interval: MAINTENANCE_INTERVAL_DEFAULT,
            expire_batches_per_run: EXPIRE_BATCHES_PER_RUN_DEFAULT,
            drain_batches_per_run: DRAIN_BATCHES_PER_RUN_DEFAULT,
            retention: Some(Duration::from_secs(86_400)),
        }
    }
}

/// What one run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Outbox entries handed to the event handler and marked published.
    pub drained: usize,
    /// Reservations expired.
    pub expired: usize,
    /// Finished reservations forgotten.
    pub purged: usize,
}

type Handler = Box<dyn FnMut(OutboxEntry) + Send>;

/// Drains, sweeps and purges one store; see the [module](self).
pub struct Maintenance<S> {
    store: Arc<S>,
    settings: MaintenanceSettings,
    on_event: Option<Handler>,
}

impl<S> std::fmt::Debug for Maintenance<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maintenance")
            .field("settings", &self.settings)
            .field("drains", &self.on_event.is_some())
            .finish_non_exhaustive()
    }
}

impl<S: InventoryStore + Outbox> Maintenance<S> {
    /// Maintenance of `store`. Without [`Maintenance::on_event`] the outbox
    /// is left alone (someone else relays it).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use inventory_core::{InventoryStoreExt, ProductId, Timestamp, Uuid};
    /// use inventory_memory::maintenance::{Maintenance, MaintenanceSettings};
    /// use inventory_memory::MemoryStore;
    ///
    /// # pollster::block_on(async {
    /// let store = Arc::new(MemoryStore::new());
    /// let now = Timestamp::from_millis(0);
    /// store.create_item(ProductId::from(Uuid::from_u128(1)), 5, now).await?;
    ///
    /// // Sweep and purge only: the outbox is an event relay's to read.
    /// let mut upkeep = Maintenance::new(Arc::clone(&store), MaintenanceSettings::default());
    /// let report = upkeep.run_once(now).await?;
    /// assert_eq!(report.drained, 0);
    /// assert_eq!(store.outbox_len(), 1);
    /// # Ok::<(), inventory_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn new(store: Arc<S>, settings: MaintenanceSettings) -> Self {
        Self {
            store,
            settings,
            on_event: None,
        }
    }

    /// Drains the outbox into `handler`, in commit order; each entry is
    /// marked published once the handler returns (at most once: an entry
    /// the handler saw is not handed out again).
    ///
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use std::sync::Arc;
    /// use inventory_core::{InventoryStoreExt, ProductId, Timestamp, Uuid};
    /// use inventory_memory::maintenance::{Maintenance, MaintenanceSettings};
    /// use inventory_memory::MemoryStore;
    ///
    /// # pollster::block_on(async {
    /// let store = Arc::new(MemoryStore::new());
    /// let now = Timestamp::from_millis(0);
    /// store.create_item(ProductId::from(Uuid::from_u128(1)), 5, now).await?;
    ///
    /// let handed_on = Arc::new(AtomicUsize::new(0));
    /// let counter = Arc::clone(&handed_on);
    /// let mut upkeep = Maintenance::new(Arc::clone(&store), MaintenanceSettings::default())
    ///     .on_event(move |_entry| { counter.fetch_add(1, Ordering::Relaxed); });
    /// upkeep.run_once(now).await?;
    /// assert_eq!(handed_on.load(Ordering::Relaxed), 1);
    /// assert_eq!(store.outbox_len(), 0); // marked published
    /// # Ok::<(), inventory_core::Error>(())
    /// # }).unwrap();
    /// ```
    #[must_use]
    pub fn on_event(mut self, handler: impl FnMut(OutboxEntry) + Send + 'static) -> Self {
        self.on_event = Some(Box::new(handler));
        self
    }

    /// Runs the three duties once, as of `now`: drain, sweep (holds due at or
    /// before `now`), purge (what finished before `now` minus the retention).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use inventory_core::{InventoryStoreExt, OrderId, ProductId, Timestamp, Ttl, Uuid};
    /// use inventory_memory::maintenance::{Maintenance, MaintenanceSettings};
    /// use inventory_memory::MemoryStore;
    ///
    /// # pollster::block_on(async {
    /// # let store = Arc::new(MemoryStore::new());
    /// # let product = ProductId::from(Uuid::from_u128(1));
    /// let t0 = Timestamp::from_millis(0);
    /// # store.create_item(product, 5, t0).await?;
    /// let hold = store.reserve(OrderId::from(Uuid::from_u128(2)), product, 1, Ttl::default(), t0).await?;
    /// store.release(hold.id(), t0).await?;
    ///
    /// let settings = MaintenanceSettings { retention: Some(Duration::from_secs(60)), ..Default::default() };
    /// let mut upkeep = Maintenance::new(Arc::clone(&store), settings);
    /// assert_eq!(upkeep.run_once(t0.plus_ms(30_000)).await?.purged, 0); // still kept
    /// assert_eq!(upkeep.run_once(t0.plus_ms(61_000)).await?.purged, 1); // past retention
    /// assert!(store.reservation_sync(hold.id()).is_none());
    /// # Ok::<(), inventory_core::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// The store's error; what earlier steps did stays done.
    pub async fn run_once(&mut self, now: Timestamp) -> Result<Report, Error> {
        let mut report = Report {
            drained: self.drain().await?,
            ..Report::default()
        };
        let meta = Meta::at(now);
        report.expired =
            expire_due_batches(&*self.store, &meta, self.settings.expire_batches_per_run).await?;
        // Events of what the sweep expired go out in the same run.
        report.drained += self.drain().await?;
        if let Some(retention) = self.settings.retention {
            let before = now.minus_ms(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
            report.purged = self.store.purge_finished(before, PURGE_BATCH_MAX).await?;
        }
        Ok(report)
    }

    async fn drain(&mut self) -> Result<usize, Error> {
        let Some(handler) = self.on_event.as_mut() else {
            return Ok(0);
        };
        let mut drained = 0;
        for _ in 0..self.settings.drain_batches_per_run.max(1) {
            let entries = self.store.unpublished(OUTBOX_BATCH_MAX).await?;
            let sequences: Vec<u64> = entries.iter().map(|e| e.sequence).collect();
            let full = entries.len() == OUTBOX_BATCH_MAX;
            drained += entries.len();
            entries.into_iter().for_each(&mut *handler);
            self.store.mark_published(&sequences).await?;
            if !full {
                break;
            }
        }
        Ok(drained)
    }
}

/// Expires due holds in batches of [`EXPIRE_BATCH_MAX`] until a batch comes
/// back short or `batches_max` batches ran; returns how many it expired.
/// The one sweep loop of the workspace: [`Maintenance`] and the inventory
/// server's sweeper both run it.
///
/// ```
/// use inventory_core::{InventoryStoreExt, Meta, OrderId, ProductId, Timestamp, Ttl, Uuid};
/// use inventory_memory::maintenance::expire_due_batches;
/// use inventory_memory::MemoryStore;
///
/// # pollster::block_on(async {
/// let (store, t0) = (MemoryStore::new(), Timestamp::from_millis(0));
/// let product = ProductId::from(Uuid::from_u128(1));
/// store.create_item(product, 10, t0).await?;
/// for n in 0..3 {
///     store.reserve(OrderId::from(Uuid::from_u128(n)), product, 2, Ttl::from_secs(60)?, t0).await?;
/// }
/// // A minute later every hold is due: at most 5 batches of EXPIRE_BATCH_MAX.
/// let expired = expire_due_batches(&store, &Meta::at(t0.plus_ms(60_000)), 5).await?;
/// assert_eq!(expired, 3);
/// assert_eq!(store.availability(product).await?, Some(10));
/// # Ok::<(), inventory_core::Error>(())
/// # }).unwrap();
/// ```
///
/// # Errors
/// The store's error; what earlier batches expired stays expired.
pub async fn expire_due_batches<S: InventoryStore + ?Sized>(
    store: &S,
    meta: &Meta,
    batches_max: usize,
) -> Result<usize, Error> {
    expire_due_batches_of(store, meta, EXPIRE_BATCH_MAX, batches_max).await
}

/// [`expire_due_batches`] with batches of `batch` (clamped to
/// `1..=EXPIRE_BATCH_MAX`).
///
/// # Errors
/// The store's error; what earlier batches expired stays expired.
pub async fn expire_due_batches_of<S: InventoryStore + ?Sized>(
    store: &S,
    meta: &Meta,
    batch: usize,
    batches_max: usize,
) -> Result<usize, Error> {
    let batch = batch.clamp(1, EXPIRE_BATCH_MAX);
    let mut total = 0;
    for _ in 0..batches_max.max(1) {
        let n = store.expire_due(meta, batch).await?;
        total += n;
        if n < batch {
            break;
        }
    }
    Ok(total)
}

#[cfg(feature = "maintenance")]
mod spawned {
    use std::sync::Arc;
    use std::time::SystemTime;

    use inventory_core::{Error, InventoryStore, Outbox, Timestamp};
    use parking_lot::Mutex;
    use tokio::sync::watch;
    use tokio::task::JoinHandle;

    use super::{Maintenance, Report};

    /// The running loop of [`Maintenance::spawn`]: totals so far, the last
    /// error, and a way to stop it.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::{Duration, SystemTime};
    /// use inventory_core::{InventoryStoreExt, ProductId, Timestamp, Uuid};
    /// use inventory_memory::maintenance::{Maintenance, MaintenanceSettings};
    /// use inventory_memory::MemoryStore;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), inventory_core::Error> {
    /// let store = Arc::new(MemoryStore::new());
    /// store.create_item(ProductId::from(Uuid::from_u128(1)), 5, Timestamp::from(SystemTime::now())).await?;
    /// let handle = Maintenance::new(Arc::clone(&store), MaintenanceSettings::default())
    ///     .on_event(|_entry| {})
    ///     .spawn();
    ///
    /// tokio::time::sleep(Duration::from_millis(10)).await; // the first run starts at once
    /// assert_eq!(handle.totals().drained, 1);
    /// assert!(handle.last_error().is_none());
    /// handle.stop().await?;
    /// # Ok(())
    /// # }
    /// ```
    #[derive(Debug)]
    pub struct MaintenanceHandle {
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
        state: Arc<Mutex<State>>,
    }

    #[derive(Debug, Default)]
    struct State {
        totals: Report,
        last_error: Option<Error>,
        /// The error of the run `stop` asked for, if it failed.
        final_error: Option<Error>,
    }

    impl<S: InventoryStore + Outbox> Maintenance<S> {
        /// Runs [`Maintenance::run_once`] every `settings.interval` on the
        /// current tokio runtime, reading the wall clock for `now`, until
        /// [`MaintenanceHandle::stop`]. A failed run is kept as
        /// [`MaintenanceHandle::last_error`] and the next run tries again.
        ///
        /// ```
        /// use std::sync::Arc;
        /// use std::time::SystemTime;
        /// use inventory_core::{InventoryStoreExt, ProductId, Timestamp, Uuid};
        /// use inventory_memory::maintenance::{Maintenance, MaintenanceSettings};
        /// use inventory_memory::MemoryStore;
        ///
        /// # #[tokio::main(flavor = "current_thread")]
        /// # async fn main() -> Result<(), inventory_core::Error> {
        /// let store = Arc::new(MemoryStore::new());
        /// let upkeep = Maintenance::new(Arc::clone(&store), MaintenanceSettings::default())
        ///     .on_event(|entry| assert_eq!(entry.event.payload.event_type(), "inventory.stock.adjusted"))
        ///     .spawn();
        /// let now = Timestamp::from(SystemTime::now());
        /// store.create_item(ProductId::from(Uuid::from_u128(1)), 5, now).await?;
        ///
        /// // Stopping runs once more, so what was committed before is handed on.
        /// let totals = upkeep.stop().await?;
        /// assert_eq!(totals.drained, 1);
        /// assert_eq!(store.outbox_len(), 0);
        /// # Ok(())
        /// # }
        /// ```
        ///
        /// # Panics
        /// Outside a tokio runtime.
        pub fn spawn(mut self) -> MaintenanceHandle {
            let (stop, mut stopped) = watch::channel(false);
            let state = Arc::new(Mutex::new(State::default()));
            let shared = Arc::clone(&state);
            let period = self
                .settings
                .interval
                .max(std::time::Duration::from_millis(1));
            let task = tokio::spawn(async move {
                let mut ticker = tokio::time::interval(period);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    let last = tokio::select! {
                        biased;
                        _ = stopped.changed() => true,
                        _ = ticker.tick() => false,
                    };
                    let run = self.run_once(Timestamp::from(SystemTime::now())).await;
                    let mut state = shared.lock();
                    match run {
                        Ok(report) => {
                            state.totals.drained += report.drained;
                            state.totals.expired += report.expired;
                            state.totals.purged += report.purged;
                        }
                        Err(e) => {
                            if last {
                                state.final_error = Some(e.clone());
                            }
                            state.last_error = Some(e);
                        }
                    }
                    if last {
                        break;
                    }
                }
            });
            MaintenanceHandle { stop, task, state }
        }
    }

    impl MaintenanceHandle {
        /// What every run so far did, summed.
        pub fn totals(&self) -> Report {
            self.state.lock().totals
        }

        /// The error of the latest failed run, if any.
        pub fn last_error(&self) -> Option<Error> {
            self.state.lock().last_error.clone()
        }

        /// Stops the loop after the run in progress and one last run (so
        /// what was committed before the call is drained and handed on),
        /// and returns the totals.
        ///
        /// # Errors
        /// The error of that last run, when it failed (then something may
        /// be left undrained or unswept).
        pub async fn stop(self) -> Result<Report, Error> {
            let _ = self.stop.send(true);
            let _ = self.task.await;
            let mut state = self.state.lock();
            match state.final_error.take() {
                Some(e) => Err(e),
                None => Ok(state.totals),
            }
        }
    }
}

#[cfg(feature = "maintenance")]
pub use spawned::MaintenanceHandle;

#[cfg(all(test, feature = "maintenance"))]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use inventory_core::{InventoryStoreExt, OrderId, ProductId, Ttl, Uuid};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The spawned loop drains and sweeps on its own and stops when told;
    /// tokio's clock is paused, so nothing waits for real.
    #[tokio::test(start_paused = true)]
    async fn the_spawned_loop_drains_and_stops() {
        let store = Arc::new(MemoryStore::new());
        let now = Timestamp::from(std::time::SystemTime::now());
        let product = ProductId::from(Uuid::from_u128(1));
        store.create_item(product, 2, now).await.unwrap();
        store
            .reserve(
                OrderId::from(Uuid::from_u128(2)),
                product,
                1,
                Ttl::default(),
                now,
            )
            .await
            .unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&seen);
        let handle = Maintenance::new(Arc::clone(&store), MaintenanceSettings::default())
            .on_event(move |_| {
                counter.fetch_add(1, Ordering::Relaxed);
            })
            .spawn();
        tokio::time::sleep(MAINTENANCE_INTERVAL_DEFAULT * 3).await;
        assert_eq!(seen.load(Ordering::Relaxed), 2, "created and reserved");
        // A change between two runs is handed on by the last run of stop.
        store.adjust(product, 1, "delivery", now).await.unwrap();
        let totals = handle.stop().await.unwrap();
        assert_eq!(seen.load(Ordering::Relaxed), 3, "and the adjustment");
        assert_eq!(totals.drained, 3);
        assert_eq!(store.outbox_len(), 0);
    }
}
