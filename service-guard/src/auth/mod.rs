//! Authentication (bearer JWTs) and authorization (roles).
//!
//! [`Authenticator`] verifies tokens against one pinned algorithm; [`authorize`]
//! checks the roles of the resulting [`Principal`]; [`TokenSigner`] mints tokens
//! for development and tests; [`KeyWatcher`] reloads the keys from their file on
//! SIGHUP and when the file changes.

mod config;
mod error;
mod keyring;
mod keys;
mod principal;
mod sign;
mod verify;
mod watch;

pub use config::{
    Algorithm, AuthConfig, ConfigError, KeySource, DEFAULT_LEEWAY_SECS, MAX_LEEWAY_SECS,
    MIN_HS256_SECRET_BYTES,
};
pub use error::{AuthError, WWW_AUTHENTICATE_REALM};
pub use keyring::KeyReload;
pub use keys::{MAX_JWKS_KEYS, MAX_KEY_FILE_BYTES};
pub use principal::{authorize, Principal, Role, UnknownRole, OPEN_SUBJECT};
pub use sign::{
    random_hs256_secret, SignError, TokenSigner, GENERATED_SECRET_BYTES, MAX_TOKEN_TTL_SECS,
};
pub use verify::{open_allowed, Authenticator, MAX_ROLES, MAX_TOKEN_BYTES};
pub use watch::{KeyWatcher, JWKS_POLL_INTERVAL_MS_DEFAULT};
