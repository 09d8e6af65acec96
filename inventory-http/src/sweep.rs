//! The expiry sweep: every interval, expire the reservations whose hold ran
//! out, in bounded batches, reading the time from the injected [`Clock`];
//! then forget what finished longer ago than the retention window (a store
//! that keeps its history, PostgreSQL, forgets nothing).

use std::sync::Arc;
use std::time::Duration;

use inventory_core::{InventoryStore, Meta, Timestamp};
use inventory_memory::maintenance::expire_due_batches_of;
use inventory_memory::PURGE_BATCH_MAX;
use tokio::sync::watch;

use crate::app::App;

/// Settings of the sweep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepSettings {
    /// Time between runs, in milliseconds.
    pub interval_ms: u64,
    /// Reservations per batch (clamped to core's `EXPIRE_BATCH_MAX`).
    pub batch_max: usize,
    /// Batches per run.
    pub batches_per_run_max: usize,
    /// Finished reservations and ledger entries older than this are
    /// forgotten, in milliseconds; 0 keeps them.
    pub retention_ms: u64,
}

impl<S: InventoryStore> App<S> {
    /// Runs one sweep now: batches of expiry until a batch comes back short or
    /// the per-run bound is reached. Returns how many reservations it expired.
    ///
    /// # Errors
    /// The store's error; what earlier batches expired stays expired.
    pub async fn sweep_once(&self) -> Result<usize, inventory_core::Error> {
        let meta = Meta::at(Timestamp::from_millis(self.clock.now_ms()));
        let total = expire_due_batches_of(
            &*self.store,
            &meta,
            self.sweep.batch_max,
            self.sweep.batches_per_run_max,
        )
        .await?;
        if total > 0 {
            self.metrics.expired(total);
            if let Some(cache) = &self.cache {
                cache.invalidate_all().await;
            }
            tracing::info!(expired = total, "expiry sweep");
        }
        self.purge_once().await?;
        Ok(total)
    }

    /// Forgets up to [`PURGE_BATCH_MAX`] finished reservations and ledger
    /// entries older than the retention window; returns how many.
    ///
    /// # Errors
    /// The store's error.
    pub async fn purge_once(&self) -> Result<usize, inventory_core::Error> {
        if self.sweep.retention_ms == 0 {
            return Ok(0);
        }
        let before = Timestamp::from_millis(self.clock.now_ms()).minus_ms(self.sweep.retention_ms);
        let purged = self.store.purge_finished(before, PURGE_BATCH_MAX).await?;
        if purged > 0 {
            tracing::info!(purged, "forgot finished reservations and ledger entries");
        }
        Ok(purged)
    }
}

/// Runs the sweep every `interval_ms` until `stop` turns true. The first run
/// happens one interval after the start.
pub async fn run_sweep<S: InventoryStore>(app: Arc<App<S>>, mut stop: watch::Receiver<bool>) {
    let period = Duration::from_millis(app.sweep.interval_ms.max(1));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            _ = ticker.tick() => {
                if let Err(e) = app.sweep_once().await {
                    tracing::warn!(error = %e, "expiry sweep failed; retrying next interval");
                }
            }
        }
        if *stop.borrow() {
            break;
        }
    }
    tracing::info!("expiry sweep stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::config::Config;
    use inventory_core::{
        Actor, AdjustmentKey, Command, OrderId, ProductId, Quantity, Reason, ReservationId,
        Reserve, ReserveLine, StockDelta, StockLevel, Timestamp, Ttl,
    };
    use inventory_memory::MemoryStore;
    use uuid::Uuid;

    /// The background loop expires due reservations on its interval and stops
    /// when told to; time is paused and moved by hand, nothing sleeps.
    #[tokio::test(start_paused = true)]
    async fn the_loop_expires_on_its_interval_and_stops() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let store = Arc::new(MemoryStore::new());
        let app = Arc::new(
            App::new(store.clone(), clock.clone(), &Config::embedded())
                .await
                .unwrap(),
        );
        let product = ProductId::from_uuid(Uuid::new_v4());
        let meta = Meta::at(Timestamp::from_millis(clock.now_ms()));
        let create = Command::CreateItem {
            product_id: product,
            quantity: StockLevel::new(5).unwrap(),
            actor: Actor::system(),
        };
        store.execute(create, &meta).await.unwrap();
        let line = ReserveLine {
            product_id: product,
            quantity: Quantity::new(2).unwrap(),
            reservation_id: ReservationId::from_uuid(Uuid::new_v4()),
        };
        let order = OrderId::from_uuid(Uuid::new_v4());
        let reserve = Reserve::single(order, line, Ttl::from_secs(30).unwrap());
        store
            .execute(Command::Reserve(reserve), &meta)
            .await
            .unwrap();

        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run_sweep(app.clone(), stopped));
        clock.advance(Duration::from_secs(31));
        assert_eq!(store.item(product).await.unwrap().unwrap().reserved(), 2);
        tokio::time::sleep(Duration::from_millis(app.sweep.interval_ms + 1)).await;
        assert_eq!(store.item(product).await.unwrap().unwrap().reserved(), 0);

        stop.send(true).unwrap();
        task.await.unwrap();
    }

    /// Soak: a long run of orders (reserve, then confirm or release or let
    /// expire) and keyed restocks, with the sweep running as time passes,
    /// keeps the store's footprint flat: after the retention window it holds
    /// the same number of reservations and ledger entries round after round,
    /// rather than one more per order.
    #[tokio::test]
    async fn a_long_run_keeps_the_memory_store_flat() {
        const ROUND_SECS: u64 = 10;
        const ORDERS_PER_ROUND: u64 = 30;
        let clock = Arc::new(ManualClock::new(1_000_000));
        let store = Arc::new(MemoryStore::new());
        let mut config = Config::embedded();
        config.finished_retention_secs = 60;
        let app = App::new(store.clone(), clock.clone(), &config)
            .await
            .unwrap();
        let product = ProductId::from_uuid(Uuid::new_v4());
        let create = Command::CreateItem {
            product_id: product,
            quantity: StockLevel::new(1_000).unwrap(),
            actor: Actor::system(),
        };
        store
            .execute(create, &Meta::at(Timestamp::from_millis(clock.now_ms())))
            .await
            .unwrap();
        let mut sizes = Vec::new();
        for round in 0..60_u64 {
            let meta = Meta::at(Timestamp::from_millis(clock.now_ms()));
            for n in 0..ORDERS_PER_ROUND {
                let reservation_id = ReservationId::from_uuid(Uuid::new_v4());
                let line = ReserveLine {
                    product_id: product,
                    quantity: Quantity::new(1).unwrap(),
                    reservation_id,
                };
                let order = OrderId::from_uuid(Uuid::new_v4());
                let reserve = Reserve::single(order, line, Ttl::from_secs(5).unwrap());
                store
                    .execute(Command::Reserve(reserve), &meta)
                    .await
                    .unwrap();
                let settle = match n % 3 {
                    0 => Command::Confirm { reservation_id },
                    1 => Command::Release { reservation_id },
                    _ => continue,
                };
                store.execute(settle, &meta).await.unwrap();
            }
            let restock = Command::Adjust {
                product_id: product,
                delta: StockDelta::new(10).unwrap(),
                reason: Reason::new("restock").unwrap(),
                actor: Actor::system(),
                key: Some(AdjustmentKey::new(&format!("restock-{round}")).unwrap()),
            };
            store.execute(restock, &meta).await.unwrap();
            store.drain(usize::MAX);
            clock.advance(Duration::from_secs(ROUND_SECS));
            app.sweep_once().await.unwrap();
            sizes.push(store.footprint());
        }
        let settled = &sizes[20..];
        assert!(
            settled.windows(2).all(|w| w[0] == w[1]),
            "flat after the window: {settled:?}"
        );
        let held = settled[0];
        let window_rounds = (60 / ROUND_SECS + 1) as usize;
        assert!(
            held.reservations <= window_rounds * ORDERS_PER_ROUND as usize,
            "only the window is kept: {held:?}"
        );
        assert!(held.ledger_entries <= window_rounds, "{held:?}");
        store.assert_consistent();
    }
}
