//! Starting and stopping the events machinery beside the server: the relay
//! from the store's outbox to the publisher (RabbitMQ when an AMQP URL is
//! configured, else the in-process bus) and the consumer of inventory's
//! events; their health for readiness and metrics.

use std::sync::Arc;

use event_bus::wiring::spawn_consumer_with_tls;
use event_bus::wiring::{ConsumerHandle, RelayHandle};
use event_bus::{spawn_relay, ConsumerHealth, EventsConfig, InProcessBus, QueueSpec, RelayHealth};
use tokio::sync::oneshot;

use super::InventoryEvents;
use crate::saga::SagaEngine;
use crate::store::{OrderStore, OrdersOutbox};

/// How the service publishes and consumes events.
#[derive(Clone, Debug)]
pub struct EventSettings {
    /// The relay's transport, exchange and batches.
    pub config: EventsConfig,
    /// The queue of inventory events this service consumes (RabbitMQ only).
    pub queue: QueueSpec,
    /// Ordered lanes applying that queue's events side by side, by product
    /// (RabbitMQ only; see `event_bus::rabbit::ConsumerConfig::lanes`).
    pub consumer_lanes: u16,
    /// The in-process bus used when no AMQP URL is configured (shared with
    /// inventory when both run in one process).
    pub bus: InProcessBus,
}

/// What readiness and metrics read from the running relay and consumer.
#[derive(Clone, Debug)]
pub struct EventsHealth {
    /// The relay's view: broker reachable, outbox depth, counts.
    pub relay: Arc<RelayHealth>,
    /// The consumer's view: connected, applied, retried, dead-lettered (on
    /// the in-process bus: permanent failures skipped). `None` only when the
    /// consumer could not start.
    pub consumer: Option<Arc<ConsumerHealth>>,
    /// `rabbitmq` or `in-process`.
    pub transport: &'static str,
}

impl EventsHealth {
    /// `None` when the broker is usable, else why not.
    pub fn broker_problem(&self) -> Option<String> {
        if !self.relay.outbox_reachable() {
            return Some("the event outbox cannot be read".to_owned());
        }
        if !self.relay.broker_reachable() {
            return Some(format!(
                "the event broker ({}) is unreachable",
                self.transport
            ));
        }
        match &self.consumer {
            Some(c) if !c.is_connected() => Some(format!(
                "the consumer of inventory events is not connected to the event broker ({})",
                self.transport
            )),
            _ => None,
        }
    }
}

/// The running relay and consumer.
#[derive(Debug)]
pub struct EventsRuntime {
    health: EventsHealth,
    relay: RelayHandle,
    stop_relay: oneshot::Sender<()>,
    consumer: Option<(ConsumerHandle, oneshot::Sender<()>)>,
}

fn signal() -> (
    oneshot::Sender<()>,
    impl std::future::Future<Output = ()> + Send,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    (stop, async move {
        let _ = stopped.await;
    })
}

impl EventsRuntime {
    /// Starts the relay over `store`'s outbox and the consumer of inventory
    /// events, handing orders to `engine`.
    pub fn start(
        settings: &EventSettings,
        store: Arc<dyn OrderStore>,
        engine: Arc<SagaEngine>,
    ) -> Self {
        let (stop_relay, relay_stopped) = signal();
        let relay = match store.outbox() {
            OrdersOutbox::Memory(outbox) => {
                spawn_relay(outbox, &settings.config, &settings.bus, relay_stopped)
            }
            #[cfg(feature = "postgres")]
            OrdersOutbox::Postgres(pool) => spawn_relay(
                event_bus::pg::PgOutbox::envelopes(pool),
                &settings.config,
                &settings.bus,
                relay_stopped,
            ),
        };
        let (stop_consumer, consumer_stopped) = signal();
        let handler = InventoryEvents::new(store, engine);
        let consumer = match spawn_consumer_with_tls(
            settings.config.amqp_url.as_deref(),
            &settings.config.tls,
            settings.queue.clone(),
            super::CONSUMER_NAME,
            settings.consumer_lanes,
            handler,
            &settings.bus,
            consumer_stopped,
        ) {
            Ok(handle) => Some((handle, stop_consumer)),
            Err(e) => {
                tracing::error!(error = %e, "inventory events are not consumed");
                None
            }
        };
        let transport = if settings.config.amqp_url.is_some() {
            "rabbitmq"
        } else {
            "in-process"
        };
        tracing::info!(transport, queue = %settings.queue.queue, "consuming inventory events");
        Self {
            health: EventsHealth {
                relay: Arc::clone(&relay.health),
                consumer: consumer.as_ref().and_then(|(c, _)| c.health.clone()),
                transport,
            },
            relay,
            stop_relay,
            consumer,
        }
    }

    /// Readiness and metrics' view.
    pub fn health(&self) -> &EventsHealth {
        &self.health
    }

    /// Stops consuming (a message being handled is finished or left
    /// unacknowledged for redelivery).
    pub async fn stop_consumer(&mut self) {
        if let Some((handle, stop)) = self.consumer.take() {
            let _ = stop.send(());
            if let Err(e) = handle.task.await {
                tracing::warn!(error = %e, "the events consumer ended abnormally");
            }
        }
    }

    /// Stops the relay (unsent events stay in the outbox for the next start).
    pub async fn stop_relay(self) {
        let _ = self.stop_relay.send(());
        if let Err(e) = self.relay.task.await {
            tracing::warn!(error = %e, "the events relay ended abnormally");
        }
    }
}
