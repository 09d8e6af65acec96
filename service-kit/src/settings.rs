//! Settings groups every server declares the same way: the verification of
//! callers' tokens ([`AuthSettings`]) and the per-client rate limit
//! ([`RateLimitSettings`]). A server flattens them into its clap `Config`
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
    Algorithm, AuthConfig, ConfigError, KeySource, Limiter, RateLimitConfig, DEFAULT_LEEWAY_SECS,
    JWKS_POLL_INTERVAL_MS_DEFAULT,
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
    /// one of this, `--jwt-public-key-file` and `--jwt-jwks-file`.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM file with the public key that verifies access tokens.
    #[arg(long, env = "JWT_PUBLIC_KEY_FILE", alias = "jwt-public-key-pem")]
    pub jwt_public_key_file: Option<PathBuf>,

    /// JWKS file with the keys that verify access tokens (chosen by `kid`).
    #[arg(long, env = "JWT_JWKS_FILE")]
    pub jwt_jwks_file: Option<PathBuf>,

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
}

impl Default for AuthSettings {
    /// No key (an open server, loopback only) and the default leeway and poll.
    fn default() -> Self {
        Self {
            jwt_algorithm: None,
            jwt_secret: None,
            jwt_public_key_file: None,
            jwt_jwks_file: None,
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway_secs: DEFAULT_LEEWAY_SECS,
            jwks_poll_interval_ms: JWKS_POLL_INTERVAL_MS_DEFAULT,
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
        )?;
        Ok(key.map(|key| AuthConfig {
            algorithm: self.algorithm(),
            key,
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            leeway_secs: self.jwt_leeway_secs,
        }))
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
    /// keys unless a prefix is set); `None` when disabled.
    pub fn config(&self, service: &str, redis_url: Option<&str>) -> Option<RateLimitConfig> {
        let prefix = self
            .rate_limit_key_prefix
            .clone()
            .unwrap_or_else(|| format!("{service}:ratelimit"));
        config(self.rate_limit_per_minute, redis_url, prefix)
    }
}

/// `per_minute` requests per client per [`RATE_LIMIT_WINDOW_SECS`], shared
/// through Redis when `redis_url` is set; `None` when `per_minute` is 0.
pub fn config(
    per_minute: u32,
    redis_url: Option<&str>,
    key_prefix: String,
) -> Option<RateLimitConfig> {
    (per_minute > 0).then(|| RateLimitConfig {
        requests_per_window: per_minute,
        window: Duration::from_secs(RATE_LIMIT_WINDOW_SECS),
        redis_url: redis_url.map(str::to_owned),
        key_prefix,
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
        let c = RateLimitSettings::default()
            .config("orders-http", None)
            .unwrap();
        assert_eq!(c.key_prefix, "orders-http:ratelimit");
        assert_eq!(c.requests_per_window, RATE_LIMIT_PER_MINUTE_DEFAULT);
        assert_eq!(c.window, Duration::from_secs(RATE_LIMIT_WINDOW_SECS));
        assert!(RateLimitSettings::off().config("x", None).is_none());
        let shared = RateLimitSettings {
            rate_limit_key_prefix: Some("shop".into()),
            ..RateLimitSettings::default()
        };
        assert_eq!(
            shared.config("x", Some("redis://r")).unwrap().key_prefix,
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
}
