//! Embedding the inventory library: a flash sale of a few units, run in
//! process with the memory store. Many buyers race for the stock on real
//! threads; nobody gets a unit that is not there, the unpaid holds expire, and
//! every change leaves an event behind.
//!
//! Run it with `cargo run --release --example embedded`.

// An example talks to its reader on stdout.
#![allow(clippy::print_stdout)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use inventory_core::{
    Actor, Command, Error, Meta, OrderId, Outcome, ProductId, Quantity, ReservationId, Reserve,
    ReserveLine, StockLevel, Timestamp, Ttl,
};
use inventory_memory::MemoryStore;
use uuid::Uuid;

/// Units on sale.
const STOCK_UNITS: u64 = 5;
/// Buyers racing for them, one thread each.
const BUYERS: usize = 64;
/// How long a buyer may hold a unit before paying.
const HOLD_SECS: u64 = 30;

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

fn main() -> Result<(), Error> {
    let store = Arc::new(MemoryStore::new());
    let product = ProductId::from_uuid(Uuid::new_v4());
    let start = Meta::at(now());
    store.execute_sync(
        Command::CreateItem {
            product_id: product,
            quantity: StockLevel::new(STOCK_UNITS)?,
            actor: Actor::new("warehouse")?,
        },
        &start,
    )?;
    println!("product {product}: {STOCK_UNITS} units in stock, {BUYERS} buyers");

    // Every buyer tries to hold one unit at the same moment.
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let turned_away = Arc::new(AtomicUsize::new(0));
    let buyers: Vec<_> = (0..BUYERS)
        .map(|_| {
            let (store, held, turned_away, start) = (
                store.clone(),
                held.clone(),
                turned_away.clone(),
                start.clone(),
            );
            std::thread::spawn(move || {
                let line = ReserveLine {
                    product_id: product,
                    quantity: Quantity::new(1).expect("1 is a valid quantity"),
                    reservation_id: ReservationId::from_uuid(Uuid::new_v4()),
                };
                let order = OrderId::from_uuid(Uuid::new_v4());
                let ttl = Ttl::from_secs(HOLD_SECS).expect("valid hold");
                match store
                    .execute_sync(Command::Reserve(Reserve::single(order, line, ttl)), &start)
                {
                    Ok(Outcome::Reserved { reservations, .. }) => {
                        held.lock()
                            .expect("no poisoned lock")
                            .push(reservations[0].id());
                    }
                    Err(Error::InsufficientStock { .. }) => {
                        turned_away.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("unexpected answer: {other:?}"),
                }
            })
        })
        .collect();
    for buyer in buyers {
        buyer.join().expect("buyer thread");
    }
    let held = Arc::try_unwrap(held)
        .expect("threads done")
        .into_inner()
        .expect("lock");
    println!(
        "{} buyers hold a unit, {} were told the stock is gone",
        held.len(),
        turned_away.load(Ordering::Relaxed)
    );

    // The first three pay; the others walk away and their holds run out.
    for reservation_id in &held[..3] {
        store.execute_sync(
            Command::Confirm {
                reservation_id: *reservation_id,
            },
            &start,
        )?;
    }
    let later = Meta::at(start.now.plus_ms(HOLD_SECS * 1000));
    let expired = store.expire_due_sync(&later, inventory_core::EXPIRE_BATCH_MAX);
    let item = store.item_sync(product).expect("the item exists");
    println!(
        "3 paid, {expired} holds expired: quantity {}, reserved {}, available {}, version {}",
        item.quantity(),
        item.reserved(),
        item.available(),
        item.version()
    );

    println!("events, in commit order:");
    for entry in store.drain(inventory_core::OUTBOX_BATCH_MAX) {
        println!(
            "  #{:<3} {}",
            entry.sequence,
            entry.event.payload.event_type()
        );
    }
    Ok(())
}
