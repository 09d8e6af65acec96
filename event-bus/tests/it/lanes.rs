//! A consumer with several ordered lanes: the events of one ordering key
//! are applied in order, one at a time, while a key whose event keeps
//! failing holds back only the events of its own lane.

use std::time::Duration;

use event_bus::rabbit::RabbitConsumer;
use event_bus::Envelope;
use test_support::rabbitmq::{broker, Topology};

use crate::common::{id, shutdown};
use crate::support::{
    assert_in_order_per_product, publish, publisher, quick_config, unique_spec, Recorder,
};

/// How long messages may take to arrive.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Transient failures of the stuck key's first event.
const TRANSIENT_FAILURES: u32 = 20;

/// Keys of the other events: fixed, so their lanes are the same on every run.
const OTHER_KEYS: [&str; 8] = ["k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8"];

/// Events of each other key.
const EVENTS_PER_KEY: u64 = 5;

/// An adjusted event of `key`, the `n`-th of that key.
fn keyed(key: &str, correlation_id: &str, n: u64) -> Envelope {
    Envelope::new(
        "inventory",
        "inventory.stock.adjusted",
        1,
        id(),
        0,
        Some(correlation_id),
        serde_json::json!({"product_id": key, "quantity_after": n}),
    )
}

/// Runs `lanes` lanes over: the stuck key's first event (failing
/// transiently a while), its second, then every other key's events,
/// interleaved. Returns what was applied, in order.
async fn run(lanes: u16) -> Option<Vec<Envelope>> {
    let url = broker().await?;
    let spec = unique_spec("lanes");
    let _topology = Topology::new(&url, &spec);
    let (connection, channel) = publisher(&url, &spec).await;
    let mut published = vec![
        keyed("stuck", "fail-transiently", 1),
        keyed("stuck", "ok", 2),
    ];
    for n in 1..=EVENTS_PER_KEY {
        for key in OTHER_KEYS {
            published.push(keyed(key, "ok", n));
        }
    }
    publish(&channel, &spec, &published).await;
    let recorder = Recorder::failing_transiently("lanes", TRANSIENT_FAILURES);
    let mut config = quick_config(&url, &spec, "lanes-consumer");
    config.lanes = lanes;
    let consumer = RabbitConsumer::new(config, recorder.clone());
    let (stop, signal) = shutdown();
    let task = tokio::spawn(consumer.run(signal));
    let all = recorder
        .wait_applied(published.len(), ARRIVAL_TIMEOUT)
        .await;
    let _ = stop.send(());
    task.await.expect("consumer stops");
    let _ = connection.close(200, "done").await;
    assert!(all, "applied: {}", recorder.applied().len());
    Some(recorder.applied())
}

/// With several lanes, every key's events are applied once each and in
/// order, and events of keys in other lanes pass the stuck one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_keep_each_keys_order_and_let_other_keys_pass() {
    let Some(applied) = run(4).await else { return };
    assert_in_order_per_product(&applied);
    let stuck_at = applied
        .iter()
        .position(|e| e.ordering_key() == "stuck")
        .expect("the stuck key's first event is applied");
    assert!(
        stuck_at > 0,
        "events of other lanes were applied while the stuck key retried"
    );
}

/// With one lane (the default) the queue is applied in order: the stuck
/// event holds back everything behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lane_applies_the_queue_in_order() {
    let Some(applied) = run(1).await else { return };
    assert_in_order_per_product(&applied);
    assert_eq!(applied[0].ordering_key(), "stuck");
    assert_eq!(applied[1].ordering_key(), "stuck");
}
