//! Authentication, authorization and rate limiting shared by the HTTP servers.
//!
//! # Codemap
//!
//! - [`auth`]: [`Authenticator`] verifies `Authorization: Bearer <jwt>` against one
//!   pinned algorithm (HS256, RS256 or ES256) and yields a [`Principal`] (subject and
//!   [`Role`]s); [`authorize`] checks roles; [`AuthError`] knows its HTTP status, its
//!   stable `code` and its `WWW-Authenticate` challenge; [`TokenSigner`] mints
//!   development and test tokens; [`Authenticator::reload`] swaps in the keys of a
//!   changed key file and [`KeyWatcher`] calls it on SIGHUP and when the file changes;
//!   keys from a JWKS URL ([`KeySource::JwksUrl`], [`Authenticator::start`]) are
//!   fetched over https on a schedule, on SIGHUP, and when a token names an unknown
//!   `kid` (at most once per [`JWKS_UNKNOWN_KID_REFETCH_MIN_MS`]).
//! - [`tls`]: [`TlsClient`], the one place that decides which servers a TLS
//!   client trusts (the system's roots plus an optional extra CA bundle) and
//!   builds what each client library takes: an https connector for hyper, a
//!   rustls configuration, a `rediss://` client (feature `redis`), PostgreSQL's
//!   root certificate.
//! - [`ratelimit`]: [`Limiter`] decides per client key, through one atomic Lua script
//!   on Redis shared by every instance, or in-process (governor) without Redis or
//!   while Redis is failing; [`RateDecision::headers`] renders the rate-limit headers.
//!
//! # Cargo features
//!
//! - `redis` (default): the shared limiter on Redis and
//!   `TlsClient::redis_client`. Without it the crate does not build the redis
//!   client, and a [`Limiter`] given a Redis URL logs an error and limits
//!   in-process.
//!
//! The crate knows nothing about routing or response bodies: servers map
//! [`AuthError::code`] and [`RateDecision`] into their own problem+json responses.
//!
//! # Tokens
//!
//! A token is accepted when, in this order: it is at most [`MAX_TOKEN_BYTES`] and has
//! three dot-separated parts; its header's `alg` equals the configured algorithm
//! (never read from the token to choose how to verify: `alg: none`, and an HS256
//! token presented to an RS256 deployment, are rejected before any key is used); its
//! `kid` selects a key (JWKS only); the signature verifies; `iss` equals the
//! configured issuer and `aud` names the configured audience (each required when
//! configured); `exp` is present and in the future, and `nbf`, when present, is in
//! the past, both with [`AuthConfig::leeway_secs`] of tolerance
//! ([`DEFAULT_LEEWAY_SECS`] by default); `sub` is present. Claims read:
//!
//! | claim | meaning |
//! |---|---|
//! | `sub` | the caller (user id or service name) |
//! | `roles` | array of strings; `customer`, `admin`, `service` are recognised, others ignored |
//! | `exp`, `nbf`, `iat` | integer seconds since the epoch |
//! | `iss`, `aud` | issuer and audience |
//!
//! # Plugging in a real issuer
//!
//! Any OpenID Connect provider or token service that signs with RS256 or ES256 works:
//!
//! 1. Give the issuer's `jwks_uri` (e.g.
//!    `https://issuer.example/.well-known/jwks.json`) as a [`KeySource::JwksUrl`]:
//!    it is fetched at start, every [`JWKS_REFRESH_INTERVAL_MS_DEFAULT`], and at
//!    once (rate limited) when a token names a `kid` the current set lacks; a
//!    failed fetch keeps the keys in use. Or save the JWKS to a file the server can read,
//!    and refresh that file when the issuer rotates keys, best by writing a new file
//!    and renaming it over the old one. A server running a [`KeyWatcher`] picks the
//!    new keys up within [`JWKS_POLL_INTERVAL_MS_DEFAULT`] (or at once on SIGHUP),
//!    without a restart; a file that does not parse or has no usable key is refused
//!    and the previous keys stay in use ([`Authenticator::reload`]). Keys are chosen
//!    by the token's `kid`; keys for another algorithm or with `use` other than `sig`
//!    are skipped.
//! 2. Configure the algorithm the issuer signs with, the JWKS file, the issuer's exact
//!    `iss` value, and the audience the issuer puts in tokens for this API:
//!
//! ```no_run
//! use service_guard::{Algorithm, AuthConfig, Authenticator, KeySource};
//!
//! let cfg = AuthConfig::new(Algorithm::RS256, KeySource::JwksFile("/etc/inventory/jwks.json".into()))
//!     .with_issuer("https://issuer.example/")
//!     .with_audience("inventory-api");
//! let auth = Authenticator::new(&cfg)?;
//! # Ok::<(), service_guard::ConfigError>(())
//! ```
//!
//! 3. Make the issuer put the roles in a `roles` claim (an array of strings such as
//!    `["service"]`); most providers let you map groups or scopes to a custom claim.
//!
//! A single PEM public key ([`KeySource::PublicKeyPem`]) works the same way without
//! `kid`. For development, HS256 with a shared secret of at least
//! [`MIN_HS256_SECRET_BYTES`] bytes and [`TokenSigner`] need no issuer at all. With no
//! key at all, [`Authenticator::disabled`] lets everything through as
//! [`Principal::open`]; servers allow that only on loopback ([`open_allowed`]).
//!
//! # Rate limiting
//!
//! See [`ratelimit`] for the algorithm (GCRA, in Redis and in-process) and why.
//! Every Redis call is bounded by [`REDIS_CALL_TIMEOUT_MS`]; after a failure an
//! instance limits in-process for [`REDIS_RETRY_AFTER_MS`] and then tries Redis
//! again, so a dead or hung Redis never fails or stalls a request.

pub mod auth;
pub mod ratelimit;
pub mod tls;

pub use auth::{
    authorize, open_allowed, random_hs256_secret, Algorithm, AuthConfig, AuthError, Authenticator,
    ConfigError, KeyReload, KeySource, KeyWatcher, Principal, Role, SignError, TokenSigner,
    UnknownRole, DEFAULT_LEEWAY_SECS, JWKS_FETCH_TIMEOUT_MS, JWKS_POLL_INTERVAL_MS_DEFAULT,
    JWKS_REFRESH_INTERVAL_MS_DEFAULT, JWKS_UNKNOWN_KID_REFETCH_MIN_MS, MAX_LEEWAY_SECS,
    MAX_TOKEN_BYTES, MIN_HS256_SECRET_BYTES,
};
pub use ratelimit::{
    Limiter, RateDecision, RateLimitConfig, REDIS_CALL_TIMEOUT_MS, REDIS_RETRY_AFTER_MS,
};
pub use tls::{TlsClient, TlsError};
