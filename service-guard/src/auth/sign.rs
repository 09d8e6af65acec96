//! [`TokenSigner`]: mints tokens for development and tests, with the claims the
//! [`Authenticator`](super::Authenticator) expects.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};

use super::config::{Algorithm, ConfigError, MIN_HS256_SECRET_BYTES};
use super::Role;

/// Longest lifetime of a minted token, in seconds (30 days): development tokens
/// still expire.
pub const MAX_TOKEN_TTL_SECS: u64 = 30 * 24 * 3600;

/// Random bytes in a secret from [`random_hs256_secret`] (256 bits, the HS256 hash size).
pub const GENERATED_SECRET_BYTES: usize = 32;

/// A fresh random HS256 secret from a CSPRNG seeded by the operating system, hex-encoded
/// (64 characters), for a development stack that signs its own tokens.
pub fn random_hs256_secret() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; GENERATED_SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The requested lifetime is zero or longer than [`MAX_TOKEN_TTL_SECS`].
    #[error("token ttl must be between 1 and {MAX_TOKEN_TTL_SECS} seconds")]
    BadTtl,
    /// The subject is empty.
    #[error("token subject must not be empty")]
    EmptySubject,
    /// The signing library failed.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// Signs tokens with an HS256 secret or an RS256/ES256 private key.
///
/// Claims: `sub`, `roles` (array of strings), `exp`, `nbf`, `iat`, and `iss`/`aud`
/// when set with [`TokenSigner::with_issuer`] / [`TokenSigner::with_audience`].
#[derive(Clone)]
pub struct TokenSigner {
    algorithm: Algorithm,
    key: EncodingKey,
    key_id: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigner")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

#[derive(serde::Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    roles: Vec<&'static str>,
    exp: u64,
    nbf: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

impl TokenSigner {
    /// An HS256 signer.
    ///
    /// # Errors
    ///
    /// [`ConfigError::WeakSecret`] when the secret is shorter than
    /// [`MIN_HS256_SECRET_BYTES`].
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(ConfigError::WeakSecret);
        }
        Ok(Self::with_key(
            Algorithm::HS256,
            EncodingKey::from_secret(secret),
        ))
    }

    /// An RS256 or ES256 signer from a private key in PEM (PKCS#8, or PKCS#1 for RSA).
    ///
    /// # Errors
    ///
    /// [`ConfigError::KeyMismatch`] for HS256, [`ConfigError::InvalidKey`] when the
    /// PEM does not parse as a key for `algorithm`.
    pub fn from_private_pem(algorithm: Algorithm, pem: &[u8]) -> Result<Self, ConfigError> {
        let key = match algorithm {
            Algorithm::HS256 => {
                return Err(ConfigError::KeyMismatch {
                    algorithm,
                    key: "a private key",
                })
            }
            Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
        }
        .map_err(|e| ConfigError::InvalidKey(e.to_string()))?;
        Ok(Self::with_key(algorithm, key))
    }

    /// [`TokenSigner::from_private_pem`] reading the PEM from a file.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Io`] when the file cannot be read, else as `from_private_pem`.
    pub fn from_private_pem_file(algorithm: Algorithm, path: &Path) -> Result<Self, ConfigError> {
        let pem = std::fs::read(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_private_pem(algorithm, &pem)
    }

    fn with_key(algorithm: Algorithm, key: EncodingKey) -> Self {
        TokenSigner {
            algorithm,
            key,
            key_id: None,
            issuer: None,
            audience: None,
        }
    }

    /// The same signer, putting `kid` in the token header (to select a JWKS key).
    pub fn with_key_id(self, kid: impl Into<String>) -> Self {
        TokenSigner {
            key_id: Some(kid.into()),
            ..self
        }
    }

    /// The same signer, setting the `iss` claim.
    pub fn with_issuer(self, issuer: impl Into<String>) -> Self {
        TokenSigner {
            issuer: Some(issuer.into()),
            ..self
        }
    }

    /// The same signer, setting the `aud` claim.
    pub fn with_audience(self, audience: impl Into<String>) -> Self {
        TokenSigner {
            audience: Some(audience.into()),
            ..self
        }
    }

    /// The algorithm tokens are signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Mints a token for `sub` with `roles`, valid from `now_unix` for `ttl`.
    ///
    /// # Errors
    ///
    /// [`SignError`] for an empty subject, a ttl out of range, or a signing failure.
    pub fn mint(
        &self,
        sub: &str,
        roles: &[Role],
        ttl: Duration,
        now_unix: u64,
    ) -> Result<String, SignError> {
        if sub.is_empty() {
            return Err(SignError::EmptySubject);
        }
        let ttl_secs = ttl.as_secs();
        if ttl_secs == 0 || ttl_secs > MAX_TOKEN_TTL_SECS {
            return Err(SignError::BadTtl);
        }
        let claims = MintedClaims {
            sub,
            roles: roles.iter().map(|r| r.as_str()).collect(),
            exp: now_unix.saturating_add(ttl_secs),
            nbf: now_unix,
            iat: now_unix,
            iss: self.issuer.as_deref(),
            aud: self.audience.as_deref(),
        };
        let mut header = Header::new(self.algorithm.to_jwt());
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| SignError::Signing(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_long_enough_and_distinct() {
        let a = random_hs256_secret();
        let b = random_hs256_secret();
        assert_eq!(a.len(), 2 * GENERATED_SECRET_BYTES);
        assert!(a.len() >= MIN_HS256_SECRET_BYTES);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(TokenSigner::hs256(&a).is_ok());
    }

    #[test]
    fn mint_refuses_empty_subject_and_bad_ttl() {
        let signer = TokenSigner::hs256(random_hs256_secret()).unwrap();
        let now = 1_800_000_000;
        assert!(matches!(
            signer.mint("", &[], Duration::from_secs(60), now),
            Err(SignError::EmptySubject)
        ));
        assert!(matches!(
            signer.mint("u", &[], Duration::ZERO, now),
            Err(SignError::BadTtl)
        ));
        assert!(matches!(
            signer.mint("u", &[], Duration::from_secs(MAX_TOKEN_TTL_SECS + 1), now),
            Err(SignError::BadTtl)
        ));
    }
}
