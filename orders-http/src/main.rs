//! The `orders-http` binary: parse the configuration, set up logging, serve
//! until ctrl-c or SIGTERM.

use anyhow::Context;
use clap::Parser;
use orders_http::config::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init(service_kit::telemetry::LOG_FILTER_DEFAULT);
    let config = Config::parse();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(listen = %config.listen, inventory = %config.inventory_url, store = if config.database_url.is_some() { "postgres" } else { "memory" }, "orders-http starting");
    orders_http::run(listener, config, service_kit::shutdown_signal()).await?;
    tracing::info!("orders-http stopped");
    Ok(())
}
