//! The optional backends of a server (PostgreSQL, Redis, RabbitMQ), each a
//! cargo feature of the server's crate, and the one start-up check that
//! refuses a URL for a backend the binary was built without: a configured
//! backend is never ignored.
//!
//! ```
//! use service_kit::backends::{self, Backend, Configured};
//!
//! let database_url = Some("postgres://db/shop");
//! let urls = [Configured {
//!     backend: Backend::Postgres,
//!     setting: "DATABASE_URL",
//!     url: database_url,
//!     built: false, // cfg!(feature = "postgres") in the server's crate
//! }];
//! let err = backends::check("inventory-http", &urls).unwrap_err();
//! assert!(err.to_string().contains("cargo feature `postgres`"));
//! ```

/// A backend a server can be built without.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL stores and outboxes (cargo feature `postgres`).
    Postgres,
    /// The Redis cache and shared rate limits (cargo feature `redis`).
    Redis,
    /// Events through RabbitMQ (cargo feature `rabbitmq`).
    RabbitMq,
}

impl Backend {
    /// The backend's name, for people.
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "PostgreSQL",
            Self::Redis => "Redis",
            Self::RabbitMq => "RabbitMQ",
        }
    }

    /// The cargo feature that builds it in (the same name in every server
    /// crate and in `stack`).
    pub fn feature(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Redis => "redis",
            Self::RabbitMq => "rabbitmq",
        }
    }
}

/// One backend URL of a server's configuration.
#[derive(Clone, Copy, Debug)]
pub struct Configured<'a> {
    /// The backend the URL is for.
    pub backend: Backend,
    /// The environment variable that sets it (its flag is named alike).
    pub setting: &'static str,
    /// The URL, when configured.
    pub url: Option<&'a str>,
    /// Whether this binary was built with the backend
    /// (`cfg!(feature = "...")` in the server's crate).
    pub built: bool,
}

/// A URL is configured for a backend the binary was built without.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{setting} is set, but {service} was built without {backend} support: \
     build it with the cargo feature `{feature}` (on by default), or unset {setting}"
)]
pub struct NotBuilt {
    /// The server.
    pub service: &'static str,
    /// The environment variable that is set.
    pub setting: &'static str,
    /// The backend's name.
    pub backend: &'static str,
    /// The cargo feature that builds it in.
    pub feature: &'static str,
}

/// Refuses the first URL of `urls` that is set for a backend the binary
/// was built without. Servers call it before they open anything.
///
/// # Errors
/// [`NotBuilt`], naming the setting and the cargo feature.
pub fn check(service: &'static str, urls: &[Configured<'_>]) -> Result<(), NotBuilt> {
    match urls.iter().find(|c| c.url.is_some() && !c.built) {
        Some(c) => Err(NotBuilt {
            service,
            setting: c.setting,
            backend: c.backend.name(),
            feature: c.backend.feature(),
        }),
        None => Ok(()),
    }
}

/// Which of the three backends this binary has: each server fills it with
/// `cfg!(feature = "...")` of its own crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Built {
    /// Cargo feature `postgres`.
    pub postgres: bool,
    /// Cargo feature `redis`.
    pub redis: bool,
    /// Cargo feature `rabbitmq`.
    pub rabbitmq: bool,
}

/// The [`Built`] of the crate this is written in: `cfg!(feature = ...)` of
/// its `postgres`, `redis` and `rabbitmq` features (a macro, so the features
/// are the calling crate's, which must declare all three).
#[macro_export]
macro_rules! built_backends {
    () => {
        $crate::backends::Built {
            postgres: cfg!(feature = "postgres"),
            redis: cfg!(feature = "redis"),
            rabbitmq: cfg!(feature = "rabbitmq"),
        }
    };
}

/// [`check`] for a server configured by `DATABASE_URL`, `REDIS_URL` and
/// `AMQP_URL` (inventory and orders).
///
/// ```
/// use service_kit::backends::{check_urls, Built};
///
/// let built = Built { postgres: true, redis: true, rabbitmq: false };
/// assert!(check_urls("orders-http", None, Some("redis://r"), None, built).is_ok());
/// let err = check_urls("orders-http", None, None, Some("amqp://mq"), built).unwrap_err();
/// assert_eq!(err.setting, "AMQP_URL");
/// ```
///
/// # Errors
/// [`NotBuilt`], naming the setting and the cargo feature.
pub fn check_urls(
    service: &'static str,
    database_url: Option<&str>,
    redis_url: Option<&str>,
    amqp_url: Option<&str>,
    built: Built,
) -> Result<(), NotBuilt> {
    check(
        service,
        &[
            Configured {
                backend: Backend::Postgres,
                setting: "DATABASE_URL",
                url: database_url,
                built: built.postgres,
            },
            Configured {
                backend: Backend::Redis,
                setting: "REDIS_URL",
                url: redis_url,
                built: built.redis,
            },
            Configured {
                backend: Backend::RabbitMq,
                setting: "AMQP_URL",
                url: amqp_url,
                built: built.rabbitmq,
            },
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A URL for a backend that is built in, or none at all, passes.
    #[test]
    fn only_a_set_url_without_its_backend_is_refused() {
        let redis = |url, built| Configured {
            backend: Backend::Redis,
            setting: "REDIS_URL",
            url,
            built,
        };
        assert_eq!(check("gateway", &[redis(None, false)]), Ok(()));
        assert_eq!(check("gateway", &[redis(Some("redis://r"), true)]), Ok(()));
        let err = check("gateway", &[redis(Some("redis://r"), false)]).unwrap_err();
        assert_eq!(err.feature, "redis");
        assert_eq!(
            err.to_string(),
            "REDIS_URL is set, but gateway was built without Redis support: \
             build it with the cargo feature `redis` (on by default), or unset REDIS_URL"
        );
    }
}
