//! A consumer whose store is down for a while: transient failures are
//! retried in place until they apply, however many attempts that takes, and
//! never reach the dead-letter queue; only a permanent failure does. Shutdown
//! during the retries leaves the message on the queue for redelivery.

use std::time::Duration;

use event_bus::rabbit::{RabbitConsumer, HEADER_DEAD_LETTER_REASON};
use event_bus::Envelope;
use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use lapin::Channel;
use test_support::rabbitmq::{broker, Topology};

use crate::common::{eventually, shutdown, stock_envelope};
use crate::support::{publish, publisher, quick_config, unique_spec, Recorder};

/// How long messages may take to arrive.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a consumer may take to stop once asked.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Transient failures of one event: more than the 5 attempts after which the
/// consumer used to dead-letter it.
const TRANSIENT_FAILURES: u32 = 8;

/// The body of the next message of `queue`, waiting at most `timeout` for
/// one (a closed consumer's messages return to the queue asynchronously).
async fn get_within(channel: &Channel, queue: &str, timeout: Duration) -> Option<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let got = channel
            .basic_get(queue, BasicGetOptions { no_ack: true })
            .await
            .expect("get");
        if let Some(message) = got {
            return Some(message.delivery.data);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An event that fails transiently more often than the old attempt limit
/// is applied in the end, in its place among the others, and the
/// dead-letter queue holds only the permanent failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_until_applied_never_dead_lettered() {
    let Some(url) = broker().await else { return };
    let spec = unique_spec("transient");
    let _topology = Topology::new(&url, &spec);
    let (connection, channel) = publisher(&url, &spec).await;
    let flaky = stock_envelope("inventory.stock.adjusted", "fail-transiently", 2);
    let permanent = stock_envelope("inventory.stock.exploded", "ok", 0);
    let expected = vec![
        stock_envelope("inventory.stock.adjusted", "ok", 1),
        flaky.clone(),
        stock_envelope("inventory.stock.adjusted", "ok", 3),
        stock_envelope("inventory.stock.adjusted", "ok", 4),
    ];
    let published = [
        expected[0].clone(),
        flaky,
        expected[2].clone(),
        permanent.clone(),
        expected[3].clone(),
    ];
    publish(&channel, &spec, &published).await;
    let recorder = Recorder::failing_transiently("transient", TRANSIENT_FAILURES);
    let consumer = RabbitConsumer::new(
        quick_config(&url, &spec, "transient-consumer"),
        recorder.clone(),
    );
    let health = consumer.health();
    let (stop, signal) = shutdown();
    let task = tokio::spawn(consumer.run(signal));

    let all_applied = recorder.wait_applied(expected.len(), ARRIVAL_TIMEOUT).await;
    let dead_lettered = eventually(ARRIVAL_TIMEOUT, || health.dead_lettered() == 1).await;

    assert!(all_applied, "applied: {:?}", recorder.applied());
    assert_eq!(recorder.applied(), expected);
    assert!(dead_lettered, "dead-lettered: {}", health.dead_lettered());
    assert_eq!(health.retried(), u64::from(TRANSIENT_FAILURES));
    let letter = channel
        .basic_get(&spec.dead_letter_queue, BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("the permanent failure is dead-lettered");
    assert_eq!(
        Envelope::from_bytes(&letter.delivery.data).expect("envelope"),
        permanent
    );
    let reason = letter
        .delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(HEADER_DEAD_LETTER_REASON).cloned());
    assert!(
        matches!(&reason, Some(AMQPValue::LongString(r)) if r.to_string().starts_with("permanent failure")),
        "{reason:?}"
    );
    let more = channel
        .basic_get(&spec.dead_letter_queue, BasicGetOptions { no_ack: true })
        .await
        .expect("get");
    assert!(
        more.is_none(),
        "only the permanent failure is dead-lettered"
    );
    let _ = stop.send(());
    task.await.expect("consumer stops");
    let _ = connection.close(200, "done").await;
}

/// A consumer retrying an event whose store stays down stops promptly when
/// asked, and the event stays on the queue (not in the dead-letter queue)
/// for the next consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_transient_retries_leaves_the_message_queued() {
    let Some(url) = broker().await else { return };
    let spec = unique_spec("transient-stop");
    let _topology = Topology::new(&url, &spec);
    let (connection, channel) = publisher(&url, &spec).await;
    let stuck = stock_envelope("inventory.stock.adjusted", "fail-transiently", 1);
    publish(&channel, &spec, std::slice::from_ref(&stuck)).await;
    let recorder = Recorder::new("transient-stop");
    let consumer = RabbitConsumer::new(
        quick_config(&url, &spec, "transient-stop-consumer"),
        recorder.clone(),
    );
    let health = consumer.health();
    let (stop, signal) = shutdown();
    let task = tokio::spawn(consumer.run(signal));
    let retrying = eventually(ARRIVAL_TIMEOUT, || {
        health.retried() > u64::from(TRANSIENT_FAILURES)
    })
    .await;

    let _ = stop.send(());
    let stopped = tokio::time::timeout(STOP_TIMEOUT, task).await;

    assert!(retrying, "retried {} times", health.retried());
    assert!(stopped.is_ok(), "the consumer did not stop in time");
    assert_eq!(health.dead_lettered(), 0);
    assert!(recorder.applied().is_empty());
    let again = get_within(&channel, &spec.queue, ARRIVAL_TIMEOUT)
        .await
        .expect("the event is still queued");
    assert_eq!(Envelope::from_bytes(&again).expect("envelope"), stuck);
    let letter = channel
        .basic_get(&spec.dead_letter_queue, BasicGetOptions { no_ack: true })
        .await
        .expect("get");
    assert!(letter.is_none(), "nothing is dead-lettered");
    let _ = connection.close(200, "done").await;
}
