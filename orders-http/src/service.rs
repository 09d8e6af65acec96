//! Assembling and running the service: the store from the configuration, the
//! callers' authenticator, the inventory client and its credential, the saga
//! engine, the rate limiter, and the server loop with the resumer, the events
//! relay and the consumer of inventory's events beside it.

use std::future::Future;
use std::sync::Arc;

use event_bus::{AmqpTls, InProcessBus};
use prometheus_client::registry::Registry;
use service_guard::{Algorithm, Authenticator, ConfigError, KeyWatcher, TokenSigner};
use service_kit::ServerLimits;
use tokio::net::TcpListener;

use crate::catalog::demo_products;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, SERVICE_SUBJECT};
use crate::events::EventsRuntime;
use crate::http::{App, AppParts};
use crate::inventory::{HttpInventory, InventoryClientConfig, ServiceCredential};
use crate::metrics::OrderMetrics;
use crate::payment::{PaymentProvider, PaymentSimulator};
use crate::saga::SagaEngine;
use crate::store::{MemoryStore, OrderStore, StoreError};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened or migrated.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The authentication or signing settings are unusable.
    #[error("auth: {0}")]
    Auth(#[from] ConfigError),
    /// The extra CA file is unusable.
    #[error("tls: {0}")]
    Tls(#[from] service_guard::TlsError),
    /// The configuration is inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// A backend URL is set that this binary was built without.
    #[error(transparent)]
    NotBuilt(#[from] service_kit::backends::NotBuilt),
}

/// The parts of the service that tests and embedders may supply themselves.
pub struct Services {
    /// Where orders live.
    pub store: Arc<dyn OrderStore>,
    /// The payment provider.
    pub payments: Arc<dyn PaymentProvider>,
    /// Wall clock.
    pub clock: Arc<dyn Clock>,
    /// The in-process event bus, used when no AMQP URL is configured (give
    /// inventory and orders the same one to run them in one process).
    pub bus: InProcessBus,
}

/// Opens the store the configuration names: PostgreSQL (migrated) when
/// `database_url` is set, memory otherwise; seeds the demo catalog if asked.
/// With `sslmode=verify-ca` or `verify-full` in the URL the server's
/// certificate is checked against the URL's `sslrootcert`, else against the
/// extra CA file (`--tls-ca-file`) and the system's roots.
///
/// # Errors
/// [`StartError::Store`] when the database cannot be reached or migrated;
/// [`StartError::NotBuilt`] for a database URL in a build without the
/// `postgres` feature.
pub async fn open_store(config: &Config, now_ms: i64) -> Result<Arc<dyn OrderStore>, StartError> {
    let store: Arc<dyn OrderStore> = match &config.database_url {
        Some(url) => open_postgres(config, url).await?,
        None => Arc::new(MemoryStore::new()),
    };
    if config.seed_demo_products {
        store.seed_products(&demo_products(now_ms)).await?;
    }
    Ok(store)
}

/// Opens and migrates the PostgreSQL store at `url`.
#[cfg(feature = "postgres")]
async fn open_postgres(config: &Config, url: &str) -> Result<Arc<dyn OrderStore>, StartError> {
    use crate::store::{PgOrderOptions, PgOrderStore};
    let options = PgOrderOptions {
        pool_size_max: config.db_pool_size,
        acquire_timeout_ms: config.db_acquire_timeout_ms,
        schema: config.db_schema.clone(),
    };
    let root_cert = config.tls.client()?.postgres_root_cert(url).map(Into::into);
    let pg = PgOrderStore::connect_with_root_cert(url, root_cert, options).await?;
    pg.migrate().await?;
    Ok(Arc::new(pg))
}

/// A database URL in a build without PostgreSQL: refused, naming the feature.
#[cfg(not(feature = "postgres"))]
async fn open_postgres(config: &Config, _url: &str) -> Result<Arc<dyn OrderStore>, StartError> {
    config.check_backends()?;
    unreachable!("check_backends refuses a database url in a build without postgres")
}

/// The authenticator of callers' tokens. Without any key it is disabled,
/// which is allowed only on a loopback address.
///
/// # Errors
/// [`StartError`] when a key cannot be loaded, or when there is no key and
/// the address is not loopback.
pub async fn authenticator(config: &Config) -> Result<Authenticator, StartError> {
    let Some(auth) = config.auth.config()? else {
        if !Authenticator::open_allowed(&config.listen) {
            return Err(StartError::Config(
                "no jwt key configured: refusing to run open on a non-loopback address".into(),
            ));
        }
        tracing::warn!(listen = %config.listen, "no jwt key configured: every caller is trusted (loopback only)");
        return Ok(Authenticator::disabled());
    };
    Ok(Authenticator::start(&auth, &config.tls.client()?).await?)
}

/// The credential sent to inventory: a static token, or `service` tokens
/// minted from a secret or a private key, or none.
///
/// # Errors
/// [`StartError`] when the key is unusable or more than one is given.
pub fn credential(config: &Config) -> Result<ServiceCredential, StartError> {
    let signer = match (
        &config.inventory_token,
        &config.inventory_jwt_secret,
        &config.inventory_jwt_private_key_file,
    ) {
        (None, None, None) => return Ok(ServiceCredential::None),
        (Some(token), None, None) => return Ok(ServiceCredential::Static(token.clone())),
        (None, Some(secret), None) => TokenSigner::hs256(secret)?,
        (None, None, Some(path)) => {
            // A private key signs with the pinned asymmetric algorithm, RS256 by default.
            let algorithm = config.auth.jwt_algorithm.unwrap_or(Algorithm::RS256);
            TokenSigner::from_private_pem_file(algorithm, path)?
        }
        _ => {
            return Err(StartError::Config(
                "configure at most one of the inventory token, secret and private key".into(),
            ))
        }
    };
    let mut signer = signer;
    if let Some(iss) = &config.inventory_jwt_issuer {
        signer = signer.with_issuer(iss);
    }
    if let Some(aud) = &config.inventory_jwt_audience {
        signer = signer.with_audience(aud);
    }
    Ok(ServiceCredential::Signer {
        signer,
        subject: SERVICE_SUBJECT.to_owned(),
        ttl_secs: config.inventory_token_ttl_secs.max(1),
    })
}

/// Builds the application: the inventory client (from `config`), the saga
/// engine, the rate limiter, the events settings, the HTTP app, all sharing
/// one metrics registry.
///
/// # Errors
/// [`StartError`] when the credential or the OpenAPI document is unusable.
pub async fn build(
    config: &Config,
    authenticator: Authenticator,
    services: Services,
) -> Result<Arc<App>, StartError> {
    config.check_backends()?;
    let mut registry = Registry::default();
    let metrics = OrderMetrics::register(&mut registry);
    let tls = config.tls.client()?;
    let client = InventoryClientConfig {
        base_url: config.inventory_url.clone(),
        call_timeout_ms: config.inventory_timeout_ms,
        breaker: config.breaker(),
        credential: credential(config)?,
        tls: tls.clone(),
    };
    let inventory = Arc::new(HttpInventory::new(client, metrics.clone()));
    let engine = SagaEngine::new(
        services.store.clone(),
        inventory,
        services.payments,
        services.clock.clone(),
        config.saga(),
        metrics.clone(),
    );
    let limiter = service_kit::settings::limiter(config.rate_limit(&tls)).await;
    let mut events = config.events(services.bus);
    events.config.tls = AmqpTls::new(tls.client_config());
    let app = App::new(AppParts {
        store: services.store,
        engine,
        clock: services.clock,
        authenticator,
        registry,
        metrics,
        body_bytes_max: config.body_bytes_max,
        limiter,
        events,
    })
    .map_err(StartError::Config)?;
    Ok(Arc::new(app))
}

/// Serves `app` on `listener` with the saga resumer, the events relay and
/// the consumer of inventory's events running, until `shutdown` completes;
/// then drains requests, stops consuming, stops every saga task where it
/// stands (the store keeps their progress), and last stops the relay (events
/// not sent yet stay in the outbox).
pub async fn serve_app(
    listener: TcpListener,
    app: Arc<App>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut events = EventsRuntime::start(
        app.event_settings(),
        Arc::clone(app.store()),
        Arc::clone(app.engine()),
    );
    app.set_events_health(events.health().clone());
    app.engine().spawn_resumer();
    service_kit::serve(listener, app.clone(), limits, shutdown).await;
    events.stop_consumer().await;
    app.engine().shutdown().await;
    events.stop_relay().await;
}

/// Runs the service as configured on `listener` until `shutdown` completes,
/// with events on RabbitMQ when `config.amqp_url` is set, else on a bus of
/// its own (see [`run_with_bus`] to share one).
///
/// # Errors
/// [`StartError`] when the store, the keys or the configuration are unusable;
/// nothing is served then.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    run_with_bus(listener, config, InProcessBus::new(), shutdown).await
}

/// As [`run`], with events on `bus` when no AMQP URL is configured: give
/// inventory and orders the same bus in one process and inventory's events
/// reach orders without a broker. A [`KeyWatcher`] reloads the callers' token
/// keys from their file on SIGHUP and when it changes, until the server stops.
///
/// # Errors
/// As [`run`].
pub async fn run_with_bus(
    listener: TcpListener,
    config: Config,
    bus: InProcessBus,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    // Whether the service may run open depends on where it really listens,
    // not on the address configured (a caller may bind elsewhere).
    config.check_backends()?;
    let mut config = config;
    config.listen = listener
        .local_addr()
        .map_err(|e| StartError::Config(format!("listener: {e}")))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = open_store(&config, clock.now_ms()).await?;
    let services = Services {
        store,
        payments: Arc::new(PaymentSimulator::new(config.payment())),
        clock,
        bus,
    };
    let authenticator = authenticator(&config).await?;
    let keys = KeyWatcher::spawn(authenticator.clone(), config.auth.jwks_poll_interval_ms);
    let app = build(&config, authenticator, services).await?;
    serve_app(listener, app, config.server_limits(), shutdown).await;
    keys.stop().await;
    Ok(())
}
