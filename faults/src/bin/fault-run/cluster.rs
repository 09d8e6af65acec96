//! The system under test: the three services as separate `shop` processes
//! (orders reaching inventory through a [`FaultProxy`]), and the shared
//! services they use, which a fault may stop and must start again.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use faults::FaultProxy;
use tokio::process::{Child, Command};

use crate::http::Http;

/// `iss` and `aud` of every token of the run.
pub(crate) const ISSUER: &str = "fault-run";
pub(crate) const AUDIENCE: &str = "shop-api";

/// Longest wait for a service to answer `/health/ready` after a start.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Pause between readiness polls.
const READY_POLL: Duration = Duration::from_millis(50);

/// A rate limit no run reaches: the limiters (and their Redis) stay in the
/// path without refusing anything.
const RATE_LIMIT_UNREACHED: &str = "100000000";

/// One of the three services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Service {
    Inventory,
    Orders,
    Gateway,
}

impl Service {
    pub(crate) const ALL: [Service; 3] = [Service::Inventory, Service::Orders, Service::Gateway];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Service::Inventory => "inventory",
            Service::Orders => "orders",
            Service::Gateway => "gateway",
        }
    }
}

/// What the services are started with.
#[derive(Clone, Debug)]
pub(crate) struct ClusterConfig {
    pub(crate) shop: PathBuf,
    pub(crate) logs: PathBuf,
    pub(crate) log_filter: String,
    pub(crate) database_url: String,
    pub(crate) redis_url: String,
    pub(crate) amqp_url: String,
    pub(crate) jwt_secret: String,
    pub(crate) inventory: SocketAddr,
    pub(crate) orders: SocketAddr,
    pub(crate) gateway: SocketAddr,
    /// Hold time asked of inventory: short, so abandoned holds expire
    /// within the run.
    pub(crate) reservation_ttl_secs: u64,
    /// Orders' pending deadline and payment settle time, shortened likewise.
    pub(crate) pending_deadline_ms: u64,
    pub(crate) payment_settle_ms: u64,
}

/// RabbitMQ names of the run, apart from any other user of the broker.
pub(crate) const INVENTORY_EXCHANGE: &str = "fault-run.inventory.events";
pub(crate) const ORDERS_EXCHANGE: &str = "fault-run.orders.events";
pub(crate) const ORDERS_QUEUE: &str = "fault-run.orders.inventory_events";

/// The running services.
pub(crate) struct Cluster {
    config: ClusterConfig,
    proxy: FaultProxy,
    children: BTreeMap<Service, Child>,
    http: Http,
}

impl Cluster {
    /// Starts inventory, the proxy, orders and the gateway, each ready.
    pub(crate) async fn start(config: ClusterConfig, http: Http) -> anyhow::Result<Self> {
        let proxy = FaultProxy::start("127.0.0.1:0".parse()?, config.inventory).await?;
        let mut cluster = Self {
            config,
            proxy,
            children: BTreeMap::new(),
            http,
        };
        for service in Service::ALL {
            cluster.spawn(service).await?;
        }
        Ok(cluster)
    }

    pub(crate) fn proxy(&self) -> &FaultProxy {
        &self.proxy
    }

    pub(crate) fn pid(&self, service: Service) -> Option<u32> {
        self.children.get(&service).and_then(Child::id)
    }

    /// Starts `service` and waits until it is ready.
    pub(crate) async fn spawn(&mut self, service: Service) -> anyhow::Result<()> {
        let c = &self.config;
        let log = File::options()
            .create(true)
            .append(true)
            .open(c.logs.join(format!("{}.log", service.name())))?;
        let mut cmd = Command::new(&c.shop);
        cmd.arg(service.name())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", &c.log_filter)
            .env("JWT_SECRET", &c.jwt_secret)
            .env("JWT_ISSUER", ISSUER)
            .env("JWT_AUDIENCE", AUDIENCE)
            .env("REDIS_URL", &c.redis_url)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let listen = match service {
            Service::Inventory => {
                cmd.env("DATABASE_URL", &c.database_url)
                    .env("AMQP_URL", &c.amqp_url)
                    .env("INVENTORY_EVENTS_EXCHANGE", INVENTORY_EXCHANGE)
                    .env("ORDERS_INVENTORY_QUEUE", ORDERS_QUEUE)
                    .env("RATE_LIMIT_PER_MINUTE", RATE_LIMIT_UNREACHED)
                    .env("RATE_LIMIT_KEY_PREFIX", "fault-run:inventory")
                    .env("SWEEP_INTERVAL_MS", "1000");
                c.inventory
            }
            Service::Orders => {
                cmd.env("DATABASE_URL", &c.database_url)
                    .env("DB_SCHEMA", "orders")
                    .env("SEED_DEMO_PRODUCTS", "false")
                    .env(
                        "INVENTORY_URL",
                        format!("http://{}", self.proxy.local_addr()),
                    )
                    .env("INVENTORY_JWT_SECRET", &c.jwt_secret)
                    .env("INVENTORY_JWT_ISSUER", ISSUER)
                    .env("INVENTORY_JWT_AUDIENCE", AUDIENCE)
                    .env("INVENTORY_TIMEOUT_MS", "1000")
                    .env("AMQP_URL", &c.amqp_url)
                    .env("ORDERS_EVENTS_EXCHANGE", ORDERS_EXCHANGE)
                    .env("INVENTORY_EVENTS_EXCHANGE", INVENTORY_EXCHANGE)
                    .env("ORDERS_INVENTORY_QUEUE", ORDERS_QUEUE)
                    .env("RATE_LIMIT_PER_MINUTE", RATE_LIMIT_UNREACHED)
                    .env("RATE_LIMIT_KEY_PREFIX", "fault-run:orders")
                    .env(
                        "RESERVATION_TTL_SECONDS",
                        c.reservation_ttl_secs.to_string(),
                    )
                    .env("PENDING_DEADLINE_MS", c.pending_deadline_ms.to_string())
                    .env("PAYMENT_SETTLE_MS", c.payment_settle_ms.to_string())
                    .env("RESUME_INTERVAL_MS", "1000")
                    .env("SAGA_LEASE_MS", "3000")
                    .env("PAYMENT_DECLINE_RATE", "0.05")
                    .env("PAYMENT_TRANSIENT_FAILURE_RATE", "0.02");
                c.orders
            }
            Service::Gateway => {
                cmd.env("ORDERS_URL", format!("http://{}", c.orders))
                    .env("INVENTORY_URL", format!("http://{}", c.inventory))
                    .env("RATE_LIMIT_IP_PER_MINUTE", RATE_LIMIT_UNREACHED)
                    .env("RATE_LIMIT_USER_PER_MINUTE", RATE_LIMIT_UNREACHED);
                c.gateway
            }
        };
        cmd.env("LISTEN_ADDR", listen.to_string());
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", c.shop.display()))?;
        self.children.insert(service, child);
        self.wait_ready(service, listen).await
    }

    async fn wait_ready(&mut self, service: Service, addr: SocketAddr) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("http://{addr}/health/ready");
        while Instant::now() < deadline {
            if let Some(child) = self.children.get_mut(&service) {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "{} exited with {status} while starting (see its log in {})",
                        service.name(),
                        self.config.logs.display()
                    );
                }
            }
            if let Ok((200, _)) = self.http.get(&url, None).await {
                return Ok(());
            }
            tokio::time::sleep(READY_POLL).await;
        }
        bail!("{} was not ready within {READY_TIMEOUT:?}", service.name())
    }

    /// `kill -9` of `service`.
    pub(crate) async fn kill(&mut self, service: Service) -> anyhow::Result<()> {
        if let Some(mut child) = self.children.remove(&service) {
            child.kill().await?;
        }
        Ok(())
    }

    /// Resident set size of each running service, in KiB.
    pub(crate) fn rss_kib(&self) -> BTreeMap<Service, u64> {
        self.children
            .iter()
            .filter_map(|(s, c)| Some((*s, rss_kib(c.id()?)?)))
            .collect()
    }

    /// CPU time (user and system) each running service has used, in ms.
    pub(crate) fn cpu_ms(&self) -> BTreeMap<Service, u64> {
        self.children
            .iter()
            .filter_map(|(s, c)| Some((*s, cpu_ms(c.id()?)?)))
            .collect()
    }

    /// Stops every service.
    pub(crate) async fn stop(mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill().await;
        }
        self.proxy.stop().await;
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn cpu_ms(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at ")".
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Linux reports in clock ticks of 100 Hz on every platform we run on.
    Some((utime + stime) * 10)
}

/// The shared services a fault stops and starts: PostgreSQL, RabbitMQ and
/// Redis on this machine, driven by their own control commands. Whatever a
/// fault stopped is started again when this is dropped, even after a
/// failure of the run.
#[derive(Debug, Default)]
pub(crate) struct SharedServices {
    stopped: Vec<Shared>,
}

/// A shared service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shared {
    Postgres,
    RabbitMq,
    Redis,
}

impl SharedServices {
    pub(crate) fn stop(&mut self, service: Shared) -> anyhow::Result<()> {
        self.stopped.push(service);
        match service {
            Shared::Postgres => pg_ctl("stop")?,
            Shared::RabbitMq => run("rabbitmqctl", &["-q", "stop_app"])?,
            Shared::Redis => {
                // `shutdown` closes the connection that sent it: its failure
                // to answer is the success.
                let _ = run("redis-cli", &["-p", "6379", "shutdown", "nosave"]);
            }
        }
        Ok(())
    }

    /// Starts `service` again and waits until it answers.
    pub(crate) fn start(&mut self, service: Shared) -> anyhow::Result<()> {
        start(service)?;
        self.stopped.retain(|s| *s != service);
        Ok(())
    }
}

impl Drop for SharedServices {
    fn drop(&mut self) {
        for service in std::mem::take(&mut self.stopped) {
            if let Err(e) = start(service) {
                eprintln!("could not start {service:?} again: {e:#}");
            }
        }
    }
}

fn start(service: Shared) -> anyhow::Result<()> {
    match service {
        Shared::Postgres => {
            pg_ctl("start")?;
            wait_for(|| run("pg_isready", &["-q", "-h", "127.0.0.1", "-p", "5432"]))
        }
        Shared::RabbitMq => {
            run("rabbitmqctl", &["-q", "start_app"])?;
            wait_for(|| run("rabbitmq-diagnostics", &["-q", "check_port_connectivity"]))
        }
        Shared::Redis => {
            run(
                "redis-server",
                &[
                    "--daemonize",
                    "yes",
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    "6379",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
            )?;
            wait_for(|| run("redis-cli", &["-p", "6379", "ping"]))
        }
    }
}

/// Closes every client connection of RabbitMQ (the broker keeps running).
pub(crate) fn rabbitmq_close_all_connections() -> anyhow::Result<()> {
    run("rabbitmqctl", &["-q", "close_all_connections", "fault run"])
}

/// Messages waiting in each of the run's queues (its dead-letter queue too).
pub(crate) fn queue_depths() -> anyhow::Result<BTreeMap<String, u64>> {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "messages"])
        .output()?;
    if !out.status.success() {
        bail!("rabbitmqctl list_queues: {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, n) = l.split_once(char::is_whitespace)?;
            let n = n.trim().parse().ok()?;
            name.starts_with(ORDERS_QUEUE).then(|| (name.to_owned(), n))
        })
        .collect())
}

/// Deletes the run's queues and their dead-letter queues, left by an
/// earlier run.
pub(crate) fn delete_queues() {
    for q in [ORDERS_QUEUE.to_owned(), format!("{ORDERS_QUEUE}.dlq")] {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "delete_queue", &q])
            .output();
    }
}

/// `pg_ctlcluster` of the installed cluster (a fast stop: clients are cut).
fn pg_ctl(action: &str) -> anyhow::Result<()> {
    let mut args = vec!["--skip-systemctl-redirect", pg_version(), "main", action];
    if action == "stop" {
        args.extend(["-m", "fast"]);
    }
    run("pg_ctlcluster", &args)
}

/// The installed PostgreSQL version (`ls /etc/postgresql`).
fn pg_version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        std::fs::read_dir("/etc/postgresql")
            .ok()
            .and_then(|d| d.filter_map(Result::ok).next())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .unwrap_or_else(|| "15".to_owned())
    })
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {}: {} {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Longest wait for a shared service to answer after its start.
const SHARED_START_TIMEOUT: Duration = Duration::from_secs(120);

fn wait_for(check: impl Fn() -> anyhow::Result<()>) -> anyhow::Result<()> {
    let deadline = Instant::now() + SHARED_START_TIMEOUT;
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The directory the run writes to, created.
pub(crate) fn out_dir(path: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(path)?;
    Ok(path.to_path_buf())
}
