//! Two relays draining one PostgreSQL outbox at once.

/// Envelopes shaped like the orders service's (it owns its event types; the
/// transport under test only carries them).
mod orders {
    use event_bus::envelope::{ORDERS_SCHEMA_VERSION, ORDERS_SOURCE};
    use event_bus::Envelope;

    pub(super) const ORDER_CREATED: &str = "order.created";
    pub(super) const ORDER_CONFIRMED: &str = "order.confirmed";

    pub(super) fn envelope(
        event_type: &str,
        event_id: uuid::Uuid,
        occurred_at_ms: i64,
        correlation_id: Option<&str>,
        payload: serde_json::Value,
    ) -> Envelope {
        let (source, version) = (ORDERS_SOURCE, ORDERS_SCHEMA_VERSION);
        Envelope::new(
            source,
            event_type,
            version,
            event_id,
            occurred_at_ms,
            correlation_id,
            payload,
        )
    }
}

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use event_bus::pg::{
    enqueue, ensure_envelope_outbox, ensure_processed_events, record_processed, PgOutbox,
};
use event_bus::rabbit::{ConsumerConfig, RabbitConfig, RabbitConsumer, RabbitPublisher};
use event_bus::{relay, Claim, Envelope, Handler, HandlerError, OutboxSource, Relay, RelayConfig};
use inventory_core::{InventoryStore, Outbox, ProductId};
use inventory_sqlx::PgStore;
use orders::{ORDER_CONFIRMED, ORDER_CREATED};
use parking_lot::Mutex;
use serde_json::json;
use sqlx::PgPool;
use test_support::postgres::TestSchema;
use test_support::rabbitmq::{broker, Topology};
use tokio::sync::watch;

use crate::common::{adjust, create, eventually, id, meta, shutdown};
use crate::support::{assert_in_order_per_product, unique_spec};

/// Products written to.
const PRODUCTS: usize = 20;

/// Adjustments per product (each one event, after the create's).
const ADJUSTMENTS_PER_PRODUCT: usize = 50;

/// Events in all.
const EVENTS: usize = PRODUCTS * (ADJUSTMENTS_PER_PRODUCT + 1);

/// Small batches, so the relays interleave.
const BATCH_MAX: usize = 25;

/// Bound on the run.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Applies an event by inserting a row, deduplicated in the same
/// transaction with `processed_events`.
#[derive(Clone)]
struct PgEffects {
    pool: PgPool,
    deliveries: Arc<AtomicU64>,
    applied: Arc<Mutex<Vec<Envelope>>>,
    count: Arc<watch::Sender<usize>>,
}

impl Handler for PgEffects {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        let transient = |e: sqlx::Error| HandlerError::Transient(e.to_string());
        let mut tx = self.pool.begin().await.map_err(transient)?;
        if record_processed(&mut tx, "pg-test", envelope.event_id)
            .await
            .map_err(transient)?
        {
            sqlx::query("INSERT INTO effects (event_id) VALUES ($1)")
                .bind(envelope.event_id)
                .execute(&mut *tx)
                .await
                .map_err(transient)?;
            tx.commit().await.map_err(transient)?;
            let mut applied = self.applied.lock();
            applied.push(envelope.clone());
            self.count.send_replace(applied.len());
        }
        Ok(())
    }
}

fn publisher(url: &str, spec: &event_bus::QueueSpec, name: &str) -> RabbitPublisher {
    RabbitPublisher::new(RabbitConfig {
        url: url.to_owned(),
        exchange: spec.exchange.clone(),
        queues: vec![spec.clone()],
        connection_name: name.to_owned(),
    })
}

/// The PostgreSQL source reads the same envelope as the store's own outbox
/// port gives, and a claim dropped unsent gives its rows back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_source_reads_what_the_store_wrote() {
    let Some(db) = TestSchema::create().await else {
        return;
    };
    let store = PgStore::from_pool(db.pool(2).await);
    store.migrate().await.expect("migrate");
    let product = ProductId::from_uuid(id());
    store
        .execute(create(product, 3), &meta(0, "req-a"))
        .await
        .expect("create");
    let source = PgOutbox::new(db.pool(2).await);

    let from_store: Vec<Envelope> = store
        .unpublished(10)
        .await
        .expect("read")
        .iter()
        .map(Envelope::from_inventory)
        .collect();
    let claim = source.claim(10).await.expect("claim");
    assert_eq!(claim.envelopes(), from_store.as_slice());
    claim.release().await;
    assert_eq!(source.depth().await.expect("depth"), Some(1));
    source
        .claim(10)
        .await
        .expect("claim")
        .commit()
        .await
        .expect("commit");
    assert_eq!(source.depth().await.expect("depth"), Some(0));
    assert_eq!(
        source
            .prune(Duration::from_secs(3_600), 100)
            .await
            .expect("prune"),
        0
    );
    assert_eq!(source.prune(Duration::ZERO, 100).await.expect("prune"), 1);
}

/// The generic envelope outbox (what orders uses): an envelope written in a
/// transaction is claimed as written, and a dropped claim gives it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_outbox_round_trips_in_order() {
    let Some(db) = TestSchema::create().await else {
        return;
    };
    let pool = db.pool(2).await;
    ensure_envelope_outbox(&pool).await.expect("event_outbox");
    let order = id().to_string();
    let written: Vec<Envelope> = [ORDER_CREATED, ORDER_CONFIRMED]
        .iter()
        .enumerate()
        .map(|(n, event_type)| {
            orders::envelope(
                event_type,
                id(),
                n as i64,
                Some("req-o"),
                json!({"order_id": order}),
            )
        })
        .collect();
    let mut tx = pool.begin().await.expect("begin");
    for envelope in &written {
        enqueue(&mut tx, envelope).await.expect("enqueue");
    }
    tx.commit().await.expect("commit");
    let source = PgOutbox::envelopes(pool.clone());

    let claim = source.claim(10).await.expect("claim");
    assert_eq!(claim.envelopes(), written.as_slice());
    claim.release().await;
    assert_eq!(source.depth().await.expect("depth"), Some(2));
    source
        .claim(1)
        .await
        .expect("claim")
        .commit()
        .await
        .expect("commit");
    let rest = source.claim(10).await.expect("claim");
    assert_eq!(rest.envelopes(), &written[1..]);
    rest.commit().await.expect("commit");
    assert_eq!(source.depth().await.expect("depth"), Some(0));
}

/// A claim never publishes a row while an earlier row of its key is held by
/// another relay, even when it holds rows of that key on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_holds_back_rows_behind_a_row_locked_elsewhere() {
    let Some(db) = TestSchema::create().await else {
        return;
    };
    let pool = db.pool(3).await;
    ensure_envelope_outbox(&pool).await.expect("event_outbox");
    let (p, q) = (id().to_string(), id().to_string());
    let written: Vec<Envelope> = [&p, &p, &p, &q]
        .iter()
        .enumerate()
        .map(|(n, order)| {
            orders::envelope(
                ORDER_CREATED,
                id(),
                n as i64,
                None,
                json!({"order_id": order}),
            )
        })
        .collect();
    let mut tx = pool.begin().await.expect("begin");
    for envelope in &written {
        enqueue(&mut tx, envelope).await.expect("enqueue");
    }
    tx.commit().await.expect("commit");
    // Another relay holds p's second row.
    let mut other = pool.begin().await.expect("begin");
    sqlx::query("SELECT sequence FROM event_outbox WHERE event_id = $1 FOR UPDATE")
        .bind(written[1].event_id)
        .fetch_one(&mut *other)
        .await
        .expect("lock p's second row");
    let source = PgOutbox::envelopes(pool.clone());

    let claim = source.claim(10).await.expect("claim");

    assert_eq!(claim.envelopes(), &[written[0].clone(), written[3].clone()]);
    claim.commit().await.expect("commit");
    other.rollback().await.expect("rollback");
    let rest = source.claim(10).await.expect("claim");
    assert_eq!(rest.envelopes(), &written[1..3]);
}

/// Two relays on one PostgreSQL outbox, while events are being written: no
/// event is lost, none is published or applied twice, and each product's
/// events arrive in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_share_one_outbox_without_loss_or_duplicates() {
    let Some(url) = broker().await else { return };
    let Some(db) = TestSchema::create().await else {
        return;
    };
    let spec = unique_spec("pg");
    let _topology = Topology::new(&url, &spec);
    let store = PgStore::from_pool(db.pool(4).await);
    store.migrate().await.expect("migrate");
    let effects_pool = db.pool(2).await;
    ensure_processed_events(&effects_pool)
        .await
        .expect("processed_events");
    sqlx::query("CREATE TABLE effects (event_id UUID PRIMARY KEY)")
        .execute(&effects_pool)
        .await
        .expect("effects table");

    let config = RelayConfig {
        batch_max: BATCH_MAX,
        idle_poll_ms: 5,
        ..RelayConfig::default()
    };
    let mut relays = Vec::new();
    for name in ["pg-relay-1", "pg-relay-2"] {
        let (stop, signal) = shutdown();
        let relay = Relay::new(
            PgOutbox::new(db.pool(2).await),
            publisher(&url, &spec, name),
            config.clone(),
        );
        let health = relay.health();
        relays.push((stop, health, relay::spawn(relay, signal)));
    }
    let handler = PgEffects {
        pool: effects_pool.clone(),
        deliveries: Arc::default(),
        applied: Arc::default(),
        count: Arc::new(watch::channel(0).0),
    };
    let consumer = RabbitConsumer::new(
        ConsumerConfig::new(&url, spec.clone(), "pg-consumer"),
        handler.clone(),
    );
    let (stop_consumer, consumer_signal) = shutdown();
    let consumer_task = tokio::spawn(consumer.run(consumer_signal));

    let products: Vec<ProductId> = (0..PRODUCTS).map(|_| ProductId::from_uuid(id())).collect();
    for product in &products {
        store
            .execute(create(*product, 1), &meta(0, "setup"))
            .await
            .expect("create");
    }
    for round in 0..ADJUSTMENTS_PER_PRODUCT {
        for product in &products {
            store
                .execute(adjust(*product, 1), &meta(round as i64 + 1, "adjust"))
                .await
                .expect("adjust");
        }
    }

    let mut count = handler.count.subscribe();
    let arrived = tokio::time::timeout(RUN_TIMEOUT, count.wait_for(|n| *n >= EVENTS)).await;
    assert!(arrived.is_ok(), "all events arrive");
    let published = || relays.iter().map(|(_, h, _)| h.published()).sum::<u64>();
    assert!(eventually(RUN_TIMEOUT, || published() == EVENTS as u64).await);
    let applied = handler.applied.lock().clone();
    assert_eq!(applied.len(), EVENTS);
    assert_in_order_per_product(&applied);
    assert_eq!(
        handler.deliveries.load(Ordering::Relaxed),
        EVENTS as u64,
        "no event was delivered twice"
    );
    let effects: i64 = sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(&effects_pool)
        .await
        .expect("count effects");
    assert_eq!(effects, EVENTS as i64);
    let unsent: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(&effects_pool)
        .await
        .expect("count unsent");
    assert_eq!(unsent, 0);
    let shares: Vec<u64> = relays.iter().map(|(_, h, _)| h.published()).collect();
    eprintln!("two relays: published {shares:?} of {EVENTS}");

    for (stop, _, task) in relays {
        let _ = stop.send(());
        task.await.expect("relay stops");
    }
    let _ = stop_consumer.send(());
    consumer_task.await.expect("consumer stops");
}
