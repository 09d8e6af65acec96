//! The publishing port: hand a batch of envelopes to a transport and learn
//! only once the transport has taken responsibility for every one of them.

use std::future::Future;

use crate::envelope::Envelope;
use crate::in_process::InProcessBus;
#[cfg(feature = "rabbitmq")]
use crate::rabbit::RabbitPublisher;

/// Why a batch was not (entirely) published. Whatever the variant, the caller
/// must treat the whole batch as unsent and offer it again later: some of its
/// messages may have reached consumers (delivery is at least once).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The broker cannot be reached, or the connection broke.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused a message (negative confirm, or a message nobody
    /// could take).
    #[error("broker refused a message: {0}")]
    Refused(String),
}

/// Hands events to consumers.
///
/// Implementations keep the order of a batch: consumers see its events in the
/// order given (a retried batch may be seen again, after the first copy).
pub trait Publisher: Send + Sync + 'static {
    /// Publishes `batch`, resolving only once the transport confirmed every
    /// message (for RabbitMQ: publisher confirms of persistent messages).
    ///
    /// # Errors
    /// [`PublishError`] when any message was not confirmed.
    fn publish(&self, batch: &[Envelope]) -> impl Future<Output = Result<(), PublishError>> + Send;

    /// Whether the last attempt to reach the transport succeeded (for
    /// readiness). Starts `true` until proven otherwise.
    fn is_reachable(&self) -> bool;
}

/// The publisher chosen at start-up from the configuration: RabbitMQ when an
/// AMQP URL is set, the in-process bus otherwise.
#[derive(Clone, Debug)]
pub enum AnyPublisher {
    /// RabbitMQ through lapin (feature `rabbitmq`).
    #[cfg(feature = "rabbitmq")]
    Rabbit(RabbitPublisher),
    /// The embedded default.
    InProcess(InProcessBus),
}

impl Publisher for AnyPublisher {
    async fn publish(&self, batch: &[Envelope]) -> Result<(), PublishError> {
        match self {
            #[cfg(feature = "rabbitmq")]
            Self::Rabbit(p) => p.publish(batch).await,
            Self::InProcess(p) => p.publish(batch).await,
        }
    }

    fn is_reachable(&self) -> bool {
        match self {
            #[cfg(feature = "rabbitmq")]
            Self::Rabbit(p) => p.is_reachable(),
            Self::InProcess(p) => p.is_reachable(),
        }
    }
}
