//! Consuming the library's events in process: `Maintenance` drains the
//! memory store's outbox into a channel, and a consumer task keeps a
//! read model (units sold per product) and raises a stock-out alert, while
//! shoppers reserve and pay.
//!
//! Each change's events are committed with it and handed on in commit order,
//! once. Across processes, the servers relay the same events to RabbitMQ
//! with `event-bus`.
//!
//! Run it with `cargo run -p examples --example events`.

// An example talks to its reader on stdout.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use inventory_core::{
    Error, EventPayload, InventoryStoreExt, OrderId, OutboxEntry, ProductId, Timestamp, Ttl, Uuid,
};
use inventory_memory::maintenance::{Maintenance, MaintenanceSettings};
use inventory_memory::MemoryStore;
use tokio::sync::mpsc;

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let store = Arc::new(MemoryStore::new());
    let (events, mut inbox) = mpsc::unbounded_channel::<OutboxEntry>();
    let upkeep = Maintenance::new(
        Arc::clone(&store),
        MaintenanceSettings {
            interval: Duration::from_millis(20),
            ..MaintenanceSettings::default()
        },
    )
    .on_event(move |entry| {
        // The receiver outlives the loop; a send only fails after it is gone.
        let _ = events.send(entry);
    })
    .spawn();

    let consumer = tokio::spawn(async move {
        let mut sold: BTreeMap<ProductId, u64> = BTreeMap::new();
        let mut stock_outs = Vec::new();
        while let Some(entry) = inbox.recv().await {
            match entry.event.payload {
                EventPayload::Confirmed {
                    product_id,
                    quantity,
                    ..
                } => *sold.entry(product_id).or_default() += quantity,
                EventPayload::Depleted { product_id } => {
                    println!(
                        "alert: product {product_id} is out of stock (event #{})",
                        entry.sequence
                    );
                    stock_outs.push(product_id);
                }
                _ => {}
            }
        }
        (sold, stock_outs)
    });

    let mugs = ProductId::from(Uuid::new_v4());
    store.create_item(mugs, 3, now()).await?;
    for _ in 0..4 {
        let order = OrderId::from(Uuid::new_v4());
        match store
            .reserve(order, mugs, 1, Ttl::from_secs(60)?, now())
            .await
        {
            Ok(hold) => {
                store.confirm(hold.id(), now()).await?;
            }
            Err(Error::InsufficientStock { .. }) => println!("a shopper found no mug left"),
            Err(other) => return Err(other),
        }
    }

    // Stopping makes one last run: every event above is handed on.
    let totals = upkeep.stop().await?;
    let (sold, stock_outs) = consumer.await.expect("consumer task");
    println!(
        "{} events handed on; mugs sold: {}; stock-outs: {}",
        totals.drained,
        sold.get(&mugs).copied().unwrap_or_default(),
        stock_outs.len()
    );
    Ok(())
}
