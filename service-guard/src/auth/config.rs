//! Authentication settings: the pinned algorithm, where the key comes from, issuer, audience.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Default clock-skew allowance for `exp` and `nbf`, in seconds.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// Largest accepted leeway, in seconds: more would make `exp` meaningless.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// Default pause between two scheduled fetches of a JWKS URL, in
/// milliseconds: issuers publish a new key well before signing with it (and
/// an unknown `kid` fetches at once), so every five minutes keeps a server
/// current without loading the issuer.
pub const JWKS_REFRESH_INTERVAL_MS_DEFAULT: u64 = 300_000;

/// Default shortest pause between two fetches of a JWKS URL caused by tokens
/// naming an unknown `kid`, in milliseconds: a client sending made-up key ids
/// must not turn each request into a call to the issuer.
pub const JWKS_UNKNOWN_KID_REFETCH_MIN_MS: u64 = 30_000;

/// Shortest accepted HS256 secret, in bytes (RFC 7518 section 3.2: at least the hash size).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// The signature algorithm a deployment pins. Tokens signed otherwise are rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC with SHA-256 and a shared secret.
    HS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 and an RSA public key.
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
}

impl Algorithm {
    /// The JOSE name: `"HS256"`, `"RS256"` or `"ES256"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
        }
    }

    pub(crate) fn to_jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = ConfigError;

    /// Accepts `HS256`, `RS256`, `ES256` in any letter case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "HS256" => Ok(Algorithm::HS256),
            "RS256" => Ok(Algorithm::RS256),
            "ES256" => Ok(Algorithm::ES256),
            _ => Err(ConfigError::UnknownAlgorithm(s.to_owned())),
        }
    }
}

/// Where the verification key comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A shared secret (HS256 only), used as raw bytes.
    Secret(String),
    /// A PEM file with a public key (`BEGIN PUBLIC KEY`, or `BEGIN RSA PUBLIC KEY` for RS256).
    PublicKeyPem(PathBuf),
    /// A JWKS file (`{"keys": [...]}`); the token header's `kid` selects the key.
    JwksFile(PathBuf),
    /// A JWKS served at an `https://` URL (an issuer's `jwks_uri`), fetched at
    /// start, on a schedule, and when a token names an unknown `kid`.
    JwksUrl(String),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Secret(_) => f.write_str("Secret(<redacted>)"),
            KeySource::PublicKeyPem(p) => f.debug_tuple("PublicKeyPem").field(p).finish(),
            KeySource::JwksFile(p) => f.debug_tuple("JwksFile").field(p).finish(),
            KeySource::JwksUrl(u) => f.debug_tuple("JwksUrl").field(u).finish(),
        }
    }
}

impl KeySource {
    /// Picks the one key source a server was given through its flags.
    ///
    /// Returns `Ok(None)` when none is set (the server then runs open, on loopback only).
    ///
    /// # Errors
    ///
    /// [`ConfigError::ConflictingKeys`] when more than one is set.
    pub fn from_options(
        secret: Option<String>,
        public_key_pem: Option<PathBuf>,
        jwks_file: Option<PathBuf>,
        jwks_url: Option<String>,
    ) -> Result<Option<KeySource>, ConfigError> {
        let mut sources = [
            secret.filter(|s| !s.is_empty()).map(KeySource::Secret),
            public_key_pem.map(KeySource::PublicKeyPem),
            jwks_file.map(KeySource::JwksFile),
            jwks_url.filter(|u| !u.is_empty()).map(KeySource::JwksUrl),
        ]
        .into_iter()
        .flatten();
        let first = sources.next();
        if sources.next().is_some() {
            return Err(ConfigError::ConflictingKeys);
        }
        Ok(first)
    }
}

/// Everything needed to verify tokens. A plain struct: servers fill it from their flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The pinned algorithm; the token header's `alg` must equal it.
    pub algorithm: Algorithm,
    /// The verification key.
    pub key: KeySource,
    /// Required `iss`, when set. Leave `None` only for development.
    pub issuer: Option<String>,
    /// Required `aud` (the token's `aud` must name it), when set.
    pub audience: Option<String>,
    /// Allowed clock skew for `exp` and `nbf`, in seconds (at most [`MAX_LEEWAY_SECS`]).
    pub leeway_secs: u64,
    /// With a [`KeySource::JwksUrl`]: pause between two scheduled fetches, in
    /// milliseconds (0: none; SIGHUP and unknown `kid`s still fetch).
    pub jwks_refresh_interval_ms: u64,
    /// With a [`KeySource::JwksUrl`]: shortest pause between two fetches
    /// caused by an unknown `kid`, in milliseconds.
    pub jwks_unknown_kid_refetch_min_ms: u64,
}

impl AuthConfig {
    /// A configuration with no issuer or audience check and the default leeway.
    pub fn new(algorithm: Algorithm, key: KeySource) -> Self {
        AuthConfig {
            algorithm,
            key,
            issuer: None,
            audience: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            jwks_refresh_interval_ms: JWKS_REFRESH_INTERVAL_MS_DEFAULT,
            jwks_unknown_kid_refetch_min_ms: JWKS_UNKNOWN_KID_REFETCH_MIN_MS,
        }
    }

    /// HS256 with a shared secret.
    pub fn hs256(secret: impl Into<String>) -> Self {
        Self::new(Algorithm::HS256, KeySource::Secret(secret.into()))
    }

    /// The same configuration requiring `iss == issuer`.
    pub fn with_issuer(self, issuer: impl Into<String>) -> Self {
        AuthConfig {
            issuer: Some(issuer.into()),
            ..self
        }
    }

    /// The same configuration requiring `aud` to name `audience`.
    pub fn with_audience(self, audience: impl Into<String>) -> Self {
        AuthConfig {
            audience: Some(audience.into()),
            ..self
        }
    }
}

/// The authentication or signing configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The algorithm name is not one of HS256, RS256, ES256.
    #[error("unknown jwt algorithm {0:?} (expected HS256, RS256 or ES256)")]
    UnknownAlgorithm(String),
    /// More than one of secret, PEM file, JWKS file and JWKS URL was given.
    #[error("configure exactly one of the jwt secret, the public key file, the jwks file and the jwks url")]
    ConflictingKeys,
    /// The key kind does not fit the algorithm (a secret with RS256, a PEM with HS256, ...).
    #[error("{algorithm} cannot be used with {key}")]
    KeyMismatch {
        /// The configured algorithm.
        algorithm: Algorithm,
        /// What kind of key was given.
        key: &'static str,
    },
    /// The HS256 secret is shorter than [`MIN_HS256_SECRET_BYTES`].
    #[error("the hs256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes")]
    WeakSecret,
    /// The leeway is larger than [`MAX_LEEWAY_SECS`].
    #[error("leeway must be at most {MAX_LEEWAY_SECS} seconds")]
    LeewayTooLarge,
    /// A key file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A key could not be parsed.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The JWKS file is not usable (bad JSON, or no key for the algorithm).
    #[error("invalid jwks: {0}")]
    InvalidJwks(String),
    /// The JWKS URL is not an `https://` URL, or is given where keys must be
    /// read at once (`Authenticator::new`; use `Authenticator::start`).
    #[error("jwks url: {0}")]
    JwksUrl(String),
    /// The JWKS URL could not be fetched (unreachable, untrusted
    /// certificate, an answer other than 200, too slow).
    #[error("cannot fetch the jwks: {0}")]
    JwksFetch(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_parses_case_insensitively() {
        assert_eq!("rs256".parse::<Algorithm>().ok(), Some(Algorithm::RS256));
        assert!(matches!(
            "none".parse::<Algorithm>(),
            Err(ConfigError::UnknownAlgorithm(_))
        ));
    }

    #[test]
    fn key_source_from_options_takes_exactly_one() {
        assert_eq!(
            KeySource::from_options(None, None, None, None).ok(),
            Some(None)
        );
        assert_eq!(
            KeySource::from_options(Some("s".into()), None, None, None).ok(),
            Some(Some(KeySource::Secret("s".into())))
        );
        assert!(matches!(
            KeySource::from_options(Some("s".into()), Some("k.pem".into()), None, None),
            Err(ConfigError::ConflictingKeys)
        ));
        assert!(matches!(
            KeySource::from_options(None, None, Some("k.json".into()), Some("https://i/".into())),
            Err(ConfigError::ConflictingKeys)
        ));
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let cfg = AuthConfig::hs256("super-secret-value");
        assert!(!format!("{cfg:?}").contains("super-secret-value"));
    }
}
