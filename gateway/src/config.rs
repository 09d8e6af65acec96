//! Configuration: command-line flags, each also readable from an environment
//! variable. Every limit is named with its unit last.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use service_kit::backends::{self, Backend, Configured, NotBuilt};
use service_kit::server::{
    CONNECTIONS_MAX_DEFAULT, HEADER_READ_TIMEOUT_MS_DEFAULT, REQUEST_TIMEOUT_MS_DEFAULT,
    SHUTDOWN_DRAIN_TIMEOUT_MS_DEFAULT,
};
use service_kit::settings::{AuthSettings, TlsSettings};
use service_kit::ServerLimits;

use crate::rules::{AccessRule, DEFAULT_PUBLIC_ROUTES};

/// Default listen address: loopback only, so a gateway started without a key
/// is not reachable from other machines.
pub const LISTEN_DEFAULT: &str = "127.0.0.1:8000";

/// Default base URL of the orders service.
pub const ORDERS_URL_DEFAULT: &str = "http://127.0.0.1:3001";

/// Default base URL of the inventory service.
pub const INVENTORY_URL_DEFAULT: &str = "http://127.0.0.1:8080";

/// Default time the orders service has to answer (response headers), in
/// milliseconds. Placing an order only records it (the saga runs after the
/// 202), so a few seconds is generous.
pub const ORDERS_TIMEOUT_MS_DEFAULT: u64 = 5_000;

/// Default time the inventory service has to answer, in milliseconds.
/// Availability reads are sub-millisecond; writes hold one row lock.
pub const INVENTORY_TIMEOUT_MS_DEFAULT: u64 = 3_000;

/// Default time to open a TCP connection to an upstream, in milliseconds. A
/// local or same-zone upstream connects in well under this; past it the
/// upstream is treated as down (503) instead of making the client wait.
pub const CONNECT_TIMEOUT_MS_DEFAULT: u64 = 1_000;

/// Default time a readiness probe of one upstream may take, in milliseconds.
pub const HEALTH_TIMEOUT_MS_DEFAULT: u64 = 500;

/// Default idle keep-alive connections kept per upstream.
pub const POOL_IDLE_PER_UPSTREAM_MAX_DEFAULT: usize = 256;

/// Default time an idle upstream connection is kept, in seconds (below the
/// usual server-side keep-alive limits, so the pool rarely hands out a
/// connection the upstream is closing).
pub const POOL_IDLE_TIMEOUT_SECS_DEFAULT: u64 = 30;

/// Default largest request body forwarded, in bytes. Bodies are streamed, not
/// buffered; the cap stops a client from pushing unbounded data upstream.
pub const BODY_BYTES_MAX_DEFAULT: u64 = 1024 * 1024;

/// Default number of trusted proxies in front of the gateway when forwarded
/// headers are trusted: one load balancer.
pub const TRUSTED_PROXY_HOPS_DEFAULT: usize = 1;

/// Default requests per client IP per minute (0 disables).
pub const RATE_LIMIT_IP_PER_MINUTE_DEFAULT: u32 = 600;

/// Default requests per authenticated user per minute (0 disables).
pub const RATE_LIMIT_USER_PER_MINUTE_DEFAULT: u32 = 300;

/// Default lifetime of a token printed by `gateway token`, in seconds.
pub const TOKEN_TTL_SECS_DEFAULT: u64 = 3_600;

/// The `gateway` command line.
#[derive(Clone, Debug, Parser)]
#[command(name = "gateway", version, about = "The API gateway")]
pub struct Cli {
    /// What to do; serving is the default.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The gateway's settings (also read by `token` for the signing key).
    #[command(flatten)]
    pub config: Config,
}

/// A subcommand of `gateway`.
#[derive(Clone, Debug, Subcommand)]
pub enum Command {
    /// Serve (the default).
    Serve,
    /// Print a token signed with the configured key, for development.
    Token(TokenArgs),
}

/// Flags of `gateway token`.
#[derive(Clone, Debug, Args)]
pub struct TokenArgs {
    /// The token's subject (user id or service name).
    #[arg(long)]
    pub sub: String,
    /// A role to grant (`customer`, `admin`, `service`); repeat for several.
    #[arg(long = "role", required = true)]
    pub roles: Vec<String>,
    /// Lifetime, in seconds.
    #[arg(long = "ttl", default_value_t = TOKEN_TTL_SECS_DEFAULT)]
    pub ttl_secs: u64,
    /// PEM private key to sign RS256/ES256 tokens with (HS256 uses the secret).
    #[arg(long, env = "JWT_PRIVATE_KEY_FILE")]
    pub private_key_file: Option<PathBuf>,
}

/// The gateway's configuration.
#[derive(Clone, Debug, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "LISTEN_ADDR", default_value = LISTEN_DEFAULT)]
    pub listen: SocketAddr,

    /// Base URL of the orders service (`/api/orders*`, `/api/products*`):
    /// `http://` or `https://` (checked against the system's roots and
    /// `--tls-ca-file`).
    #[arg(long, env = "ORDERS_URL", default_value = ORDERS_URL_DEFAULT)]
    pub orders_url: String,

    /// Base URL of the inventory service (`/api/inventory*`): `http://` or
    /// `https://`.
    #[arg(long, env = "INVENTORY_URL", default_value = INVENTORY_URL_DEFAULT)]
    pub inventory_url: String,

    /// Time the orders service has to answer, in milliseconds.
    #[arg(long, env = "ORDERS_TIMEOUT_MS", default_value_t = ORDERS_TIMEOUT_MS_DEFAULT)]
    pub orders_timeout_ms: u64,

    /// Time the inventory service has to answer, in milliseconds.
    #[arg(long, env = "INVENTORY_TIMEOUT_MS", default_value_t = INVENTORY_TIMEOUT_MS_DEFAULT)]
    pub inventory_timeout_ms: u64,

    /// Time to connect to an upstream, in milliseconds.
    #[arg(long, env = "UPSTREAM_CONNECT_TIMEOUT_MS", default_value_t = CONNECT_TIMEOUT_MS_DEFAULT)]
    pub connect_timeout_ms: u64,

    /// Time a readiness probe of one upstream may take, in milliseconds.
    #[arg(long, env = "UPSTREAM_HEALTH_TIMEOUT_MS", default_value_t = HEALTH_TIMEOUT_MS_DEFAULT)]
    pub health_timeout_ms: u64,

    /// Idle keep-alive connections kept per upstream.
    #[arg(long, env = "UPSTREAM_POOL_IDLE_MAX", default_value_t = POOL_IDLE_PER_UPSTREAM_MAX_DEFAULT)]
    pub pool_idle_per_upstream_max: usize,

    /// Time an idle upstream connection is kept, in seconds.
    #[arg(long, env = "UPSTREAM_POOL_IDLE_TIMEOUT_SECS", default_value_t = POOL_IDLE_TIMEOUT_SECS_DEFAULT)]
    pub pool_idle_timeout_secs: u64,

    /// How callers' tokens are verified.
    #[command(flatten)]
    pub auth: AuthSettings,

    /// Which servers the gateway's TLS clients trust (https upstreams,
    /// `rediss://`, a JWKS URL).
    #[command(flatten)]
    pub tls: TlsSettings,

    /// Routes anyone may call, as `METHOD /path` (`*` for any method; a
    /// trailing `*` matches the rest of the path, `{name}` one segment).
    /// Replaces the default list when given.
    #[arg(long = "public-route", env = "PUBLIC_ROUTES", value_delimiter = ',')]
    pub public_routes: Vec<AccessRule>,

    /// Extra identity headers to strip from client requests (besides
    /// `X-User-Id` and `X-User-Roles`).
    #[arg(long = "strip-header", env = "STRIP_HEADERS", value_delimiter = ',')]
    pub strip_headers: Vec<String>,

    /// Do not set `X-User-Id` / `X-User-Roles` from the validated token.
    #[arg(long, env = "NO_IDENTITY_HEADERS")]
    pub no_identity_headers: bool,

    /// Trust `X-Forwarded-For` / `-Proto` sent by the client (only behind a
    /// load balancer that sets them); otherwise they are replaced.
    #[arg(long, env = "TRUST_FORWARDED_HEADERS")]
    pub trust_forwarded_headers: bool,

    /// With trusted forwarded headers, how many proxies in front of the
    /// gateway append to `X-Forwarded-For`: the client address for per-IP
    /// limits is the entry the outermost of them appended (that many from
    /// the right), never one the client wrote itself.
    #[arg(long, env = "TRUSTED_PROXY_HOPS", default_value_t = TRUSTED_PROXY_HOPS_DEFAULT)]
    pub trusted_proxy_hops: usize,

    /// Requests per client IP per minute (0 disables).
    #[arg(long, env = "RATE_LIMIT_IP_PER_MINUTE", default_value_t = RATE_LIMIT_IP_PER_MINUTE_DEFAULT)]
    pub rate_limit_ip_per_minute: u32,

    /// Requests per authenticated user per minute (0 disables).
    #[arg(long, env = "RATE_LIMIT_USER_PER_MINUTE", default_value_t = RATE_LIMIT_USER_PER_MINUTE_DEFAULT)]
    pub rate_limit_user_per_minute: u32,

    /// Redis URL to share rate limits between gateway instances.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Largest request body forwarded, in bytes.
    #[arg(long, env = "BODY_BYTES_MAX", default_value_t = BODY_BYTES_MAX_DEFAULT)]
    pub body_bytes_max: u64,

    /// Most client connections open at once.
    #[arg(long, env = "CONNECTIONS_MAX", default_value_t = CONNECTIONS_MAX_DEFAULT)]
    pub connections_max: usize,

    /// Time a client has to send request headers, in milliseconds.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = HEADER_READ_TIMEOUT_MS_DEFAULT)]
    pub header_read_timeout_ms: u64,

    /// Time a request may take until its response headers, in milliseconds
    /// (an outer bound; the per-upstream timeouts are normally shorter).
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = REQUEST_TIMEOUT_MS_DEFAULT)]
    pub request_timeout_ms: u64,

    /// Time shutdown waits for in-flight requests, in milliseconds.
    #[arg(long, env = "SHUTDOWN_DRAIN_TIMEOUT_MS", default_value_t = SHUTDOWN_DRAIN_TIMEOUT_MS_DEFAULT)]
    pub shutdown_drain_timeout_ms: u64,
}

impl Config {
    /// Every default, no key, no Redis, ignoring the environment: what tests
    /// and the one-process stack start from.
    pub fn embedded() -> Self {
        Self {
            listen: LISTEN_DEFAULT.parse().expect("valid default address"),
            orders_url: ORDERS_URL_DEFAULT.to_owned(),
            inventory_url: INVENTORY_URL_DEFAULT.to_owned(),
            orders_timeout_ms: ORDERS_TIMEOUT_MS_DEFAULT,
            inventory_timeout_ms: INVENTORY_TIMEOUT_MS_DEFAULT,
            connect_timeout_ms: CONNECT_TIMEOUT_MS_DEFAULT,
            health_timeout_ms: HEALTH_TIMEOUT_MS_DEFAULT,
            pool_idle_per_upstream_max: POOL_IDLE_PER_UPSTREAM_MAX_DEFAULT,
            pool_idle_timeout_secs: POOL_IDLE_TIMEOUT_SECS_DEFAULT,
            auth: AuthSettings::default(),
            tls: TlsSettings::default(),
            public_routes: Vec::new(),
            strip_headers: Vec::new(),
            no_identity_headers: false,
            trust_forwarded_headers: false,
            trusted_proxy_hops: TRUSTED_PROXY_HOPS_DEFAULT,
            rate_limit_ip_per_minute: RATE_LIMIT_IP_PER_MINUTE_DEFAULT,
            rate_limit_user_per_minute: RATE_LIMIT_USER_PER_MINUTE_DEFAULT,
            redis_url: None,
            body_bytes_max: BODY_BYTES_MAX_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            header_read_timeout_ms: HEADER_READ_TIMEOUT_MS_DEFAULT,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            shutdown_drain_timeout_ms: SHUTDOWN_DRAIN_TIMEOUT_MS_DEFAULT,
        }
    }

    /// How many proxies' `X-Forwarded-For` entries to believe: 0 unless
    /// forwarded headers are trusted, then at least one.
    pub fn trusted_hops(&self) -> usize {
        if self.trust_forwarded_headers {
            self.trusted_proxy_hops.max(1)
        } else {
            0
        }
    }

    /// The server loop's limits.
    pub fn server_limits(&self) -> ServerLimits {
        ServerLimits {
            connections_max: self.connections_max,
            header_read_timeout_ms: self.header_read_timeout_ms,
            request_timeout_ms: self.request_timeout_ms,
            shutdown_drain_timeout_ms: self.shutdown_drain_timeout_ms,
        }
    }

    /// The public routes: the configured ones, else [`DEFAULT_PUBLIC_ROUTES`].
    pub fn public_rules(&self) -> Vec<AccessRule> {
        if self.public_routes.is_empty() {
            DEFAULT_PUBLIC_ROUTES
                .iter()
                .map(|r| r.parse().expect("default public routes parse"))
                .collect()
        } else {
            self.public_routes.clone()
        }
    }
}

impl Config {
    /// Refuses `REDIS_URL` in a binary built without the `redis` feature;
    /// the gateway checks it before it starts anything.
    ///
    /// # Errors
    /// [`NotBuilt`], naming the setting and the cargo feature.
    pub fn check_backends(&self) -> Result<(), NotBuilt> {
        backends::check(
            "gateway",
            &[Configured {
                backend: Backend::Redis,
                setting: "REDIS_URL",
                url: self.redis_url.as_deref(),
                built: cfg!(feature = "redis"),
            }],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flags override defaults; lists split on commas; `token` parses its own flags.
    #[test]
    fn flags_parse() {
        let cli = Cli::parse_from([
            "gateway",
            "--orders-url",
            "http://orders:3001",
            "--public-route",
            "GET /health,GET /api/products*",
            "--jwks-poll-interval-ms",
            "250",
            "token",
            "--sub",
            "u1",
            "--role",
            "customer",
            "--role",
            "admin",
        ]);
        assert_eq!(cli.config.orders_url, "http://orders:3001");
        assert_eq!(cli.config.public_routes.len(), 2);
        assert_eq!(cli.config.auth.jwks_poll_interval_ms, 250);
        let Some(Command::Token(t)) = cli.command else {
            panic!("token subcommand expected");
        };
        assert_eq!((t.sub.as_str(), t.roles.len(), t.ttl_secs), ("u1", 2, 3600));
    }

    /// The embedded configuration has no key and the default public routes.
    #[test]
    fn embedded_defaults() {
        let c = Config::embedded();
        assert!(c.auth.config().unwrap().is_none());
        assert_eq!(c.public_rules().len(), DEFAULT_PUBLIC_ROUTES.len());
        assert_eq!(c.listen.port(), 8000);
        assert_eq!(
            c.auth.jwks_poll_interval_ms,
            service_guard::JWKS_POLL_INTERVAL_MS_DEFAULT
        );
    }

    /// A Redis URL in a build without `redis` is refused, naming the
    /// feature; with it, it passes.
    #[test]
    fn a_redis_url_needs_the_redis_feature() {
        let config = Config {
            redis_url: Some("redis://127.0.0.1:6379".to_owned()),
            ..Config::embedded()
        };
        let checked = config.check_backends();
        if cfg!(feature = "redis") {
            assert_eq!(checked, Ok(()));
        } else {
            let e = checked.unwrap_err();
            assert!(e.to_string().contains("cargo feature `redis`"), "{e}");
        }
    }
}
