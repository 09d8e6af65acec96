//! Configuration: command-line flags, each also readable from an environment
//! variable. Every limit is named with its unit last.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use event_bus::{EventsConfig, InProcessBus, QueueSpec, RelayConfig};
use service_guard::RateLimitConfig;
use service_guard::TlsClient;
use service_kit::backends::{self, NotBuilt};
use service_kit::server::{
    CONNECTIONS_MAX_DEFAULT, DB_ACQUIRE_TIMEOUT_MS_DEFAULT, HEADER_READ_TIMEOUT_MS_DEFAULT,
    REQUEST_TIMEOUT_MS_DEFAULT, SHUTDOWN_DRAIN_TIMEOUT_MS_DEFAULT,
};
use service_kit::settings::{AuthSettings, RateLimitSettings, TlsSettings};
use service_kit::ServerLimits;

use crate::breaker::{
    BreakerConfig, FAILURES_TO_OPEN_DEFAULT, HALF_OPEN_PROBES_MAX_DEFAULT,
    OPEN_COOL_DOWN_MS_DEFAULT,
};
use crate::events::EventSettings;
use crate::inventory::{CALL_TIMEOUT_MS_DEFAULT, SERVICE_TOKEN_TTL_SECS_DEFAULT};
use crate::payment::{SimulatorConfig, FRAUD_LIMIT_MINOR_DEFAULT};
use crate::saga::{
    SagaConfig, CANCEL_WAIT_MS_DEFAULT, LEASE_MS_DEFAULT, PARK_INTERVAL_MS_DEFAULT,
    PAYMENT_SETTLE_MS_DEFAULT, PENDING_DEADLINE_MS_DEFAULT, RESERVE_ATTEMPTS_MAX_DEFAULT,
    RESUME_INTERVAL_MS_DEFAULT, RETRIES_MAX_DEFAULT, RETRY_DELAY_MAX_MS_DEFAULT,
    RETRY_DELAY_MIN_MS_DEFAULT, RETRY_TOTAL_MS_DEFAULT,
};

/// Default ordered lanes of the consumer of inventory events: enough to
/// keep up with a few hundred orders a second (one lane applied 220 events
/// a second in a fault run's soak, behind the events of 300 requests a
/// second), few enough to leave most of the pool to requests.
pub const EVENT_CONSUMER_LANES_DEFAULT: u16 = 8;

/// Default listen address: loopback only.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:3001";

/// Default inventory base URL.
pub const INVENTORY_URL_DEFAULT: &str = "http://127.0.0.1:8080";

/// Default largest request body, in bytes (a 50-line order is ~4 KiB).
pub const BODY_BYTES_MAX_DEFAULT: usize = 32 * 1024;

/// Default PostgreSQL pool size.
pub const DB_POOL_SIZE_DEFAULT: u32 = 16;

/// Subject of the tokens this service mints for itself.
pub const SERVICE_SUBJECT: &str = "orders-http";

/// Default time sent events stay in the outbox, in seconds (7 days, as
/// event-bus's relay).
pub const OUTBOX_RETENTION_SECS_DEFAULT: u64 = 7 * 24 * 3_600;

/// Default time the record of an applied inventory event is kept, in seconds.
pub const EVENT_DEDUP_RETENTION_SECS_DEFAULT: u64 = crate::saga::DEDUP_RETENTION_MS_DEFAULT / 1_000;

/// The server's configuration.
#[derive(Clone, Debug, Parser)]
#[command(name = "orders-http", version, about = "The orders HTTP server")]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = LISTEN_DEFAULT)]
    pub listen: SocketAddr,

    /// Base URL of the inventory service.
    #[arg(long, env = "INVENTORY_URL", default_value = INVENTORY_URL_DEFAULT)]
    pub inventory_url: String,

    /// PostgreSQL URL; the in-memory store is used when absent.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// PostgreSQL schema for the orders tables (created if missing), so that
    /// orders can share a database with inventory.
    #[arg(long, env = "DB_SCHEMA")]
    pub db_schema: Option<String>,

    /// Most PostgreSQL connections.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = DB_POOL_SIZE_DEFAULT)]
    pub db_pool_size: u32,

    /// How long a request waits for a database connection before it is
    /// answered 503 (the database is down or every connection is busy), in
    /// milliseconds.
    #[arg(long, env = "DB_ACQUIRE_TIMEOUT_MS", default_value_t = DB_ACQUIRE_TIMEOUT_MS_DEFAULT)]
    pub db_acquire_timeout_ms: u64,

    /// Seed the catalog with the demo products (ids that do not exist yet).
    #[arg(long, env = "SEED_DEMO_PRODUCTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub seed_demo_products: bool,

    /// How callers' tokens are verified.
    #[command(flatten)]
    pub auth: AuthSettings,

    /// Which servers the TLS clients trust (an `https://` inventory,
    /// PostgreSQL with `sslmode=verify-full`, `rediss://`, `amqps://`, a
    /// JWKS URL).
    #[command(flatten)]
    pub tls: TlsSettings,

    /// Fixed bearer token sent to inventory.
    #[arg(long, env = "INVENTORY_TOKEN", hide_env_values = true)]
    pub inventory_token: Option<String>,

    /// HS256 secret to mint `service` tokens for inventory.
    #[arg(long, env = "INVENTORY_JWT_SECRET", hide_env_values = true)]
    pub inventory_jwt_secret: Option<String>,

    /// PEM private key to mint `service` tokens for inventory (with `--jwt-algorithm`).
    #[arg(long, env = "INVENTORY_JWT_PRIVATE_KEY_FILE")]
    pub inventory_jwt_private_key_file: Option<PathBuf>,

    /// `iss` of minted service tokens.
    #[arg(long, env = "INVENTORY_JWT_ISSUER")]
    pub inventory_jwt_issuer: Option<String>,

    /// `aud` of minted service tokens.
    #[arg(long, env = "INVENTORY_JWT_AUDIENCE")]
    pub inventory_jwt_audience: Option<String>,

    /// Lifetime of minted service tokens, in seconds.
    #[arg(long, env = "INVENTORY_TOKEN_TTL_SECS", default_value_t = SERVICE_TOKEN_TTL_SECS_DEFAULT)]
    pub inventory_token_ttl_secs: u64,

    /// Time one inventory call may take, in milliseconds.
    #[arg(long, env = "INVENTORY_TIMEOUT_MS", default_value_t = CALL_TIMEOUT_MS_DEFAULT)]
    pub inventory_timeout_ms: u64,

    /// Consecutive inventory failures that open the circuit breaker.
    #[arg(long, env = "BREAKER_FAILURES_TO_OPEN", default_value_t = FAILURES_TO_OPEN_DEFAULT)]
    pub breaker_failures_to_open: u32,

    /// Time the breaker stays open before probing, in milliseconds.
    #[arg(long, env = "BREAKER_OPEN_MS", default_value_t = OPEN_COOL_DOWN_MS_DEFAULT)]
    pub breaker_open_ms: u64,

    /// Probe calls at once while half-open.
    #[arg(long, env = "BREAKER_HALF_OPEN_PROBES_MAX", default_value_t = HALF_OPEN_PROBES_MAX_DEFAULT)]
    pub breaker_half_open_probes_max: u32,

    /// Hold duration asked of inventory, in seconds (inventory's default when absent).
    #[arg(long, env = "RESERVATION_TTL_SECONDS")]
    pub reservation_ttl_seconds: Option<u64>,

    /// Longest an order waits for inventory before it is cancelled, in milliseconds.
    #[arg(long, env = "PENDING_DEADLINE_MS", default_value_t = PENDING_DEADLINE_MS_DEFAULT)]
    pub pending_deadline_ms: u64,

    /// First retry delay of a transient failure, in milliseconds.
    #[arg(long, env = "RETRY_DELAY_MIN_MS", default_value_t = RETRY_DELAY_MIN_MS_DEFAULT)]
    pub retry_delay_min_ms: u64,

    /// Longest retry delay, in milliseconds.
    #[arg(long, env = "RETRY_DELAY_MAX_MS", default_value_t = RETRY_DELAY_MAX_MS_DEFAULT)]
    pub retry_delay_max_ms: u64,

    /// Retries in one burst.
    #[arg(long, env = "RETRIES_MAX", default_value_t = RETRIES_MAX_DEFAULT)]
    pub retries_max: usize,

    /// Cap on the delays of one retry burst, in milliseconds.
    #[arg(long, env = "RETRY_TOTAL_MS", default_value_t = RETRY_TOTAL_MS_DEFAULT)]
    pub retry_total_ms: u64,

    /// Wait between retry bursts while a dependency is down, in milliseconds.
    #[arg(long, env = "PARK_INTERVAL_MS", default_value_t = PARK_INTERVAL_MS_DEFAULT)]
    pub park_interval_ms: u64,

    /// Reservation attempts per order (first plus re-reserves after an expired hold).
    #[arg(long, env = "RESERVE_ATTEMPTS_MAX", default_value_t = RESERVE_ATTEMPTS_MAX_DEFAULT)]
    pub reserve_attempts_max: u32,

    /// Interval of the sweep that resumes pending sagas, in milliseconds.
    #[arg(long, env = "RESUME_INTERVAL_MS", default_value_t = RESUME_INTERVAL_MS_DEFAULT)]
    pub resume_interval_ms: u64,

    /// Longest a cancel request waits for the saga to undo, in milliseconds.
    #[arg(long, env = "CANCEL_WAIT_MS", default_value_t = CANCEL_WAIT_MS_DEFAULT)]
    pub cancel_wait_ms: u64,

    /// Lease of a saga claim, in milliseconds (how long another instance
    /// waits before taking over the sagas of one that died).
    #[arg(long, env = "SAGA_LEASE_MS", default_value_t = LEASE_MS_DEFAULT)]
    pub saga_lease_ms: u64,

    /// How long after a charge call the payment provider's "nothing charged"
    /// is believed, in milliseconds (until then an order whose charge answer
    /// was lost is neither confirmed nor cancelled). Longer than any charge
    /// call can take to land at the provider.
    #[arg(long, env = "PAYMENT_SETTLE_MS", default_value_t = PAYMENT_SETTLE_MS_DEFAULT)]
    pub payment_settle_ms: u64,

    /// Simulated payment latency, in milliseconds.
    #[arg(long, env = "PAYMENT_LATENCY_MS", default_value_t = 0)]
    pub payment_latency_ms: u64,

    /// Share of orders the payment simulator declines (0.0 to 1.0).
    #[arg(long, env = "PAYMENT_DECLINE_RATE", default_value_t = 0.0)]
    pub payment_decline_rate: f64,

    /// Share of payment calls that fail transiently (0.0 to 1.0).
    #[arg(long, env = "PAYMENT_TRANSIENT_FAILURE_RATE", default_value_t = 0.0)]
    pub payment_transient_failure_rate: f64,

    /// Amounts above this (minor units) are refused as fraud.
    #[arg(long, env = "PAYMENT_FRAUD_LIMIT_MINOR", default_value_t = FRAUD_LIMIT_MINOR_DEFAULT)]
    pub payment_fraud_limit_minor: i64,

    /// Seed of the payment simulator.
    #[arg(long, env = "PAYMENT_SEED", default_value_t = 0)]
    pub payment_seed: u64,

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

    /// The rate limit of the orders routes, counted per user when the caller
    /// is authenticated, else per IP.
    #[command(flatten)]
    pub rate_limit: RateLimitSettings,

    /// Redis URL of the shared rate limiter; each instance limits on its own
    /// when absent.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// RabbitMQ URL for events (`amqp://user:pass@host:5672/%2f`); events go
    /// through the in-process bus when absent.
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,

    /// Topic exchange this service publishes `order.*` events on.
    #[arg(long, env = "ORDERS_EVENTS_EXCHANGE", default_value = event_bus::ORDERS_EXCHANGE)]
    pub orders_events_exchange: String,

    /// Topic exchange inventory publishes `inventory.stock.*` events on.
    #[arg(long, env = "INVENTORY_EVENTS_EXCHANGE", default_value = event_bus::INVENTORY_EXCHANGE)]
    pub inventory_events_exchange: String,

    /// Durable queue of inventory events this service consumes (with its
    /// dead-letter queue `<queue>.dlq`).
    #[arg(long, env = "ORDERS_INVENTORY_QUEUE", default_value = event_bus::ORDERS_INVENTORY_QUEUE)]
    pub orders_inventory_queue: String,

    /// How long sent events stay in the outbox before they are pruned, in seconds.
    #[arg(long, env = "OUTBOX_RETENTION_SECS", default_value_t = OUTBOX_RETENTION_SECS_DEFAULT)]
    pub outbox_retention_secs: u64,

    /// How long the record of an applied inventory event is kept, in
    /// seconds (0: forever). Keep it longer than inventory keeps sent events
    /// for redelivery (its `OUTBOX_RETENTION_SECS`).
    #[arg(long, env = "EVENT_DEDUP_RETENTION_SECS", default_value_t = EVENT_DEDUP_RETENTION_SECS_DEFAULT)]
    pub event_dedup_retention_secs: u64,

    /// Inventory events applied side by side, in ordered lanes by product
    /// (events of one product stay in order). Each lane holds one database
    /// connection while it applies an event.
    #[arg(long, env = "EVENT_CONSUMER_LANES", default_value_t = EVENT_CONSUMER_LANES_DEFAULT)]
    pub event_consumer_lanes: u16,
}

impl Config {
    /// The defaults with no key, no database and the default inventory URL,
    /// whatever the environment says about those: what tests and embedders
    /// start from.
    pub fn embedded() -> Self {
        Self::parse_from(["orders-http"]).without_secrets()
    }

    fn without_secrets(self) -> Self {
        Self {
            listen: LISTEN_DEFAULT.parse().expect("valid default address"),
            inventory_url: INVENTORY_URL_DEFAULT.to_owned(),
            database_url: None,
            auth: AuthSettings::default(),
            tls: TlsSettings::default(),
            inventory_token: None,
            inventory_jwt_secret: None,
            inventory_jwt_private_key_file: None,
            inventory_jwt_issuer: None,
            inventory_jwt_audience: None,
            redis_url: None,
            amqp_url: None,
            ..self
        }
    }

    /// The events settings: the same variables and defaults as
    /// `event_bus::EventsConfig::orders_from_env`, read through the flags;
    /// events travel on `bus` when no AMQP URL is set.
    pub fn events(&self, bus: InProcessBus) -> EventSettings {
        let relay = RelayConfig {
            retention_ms: self.outbox_retention_secs.saturating_mul(1_000),
            ..RelayConfig::default()
        };
        EventSettings {
            config: EventsConfig {
                amqp_url: self.amqp_url.clone(),
                exchange: self.orders_events_exchange.clone(),
                queues: Vec::new(),
                connection_name: "orders-relay".to_owned(),
                relay,
                tls: event_bus::AmqpTls::default(),
            },
            queue: QueueSpec::new(
                &self.orders_inventory_queue,
                &self.inventory_events_exchange,
                "inventory.stock.#",
            ),
            consumer_lanes: self.event_consumer_lanes,
            bus,
        }
    }

    /// Refuses a backend URL (`DATABASE_URL`, `REDIS_URL`, `AMQP_URL`) this
    /// binary was built without; the service checks it before it opens
    /// anything.
    ///
    /// # Errors
    /// [`NotBuilt`], naming the setting and the cargo feature.
    pub fn check_backends(&self) -> Result<(), NotBuilt> {
        backends::check_urls(
            "orders-http",
            self.database_url.as_deref(),
            self.redis_url.as_deref(),
            self.amqp_url.as_deref(),
            service_kit::built_backends!(),
        )
    }

    /// The rate limiter's settings (a `rediss://` URL reached with `tls`);
    /// `None` when disabled.
    pub fn rate_limit(&self, tls: &TlsClient) -> Option<RateLimitConfig> {
        self.rate_limit
            .config(SERVICE_SUBJECT, self.redis_url.as_deref(), tls)
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

    /// The breaker thresholds.
    pub fn breaker(&self) -> BreakerConfig {
        BreakerConfig {
            failures_to_open: self.breaker_failures_to_open.max(1),
            open_cool_down_ms: self.breaker_open_ms,
            half_open_probes_max: self.breaker_half_open_probes_max.max(1),
        }
    }

    /// The saga settings.
    pub fn saga(&self) -> SagaConfig {
        SagaConfig {
            reservation_ttl_seconds: self.reservation_ttl_seconds,
            pending_deadline_ms: self.pending_deadline_ms,
            retry_delay_min_ms: self.retry_delay_min_ms,
            retry_delay_max_ms: self.retry_delay_max_ms,
            retries_max: self.retries_max,
            retry_total_ms: self.retry_total_ms,
            park_interval_ms: self.park_interval_ms,
            reserve_attempts_max: self.reserve_attempts_max.max(1),
            resume_interval_ms: self.resume_interval_ms,
            cancel_wait_ms: self.cancel_wait_ms,
            lease_ms: self.saga_lease_ms,
            payment_settle_ms: self.payment_settle_ms,
            dedup_retention_ms: self.event_dedup_retention_secs.saturating_mul(1_000),
        }
    }

    /// The payment simulator settings.
    pub fn payment(&self) -> SimulatorConfig {
        SimulatorConfig {
            latency_ms: self.payment_latency_ms,
            decline_rate: self.payment_decline_rate.clamp(0.0, 1.0),
            transient_failure_rate: self.payment_transient_failure_rate.clamp(0.0, 1.0),
            fraud_limit_minor: self.payment_fraud_limit_minor,
            seed: self.payment_seed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_kit::settings::{RATE_LIMIT_PER_MINUTE_DEFAULT, RATE_LIMIT_WINDOW_SECS};

    /// The flags read the same variables, with the same defaults, as
    /// event-bus's own configuration of the orders service.
    #[test]
    fn events_settings_match_event_bus() {
        let config = Config::try_parse_from(["orders-http"]).expect("the environment parses");
        let from_env = EventsConfig::orders_from_env().expect("the environment parses");
        let settings = config.events(InProcessBus::new());
        assert_eq!(settings.config, from_env);
        assert_eq!(settings.queue, EventsConfig::orders_inventory_queue());
    }

    /// The rate limit defaults to inventory-http's 100 a minute; 0 disables it.
    #[test]
    fn rate_limit_defaults_and_disables() {
        let mut config = Config::embedded();
        let limits = config
            .rate_limit(&TlsClient::system())
            .expect("on by default");
        assert_eq!(limits.requests_per_window, RATE_LIMIT_PER_MINUTE_DEFAULT);
        assert_eq!(
            limits.window,
            std::time::Duration::from_secs(RATE_LIMIT_WINDOW_SECS)
        );
        config.rate_limit.rate_limit_per_minute = 0;
        assert!(config.rate_limit(&TlsClient::system()).is_none());
    }

    /// A database URL in a build without `postgres` is refused, naming the
    /// feature; with it, it passes.
    #[test]
    fn a_database_url_needs_the_postgres_feature() {
        assert_eq!(Config::embedded().check_backends(), Ok(()));
        let config = Config {
            database_url: Some("postgres://127.0.0.1/orders".to_owned()),
            ..Config::embedded()
        };
        let checked = config.check_backends();
        if cfg!(feature = "postgres") {
            assert_eq!(checked, Ok(()));
        } else {
            let e = checked.unwrap_err();
            assert!(e.to_string().contains("cargo feature `postgres`"), "{e}");
        }
    }
}
