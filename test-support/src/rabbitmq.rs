//! The RabbitMQ broker of the tests (`TEST_AMQP_URL`, else `AMQP_URL`, else
//! the local one) when it answers, names no other test uses, and a
//! [`Topology`] that deletes a test's exchanges and queues when it ends.
//! Without a broker the test is skipped (see [`crate::services`]).

use event_bus::rabbit::{self, LOCAL_AMQP_URL};
use event_bus::QueueSpec;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use rand::Rng;

use crate::cleanup;
use crate::services::{skipped, url_from_env};

/// How the tests' connections are named in the broker's management tools.
const CONNECTION_NAME: &str = "test-support";

/// `TEST_AMQP_URL`, else `AMQP_URL`, else the local broker
/// ([`LOCAL_AMQP_URL`]).
pub fn amqp_url() -> String {
    url_from_env(&["TEST_AMQP_URL", "AMQP_URL"], LOCAL_AMQP_URL)
}

/// The broker URL when it accepts a connection; `None` (after printing why)
/// otherwise.
///
/// # Panics
/// When the broker is unreachable and `REQUIRE_SERVICES=1`.
pub async fn broker() -> Option<String> {
    let url = amqp_url();
    match rabbit::connect(&url, CONNECTION_NAME).await {
        Ok(connection) => {
            let _ = connection.close(200, "probe").await;
            Some(url)
        }
        Err(e) => skipped(&format!("RabbitMQ at {url} is unreachable: {e}")),
    }
}

/// `test.<what>.<12 random hex digits>`: a name no other test (or earlier
/// run) uses.
pub fn unique(what: &str) -> String {
    format!("test.{what}.{:012x}", rand::rng().random::<u64>() >> 16)
}

/// Deletes the queues and exchanges of some queue specs when dropped (also
/// when a test fails): each spec's queue and dead-letter queue, exchange and
/// dead-letter exchange.
#[derive(Debug)]
pub struct Topology {
    url: String,
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl Topology {
    /// The topology of `spec` on the broker at `url`.
    pub fn new(url: &str, spec: &QueueSpec) -> Self {
        Self::of(url, std::slice::from_ref(spec))
    }

    /// The topology of every one of `specs` on the broker at `url`.
    pub fn of(url: &str, specs: &[QueueSpec]) -> Self {
        Self {
            url: url.to_owned(),
            queues: specs
                .iter()
                .flat_map(|s| [s.queue.clone(), s.dead_letter_queue.clone()])
                .collect(),
            exchanges: specs
                .iter()
                .flat_map(|s| [s.exchange.clone(), s.dead_letter_exchange.clone()])
                .collect(),
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let url = self.url.clone();
        let queues = std::mem::take(&mut self.queues);
        let exchanges = std::mem::take(&mut self.exchanges);
        cleanup::block_on(async move {
            let Ok(connection) = rabbit::connect(&url, CONNECTION_NAME).await else {
                return;
            };
            if let Ok(channel) = connection.create_channel().await {
                for queue in &queues {
                    let _ = channel
                        .queue_delete(queue, QueueDeleteOptions::default())
                        .await;
                }
                for exchange in &exchanges {
                    let _ = channel
                        .exchange_delete(exchange, ExchangeDeleteOptions::default())
                        .await;
                }
            }
            let _ = connection.close(200, "cleanup").await;
        });
    }
}
