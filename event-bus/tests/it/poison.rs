//! Messages a consumer can never apply go to the dead-letter queue with the
//! reason, and never block the messages behind them.

use std::time::Duration;

use event_bus::rabbit::{RabbitConsumer, HEADER_DEAD_LETTER_REASON};
use event_bus::Envelope;
use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::types::AMQPValue;
use lapin::BasicProperties;
use test_support::rabbitmq::{broker, Topology};

use crate::common::{eventually, shutdown, stock_envelope};
use crate::support::{publisher, quick_config, unique_spec, Recorder};

/// How long messages may take to arrive.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Garbage and an unknown event type (a permanent failure) each land in the
/// dead-letter queue at once, with their reason; the good events around them
/// are applied, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_and_later_ones_flow() {
    let Some(url) = broker().await else { return };
    let spec = unique_spec("poison");
    let _topology = Topology::new(&url, &spec);
    let (connection, channel) = publisher(&url, &spec).await;
    let good: Vec<Envelope> = (1..=5)
        .map(|n| stock_envelope("inventory.stock.adjusted", "ok", n))
        .collect();
    let messages: Vec<(&str, Vec<u8>)> = vec![
        ("inventory.stock.adjusted", good[0].to_bytes()),
        ("inventory.stock.reserved", b"{not an envelope".to_vec()),
        ("inventory.stock.adjusted", good[1].to_bytes()),
        (
            "inventory.stock.exploded",
            stock_envelope("inventory.stock.exploded", "x", 0).to_bytes(),
        ),
        ("inventory.stock.adjusted", good[2].to_bytes()),
        ("inventory.stock.adjusted", good[3].to_bytes()),
        ("inventory.stock.adjusted", good[4].to_bytes()),
    ];
    for (routing_key, body) in &messages {
        channel
            .basic_publish(
                &spec.exchange,
                routing_key,
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .expect("publish")
            .await
            .expect("confirmed");
    }

    let recorder = Recorder::new("poison");
    let config = quick_config(&url, &spec, "poison-consumer");
    let consumer = RabbitConsumer::new(config, recorder.clone());
    let health = consumer.health();
    let (stop, signal) = shutdown();
    let task = tokio::spawn(consumer.run(signal));

    assert!(recorder.wait_applied(good.len(), ARRIVAL_TIMEOUT).await);
    assert_eq!(recorder.applied(), good);
    assert!(eventually(ARRIVAL_TIMEOUT, || health.dead_lettered() == 2).await);
    assert_eq!(health.retried(), 0, "a permanent failure is not retried");
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let message = channel
            .basic_get(&spec.dead_letter_queue, BasicGetOptions { no_ack: true })
            .await
            .expect("get")
            .expect("a dead letter");
        let headers = message
            .delivery
            .properties
            .headers()
            .clone()
            .expect("headers");
        let reason = match headers.inner().get(HEADER_DEAD_LETTER_REASON) {
            Some(AMQPValue::LongString(reason)) => reason.to_string(),
            other => panic!("no reason header: {other:?}"),
        };
        reasons.push(reason);
    }
    assert!(
        reasons[0].starts_with("malformed envelope"),
        "{}",
        reasons[0]
    );
    assert!(
        reasons[1].contains("unknown event type inventory.stock.exploded"),
        "{}",
        reasons[1]
    );
    let _ = stop.send(());
    task.await.expect("consumer stops");
    let _ = connection.close(200, "done").await;
}
