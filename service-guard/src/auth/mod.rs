//! Authentication (bearer JWTs) and authorization (roles).
//!
//! [`Authenticator`] verifies tokens against one pinned algorithm; [`authorize`]
//! checks the roles of the resulting [`Principal`]; [`TokenSigner`] mints tokens
//! for development and tests; [`KeyWatcher`] reloads the keys from their file on
//! SIGHUP and when the file changes, or fetches them again from their JWKS URL
//! on a schedule and on SIGHUP (an unknown `kid` fetches them at once, rate
//! limited).

mod config;
mod error;
mod keyring;
mod keys;
mod principal;
mod remote;
mod sign;
mod verify;
mod watch;

pub use config::{
    Algorithm, AuthConfig, ConfigError, KeySource, DEFAULT_LEEWAY_SECS,
    JWKS_REFRESH_INTERVAL_MS_DEFAULT, JWKS_UNKNOWN_KID_REFETCH_MIN_MS, MAX_LEEWAY_SECS,
    MIN_HS256_SECRET_BYTES,
};
pub use error::{AuthError, WWW_AUTHENTICATE_REALM};
pub use keyring::KeyReload;
pub use keys::{MAX_JWKS_KEYS, MAX_KEY_FILE_BYTES};
pub use principal::{authorize, Principal, Role, UnknownRole, OPEN_SUBJECT};
pub use remote::JWKS_FETCH_TIMEOUT_MS;
pub use sign::{
    random_hs256_secret, SignError, TokenSigner, GENERATED_SECRET_BYTES, MAX_TOKEN_TTL_SECS,
};
pub use verify::{open_allowed, Authenticator, MAX_ROLES, MAX_TOKEN_BYTES};
pub use watch::{KeyWatcher, JWKS_POLL_INTERVAL_MS_DEFAULT};
