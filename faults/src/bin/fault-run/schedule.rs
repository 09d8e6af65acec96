//! The faults, injected one after another with recovery between, and the
//! windows they cover in the run's timeline.

use std::time::{Duration, Instant};

use faults::Mode;

use crate::cluster::{self, Cluster, Service, Shared, SharedServices};

/// A fault of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    PostgresRestart,
    RabbitMqRestart,
    RabbitMqCloseConnections,
    KillInventory,
    KillOrders,
    ProxyDrop,
    ProxyBlackhole,
    RedisRestart,
}

impl Fault {
    /// Every fault, in the order of a full run.
    pub(crate) const FULL: [Fault; 8] = [
        Fault::PostgresRestart,
        Fault::RabbitMqRestart,
        Fault::RabbitMqCloseConnections,
        Fault::KillInventory,
        Fault::KillOrders,
        Fault::ProxyDrop,
        Fault::ProxyBlackhole,
        Fault::RedisRestart,
    ];

    /// The faults of the short run (CI).
    pub(crate) const SHORT: [Fault; 5] = [
        Fault::PostgresRestart,
        Fault::KillInventory,
        Fault::KillOrders,
        Fault::ProxyBlackhole,
        Fault::RabbitMqCloseConnections,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Fault::PostgresRestart => "PostgreSQL stopped, started",
            Fault::RabbitMqRestart => "RabbitMQ stopped, started",
            Fault::RabbitMqCloseConnections => "RabbitMQ close_all_connections",
            Fault::KillInventory => "kill -9 inventory, restarted",
            Fault::KillOrders => "kill -9 orders, restarted",
            Fault::ProxyDrop => "orders -> inventory dropped",
            Fault::ProxyBlackhole => "orders -> inventory blackholed",
            Fault::RedisRestart => "Redis stopped, started",
        }
    }

    /// A process died mid-request: requests sent while it is down (in flight
    /// at the kill, or sent over a pooled connection to the dead process) may
    /// get no valid answer (502) without it being an anomaly.
    pub(crate) fn kills(self) -> bool {
        matches!(self, Fault::KillInventory | Fault::KillOrders)
    }
}

/// When a fault was injected and undone, in ms since the run started.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    pub(crate) fault: Fault,
    pub(crate) injected_ms: u64,
    /// The fault was undone and the part is back (process ready, server
    /// answering).
    pub(crate) recovered_ms: u64,
    /// The end of the settling time after recovery.
    pub(crate) end_ms: u64,
}

/// Injects `fault`, holds it `hold`, undoes it, then lets the system settle
/// for `settle`.
pub(crate) async fn inject(
    fault: Fault,
    cluster: &mut Cluster,
    shared: &mut SharedServices,
    hold: Duration,
    settle: Duration,
    epoch: Instant,
) -> anyhow::Result<Window> {
    let now = || epoch.elapsed().as_millis() as u64;
    let injected_ms = now();
    match fault {
        Fault::PostgresRestart => blocking(|| shared.stop(Shared::Postgres))?,
        Fault::RabbitMqRestart => blocking(|| shared.stop(Shared::RabbitMq))?,
        Fault::RedisRestart => blocking(|| shared.stop(Shared::Redis))?,
        Fault::RabbitMqCloseConnections => blocking(cluster::rabbitmq_close_all_connections)?,
        Fault::KillInventory => cluster.kill(Service::Inventory).await?,
        Fault::KillOrders => cluster.kill(Service::Orders).await?,
        Fault::ProxyDrop => cluster.proxy().set_mode(Mode::Drop),
        Fault::ProxyBlackhole => cluster.proxy().set_mode(Mode::Blackhole),
    }
    if fault != Fault::RabbitMqCloseConnections {
        tokio::time::sleep(hold).await;
    }
    match fault {
        Fault::PostgresRestart => blocking(|| shared.start(Shared::Postgres))?,
        Fault::RabbitMqRestart => blocking(|| shared.start(Shared::RabbitMq))?,
        Fault::RedisRestart => blocking(|| shared.start(Shared::Redis))?,
        Fault::RabbitMqCloseConnections => {}
        Fault::KillInventory => cluster.spawn(Service::Inventory).await?,
        Fault::KillOrders => cluster.spawn(Service::Orders).await?,
        Fault::ProxyDrop | Fault::ProxyBlackhole => cluster.proxy().set_mode(Mode::Pass),
    }
    let recovered_ms = now();
    tokio::time::sleep(settle).await;
    Ok(Window {
        fault,
        injected_ms,
        recovered_ms,
        end_ms: now(),
    })
}

/// Runs a blocking control command without stalling the load's tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}
