//! The `gateway` binary: serve (default), or print a development token.

use clap::Parser;
use gateway::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Token(args)) = &cli.command {
        let token = gateway::token::mint(&cli.config, args)?;
        #[allow(clippy::print_stdout, reason = "the token is the command's output")]
        {
            println!("{token}");
        }
        return Ok(());
    }
    service_kit::telemetry::init(service_kit::telemetry::LOG_FILTER_DEFAULT);
    let mut config = cli.config;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    config.listen = listener.local_addr()?;
    tracing::info!(addr = %config.listen, orders = %config.orders_url, inventory = %config.inventory_url, "gateway listening");
    gateway::run(listener, config, service_kit::shutdown_signal()).await?;
    tracing::info!("gateway stopped");
    Ok(())
}
