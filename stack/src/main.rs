//! `shop`: the whole stack in one process (the default), or one service
//! alone for deployments that split them (`shop inventory`, `shop orders`,
//! `shop gateway`, each with that service's own flags and environment).

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
use service_guard::Role;
use stack::{demo_product, Stack, StackConfig};

/// Log filter of the whole stack when `RUST_LOG` is not set.
const LOG_FILTER_STACK: &str = "warn,stack=info,shop=info";

/// The `shop` command line.
#[derive(Debug, Parser)]
#[command(name = "shop", version, about = "The inventory and orders system")]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Inventory, orders and the gateway in one process (the default).
    All(AllArgs),
    /// The inventory service alone.
    Inventory(Box<inventory_http::Config>),
    /// The orders service alone.
    Orders(Box<orders_http::config::Config>),
    /// The gateway alone (or `shop gateway token ...`).
    Gateway(Box<gateway::Cli>),
}

#[derive(Debug, Args)]
struct AllArgs {
    /// Inventory's address.
    #[arg(long, default_value = stack::INVENTORY_LISTEN_DEFAULT)]
    inventory_listen: SocketAddr,
    /// Orders' address.
    #[arg(long, default_value = stack::ORDERS_LISTEN_DEFAULT)]
    orders_listen: SocketAddr,
    /// The gateway's address.
    #[arg(long, default_value = stack::GATEWAY_LISTEN_DEFAULT)]
    gateway_listen: SocketAddr,
    /// The gateway's requests per client IP per minute (0 disables).
    #[arg(long, env = "RATE_LIMIT_IP_PER_MINUTE", default_value_t = gateway::config::RATE_LIMIT_IP_PER_MINUTE_DEFAULT)]
    rate_limit_ip_per_minute: u32,
    /// The gateway's requests per authenticated user per minute (0 disables).
    #[arg(long, env = "RATE_LIMIT_USER_PER_MINUTE", default_value_t = gateway::config::RATE_LIMIT_USER_PER_MINUTE_DEFAULT)]
    rate_limit_user_per_minute: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // No subcommand is `shop all` with its defaults (and its environment).
    let mode = match cli.mode {
        Some(mode) => mode,
        None => Cli::try_parse_from(["shop", "all"])?
            .mode
            .ok_or_else(|| anyhow::anyhow!("`shop all` parses to a mode"))?,
    };
    if let Mode::Gateway(cli) = &mode {
        if let Some(gateway::Command::Token(args)) = &cli.command {
            let token = gateway::token::mint(&cli.config, args)?;
            #[allow(clippy::print_stdout, reason = "the token is the command's output")]
            {
                println!("{token}");
            }
            return Ok(());
        }
    }
    // The whole stack logs only warnings by default, so the walk-through it
    // prints stays readable; RUST_LOG=info shows every request.
    let filter = match mode {
        Mode::All(_) => LOG_FILTER_STACK,
        _ => service_kit::telemetry::LOG_FILTER_DEFAULT,
    };
    service_kit::telemetry::init(filter);
    match mode {
        Mode::All(args) => run_all(args).await,
        Mode::Inventory(config) => {
            let listener = tokio::net::TcpListener::bind(config.listen).await?;
            tracing::info!(addr = %listener.local_addr()?, "inventory listening");
            inventory_http::run(listener, *config, service_kit::shutdown_signal()).await?;
            Ok(())
        }
        Mode::Orders(config) => {
            let listener = tokio::net::TcpListener::bind(config.listen).await?;
            tracing::info!(addr = %listener.local_addr()?, "orders listening");
            orders_http::run(listener, *config, service_kit::shutdown_signal()).await?;
            Ok(())
        }
        Mode::Gateway(cli) => {
            let mut config = cli.config;
            let listener = tokio::net::TcpListener::bind(config.listen).await?;
            config.listen = listener.local_addr()?;
            tracing::info!(addr = %config.listen, "gateway listening");
            gateway::run(listener, config, service_kit::shutdown_signal()).await?;
            Ok(())
        }
    }
}

async fn run_all(args: AllArgs) -> anyhow::Result<()> {
    let config = StackConfig {
        inventory_listen: args.inventory_listen,
        orders_listen: args.orders_listen,
        gateway_listen: args.gateway_listen,
        rate_limit_ip_per_minute: args.rate_limit_ip_per_minute,
        rate_limit_user_per_minute: args.rate_limit_user_per_minute,
        ..StackConfig::local()
    };
    let stack = stack::start(config).await?;
    print_welcome(&stack)?;
    stack.run_until(service_kit::shutdown_signal()).await?;
    tracing::info!("stack stopped");
    Ok(())
}

#[allow(
    clippy::print_stdout,
    reason = "the walk-through is for the person who started the stack, not a log"
)]
fn print_welcome(stack: &Stack) -> anyhow::Result<()> {
    let customer = stack.token("alice", &[Role::Customer])?;
    let admin = stack.token("admin", &[Role::Admin])?;
    let gw = stack.gateway;
    let keyboard = demo_product(1);
    println!(
        r#"
The shop is running: gateway http://{gw} -> orders http://{orders}, inventory http://{inventory}
(in-memory stores, a fresh signing key; Ctrl-C stops everything; RUST_LOG=info logs every request).

Tokens (valid for 12 hours):

export CUSTOMER='{customer}'
export ADMIN='{admin}'

Try it, through the gateway:

# 1. list products
curl -s -w '\n' http://{gw}/api/products

# 2. check stock of the keyboard
curl -s -w '\n' http://{gw}/api/inventory/{keyboard}

# 3. place an order as the customer (prints the order, status "pending")
ORDER_ID=$(curl -s -X POST http://{gw}/api/orders \
  -H "Authorization: Bearer $CUSTOMER" -H 'Content-Type: application/json' \
  -H "Idempotency-Key: demo-$RANDOM" \
  -d '{{"items":[{{"product_id":"{keyboard}","quantity":2}}]}}' \
  | tee /dev/stderr | sed -n 's/.*"id":"\([^"]*\)".*/\1/p'); echo; echo "order $ORDER_ID"

# 4. watch it become "confirmed"
curl -s -w '\n' http://{gw}/api/orders/$ORDER_ID/status -H "Authorization: Bearer $CUSTOMER"

# 5. see the stock drop (quantity 25 -> 23)
curl -s -w '\n' http://{gw}/api/inventory/{keyboard}

# your orders, and the gateway's view of the services
curl -s -w '\n' http://{gw}/api/orders -H "Authorization: Bearer $CUSTOMER"
curl -s -w '\n' http://{gw}/health
"#,
        orders = stack.orders,
        inventory = stack.inventory,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No subcommand means the whole stack; each service parses its own flags;
    /// `shop gateway token` reaches the gateway's token command.
    #[test]
    fn modes_parse() {
        assert!(Cli::try_parse_from(["shop"]).unwrap().mode.is_none());
        let all = Cli::try_parse_from(["shop", "all", "--gateway-listen", "127.0.0.1:9000"]);
        assert!(matches!(all.unwrap().mode, Some(Mode::All(a)) if a.gateway_listen.port() == 9000));
        let inv = Cli::try_parse_from(["shop", "inventory", "--listen", "127.0.0.1:9001"]);
        assert!(matches!(inv.unwrap().mode, Some(Mode::Inventory(c)) if c.listen.port() == 9001));
        let orders = Cli::try_parse_from(["shop", "orders", "--inventory-url", "http://inv:8080"]);
        assert!(
            matches!(orders.unwrap().mode, Some(Mode::Orders(c)) if c.inventory_url == "http://inv:8080")
        );
        let token = Cli::try_parse_from([
            "shop",
            "gateway",
            "--jwt-secret",
            "s",
            "token",
            "--sub",
            "a",
            "--role",
            "admin",
        ]);
        assert!(matches!(
            token.unwrap().mode,
            Some(Mode::Gateway(cli)) if matches!(&cli.command, Some(gateway::Command::Token(t)) if t.sub == "a")
        ));
        assert!(Cli::try_parse_from(["shop", "warehouse"]).is_err());
    }
}
