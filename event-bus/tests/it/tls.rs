//! RabbitMQ over TLS (`amqps://`): the local broker behind a TLS terminator
//! with a certificate of a CA made for the test (a TLS listener on the
//! shared broker would need its restart).

use std::time::Duration;

use event_bus::rabbit::{AmqpTls, ConsumerConfig, RabbitConfig, RabbitConsumer, RabbitPublisher};
use event_bus::Publisher;
use lapin::uri::AMQPUri;
use service_guard::TlsClient;
use test_support::rabbitmq::{broker, Topology};
use test_support::tls::{TempDir, TestCa, TlsTerminator};

use crate::common::{shutdown, stock_envelope};
use crate::support::{unique_spec, Recorder};

/// How long the events may take to arrive.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Goal: events published and consumed by the event bus's RabbitMQ
/// publisher and consumer over `amqps://`, trusting the test CA, arrive once
/// each and in order; the same URL without a TLS configuration, or trusting
/// another CA, does not connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_travel_over_amqps() {
    let Some(url) = broker().await else { return };
    let uri: AMQPUri = url.parse().expect("broker url");
    let plain = format!("{}:{}", uri.authority.host, uri.authority.port);
    let broker_addr = tokio::net::lookup_host(plain.as_str())
        .await
        .expect("resolve the broker")
        .next()
        .expect("an address");
    let ca = TestCa::new("amqp test ca");
    let terminator = TlsTerminator::start(&ca.issue(), broker_addr).await;
    let amqps = url.replacen("amqp://", "amqps://", 1).replacen(
        &plain,
        &format!("localhost:{}", terminator.addr().port()),
        1,
    );
    let dir = TempDir::new("amqps");
    let tls = AmqpTls::new(
        TlsClient::new(Some(&ca.write(&dir, "ca.pem")))
            .expect("the ca file")
            .client_config(),
    );
    let other = TestCa::new("another ca");
    let wrong = AmqpTls::new(
        TlsClient::new(Some(&other.write(&dir, "other.pem")))
            .expect("the other ca file")
            .client_config(),
    );
    let spec = unique_spec("tls");
    let _topology = Topology::new(&url, &spec);
    let config = RabbitConfig {
        url: amqps.clone(),
        exchange: spec.exchange.clone(),
        queues: vec![spec.clone()],
        connection_name: "tls-relay".to_owned(),
    };
    let envelopes: Vec<_> = (1..=3)
        .map(|n| stock_envelope("inventory.stock.adjusted", "req-tls", n))
        .collect();

    let without_tls = RabbitPublisher::new(config.clone())
        .publish(&envelopes)
        .await;
    let untrusted = RabbitPublisher::new(config.clone())
        .with_tls(wrong)
        .publish(&envelopes)
        .await;
    let publisher = RabbitPublisher::new(config).with_tls(tls.clone());
    let published = publisher.publish(&envelopes).await;
    let recorder = Recorder::new("tls");
    let consumer = RabbitConsumer::new(
        ConsumerConfig::new(&amqps, spec.clone(), "tls-consumer"),
        recorder.clone(),
    )
    .with_tls(tls);
    let (stop, stopped) = shutdown();
    let task = tokio::spawn(consumer.run(stopped));
    let arrived = recorder
        .wait_applied(envelopes.len(), ARRIVAL_TIMEOUT)
        .await;

    assert!(without_tls.is_err(), "amqps:// needs a tls configuration");
    assert!(untrusted.is_err(), "a broker of an unknown ca is refused");
    published.expect("published over tls");
    assert!(arrived, "consumed over tls");
    assert_eq!(recorder.applied(), envelopes);
    assert!(
        terminator.handshakes() >= 2,
        "the publisher and the consumer came through tls"
    );
    let _ = stop.send(());
    task.await.expect("consumer stops");
    publisher.close().await;
}
