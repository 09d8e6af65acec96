//! Test plumbing: the broker and database to use (or why a test is skipped),
//! uniquely named topology deleted when a test ends, a recording handler, a
//! TCP proxy that can cut connections, and a schema of one's own.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use event_bus::rabbit::{self, LOCAL_AMQP_URL};
use event_bus::{Dedup, Envelope, Handler, HandlerError, MemoryDedup, QueueSpec};
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use parking_lot::Mutex;
use rand::Rng;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// The database the tests use when `TEST_DATABASE_URL` is not set.
const DATABASE_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

/// How long a reachability check waits.
const CONNECT_TIMEOUT_MS: u64 = 3_000;

fn skip(reason: &str) {
    if std::env::var("REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("REQUIRE_SERVICES=1 but {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// The broker URL: `TEST_AMQP_URL`, else `AMQP_URL`, else the local broker.
pub(crate) fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .or_else(|_| std::env::var("AMQP_URL"))
        .unwrap_or_else(|_| LOCAL_AMQP_URL.to_owned())
}

/// The broker URL when it answers; `None` (after printing why) otherwise,
/// unless `REQUIRE_SERVICES=1`, which fails the test.
pub(crate) async fn broker() -> Option<String> {
    let url = amqp_url();
    match rabbit::connect(&url, "event-bus-test-probe").await {
        Ok(connection) => {
            let _ = connection.close(200, "probe").await;
            Some(url)
        }
        Err(e) => {
            skip(&format!("RabbitMQ at {url} is unreachable: {e}"));
            None
        }
    }
}

/// A name no other test uses.
pub(crate) fn unique(what: &str) -> String {
    format!("test.{what}.{:012x}", rand::rng().random::<u64>() >> 16)
}

/// A queue spec with unique names, bound to a unique exchange for every
/// inventory stock event.
pub(crate) fn unique_spec(what: &str) -> QueueSpec {
    QueueSpec::new(
        &unique(&format!("{what}.queue")),
        &unique(&format!("{what}.exchange")),
        "inventory.stock.#",
    )
}

/// Deletes a spec's exchanges and queues when dropped (also when a test
/// fails).
pub(crate) struct Topology {
    url: String,
    spec: QueueSpec,
}

impl Topology {
    pub(crate) fn new(url: &str, spec: &QueueSpec) -> Self {
        Self {
            url: url.to_owned(),
            spec: spec.clone(),
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let (url, spec) = (self.url.clone(), self.spec.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async {
                let Ok(connection) = rabbit::connect(&url, "event-bus-test-cleanup").await else {
                    return;
                };
                if let Ok(channel) = connection.create_channel().await {
                    for queue in [&spec.queue, &spec.dead_letter_queue] {
                        let _ = channel
                            .queue_delete(queue, QueueDeleteOptions::default())
                            .await;
                    }
                    for exchange in [&spec.exchange, &spec.dead_letter_exchange] {
                        let _ = channel
                            .exchange_delete(exchange, ExchangeDeleteOptions::default())
                            .await;
                    }
                }
                let _ = connection.close(200, "cleanup").await;
            });
        });
        let _ = cleanup.join();
    }
}

/// What a [`Recorder`] saw.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    /// Every delivery, duplicates included.
    pub(crate) deliveries: u64,
    /// Envelopes applied (first time only), in order.
    pub(crate) applied: Vec<Envelope>,
}

/// The event types a consumer of inventory knows.
pub(crate) const STOCK_EVENT_TYPES: [&str; 6] = [
    "inventory.stock.reserved",
    "inventory.stock.confirmed",
    "inventory.stock.released",
    "inventory.stock.expired",
    "inventory.stock.depleted",
    "inventory.stock.adjusted",
];

/// A handler that deduplicates by `event_id` and records each effect once.
/// Event types it does not know are a permanent failure; events
/// whose correlation id is `fail-transiently` fail transiently, always.
#[derive(Clone)]
pub(crate) struct Recorder {
    name: String,
    dedup: MemoryDedup,
    seen: Arc<Mutex<Seen>>,
    applied_count: Arc<watch::Sender<usize>>,
}

impl Recorder {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            dedup: MemoryDedup::new(),
            seen: Arc::default(),
            applied_count: Arc::new(watch::channel(0).0),
        }
    }

    /// Waits until `count` events were applied, at most `timeout`.
    pub(crate) async fn wait_applied(&self, count: usize, timeout: Duration) -> bool {
        let mut receiver = self.applied_count.subscribe();
        let arrived = tokio::time::timeout(timeout, receiver.wait_for(|n| *n >= count)).await;
        arrived.is_ok()
    }

    /// Applied envelopes, in order.
    pub(crate) fn applied(&self) -> Vec<Envelope> {
        self.seen.lock().applied.clone()
    }

    /// Every delivery, duplicates included.
    pub(crate) fn deliveries(&self) -> u64 {
        self.seen.lock().deliveries
    }
}

impl Handler for Recorder {
    async fn handle(&self, envelope: &Envelope) -> Result<(), HandlerError> {
        self.seen.lock().deliveries += 1;
        if !STOCK_EVENT_TYPES.contains(&envelope.event_type.as_str()) {
            return Err(HandlerError::Permanent(format!(
                "unknown event type {}",
                envelope.event_type
            )));
        }
        if envelope.correlation_id.as_deref() == Some("fail-transiently") {
            return Err(HandlerError::Transient(
                "the effect store is down".to_owned(),
            ));
        }
        if self.dedup.first_time(&self.name, envelope.event_id).await? {
            let count = {
                let mut seen = self.seen.lock();
                seen.applied.push(envelope.clone());
                seen.applied.len()
            };
            self.applied_count.send_replace(count);
        }
        Ok(())
    }
}

/// Checks that per ordering key, the applied `quantity_after` values (of
/// adjusted events) grow by one at a time: every event once, in order.
pub(crate) fn assert_in_order_per_product(applied: &[Envelope]) {
    let mut last: HashMap<String, u64> = HashMap::new();
    for envelope in applied {
        let after = envelope.payload["quantity_after"]
            .as_u64()
            .expect("adjusted events carry quantity_after");
        let key = envelope.ordering_key().to_owned();
        if let Some(previous) = last.get(&key) {
            assert_eq!(after, previous + 1, "product {key} out of order");
        }
        last.insert(key, after);
    }
}

/// A TCP proxy in front of the broker that can cut every connection through
/// it and refuse new ones, as a broker restart does.
pub(crate) struct Proxy {
    up: watch::Sender<bool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    /// A proxy to the broker of `url`; returns it and the URL through it.
    pub(crate) async fn start(url: &str) -> (Proxy, String) {
        let uri = lapin::uri::AMQPUri::from_str(url).expect("valid AMQP URL");
        let upstream = format!("{}:{}", uri.authority.host, uri.authority.port);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (up, up_rx) = watch::channel(true);
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept_links = Arc::clone(&links);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*up_rx.borrow() {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut links = accept_links.lock();
                links.retain(|l| !l.is_finished());
                links.push(link.abort_handle());
            }
        })
        .abort_handle();
        let vhost = uri.vhost.replace('/', "%2f");
        let proxied = format!(
            "amqp://{}:{}@{addr}/{vhost}",
            uri.authority.userinfo.username, uri.authority.userinfo.password
        );
        (Proxy { up, links, accept }, proxied)
    }

    /// Cuts every open connection and refuses new ones until [`Proxy::restore`].
    pub(crate) fn cut(&self) {
        self.up.send_replace(false);
        for link in self.links.lock().drain(..) {
            link.abort();
        }
    }

    /// Accepts connections again.
    pub(crate) fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for link in self.links.lock().drain(..) {
            link.abort();
        }
    }
}

/// A schema of its own on the test database, dropped with everything in it
/// when this value is dropped.
pub(crate) struct TestDb {
    url: String,
    schema: String,
}

impl TestDb {
    /// A fresh schema, or `None` (after printing why) when PostgreSQL is
    /// unreachable and `REQUIRE_SERVICES` is not `1`.
    pub(crate) async fn create() -> Option<TestDb> {
        let url =
            std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DATABASE_URL_DEFAULT.to_owned());
        let connected = tokio::time::timeout(
            Duration::from_millis(CONNECT_TIMEOUT_MS),
            PgConnection::connect(&url),
        )
        .await;
        let mut conn = match connected {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                skip(&format!("PostgreSQL at {url} is unreachable: {e}"));
                return None;
            }
            Err(_) => {
                skip(&format!("PostgreSQL at {url} did not answer in time"));
                return None;
            }
        };
        let schema = format!("eb_{:016x}", rand::rng().random::<u64>());
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut conn)
            .await
            .expect("create test schema");
        let _ = conn.close().await;
        Some(TestDb { url, schema })
    }

    /// A pool of `size` connections working in this schema.
    pub(crate) async fn pool(&self, size: u32) -> sqlx::PgPool {
        let options = PgConnectOptions::from_str(&self.url)
            .expect("valid TEST_DATABASE_URL")
            .options([("search_path", self.schema.as_str())]);
        PgPoolOptions::new()
            .max_connections(size)
            .connect_with(options)
            .await
            .expect("connect to the test schema")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    let drop_schema = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                    let _ = sqlx::query(&drop_schema).execute(&mut conn).await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A RabbitMQ virtual host of its own, made and deleted (with everything in
/// it) through `rabbitmqctl`, so the broker can be told to close every
/// connection of this test and no other.
pub(crate) struct Vhost {
    name: String,
}

fn rabbitmqctl(args: &[&str]) -> Result<(), String> {
    let output = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .map_err(|e| format!("rabbitmqctl cannot run: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "rabbitmqctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Vhost {
    /// A fresh vhost the URL's user may use, and the URL to reach it; `None`
    /// (after printing why) when `rabbitmqctl` is missing or refuses.
    pub(crate) async fn create(url: &str) -> Option<(Vhost, String)> {
        let name = format!("test_{:012x}", rand::rng().random::<u64>() >> 16);
        let uri = lapin::uri::AMQPUri::from_str(url).expect("valid AMQP URL");
        let user = uri.authority.userinfo.username.clone();
        let made = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || {
                rabbitmqctl(&["add_vhost", &name])?;
                rabbitmqctl(&["set_permissions", "-p", &name, &user, ".*", ".*", ".*"])
            })
            .await
            .expect("rabbitmqctl task")
        };
        let vhost = Vhost { name };
        if let Err(reason) = made {
            skip(&reason);
            return None;
        }
        let url = format!(
            "amqp://{}:{}@{}:{}/{}",
            uri.authority.userinfo.username,
            uri.authority.userinfo.password,
            uri.authority.host,
            uri.authority.port,
            vhost.name
        );
        Some((vhost, url))
    }

    /// Has the broker close every connection to this vhost.
    pub(crate) async fn close_all_connections(&self) {
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || {
            rabbitmqctl(&[
                "close_all_connections",
                "--vhost",
                &name,
                "forced by a test",
            ])
        })
        .await
        .expect("rabbitmqctl task")
        .expect("close connections");
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        if let Err(e) = rabbitmqctl(&["delete_vhost", &self.name]) {
            eprintln!("could not delete vhost {}: {e}", self.name);
        }
    }
}
