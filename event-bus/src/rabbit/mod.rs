//! RabbitMQ through lapin: connecting on the tokio runtime (`amqp://`, or
//! `amqps://` with the [`AmqpTls`] the caller gives), the topology both sides
//! declare (idempotently), the publisher and the consumer.

mod consumer;
mod publisher;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::tcp::{HandshakeResult, RustlsConnector, TcpStream};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

pub use crate::consume::ConsumerHealth;
pub use crate::topology::{
    AmqpTls, QueueSpec, INVENTORY_EXCHANGE, ORDERS_EXCHANGE, ORDERS_INVENTORY_QUEUE,
};
pub use consumer::{
    ConsumerConfig, ConsumerError, RabbitConsumer, HEADER_DEAD_LETTER_REASON,
    HEADER_ORIGINAL_ROUTING_KEY, LANES_DEFAULT, PREFETCH_DEFAULT,
};
pub use publisher::{RabbitConfig, RabbitPublisher, CONFIRM_TIMEOUT_MS, HEADER_CORRELATION_ID};

/// How long opening a connection (TCP, AMQP handshake) may take before the
/// attempt counts as failed: a broker that does not answer within this is as
/// good as down, and the caller backs off.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// How long one broker round trip (open a channel, declare, acknowledge,
/// publish a batch's frames) may take before the connection counts as
/// broken: a connection that died without the client noticing must not hold
/// a relay or a consumer forever.
pub const RPC_TIMEOUT_MS: u64 = 10_000;

/// Runs one broker round trip under [`RPC_TIMEOUT_MS`], naming it in the error.
pub(crate) async fn rpc<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_millis(RPC_TIMEOUT_MS), call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {RPC_TIMEOUT_MS} ms")),
    }
}

/// The AMQP URL used by tests and benches when `AMQP_URL` is not set.
pub const LOCAL_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Heartbeat asked for when the URL does not set one: a half-open
/// connection (a broker host that vanished) is noticed within about two
/// intervals instead of the broker's default of a minute or more.
pub const HEARTBEAT_DEFAULT_SECS: u16 = 10;

/// [`connect_with`] without TLS configuration: `amqp://` URLs only.
///
/// # Errors
/// As [`connect_with`].
pub async fn connect(url: &str, name: &str) -> Result<Connection, String> {
    connect_with(url, name, &AmqpTls::default()).await
}

/// Opens a connection with tokio as executor and reactor, named `name` in the
/// broker's management tools, with a heartbeat of [`HEARTBEAT_DEFAULT_SECS`]
/// unless the URL sets `heartbeat=`; over TLS checked with `tls` for an
/// `amqps://` URL (the certificate must name the URL's host).
///
/// # Errors
/// The URL does not parse, an `amqps://` URL without `tls`, the lapin error
/// (a refused certificate among them), or a timeout after
/// [`CONNECT_TIMEOUT_MS`].
pub async fn connect_with(url: &str, name: &str, tls: &AmqpTls) -> Result<Connection, String> {
    let mut uri: AMQPUri = url.parse().map_err(|e| format!("invalid AMQP URL: {e}"))?;
    uri.query.heartbeat.get_or_insert(HEARTBEAT_DEFAULT_SECS);
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current())
        .with_connection_name(LongString::from(name));
    type Connecting = Pin<Box<dyn Future<Output = lapin::Result<Connection>> + Send>>;
    let connecting: Connecting = match (&uri.scheme, tls.config()) {
        (AMQPScheme::AMQP, _) => Box::pin(Connection::connect_uri(uri, properties)),
        (AMQPScheme::AMQPS, None) => {
            return Err("connect: an amqps:// url needs a tls configuration".to_owned())
        }
        (AMQPScheme::AMQPS, Some(config)) => {
            let connector = RustlsConnector::from(Arc::clone(config));
            // lapin's connector hook fixes the (large) error type.
            #[allow(clippy::result_large_err)]
            Box::pin(Connection::connector(
                uri,
                Box::new(move |uri| connect_tls(uri, &connector)),
                properties,
            ))
        }
    };
    match tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connecting).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err(format!("connect: no answer within {CONNECT_TIMEOUT_MS} ms")),
    }
}

/// What lapin does for `amqps://`, with our rustls configuration instead of
/// one it builds: a blocking TCP connect and handshake on lapin's I/O thread,
/// then the socket in non-blocking mode. The error type is lapin's.
#[allow(clippy::result_large_err)]
fn connect_tls(uri: &AMQPUri, connector: &RustlsConnector) -> HandshakeResult {
    let host = uri.authority.host.as_str();
    let addr = (host, uri.authority.port);
    let stream = match uri.query.connection_timeout {
        Some(ms) => TcpStream::connect_timeout(addr, Duration::from_millis(ms)),
        None => TcpStream::connect(addr),
    }?;
    let stream = stream.into_rustls(connector, host)?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

/// Declares a durable topic exchange (a no-op when it exists alike).
///
/// # Errors
/// The lapin error (for example an exchange of that name with another type).
pub async fn declare_exchange(channel: &Channel, name: &str) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            name,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// RabbitMQ's side of a [`QueueSpec`].
impl QueueSpec {
    /// Declares exchanges, queues and bindings; safe to repeat.
    ///
    /// # Errors
    /// The lapin error (for example a queue of that name with other arguments).
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        declare_exchange(channel, &self.exchange).await?;
        declare_exchange(channel, &self.dead_letter_exchange).await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(&self.dead_letter_queue, durable, FieldTable::default())
            .await?;
        channel
            .queue_bind(
                &self.dead_letter_queue,
                &self.dead_letter_exchange,
                "#",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            ShortString::from("x-dead-letter-exchange"),
            AMQPValue::LongString(LongString::from(self.dead_letter_exchange.as_str())),
        );
        channel
            .queue_declare(&self.queue, durable, arguments)
            .await?;
        for key in &self.binding_keys {
            channel
                .queue_bind(
                    &self.queue,
                    &self.exchange,
                    key,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }
}
