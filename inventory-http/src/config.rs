//! Configuration: command-line flags, each also readable from an environment
//! variable (see `.env.example`). Every limit is named with its unit last.

use inventory_combiner::CombinerConfig;
use std::net::SocketAddr;

use clap::Parser;
use event_bus::{AmqpTls, EventsConfig, QueueSpec, RelayConfig};
use service_kit::backends::{self, NotBuilt};
use service_kit::server::{
    CONNECTIONS_MAX_DEFAULT, DB_ACQUIRE_TIMEOUT_MS_DEFAULT, HEADER_READ_TIMEOUT_MS_DEFAULT,
    REQUEST_TIMEOUT_MS_DEFAULT, SHUTDOWN_DRAIN_TIMEOUT_MS_DEFAULT,
};
use service_kit::settings::{AuthSettings, RateLimitSettings, TlsSettings};
use service_kit::ServerLimits;

/// Default listen address: loopback only, so a server started without auth
/// is not reachable from other machines.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:8080";

/// Default largest request body, in bytes (a 100-line reservation is ~10 KiB).
pub const BODY_BYTES_MAX_DEFAULT: usize = 64 * 1024;

/// Default interval of the expiry sweep, in milliseconds.
pub const SWEEP_INTERVAL_MS_DEFAULT: u64 = 60_000;

/// Default reservations expired per sweep batch (at most core's `EXPIRE_BATCH_MAX`).
pub const SWEEP_BATCH_MAX_DEFAULT: usize = 500;

/// Default batches per sweep run; what is left waits for the next run, so one
/// run never monopolises the store.
pub const SWEEP_BATCHES_PER_RUN_MAX_DEFAULT: usize = 20;

/// Default time finished reservations and ledger entries stay in the memory
/// store before the sweep forgets them, in seconds: 8 days, longer than the
/// outbox keeps sent events for redelivery (7 days) and than any retry of a
/// confirm, release or keyed adjustment. PostgreSQL keeps them.
pub const FINISHED_RETENTION_SECS_DEFAULT: u64 = 8 * 24 * 3_600;

/// Default time availability stays in the Redis cache, in seconds.
pub const CACHE_TTL_SECS_DEFAULT: u64 = 300;

/// Default timeout of one Redis command, in milliseconds. Short: on a slow
/// Redis the server answers from the store instead.
pub const REDIS_TIMEOUT_MS_DEFAULT: u64 = 100;

/// Default number of products that get their own stock gauge (first seen
/// first); the rest are counted only in the aggregate gauges.
pub const STOCK_GAUGE_PRODUCTS_MAX_DEFAULT: usize = 100;

/// Default PostgreSQL pool size.
pub const DB_POOL_SIZE_DEFAULT: u32 = 16;

/// Default time sent outbox rows are kept before pruning, in seconds (7 days,
/// event-bus's default).
pub const OUTBOX_RETENTION_SECS_DEFAULT: u64 = event_bus::relay::RETENTION_DEFAULT_MS / 1_000;

/// The topic binding of orders' queue of stock events.
pub const STOCK_EVENTS_BINDING: &str = "inventory.stock.#";

/// The server's configuration.
#[derive(Clone, Debug, Parser)]
#[command(name = "inventory-http", version, about = "The inventory HTTP server")]
pub struct Config {
    /// Most writes committed together as one batch (group commit); 1 turns
    /// batching off, so every write is its own transaction.
    #[arg(long, env = "BATCH_MAX", default_value_t = inventory_combiner::BATCH_MAX_DEFAULT)]
    pub batch_max: usize,

    /// Most writes waiting for a batch; one more is answered 503 with
    /// `Retry-After` (code `overloaded`).
    #[arg(long, env = "BATCH_QUEUE_MAX", default_value_t = inventory_combiner::QUEUE_MAX_DEFAULT)]
    pub batch_queue_max: usize,

    /// Most batches committing at once (each holds one database connection
    /// while it commits).
    #[arg(long, env = "BATCH_COMMITTERS", default_value_t = inventory_combiner::COMMITTERS_MAX_DEFAULT)]
    pub batch_committers: usize,

    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = LISTEN_DEFAULT)]
    pub listen: SocketAddr,

    /// PostgreSQL URL; the in-memory store is used when absent.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Most PostgreSQL connections.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = DB_POOL_SIZE_DEFAULT)]
    pub db_pool_size: u32,

    /// How long a request waits for a database connection before it is
    /// answered 503 (the database is down or every connection is busy), in
    /// milliseconds.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_MS", default_value_t = DB_ACQUIRE_TIMEOUT_MS_DEFAULT)]
    pub db_acquire_timeout_ms: u64,

    /// Redis URL for the availability cache and the shared rate limiter;
    /// neither uses Redis when absent.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Time availability stays cached, in seconds.
    #[arg(long, env = "CACHE_TTL_SECS", default_value_t = CACHE_TTL_SECS_DEFAULT)]
    pub cache_ttl_secs: u64,

    /// Timeout of one Redis command, in milliseconds.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = REDIS_TIMEOUT_MS_DEFAULT)]
    pub redis_timeout_ms: u64,

    /// The per-client-IP rate limit of the API routes.
    #[command(flatten)]
    pub rate_limit: RateLimitSettings,

    /// How callers' tokens are verified.
    #[command(flatten)]
    pub auth: AuthSettings,

    /// Which servers the TLS clients trust (PostgreSQL with
    /// `sslmode=verify-full`, `rediss://`, `amqps://`, a JWKS URL).
    #[command(flatten)]
    pub tls: TlsSettings,

    /// Largest request body, in bytes.
    #[arg(long, env = "BODY_BYTES_MAX", default_value_t = BODY_BYTES_MAX_DEFAULT)]
    pub body_bytes_max: usize,

    /// Most connections open at once.
    #[arg(long, env = "CONNECTIONS_MAX", default_value_t = CONNECTIONS_MAX_DEFAULT)]
    pub connections_max: usize,

    /// Time a client has to send request headers, in milliseconds.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = HEADER_READ_TIMEOUT_MS_DEFAULT)]
    pub header_read_timeout_ms: u64,

    /// Time a request may take, in milliseconds.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = REQUEST_TIMEOUT_MS_DEFAULT)]
    pub request_timeout_ms: u64,

    /// Time shutdown waits for in-flight requests, in milliseconds.
    #[arg(long, env = "SHUTDOWN_DRAIN_TIMEOUT_MS", default_value_t = SHUTDOWN_DRAIN_TIMEOUT_MS_DEFAULT)]
    pub shutdown_drain_timeout_ms: u64,

    /// Interval of the expiry sweep, in milliseconds.
    #[arg(long, env = "SWEEP_INTERVAL_MS", default_value_t = SWEEP_INTERVAL_MS_DEFAULT)]
    pub sweep_interval_ms: u64,

    /// Reservations expired per sweep batch.
    #[arg(long, env = "SWEEP_BATCH_MAX", default_value_t = SWEEP_BATCH_MAX_DEFAULT)]
    pub sweep_batch_max: usize,

    /// Batches per sweep run.
    #[arg(long, env = "SWEEP_BATCHES_PER_RUN_MAX", default_value_t = SWEEP_BATCHES_PER_RUN_MAX_DEFAULT)]
    pub sweep_batches_per_run_max: usize,

    /// Time finished reservations and ledger entries stay in the memory
    /// store, in seconds (0 keeps them forever).
    #[arg(long, env = "FINISHED_RETENTION_SECS", default_value_t = FINISHED_RETENTION_SECS_DEFAULT)]
    pub finished_retention_secs: u64,

    /// Products that get their own stock gauge.
    #[arg(long, env = "STOCK_GAUGE_PRODUCTS_MAX", default_value_t = STOCK_GAUGE_PRODUCTS_MAX_DEFAULT)]
    pub stock_gauge_products_max: usize,

    /// RabbitMQ URL the stock events are published to (persistent, with
    /// publisher confirms); when absent they go to an in-process bus.
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,

    /// Topic exchange of the stock events (routing key = event type).
    #[arg(long, env = "INVENTORY_EVENTS_EXCHANGE", default_value = event_bus::INVENTORY_EXCHANGE)]
    pub inventory_events_exchange: String,

    /// Orders' queue of stock events, declared (with its dead-letter queue)
    /// when the publisher connects so no early event is lost.
    #[arg(long, env = "ORDERS_INVENTORY_QUEUE", default_value = event_bus::ORDERS_INVENTORY_QUEUE)]
    pub orders_inventory_queue: String,

    /// Time sent outbox rows are kept before pruning, in seconds (PostgreSQL;
    /// the memory store forgets events once sent).
    #[arg(long, env = "OUTBOX_RETENTION_SECS", default_value_t = OUTBOX_RETENTION_SECS_DEFAULT)]
    pub outbox_retention_secs: u64,
}

impl Config {
    /// The configuration with every default and no external service, ignoring
    /// the environment: what tests and embedders start from.
    pub fn embedded() -> Self {
        Self {
            batch_max: inventory_combiner::BATCH_MAX_DEFAULT,
            batch_queue_max: inventory_combiner::QUEUE_MAX_DEFAULT,
            batch_committers: inventory_combiner::COMMITTERS_MAX_DEFAULT,
            listen: LISTEN_DEFAULT.parse().expect("valid default address"),
            database_url: None,
            db_pool_size: DB_POOL_SIZE_DEFAULT,
            db_acquire_timeout_ms: DB_ACQUIRE_TIMEOUT_MS_DEFAULT,
            redis_url: None,
            cache_ttl_secs: CACHE_TTL_SECS_DEFAULT,
            redis_timeout_ms: REDIS_TIMEOUT_MS_DEFAULT,
            rate_limit: RateLimitSettings::default(),
            auth: AuthSettings::default(),
            tls: TlsSettings::default(),
            body_bytes_max: BODY_BYTES_MAX_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            header_read_timeout_ms: HEADER_READ_TIMEOUT_MS_DEFAULT,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            shutdown_drain_timeout_ms: SHUTDOWN_DRAIN_TIMEOUT_MS_DEFAULT,
            sweep_interval_ms: SWEEP_INTERVAL_MS_DEFAULT,
            sweep_batch_max: SWEEP_BATCH_MAX_DEFAULT,
            sweep_batches_per_run_max: SWEEP_BATCHES_PER_RUN_MAX_DEFAULT,
            finished_retention_secs: FINISHED_RETENTION_SECS_DEFAULT,
            stock_gauge_products_max: STOCK_GAUGE_PRODUCTS_MAX_DEFAULT,
            amqp_url: None,
            inventory_events_exchange: event_bus::INVENTORY_EXCHANGE.to_owned(),
            orders_inventory_queue: event_bus::ORDERS_INVENTORY_QUEUE.to_owned(),
            outbox_retention_secs: OUTBOX_RETENTION_SECS_DEFAULT,
        }
    }

    /// How the stock events are relayed: what
    /// `event_bus::EventsConfig::inventory_from_env` reads from the same
    /// variables, taken from this configuration (so flags work too, and
    /// [`Config::embedded`] ignores the environment).
    pub fn events(&self) -> EventsConfig {
        let exchange = self.inventory_events_exchange.clone();
        EventsConfig {
            amqp_url: self.amqp_url.clone(),
            queues: vec![QueueSpec::new(
                &self.orders_inventory_queue,
                &exchange,
                STOCK_EVENTS_BINDING,
            )],
            exchange,
            connection_name: "inventory-relay".to_owned(),
            relay: RelayConfig {
                retention_ms: self.outbox_retention_secs.saturating_mul(1_000),
                ..RelayConfig::default()
            },
            tls: AmqpTls::default(),
        }
    }

    /// Refuses a backend URL (`DATABASE_URL`, `REDIS_URL`, `AMQP_URL`) this
    /// binary was built without; the server checks it before it opens
    /// anything.
    ///
    /// # Errors
    /// [`NotBuilt`], naming the setting and the cargo feature.
    pub fn check_backends(&self) -> Result<(), NotBuilt> {
        backends::check_urls(
            crate::app::SERVICE_NAME,
            self.database_url.as_deref(),
            self.redis_url.as_deref(),
            self.amqp_url.as_deref(),
            service_kit::built_backends!(),
        )
    }

    /// How writes are batched.
    pub fn combiner(&self) -> CombinerConfig {
        CombinerConfig {
            batch_max: self.batch_max,
            queue_max: self.batch_queue_max,
            committers_max: self.batch_committers,
        }
    }

    /// The server loop's limits.
    pub fn server_limits(&self) -> ServerLimits {
        ServerLimits {
            connections_max: self.connections_max,
            header_read_timeout_ms: self.header_read_timeout_ms,
            request_timeout_ms: self.request_timeout_ms,
            shutdown_drain_timeout_ms: self.shutdown_drain_timeout_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_loopback_and_embedded() {
        let c = Config::embedded();
        assert_eq!(c.listen.to_string(), LISTEN_DEFAULT);
        assert_eq!(c.rate_limit.rate_limit_per_minute, 100);
        assert_eq!(c.cache_ttl_secs, 300);
        assert_eq!(c.sweep_interval_ms, 60_000);
    }

    #[test]
    fn flags_override_defaults() {
        let c = Config::parse_from([
            "inventory-http",
            "--listen",
            "0.0.0.0:9000",
            "--body-bytes-max",
            "10",
        ]);
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.body_bytes_max, 10);
    }

    #[test]
    fn events_default_to_the_in_process_bus_on_inventory_events() {
        let events = Config::embedded().events();
        assert_eq!(events.amqp_url, None);
        assert_eq!(events.exchange, "inventory.events");
        assert_eq!(events.queues[0].queue, "orders.inventory_events");
        assert_eq!(events.queues[0].binding_keys, ["inventory.stock.#"]);
        assert_eq!(events.relay.retention_ms, 7 * 24 * 3_600_000);
    }

    #[test]
    fn events_flags_reach_the_relay() {
        let events = Config::parse_from([
            "inventory-http",
            "--amqp-url",
            "amqp://127.0.0.1:5672/%2f",
            "--inventory-events-exchange",
            "stock.x",
            "--outbox-retention-secs",
            "60",
        ])
        .events();
        assert_eq!(
            events.amqp_url.as_deref(),
            Some("amqp://127.0.0.1:5672/%2f")
        );
        assert_eq!(events.exchange, "stock.x");
        assert_eq!(events.queues[0].exchange, "stock.x");
        assert_eq!(events.relay.retention_ms, 60_000);
    }

    /// A URL for a backend the build lacks is refused, naming the cargo
    /// feature; one it has passes (whichever features this test runs with).
    #[test]
    fn a_backend_url_needs_its_cargo_feature() {
        assert_eq!(Config::embedded().check_backends(), Ok(()));
        let cases = [
            (
                "--database-url",
                "postgres://127.0.0.1/db",
                "postgres",
                cfg!(feature = "postgres"),
            ),
            (
                "--redis-url",
                "redis://127.0.0.1:6379",
                "redis",
                cfg!(feature = "redis"),
            ),
            (
                "--amqp-url",
                "amqp://127.0.0.1:5672/%2f",
                "rabbitmq",
                cfg!(feature = "rabbitmq"),
            ),
        ];
        for (flag, url, feature, built) in cases {
            let checked = Config::parse_from(["inventory-http", flag, url]).check_backends();
            if built {
                assert_eq!(checked, Ok(()), "{flag}");
            } else {
                let err = checked.unwrap_err();
                assert_eq!(err.feature, feature);
                assert!(
                    err.to_string()
                        .contains(&format!("cargo feature `{feature}`")),
                    "{err}"
                );
            }
        }
    }
}
