//! Single-thread throughput of reserve + confirm on the memory store, in wall
//! time and in CPU time of the measuring thread (so a busy machine, which
//! preempts the thread, still gives a usable figure).
//!
//! ```text
//! cargo run --release -p inventory-memory --example throughput [PAIRS]
//! ```
//!
//! Two regimes, as in the criterion benches. Both drain the outbox every
//! 1,024 pairs, as an embedding that hands its events on does; `retaining`
//! keeps every finished reservation (the indexes and slabs grow with every
//! pair), `steady` also purges them, as a long-running embedding does. CPU time comes from
//! `/proc/thread-self/schedstat` (Linux); elsewhere only wall time is shown.

use std::hint::black_box;
use std::time::{Duration, Instant};

use inventory_core::{
    Actor, Command, Error, Meta, OrderId, ProductId, Quantity, ReservationId, Reserve, ReserveLine,
    StockLevel, Timestamp, Ttl, STOCK_MAX,
};
use inventory_memory::MemoryStore;
use uuid::Uuid;

/// Pairs measured when no count is given.
const PAIRS_DEFAULT: u64 = 1_000_000;

/// Pairs between two maintenance passes.
const MAINTENANCE_EVERY: u64 = 1_024;

/// Nanoseconds this thread has spent on a CPU, if the OS says.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn run(pairs: u64, steady: bool) -> Result<(Duration, Option<Duration>), Error> {
    let store = MemoryStore::new();
    let meta = Meta::at(Timestamp::from_millis(1_700_000_000_000));
    let product_id = ProductId::from_uuid(Uuid::new_v4());
    let create = Command::CreateItem {
        product_id,
        quantity: StockLevel::new(STOCK_MAX)?,
        actor: Actor::system(),
    };
    store.execute_sync(create, &meta)?;
    let (wall, cpu) = (Instant::now(), thread_cpu_time());
    for n in 0..pairs {
        let reservation_id = ReservationId::from_uuid(Uuid::from_u128(1 << 64 | u128::from(n)));
        let line = ReserveLine {
            product_id,
            quantity: Quantity::new(1)?,
            reservation_id,
        };
        let order = OrderId::from_uuid(Uuid::from_u128(2 << 64 | u128::from(n)));
        let reserve = Command::Reserve(Reserve::single(order, line, Ttl::default()));
        black_box(store.execute_sync(reserve, &meta)?);
        black_box(store.execute_sync(Command::Confirm { reservation_id }, &meta)?);
        if n % MAINTENANCE_EVERY == MAINTENANCE_EVERY - 1 {
            while !store.drain(usize::MAX).is_empty() {}
            if steady {
                store.purge_finished(meta.now.plus_ms(1), usize::MAX);
            }
        }
    }
    let cpu = cpu.zip(thread_cpu_time()).map(|(start, end)| end - start);
    Ok((wall.elapsed(), cpu))
}

fn main() -> Result<(), Error> {
    let pairs = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(PAIRS_DEFAULT);
    for (name, steady) in [("retaining", false), ("steady", true)] {
        let (wall, cpu) = run(pairs, steady)?;
        let rate = |d: Duration| pairs as f64 / d.as_secs_f64() / 1e6;
        let cpu = cpu.map_or("n/a".to_owned(), |c| format!("{:.2} M pairs/s", rate(c)));
        // An example's output is its purpose.
        #[allow(clippy::print_stdout)]
        {
            println!(
                "{name:>9}: {pairs} reserve+confirm pairs, wall {:.2} M pairs/s, cpu {cpu}",
                rate(wall)
            );
        }
    }
    Ok(())
}
