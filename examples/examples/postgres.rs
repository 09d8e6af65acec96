//! The inventory library on PostgreSQL: connect, migrate, and let fifty
//! buyers race for five units through group commit. Exactly five get one;
//! the events of every change wait in the transactional outbox.
//!
//! Run it against any PostgreSQL you may create tables in:
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run -p examples --example postgres`
//! (that URL is the default). Add `?sslmode=verify-full&sslrootcert=ca.pem`
//! for a server that wants TLS.

// An example talks to its reader on stdout.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::SystemTime;

use inventory_combiner::{Combiner, CombinerConfig};
use inventory_core::{
    Error, InventoryStoreExt, OrderId, Outbox, ProductId, Timestamp, Ttl, Uuid, OUTBOX_BATCH_MAX,
};
use inventory_sqlx::{PgOptions, PgStore};

/// Units on sale.
const STOCK_UNITS: u64 = 5;
/// Buyers racing for them, one task each.
const BUYERS: u128 = 50;

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let store = Arc::new(PgStore::connect(&url, PgOptions::default()).await?);
    store.migrate().await?;
    // Many buyers, few commits: the combiner batches what arrives together.
    let shop = Combiner::new(Arc::clone(&store), CombinerConfig::default());

    let product = ProductId::from(Uuid::new_v4());
    shop.create_item(product, STOCK_UNITS, now()).await?;
    println!("product {product}: {STOCK_UNITS} units, {BUYERS} buyers");

    let buyers: Vec<_> = (0..BUYERS)
        .map(|_| {
            let shop = shop.clone();
            tokio::spawn(async move {
                let order = OrderId::from(Uuid::new_v4());
                shop.reserve(order, product, 1, Ttl::from_secs(900)?, now())
                    .await
            })
        })
        .collect();
    let (mut held, mut turned_away) = (Vec::new(), 0);
    for buyer in buyers {
        match buyer.await.expect("buyer task") {
            Ok(reservation) => held.push(reservation),
            Err(Error::InsufficientStock { .. }) => turned_away += 1,
            Err(other) => return Err(other),
        }
    }
    println!(
        "{} hold a unit, {turned_away} were told it is gone",
        held.len()
    );
    assert_eq!(held.len() as u64, STOCK_UNITS, "never more than the stock");

    for reservation in &held {
        shop.confirm(reservation.id(), now()).await?;
    }
    println!(
        "all paid: {} available",
        shop.availability(product).await?.unwrap_or_default()
    );

    // The events were committed with their changes; a relay would publish
    // them now (the servers use `event-bus` for that).
    let waiting = store.unpublished(OUTBOX_BATCH_MAX).await?;
    let ours = waiting
        .iter()
        .filter(|entry| entry.event.payload.product_id() == product)
        .count();
    println!("{ours} events of this sale wait in the outbox");
    Ok(())
}
