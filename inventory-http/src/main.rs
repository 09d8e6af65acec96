//! The `inventory-http` binary: parse the configuration, set up JSON logs,
//! bind, and serve until ctrl-c or SIGTERM.

use clap::Parser;
use inventory_http::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let _logs =
        service_kit::telemetry::init_non_blocking(service_kit::telemetry::LOG_FILTER_DEFAULT);
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "inventory-http listening");
    inventory_http::run(listener, config, service_kit::shutdown_signal()).await?;
    tracing::info!("inventory-http stopped");
    Ok(())
}
