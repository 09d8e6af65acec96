//! Loading verification keys: an HS256 secret, a PEM public key, or a JWKS file;
//! and the [`FileStamp`] that tells a key file's watcher when to read it again.

use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::DecodingKey;

use super::config::{Algorithm, ConfigError, KeySource, MIN_HS256_SECRET_BYTES};

/// Largest key or JWKS file read, in bytes: a real JWKS is a few kilobytes.
pub const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;

/// Most keys kept from a JWKS file; more suggests the wrong file.
pub const MAX_JWKS_KEYS: usize = 64;

/// The verification keys of one configuration.
pub(crate) enum Keys {
    /// One key, used for every token.
    Single(DecodingKey),
    /// Keys from a JWKS file; the token's `kid` selects one.
    Set(Vec<(Option<String>, DecodingKey)>),
}

/// The token's `kid` does not select a key.
#[derive(Debug)]
pub(crate) enum KeyLookup {
    /// No key has this id.
    UnknownKid,
    /// The set has several keys and the token names none.
    MissingKid,
}

impl Keys {
    /// Reads the keys of `source` for `alg`. A JWKS yields at least one key or an error.
    pub(crate) fn load(source: &KeySource, alg: Algorithm) -> Result<Keys, ConfigError> {
        match (source, alg) {
            (KeySource::Secret(secret), Algorithm::HS256) => {
                if secret.len() < MIN_HS256_SECRET_BYTES {
                    return Err(ConfigError::WeakSecret);
                }
                Ok(Keys::Single(DecodingKey::from_secret(secret.as_bytes())))
            }
            (KeySource::Secret(_), _) => Err(mismatch(alg, "a shared secret")),
            (KeySource::PublicKeyPem(_), Algorithm::HS256) => Err(mismatch(alg, "a public key")),
            (KeySource::JwksFile(_), Algorithm::HS256) => Err(mismatch(alg, "a jwks file")),
            (KeySource::PublicKeyPem(path), _) => {
                let pem = read_limited(path)?;
                let key = match alg {
                    Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
                    _ => DecodingKey::from_ec_pem(&pem),
                }
                .map_err(|e| ConfigError::InvalidKey(format!("{}: {e}", path.display())))?;
                Ok(Keys::Single(key))
            }
            (KeySource::JwksFile(path), _) => load_jwks(path, alg),
            (KeySource::JwksUrl(_), Algorithm::HS256) => Err(mismatch(alg, "a jwks url")),
            (KeySource::JwksUrl(_), _) => Err(ConfigError::JwksUrl(
                "keys from a url are fetched: use Authenticator::start".into(),
            )),
        }
    }

    /// How many keys there are.
    pub(crate) fn len(&self) -> usize {
        match self {
            Keys::Single(_) => 1,
            Keys::Set(keys) => keys.len(),
        }
    }

    pub(crate) fn select(&self, kid: Option<&str>) -> Result<&DecodingKey, KeyLookup> {
        match self {
            Keys::Single(key) => Ok(key),
            Keys::Set(keys) => match kid {
                Some(kid) => keys
                    .iter()
                    .find(|(id, _)| id.as_deref() == Some(kid))
                    .map(|(_, key)| key)
                    .ok_or(KeyLookup::UnknownKid),
                None if keys.len() == 1 => Ok(&keys[0].1),
                None => Err(KeyLookup::MissingKid),
            },
        }
    }
}

/// What a key file looked like at one moment: modification time, length and
/// (on Unix) device and inode. Two stamps differ when the file was rewritten in
/// place (time or length) or replaced by a rename (inode), which is how a
/// watcher notices a change without reading the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    /// Device and inode: a file renamed over the old one is a new inode even
    /// when its time and length equal the old one's.
    file_id: (u64, u64),
}

impl FileStamp {
    /// The stamp of `path` now, `None` when it cannot be read (missing, no access).
    pub(crate) fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            file_id: file_id(&meta),
        })
    }
}

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn file_id(_meta: &std::fs::Metadata) -> (u64, u64) {
    (0, 0)
}

fn mismatch(algorithm: Algorithm, key: &'static str) -> ConfigError {
    ConfigError::KeyMismatch { algorithm, key }
}

fn read_limited(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(ConfigError::InvalidKey(format!(
            "{} is larger than {MAX_KEY_FILE_BYTES} bytes",
            path.display()
        )));
    }
    Ok(bytes)
}

fn load_jwks(path: &Path, alg: Algorithm) -> Result<Keys, ConfigError> {
    let bytes = read_limited(path)?;
    parse_jwks(&bytes, &path.display().to_string(), alg)
}

/// Keeps the JWKS entries usable for signatures with `alg`; skips (and logs)
/// the rest. `origin` (a file or a URL) names the set in errors and logs.
pub(crate) fn parse_jwks(bytes: &[u8], origin: &str, alg: Algorithm) -> Result<Keys, ConfigError> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let raw: RawSet = serde_json::from_slice(bytes)
        .map_err(|e| ConfigError::InvalidJwks(format!("{origin}: {e}")))?;
    let mut keys = Vec::new();
    for value in raw.keys {
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(e) => {
                tracing::warn!(origin, error = %e, "skipping unparsable jwks entry");
                continue;
            }
        };
        if !fits(&jwk, alg) {
            tracing::debug!(origin, kid = ?jwk.common.key_id, "skipping jwks entry for another algorithm or use");
            continue;
        }
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| ConfigError::InvalidJwks(format!("{origin}: {e}")))?;
        keys.push((jwk.common.key_id.clone(), key));
        if keys.len() > MAX_JWKS_KEYS {
            return Err(ConfigError::InvalidJwks(format!(
                "{origin} has more than {MAX_JWKS_KEYS} keys"
            )));
        }
    }
    if keys.is_empty() {
        return Err(ConfigError::InvalidJwks(format!(
            "{origin} has no {alg} signing key"
        )));
    }
    Ok(Keys::Set(keys))
}

fn fits(jwk: &Jwk, alg: Algorithm) -> bool {
    let use_ok = matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    );
    let alg_ok = matches!(
        (jwk.common.key_algorithm, alg),
        (None, _)
            | (Some(KeyAlgorithm::RS256), Algorithm::RS256)
            | (Some(KeyAlgorithm::ES256), Algorithm::ES256)
    );
    let kind_ok = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        _ => false,
    };
    use_ok && alg_ok && kind_ok
}
