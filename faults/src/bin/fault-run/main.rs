//! `fault-run`: the whole system on real services while its parts fail.
//!
//! Starts `shop inventory`, `shop orders` and `shop gateway` as separate
//! processes on PostgreSQL, Redis and RabbitMQ (orders reaching inventory
//! through a fault proxy), drives a mixed load through the gateway at a
//! fixed rate, injects faults one after another, waits for the system to
//! settle and checks it in SQL and through the APIs. `--plan soak` runs the
//! load without faults and samples every process's memory instead.
//!
//! It stops and starts the machine's PostgreSQL, RabbitMQ and Redis: run it
//! only where nothing else uses them. Whatever it stopped it starts again,
//! even when it fails. See `docs/operations.md`.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool reporting to its operator"
)]

mod check;
mod cluster;
mod http;
mod load;
mod report;
mod schedule;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use parking_lot::Mutex;
use rand::Rng;
use service_guard::{Role, TokenSigner};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::cluster::{Cluster, ClusterConfig, SharedServices};
use crate::http::Http;
use crate::load::{Customer, Product, Seen, World};
use crate::schedule::Fault;

/// Customers of the run, each with their own token.
const CUSTOMERS: usize = 20;
/// Products with plenty of stock, and products customers contend for.
const PRODUCTS_PLENTY: usize = 10;
const PRODUCTS_SCARCE: usize = 2;
const STOCK_PLENTY: u64 = 1_000_000;
const STOCK_SCARCE: u64 = 20;
/// Lifetime of the run's tokens.
const TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);
/// Interval of the soak's memory samples.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);
/// Slack on top of the longest saga can wait (hold TTL, pending deadline,
/// payment settle time) before the system must be quiet.
const QUIET_SLACK: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Plan {
    /// Five faults, short holds (about three minutes; CI).
    Short,
    /// Every fault, longer holds.
    Full,
    /// No faults: `--soak-secs` of load, memory sampled every 10 s.
    Soak,
}

/// Fault runs of the whole system on real services.
#[derive(Debug, Parser)]
#[command(name = "fault-run")]
struct Args {
    /// Which run.
    #[arg(long, value_enum, default_value = "short")]
    plan: Plan,
    /// The `shop` binary.
    #[arg(long, env = "SHOP_BIN")]
    shop: PathBuf,
    /// A PostgreSQL URL with the right to create databases; the run uses a
    /// new database `--database` on the same server.
    #[arg(
        long,
        env = "FAULT_RUN_ADMIN_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    admin_database_url: String,
    /// The run's database (dropped and created again at the start).
    #[arg(long, default_value = "shop_fault_run")]
    database: String,
    /// Redis (on this machine: a fault stops it).
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// RabbitMQ (on this machine: a fault stops it).
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    amqp_url: String,
    /// Requests per second through the gateway.
    #[arg(long, default_value_t = 40)]
    rate: u32,
    /// Load before the first fault, in seconds.
    #[arg(long)]
    warmup_secs: Option<u64>,
    /// How long each fault is held, in seconds.
    #[arg(long)]
    hold_secs: Option<u64>,
    /// Load after each recovery before the next fault, in seconds.
    #[arg(long)]
    settle_secs: Option<u64>,
    /// Length of the soak, in seconds.
    #[arg(long, default_value_t = 600)]
    soak_secs: u64,
    /// Soak samples before this many seconds are warm-up (not in the growth).
    #[arg(long, default_value_t = 120)]
    soak_warmup_secs: u64,
    /// First of the three ports the services listen on (inventory, orders,
    /// gateway).
    #[arg(long, default_value_t = 18280)]
    base_port: u16,
    /// Where the history, the report and the services' logs are written.
    #[arg(long, default_value = "target/fault-run")]
    out: PathBuf,
    /// Log filter of the services.
    #[arg(long, default_value = "warn")]
    service_log: String,
    /// Seed of the load's choices.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl Args {
    fn timing(&self) -> (Duration, Duration, Duration) {
        let (w, h, s) = match self.plan {
            Plan::Short => (10, 3, 6),
            Plan::Full => (20, 8, 12),
            Plan::Soak => (0, 0, 0),
        };
        let secs = |v: Option<u64>, d| Duration::from_secs(v.unwrap_or(d));
        (
            secs(self.warmup_secs, w),
            secs(self.hold_secs, h),
            secs(self.settle_secs, s),
        )
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match run(&args).await {
        Ok(true) => Ok(()),
        Ok(false) => bail!("the run found anomalies (see above)"),
        Err(e) => Err(e),
    }
}

/// The run; whether it found nothing wrong.
async fn run(args: &Args) -> anyhow::Result<bool> {
    let out = cluster::out_dir(&args.out)?;
    for s in cluster::Service::ALL {
        let _ = std::fs::remove_file(out.join(format!("{}.log", s.name())));
    }
    let database_url = fresh_database(&args.admin_database_url, &args.database).await?;
    cluster::delete_queues();
    let jwt_secret: String = {
        let mut rng = rand::rng();
        (0..48)
            .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
            .collect()
    };
    let addr = |offset: u16| SocketAddr::from(([127, 0, 0, 1], args.base_port + offset));
    let config = ClusterConfig {
        shop: args.shop.clone(),
        logs: out.clone(),
        log_filter: args.service_log.clone(),
        database_url: database_url.clone(),
        redis_url: args.redis_url.clone(),
        amqp_url: args.amqp_url.clone(),
        jwt_secret: jwt_secret.clone(),
        inventory: addr(0),
        orders: addr(1),
        gateway: addr(2),
        reservation_ttl_secs: 10,
        pending_deadline_ms: 20_000,
        payment_settle_ms: 5_000,
    };
    let quiet_within = Duration::from_secs(config.reservation_ttl_secs)
        + Duration::from_millis(config.pending_deadline_ms + config.payment_settle_ms)
        + QUIET_SLACK;
    let http = Http::new();
    let mut shared = SharedServices::default();
    let mut cluster = Cluster::start(config, http.clone()).await?;
    let world = Arc::new(setup(&http, &jwt_secret, addr(2)).await?);
    println!(
        "stack up: inventory {} (pid {:?}), orders {} (pid {:?}), gateway {} (pid {:?}); {} products, {} customers; load {} req/s",
        addr(0),
        cluster.pid(cluster::Service::Inventory),
        addr(1),
        cluster.pid(cluster::Service::Orders),
        addr(2),
        cluster.pid(cluster::Service::Gateway),
        world.products.len(),
        world.customers.len(),
        args.rate
    );

    let epoch = Instant::now();
    let epoch_unix_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(load::run(
        world.clone(),
        http.clone(),
        args.rate,
        args.seed,
        epoch,
        seen.clone(),
        stopped,
    ));

    let mut windows = Vec::new();
    let mut samples = Vec::new();
    let (warmup, hold, settle) = args.timing();
    let faults: &[Fault] = match args.plan {
        Plan::Short => &Fault::SHORT,
        Plan::Full => &Fault::FULL,
        Plan::Soak => &[],
    };
    let outcome: anyhow::Result<()> = async {
        if args.plan == Plan::Soak {
            let end = epoch + Duration::from_secs(args.soak_secs);
            let sample = |cluster: &Cluster| report::Sample {
                at_s: epoch.elapsed().as_secs(),
                rss_kib: cluster.rss_kib(),
                cpu_ms: cluster.cpu_ms(),
                requests: seen.lock().records.len(),
                queued: None,
            };
            while Instant::now() < end {
                let mut s = sample(&cluster);
                s.queued = tokio::task::spawn_blocking(cluster::queue_depths)
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(|q| q.values().sum());
                samples.push(s);
                tokio::time::sleep(
                    SAMPLE_INTERVAL.min(end.saturating_duration_since(Instant::now())),
                )
                .await;
            }
            samples.push(sample(&cluster));
            return Ok(());
        }
        tokio::time::sleep(warmup).await;
        for fault in faults {
            println!("{:>6.1} s  {}", epoch.elapsed().as_secs_f64(), fault.name());
            let w =
                schedule::inject(*fault, &mut cluster, &mut shared, hold, settle, epoch).await?;
            windows.push(w);
        }
        Ok(())
    }
    .await;
    let _ = stop.send(true);
    load.await?;
    let load_secs = epoch.elapsed().as_secs_f64();
    drop(shared);
    outcome?;

    println!(
        "{:>6.1} s  load stopped; waiting for the system to settle (at most {quiet_within:?})",
        epoch.elapsed().as_secs_f64()
    );
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&database_url)
        .await?;
    let quiet = check::wait_quiet(&pool, quiet_within).await;
    let mut ok = true;
    match &quiet {
        Ok(t) => println!("quiet after {:.1} s", t.as_secs_f64()),
        Err(busy) => {
            ok = false;
            println!("ANOMALY: not quiet within {quiet_within:?}: {busy:?}");
        }
    }
    let seen = std::mem::take(&mut *seen.lock());
    let expected = faults::check::Expected {
        initial_stock: world.products.iter().map(|p| (p.id, p.initial)).collect(),
        orders: seen.placed.iter().map(|p| p.order_id).collect(),
        adjustments: seen
            .adjusted
            .iter()
            .map(|a| (a.product_id, a.key.clone()))
            .collect(),
    };
    let mut slowest = Vec::new();
    for w in &windows {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT max(updated_at_ms - created_at_ms) FROM orders.orders \
             WHERE created_at_ms >= $1 AND created_at_ms < $2",
        )
        .bind(epoch_unix_ms + w.injected_ms as i64)
        .bind(epoch_unix_ms + w.end_ms as i64)
        .fetch_one(&pool)
        .await?;
        slowest.push(v);
    }
    let (orders_by_status,): (String,) = sqlx::query_as(
        "SELECT coalesce(string_agg(format('%s %s', n, status), ', '), 'none') FROM \
           (SELECT status, count(*) AS n FROM orders.orders GROUP BY status ORDER BY status) s",
    )
    .fetch_one(&pool)
    .await?;
    // What the clients saw, printed before the checks (which take a while
    // after a long run).
    let mut text = String::new();
    if !windows.is_empty() {
        text.push_str(&report::faults(&seen.records, &windows, &slowest));
        text.push('\n');
    }
    if !samples.is_empty() {
        text.push_str(&report::soak(&samples, args.soak_warmup_secs));
        text.push('\n');
    }
    text.push_str(&report::totals(
        &seen.records,
        &windows,
        seen.not_sent,
        load_secs,
    ));
    text.push_str(&format!("orders: {orders_by_status}\n\n"));
    println!("\n{text}");
    println!("checking...");
    let checks_started = Instant::now();
    let mut findings = faults::check::invariants(&pool, &expected).await?;
    findings.push(check::queues().await?);
    findings.extend(check::api(&pool, &http, &world, &seen).await?);
    cluster.stop().await;
    let table = report::findings(&findings);
    println!(
        "{table}\nchecked in {:.1} s",
        checks_started.elapsed().as_secs_f64()
    );
    text.push_str(&table);
    std::fs::write(out.join("report.md"), &text)?;
    let history: String = seen
        .records
        .iter()
        .filter_map(|r| serde_json::to_string(r).ok())
        .map(|l| l + "\n")
        .collect();
    std::fs::write(out.join("history.jsonl"), history)?;
    println!("history, report and service logs in {}", out.display());
    let answers_ok = seen
        .records
        .iter()
        .all(|r| report::anomaly(r, &windows).is_none());
    let checks_ok = findings.iter().all(|f| f.violations == 0);
    let soak_ok = args.plan != Plan::Soak || seen.records.iter().all(|r| !r.failed());
    Ok(ok && answers_ok && checks_ok && soak_ok)
}

/// Drops and creates the run's database; its URL.
async fn fresh_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        bail!("database name {name:?}: letters, digits and _ only");
    }
    let mut conn = PgConnection::connect(admin_url)
        .await
        .with_context(|| format!("connecting to {admin_url}"))?;
    sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await?;
    let base = admin_url
        .split_once('?')
        .map_or(admin_url, |(b, _)| b)
        .rsplit_once('/')
        .map_or(admin_url, |(b, _)| b);
    Ok(format!("{base}/{name}"))
}

/// Tokens, products in the catalog and in stock.
async fn setup(http: &Http, secret: &str, gateway: SocketAddr) -> anyhow::Result<World> {
    let signer = TokenSigner::hs256(secret)?
        .with_issuer(cluster::ISSUER)
        .with_audience(cluster::AUDIENCE);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let admin = signer.mint("fault-run-admin", &[Role::Admin], TOKEN_TTL, now)?;
    let customers = (0..CUSTOMERS)
        .map(|i| {
            Ok(Customer {
                token: signer.mint(&format!("customer-{i}"), &[Role::Customer], TOKEN_TTL, now)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let gateway = format!("http://{gateway}");
    let mut products = Vec::new();
    let mut rng = rand::rng();
    for i in 0..PRODUCTS_PLENTY + PRODUCTS_SCARCE {
        let scarce = i >= PRODUCTS_PLENTY;
        let id = Uuid::new_v4();
        let initial = if scarce { STOCK_SCARCE } else { STOCK_PLENTY };
        let catalog = serde_json::json!({
            "id": id,
            "name": format!("fault-run product {i}"),
            "price_minor": rng.random_range(100..=5_000),
            "currency": "EUR",
        });
        let stock = serde_json::json!({"product_id": id, "quantity": initial});
        for (path, body) in [("/api/products", catalog), ("/api/inventory/items", stock)] {
            let answer = http
                .call(
                    ::http::Method::POST,
                    &format!("{gateway}{path}"),
                    Some(&admin),
                    None,
                    Some(&body),
                )
                .await;
            match answer {
                Ok((200..=299, _)) => {}
                other => bail!("setting up {path}: {other:?}"),
            }
        }
        products.push(Product {
            id,
            initial,
            scarce,
        });
    }
    Ok(World {
        gateway,
        products,
        customers,
        admin,
    })
}
