//! `sim`: runs seeded simulations against the memory store or PostgreSQL and
//! checks every history; prints each failing seed with what was wrong and the
//! shortest run of that seed that still fails.
//!
//! ```text
//! cargo run -p sim --release -- --seeds 1000
//! cargo run -p sim --release -- --seeds 100 --store postgres --database-url postgres://postgres@127.0.0.1:5432/test
//! cargo run -p sim --release -- --seed 17
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use inventory_sqlx::{Concurrency, PgOptions};
use sim::faults::{FaultRates, Faulty};
use sim::gen::Shape;
use sim::run::{run_concurrent, run_scheduled_caught, Report, FAULTS_DEFAULT};

/// Which store the clients use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    /// A fresh memory store per seed; runs are deterministic.
    Memory,
    /// PostgreSQL; the schedule is seeded, the interleaving is the machine's.
    Postgres,
}

/// Seeded simulations of clients against an inventory store, checked.
#[derive(Debug, Parser)]
#[command(name = "sim", version)]
struct Args {
    /// How many seeds to run.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Run this one seed only (replay).
    #[arg(long)]
    seed: Option<u64>,
    /// The store.
    #[arg(long, value_enum, default_value_t = StoreKind::Memory)]
    store: StoreKind,
    /// PostgreSQL URL (with `--store postgres`).
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// Scheduler moves per seed (memory) or calls per client (postgres).
    #[arg(long)]
    steps: Option<usize>,
    /// Clients at once.
    #[arg(long)]
    clients: Option<usize>,
    /// Run without injected faults.
    #[arg(long)]
    no_faults: bool,
    /// Print every call of the run (with `--seed`).
    #[arg(long)]
    history: bool,
    /// PostgreSQL in optimistic mode (versioned writes, retried) rather than
    /// row locks.
    #[arg(long)]
    optimistic: bool,
}

fn main() -> ExitCode {
    // A panic inside a run is reported with its seed; one line is enough.
    std::panic::set_hook(Box::new(|info| eprintln!("sim: {info}")));
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[allow(
    clippy::print_stdout,
    reason = "the report of the seeds run is the command's output"
)]
fn run(args: Args) -> anyhow::Result<bool> {
    let mut shape = Shape::default();
    if let Some(steps) = args.steps {
        shape.steps = steps;
    } else if args.store == StoreKind::Postgres {
        shape.steps = 40;
    }
    if let Some(clients) = args.clients {
        shape.clients = clients;
    }
    let faults = if args.no_faults {
        FaultRates::NONE
    } else {
        FAULTS_DEFAULT
    };
    let seeds: Vec<u64> = match args.seed {
        Some(seed) => vec![seed],
        None => (args.first..args.first + args.seeds).collect(),
    };
    let started = Instant::now();
    let reports = match args.store {
        StoreKind::Memory => seeds
            .iter()
            .map(|&seed| {
                run_scheduled_caught(inventory_memory::MemoryStore::new(), seed, &shape, faults)
                    .map(|report| kept(report, args.history))
                    .map_err(anyhow::Error::from)
            })
            .collect::<anyhow::Result<Vec<Report>>>()?,
        StoreKind::Postgres => {
            let url = args
                .database_url
                .context("--store postgres needs --database-url or DATABASE_URL")?;
            let options = PgOptions {
                concurrency: if args.optimistic {
                    Concurrency::Optimistic
                } else {
                    Concurrency::Locking
                },
                ..PgOptions::default()
            };
            postgres(&url, args.history, options, &seeds, &shape, faults)?
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    let calls: usize = reports.iter().map(|r| r.calls).sum();
    let unknown: usize = reports.iter().map(|r| r.unknown).sum();
    let failed: Vec<&Report> = reports.iter().filter(|r| !r.anomalies.is_empty()).collect();
    for report in &failed {
        println!("seed {} FAILED:", report.seed);
        for anomaly in &report.anomalies {
            println!("  {anomaly:?}");
        }
        if args.store == StoreKind::Memory {
            let shortest = shortest_failing(report.seed, &shape, faults);
            println!(
                "  shortest failing run (add --history to print it): --seed {} --steps {shortest}",
                report.seed
            );
        }
    }
    if args.history {
        for report in &reports {
            for call in &report.history {
                println!("{call:?}");
            }
        }
    }
    println!(
        "sim: {} seeds on {:?}, {} failed; {calls} calls ({unknown} with unknown outcome); {:.1} s, {:.0} histories/s",
        reports.len(),
        args.store,
        failed.len(),
        elapsed,
        reports.len() as f64 / elapsed.max(f64::EPSILON),
    );
    Ok(failed.is_empty())
}

/// The report, without its history unless it is to be printed (a long run
/// keeps thousands of reports).
fn kept(mut report: Report, history: bool) -> Report {
    if !history {
        report.history = Vec::new();
    }
    report
}

/// The fewest scheduler moves with which `seed` still fails (runs are
/// deterministic prefixes of each other).
fn shortest_failing(seed: u64, shape: &Shape, faults: FaultRates) -> usize {
    let fails = |steps: usize| {
        let shape = Shape { steps, ..*shape };
        run_scheduled_caught(inventory_memory::MemoryStore::new(), seed, &shape, faults)
            .map(|r| !r.anomalies.is_empty())
            .unwrap_or(true)
    };
    let (mut good, mut bad) = (0, shape.steps);
    while bad - good > 1 {
        let mid = (good + bad) / 2;
        if fails(mid) {
            bad = mid;
        } else {
            good = mid;
        }
    }
    bad
}

fn postgres(
    url: &str,
    history: bool,
    options: PgOptions,
    seeds: &[u64],
    shape: &Shape,
    faults: FaultRates,
) -> anyhow::Result<Vec<Report>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (store, schema) = sim::pg::fresh_store(url, options)
            .await
            .context("a schema of the run's own in PostgreSQL")?;
        let mut reports = Vec::new();
        for &seed in seeds {
            let faulty = Arc::new(Faulty::new(store.clone(), faults, seed ^ 0x5eed));
            reports.push(kept(run_concurrent(faulty, seed, shape).await?, history));
        }
        drop(store);
        sim::pg::drop_schema(url, &schema).await?;
        Ok(reports)
    })
}
