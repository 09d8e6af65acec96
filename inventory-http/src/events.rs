//! Stock events leave the store's outbox through event-bus's relay: to
//! RabbitMQ when an AMQP URL is configured, else to an in-process bus (shared
//! with other services of the same process). [`EventsRelay`] runs beside the
//! server; [`EventsStatus`] is what readiness and metrics read from it.

use std::sync::Arc;

use event_bus::wiring::{spawn_relay, RelayHandle};
use event_bus::{EventsConfig, InProcessBus, InventoryOutbox, RelayHealth};
use tokio::sync::oneshot;

use crate::store::AnyStore;

/// The relay's health and where it publishes to, shared with the app.
#[derive(Clone, Debug)]
pub struct EventsStatus {
    /// Broker reachability, outbox depth and counts.
    pub health: Arc<RelayHealth>,
    /// The broker, for people: `rabbitmq at host:port` or `in-process bus`
    /// (never the URL's credentials).
    pub broker: String,
}

impl EventsStatus {
    /// `None` while events flow, else what is unreachable.
    pub fn problem(&self) -> Option<String> {
        if !self.health.outbox_reachable() {
            return Some("events (the outbox cannot be read)".to_owned());
        }
        if !self.health.broker_reachable() {
            return Some(format!("events (broker {})", self.broker));
        }
        None
    }
}

/// Names the broker of `url` without its credentials or virtual host.
pub fn broker_label(url: Option<&str>) -> String {
    let Some(url) = url else {
        return "in-process bus".to_owned();
    };
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    format!("rabbitmq at {host}")
}

/// A running relay from the store's outbox.
#[derive(Debug)]
pub struct EventsRelay {
    status: EventsStatus,
    handle: RelayHandle,
    stop: oneshot::Sender<()>,
}

impl EventsRelay {
    /// Starts relaying `store`'s outbox as `config` says (RabbitMQ, or `bus`
    /// when `config` names no AMQP URL). On PostgreSQL any number of
    /// instances may relay at once and sent rows are pruned after
    /// `config.relay.retention_ms`; the memory store forgets sent events.
    pub fn spawn(store: &Arc<AnyStore>, config: &EventsConfig, bus: &InProcessBus) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let handle = match store.as_ref() {
            #[cfg(feature = "postgres")]
            AnyStore::Postgres(pg) => spawn_relay(
                event_bus::pg::PgOutbox::new(pg.pool().clone()),
                config,
                bus,
                shutdown,
            ),
            AnyStore::Memory(_) => {
                let source = InventoryOutbox::new(Arc::clone(store)).with_depth(memory_depth);
                spawn_relay(source, config, bus, shutdown)
            }
        };
        Self {
            status: EventsStatus {
                health: Arc::clone(&handle.health),
                broker: broker_label(config.amqp_url.as_deref()),
            },
            handle,
            stop,
        }
    }

    /// What readiness and metrics read.
    pub fn status(&self) -> EventsStatus {
        self.status.clone()
    }

    /// Stops the relay and waits for it; a batch in flight stays unsent and
    /// is published by the next relay to run.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.handle.task.await {
            tracing::error!(error = %e, "event relay task failed");
        }
    }
}

fn memory_depth(store: &AnyStore) -> u64 {
    match store {
        AnyStore::Memory(m) => m.outbox_len() as u64,
        #[cfg(feature = "postgres")]
        AnyStore::Postgres(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_label_hides_credentials_and_vhost() {
        assert_eq!(
            broker_label(Some("amqp://guest:secret@10.0.0.5:5672/%2f")),
            "rabbitmq at 10.0.0.5:5672"
        );
        assert_eq!(
            broker_label(Some("amqp://127.0.0.1:1")),
            "rabbitmq at 127.0.0.1:1"
        );
        assert_eq!(broker_label(None), "in-process bus");
    }
}
