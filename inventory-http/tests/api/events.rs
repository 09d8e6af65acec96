//! Stock events from the server's outbox: through the in-process bus and
//! through a real RabbitMQ, with the request id as correlation id; readiness
//! with the broker down.

use std::sync::Arc;
use std::time::Duration;

use event_bus::{ConsumerConfig, Envelope, Handler, HandlerError, InProcessBus, RabbitConsumer};
use http::Method;
use inventory_http::{AnyStore, Config};
use serde_json::json;
use test_support::rabbitmq::{broker, unique, Topology};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::helpers::{spawn_app_with_events, test_config, Reply, TestApp};
use crate::stores::{memory, postgres};

/// How long a test waits for an event or a readiness change before failing.
const WAIT_MS: u64 = 15_000;

/// Pause between two polls of a background state.
const POLL_PAUSE_MS: u64 = 20;

/// The request id every change of the scripted run carries.
const REQUEST_ID: &str = "abc";

/// The request id of the item's creation.
const CREATE_REQUEST_ID: &str = "create-1";

/// Creates an item (`X-Request-Id: create-1`), then reserves and confirms
/// with `X-Request-Id: abc`;
/// returns the product and the reservation id.
async fn reserve_and_confirm(t: &TestApp<AnyStore>) -> (Uuid, String) {
    let product = Uuid::new_v4();
    let create = serde_json::to_vec(&json!({"product_id": product, "quantity": 5})).unwrap();
    let headers = [
        ("content-type", "application/json"),
        ("x-request-id", CREATE_REQUEST_ID),
    ];
    let created = t
        .send(Method::POST, "/api/inventory/items", &headers, &create)
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json());
    let body = json!({"product_id": product, "quantity": 2, "order_id": Uuid::new_v4()});
    let bytes = serde_json::to_vec(&body).unwrap();
    let headers = [
        ("content-type", "application/json"),
        ("x-request-id", REQUEST_ID),
    ];
    let reserved = t
        .send(Method::POST, "/api/inventory/reserve", &headers, &bytes)
        .await;
    assert_eq!(reserved.status, 201, "{:?}", reserved.json());
    let id = reserved.json()["reservation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let confirmed = t
        .send(
            Method::POST,
            &format!("/api/inventory/confirm/{id}"),
            &[("x-request-id", REQUEST_ID)],
            b"",
        )
        .await;
    assert_eq!(confirmed.status, 200, "{:?}", confirmed.json());
    (product, id)
}

/// Receives envelopes of `product` until a `confirmed` one arrived; returns
/// them in arrival order.
async fn events_of(product: Uuid, next: impl AsyncFnMut() -> Option<Envelope>) -> Vec<Envelope> {
    let mut next = next;
    let mut seen = Vec::new();
    let wait = async {
        while let Some(e) = next().await {
            if e.payload["product_id"] != product.to_string() {
                continue;
            }
            let done = e.event_type == "inventory.stock.confirmed";
            seen.push(e);
            if done {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_millis(WAIT_MS), wait)
        .await
        .expect("the confirmed event arrives in time");
    seen
}

/// GETs `path` until `done` holds for the reply (the relay works in the
/// background, on the broker's clock); fails after [`WAIT_MS`].
async fn poll(t: &TestApp<AnyStore>, path: &str, done: impl Fn(&Reply) -> bool) -> Reply {
    let wait = async {
        loop {
            let reply = t.get(path).await;
            if done(&reply) {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(POLL_PAUSE_MS)).await;
        }
    };
    tokio::time::timeout(Duration::from_millis(WAIT_MS), wait)
        .await
        .unwrap_or_else(|_| panic!("{path} reached the expected state within {WAIT_MS} ms"))
}

/// The creation's, the reserve's and the confirm's envelopes, in that order,
/// each carrying the id of the request that caused it.
fn assert_reserve_confirm(seen: &[Envelope], reservation_id: &str) {
    let types: Vec<&str> = seen.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "inventory.stock.adjusted",
            "inventory.stock.reserved",
            "inventory.stock.confirmed"
        ]
    );
    for e in &seen[1..] {
        assert_eq!(e.correlation_id.as_deref(), Some(REQUEST_ID), "{e:?}");
        assert_eq!(e.payload["reservation_id"], reservation_id, "{e:?}");
        assert_eq!(e.source, "inventory");
    }
    assert_eq!(seen[0].correlation_id.as_deref(), Some(CREATE_REQUEST_ID));
}

/// Without an AMQP URL a reserve and a confirm reach the in-process bus the
/// server was given, correlated with the request id.
#[tokio::test]
async fn reserve_and_confirm_reach_the_in_process_bus_with_the_request_id() {
    for store in [memory().await, postgres().await].into_iter().flatten() {
        let (store, _schema) = store;
        let bus = InProcessBus::new();
        let mut events = bus.subscribe("inventory.stock.").unwrap();
        let t = spawn_app_with_events(store, test_config(), &bus).await;

        let (product, id) = reserve_and_confirm(&t).await;

        let seen = events_of(product, async || {
            events.recv().await.map(|e| e.as_ref().clone())
        })
        .await;
        assert_reserve_confirm(&seen, &id);
        let ready = t.get("/health/ready").await;
        assert_eq!(ready.status, 200);
        assert_eq!(ready.json()["checks"]["events"], "ok");
        t.shutdown().await;
    }
}

/// Forwards every envelope it is given to a channel.
#[derive(Clone)]
struct Forward(mpsc::UnboundedSender<Envelope>);

impl Handler for Forward {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        let _ = self.0.send(envelope.clone());
        Ok(())
    }
}

/// With `AMQP_URL` set, the PostgreSQL store's reserve and confirm events
/// reach a consumer of a RabbitMQ queue bound to the exchange, correlated
/// with the request id.
#[tokio::test]
async fn reserve_and_confirm_reach_rabbitmq_from_postgres_with_the_request_id() {
    let Some(url) = broker().await else { return };
    let Some((store, _schema)) = postgres().await else {
        return;
    };
    let config = Config {
        amqp_url: Some(url.clone()),
        inventory_events_exchange: unique("inventory-http.exchange"),
        orders_inventory_queue: unique("inventory-http.queue"),
        ..test_config()
    };
    let spec = config.events().queues[0].clone();
    let _topology = Topology::new(&url, &spec);
    let t = spawn_app_with_events(store, config, &InProcessBus::new()).await;
    let (sent, mut received) = mpsc::unbounded_channel();
    let consumer = RabbitConsumer::new(
        ConsumerConfig::new(&url, spec, "inventory-http-test"),
        Forward(sent),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let consumer = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));

    let (product, id) = reserve_and_confirm(&t).await;

    let seen = events_of(product, async || received.recv().await).await;
    assert_reserve_confirm(&seen, &id);
    let ready = t.get("/health/ready").await;
    assert_eq!(ready.status, 200, "{:?}", ready.json());
    // The consumer may see the events before the relay counted them sent.
    poll(&t, "/metrics", |r| {
        String::from_utf8_lossy(&r.body).contains("inventory_events_published_total 3\n")
    })
    .await;
    let _ = stop.send(());
    consumer.await.unwrap();
    t.shutdown().await;
}

/// With the broker unreachable, the first event makes readiness a 503 that
/// names the broker, and the event waits in the outbox.
#[tokio::test]
async fn readiness_reports_the_broker_down() {
    let Some((store, _schema)) = memory().await else {
        return;
    };
    let config = Config {
        amqp_url: Some("amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
        ..test_config()
    };
    let t = spawn_app_with_events(store, config, &InProcessBus::new()).await;
    t.create_item(1).await;

    let ready = poll(&t, "/health/ready", |r| r.status == 503).await;
    assert_eq!(ready.code(), "not_ready");
    let detail = ready.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("rabbitmq at 127.0.0.1:1"), "{detail}");
    assert!(!detail.contains("guest"), "{detail}");
    assert!(ready.header("retry-after").is_some());
    poll(&t, "/metrics", |r| {
        String::from_utf8_lossy(&r.body).contains("inventory_outbox_depth 1\n")
    })
    .await;
    let store: &Arc<AnyStore> = t.app.store();
    let AnyStore::Memory(m) = store.as_ref() else {
        unreachable!("memory store")
    };
    assert_eq!(m.outbox_len(), 1, "the event waits in the outbox");
    t.shutdown().await;
}
