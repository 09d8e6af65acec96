//! Settings groups every server declares the same way: the verification of
//! callers' tokens ([`AuthSettings`]), the per-client rate limit
//! ([`RateLimitSettings`]) and the trust of its TLS clients
//! ([`TlsSettings`]). A server flattens them into its clap `Config`
//! (`#[command(flatten)] pub auth: AuthSettings`), so the flags, environment
//! variables, defaults and validation are one and the same everywhere; every
//! limiter is built by [`limiter`].
//!
//! ```
//! use clap::Parser;
//! use service_kit::settings::AuthSettings;
//!
//! #[derive(Parser)]
//! struct Config {
//!     #[command(flatten)]
//!     auth: AuthSettings,
//! }
//!
//! let c = Config::try_parse_from(["srv", "--jwt-secret", "0123456789abcdef0123456789abcdef"]).unwrap();
//! let auth = c.auth.config().unwrap().expect("a key is configured");
//! assert_eq!(auth.algorithm, service_guard::Algorithm::HS256);
//! assert!(Config::try_parse_from(["srv"]).unwrap().auth.config().unwrap().is_none());
//! ```

use std::path::PathBuf;
use std::time::Duration;

use service_guard::{
    Algorithm, AuthConfig, ConfigError, KeySource, Limiter, RateLimitConfig, TlsClient, TlsError,
    DEFAULT_LEEWAY_SECS, JWKS_POLL_INTERVAL_MS_DEFAULT, JWKS_REFRESH_INTERVAL_MS_DEFAULT,
    JWKS_UNKNOWN_KID_REFETCH_MIN_MS,
};

/// Requests per client per minute a service allows by default (0 disables).
pub const RATE_LIMIT_PER_MINUTE_DEFAULT: u32 = 100;

/// The window of every rate limit: a budget of N requests per this many seconds.
pub const RATE_LIMIT_WINDOW_SECS: u64 = 60;

/// How a server verifies its callers' bearer tokens. With no key at all the
/// server runs open, and only on a loopback address (each server checks).
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct AuthSettings {
    /// The pinned token algorithm: HS256, RS256 or ES256 (HS256 for a
    /// secret, RS256 for a key file, when absent).
    #[arg(long, env = "JWT_ALGORITHM")]
    pub jwt_algorithm: Option<Algorithm>,

    /// HS256 secret (at least 32 bytes) that signs access tokens. Set at most
    /// one of this, `--jwt-public-key-file`, `--jwt-jwks-file` and
    /// `--jwt-jwks-url`.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM file with the public key that verifies access tokens.
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE", alias = "jwt-public-key-pem")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// JWKS file with the keys that verify access tokens (chosen by `kid`).
    #[arg(long, env = "JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<PathBuf>,

    /// `https://` URL of a JWKS (an issuer's `jwks_uri`) with the keys that
    /// verify access tokens: fetched at start, every
    /// `--jwks-refresh-interval-ms`, and when a token names an unknown `kid`
    /// (rate limited); a failed fetch keeps the last good keys.
    #[arg(long, env = "JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,

    /// Required `iss` of tokens.
    #[arg(long, env = "JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` of tokens.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Clock skew allowed for `exp` and `nbf`, in seconds.
    #[arg(long, env = "JWT_LEEWAY_SECS", default_value_t = DEFAULT_LEEWAY_SECS)]
    pub jwt_leeway_secs: u64,

    /// How often the key file (`--jwt-jwks-file` or `--jwt-public-key-file`)
    /// is checked for changes, in milliseconds; a changed file is reloaded
    /// without a restart, as it is on SIGHUP. 0: only on SIGHUP.
    #[arg(long, env = "JWKS_POLL_INTERVAL_MS", default_value_t = JWKS_POLL_INTERVAL_MS_DEFAULT)]
    pub jwks_poll_interval_ms: u64,

    /// How often the keys of `--jwt-jwks-url` are fetched again, in
    /// milliseconds (as on SIGHUP). 0: only on SIGHUP and unknown key ids.
    #[arg(long, env = "JWKS_REFRESH_INTERVAL_MS", default_value_t = JWKS_REFRESH_INTERVAL_MS_DEFAULT)]
    pub jwks_refresh_interval_ms: u64,
}

impl Default for AuthSettings {
    /// No key (an open server, loopback only) and the default leeway and poll.
    fn default() -> Self {
        Self {
            jwt_algorithm: None,
            jwt_secret: None,
            jwt_public_key_file: None,
            jwt_jwks_file: None,
            jwt_jwks_url: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway_secs: DEFAULT_LEEWAY_SECS,
            jwks_poll_interval_ms: JWKS_POLL_INTERVAL_MS_DEFAULT,
            jwks_refresh_interval_ms: JWKS_REFRESH_INTERVAL_MS_DEFAULT,
        }
    }
}

impl AuthSettings {
    /// An HS256 secret with the given issuer and audience (for embedders and tests).
    pub fn hs256(secret: &str, issuer: Option<&str>, audience: Option<&str>) -> Self {
        Self {
            jwt_secret: Some(secret.to_owned()),
            jwt_issuer: issuer.map(str::to_owned),
            jwt_audience: audience.map(str::to_owned),
            ..Self::default()
        }
    }

    /// The pinned algorithm: the one set, else HS256 for a secret and RS256
    /// for a key file.
    pub fn algorithm(&self) -> Algorithm {
        match (self.jwt_algorithm, &self.jwt_secret) {
            (Some(a), _) => a,
            (None, Some(_)) => Algorithm::HS256,
            (None, None) => Algorithm::RS256,
        }
    }

    /// The verification settings, validated; `None` when no key is configured.
    ///
    /// # Errors
    /// [`ConfigError`] when more than one key source is set.
    pub fn config(&self) -> Result<Option<AuthConfig>, ConfigError> {
        let key = KeySource::from_options(
            self.jwt_secret.clone(),
            self.jwt_public_key_file.clone(),
            self.jwt_jwks_file.clone(),
            self.jwt_jwks_url.clone(),
        )?;
        Ok(key.map(|key| AuthConfig {
            algorithm: self.algorithm(),
            key,
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway_secs: self.jwt_leeway_secs,
            jwks_refresh_interval_ms: self.jwks_refresh_interval_ms,
            jwks_unknown_kid_refetch_min_ms: JWKS_UNKNOWN_KID_REFETCH_MIN_MS,
        }))
    }
}

/// Which servers the TLS clients of a server trust: the system's roots,
/// plus the certificates of `--tls-ca-file` when given. Used by every
/// client: PostgreSQL (unless the URL names its own `sslrootcert`),
/// `rediss://`, `amqps://`, `https://` upstreams and JWKS URLs.
///
/// ```
/// use clap::Parser;
/// use service_kit::settings::TlsSettings;
///
/// #[derive(Parser)]
/// struct Config {
///     #[command(flatten)]
///     tls: TlsSettings,
/// }
///
/// let c = Config::try_parse_from(["srv"]).unwrap();
/// assert_eq!(c.tls.client().unwrap(), service_guard::TlsClient::system());
/// let c = Config::try_parse_from(["srv", "--tls-ca-file", "/nonexistent/ca.pem"]).unwrap();
/// assert!(c.tls.client().is_err(), "an unreadable ca file stops the start");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct TlsSettings {
    /// PEM file of extra CA certificates trusted by every TLS client (besides
    /// the system's roots): PostgreSQL, Redis (`rediss://`), RabbitMQ
    /// (`amqps://`), `https://` upstreams and JWKS URLs.
    #[arg(long, env = "TLS_CA_FILE")]
    pub tls_ca_file: Option<PathBuf>,
}

impl TlsSettings {
    /// The TLS client configuration these settings describe.
    ///
    /// # Errors
    /// [`TlsError`] when the CA file cannot be read or holds no usable certificate.
    pub fn client(&self) -> Result<TlsClient, TlsError> {
        TlsClient::new(self.tls_ca_file.as_deref())
    }
}

/// How a service limits each client's requests to its API routes.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct RateLimitSettings {
    /// Requests per client per minute on the API routes (0 disables); each
    /// service says what a client is (an IP, or the token's user).
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", default_value_t = RATE_LIMIT_PER_MINUTE_DEFAULT)]
    pub rate_limit_per_minute: u32,

    /// Prefix of the rate limiter's Redis keys (instances sharing a prefix
    /// share each client's budget); `<service>:ratelimit` when absent.
    #[arg(long, env = "RATE_LIMIT_KEY_PREFIX")]
    pub rate_limit_key_prefix: Option<String>,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            rate_limit_per_minute: RATE_LIMIT_PER_MINUTE_DEFAULT,
            rate_limit_key_prefix: None,
        }
    }
}

impl RateLimitSettings {
    /// No limit.
    pub fn off() -> Self {
        Self {
            rate_limit_per_minute: 0,
            ..Self::default()
        }
    }

    /// The limiter's settings for `service` (whose name prefixes the Redis
    /// keys unless a prefix is set), reaching a `rediss://` URL with `tls`;
    /// `None` when disabled.
    pub fn config(
        &self,
        service: &str,
        redis_url: Option<&str>,
        tls: &TlsClient,
    ) -> Option<RateLimitConfig> {
        let prefix = self
            .rate_limit_key_prefix
            .clone()
            .unwrap_or_else(|| format!("{service}:ratelimit"));
        config(self.rate_limit_per_minute, redis_url, prefix, tls)
    }
}

/// `per_minute` requests per client per [`RATE_LIMIT_WINDOW_SECS`], shared
/// through Redis when `redis_url` is set (reached with `tls` when it is
/// `rediss://`); `None` when `per_minute` is 0.
pub fn config(
    per_minute: u32,
    redis_url: Option<&str>,
    key_prefix: String,
    tls: &TlsClient,
) -> Option<RateLimitConfig> {
    (per_minute > 0).then(|| RateLimitConfig {
        requests_per_window: per_minute,
        window: Duration::from_secs(RATE_LIMIT_WINDOW_SECS),
        redis_url: redis_url.map(str::to_owned),
        key_prefix,
        tls: tls.clone(),
    })
}

/// The limiter of `config`, `None` when there is none.
pub async fn limiter(config: Option<RateLimitConfig>) -> Option<Limiter> {
    match config {
        Some(c) => Some(Limiter::new(c).await),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_algorithm_follows_the_key_unless_pinned() {
        let secret = AuthSettings::hs256("0123456789abcdef0123456789abcdef", None, None);
        assert_eq!(secret.algorithm(), Algorithm::HS256);
        let file = AuthSettings {
            jwt_jwks_file: Some("keys.json".into()),
            ..AuthSettings::default()
        };
        assert_eq!(file.algorithm(), Algorithm::RS256);
        let pinned = AuthSettings {
            jwt_algorithm: Some(Algorithm::ES256),
            ..file
        };
        assert_eq!(pinned.algorithm(), Algorithm::ES256);
    }

    #[test]
    fn the_rate_limit_is_named_after_its_service_unless_prefixed() {
        let tls = TlsClient::system();
        let c = RateLimitSettings::default()
            .config("orders-http", None, &tls)
            .unwrap();
        assert_eq!(c.key_prefix, "orders-http:ratelimit");
        assert_eq!(c.requests_per_window, RATE_LIMIT_PER_MINUTE_DEFAULT);
        assert_eq!(c.window, Duration::from_secs(RATE_LIMIT_WINDOW_SECS));
        assert!(RateLimitSettings::off().config("x", None, &tls).is_none());
        let shared = RateLimitSettings {
            rate_limit_key_prefix: Some("shop".into()),
            ..RateLimitSettings::default()
        };
        assert_eq!(
            shared
                .config("x", Some("redis://r"), &tls)
                .unwrap()
                .key_prefix,
            "shop"
        );
    }

    #[test]
    fn two_keys_are_refused_and_none_is_open() {
        let two = AuthSettings {
            jwt_jwks_file: Some("keys.json".into()),
            ..AuthSettings::hs256("0123456789abcdef0123456789abcdef", None, None)
        };
        assert!(two.config().is_err());
        assert!(AuthSettings::default().config().unwrap().is_none());
    }

    #[test]
    fn a_jwks_url_is_a_key_source_with_its_refresh_interval() {
        let url = AuthSettings {
            jwt_jwks_url: Some("https://issuer.example/jwks.json".into()),
            jwks_refresh_interval_ms: 60_000,
            ..AuthSettings::default()
        };
        let cfg = url.config().unwrap().unwrap();
        assert_eq!(
            cfg.key,
            KeySource::JwksUrl("https://issuer.example/jwks.json".into())
        );
        assert_eq!(cfg.algorithm, Algorithm::RS256);
        assert_eq!(cfg.jwks_refresh_interval_ms, 60_000);
        let two = AuthSettings {
            jwt_jwks_file: Some("keys.json".into()),
            ..url
        };
        assert!(two.config().is_err());
    }
}
