//! The [`Authenticator`]: turns an `Authorization: Bearer` header into a [`Principal`].

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::Validation;

use super::config::{Algorithm, AuthConfig, ConfigError, MAX_LEEWAY_SECS};
use super::keyring::{KeyReload, KeyRing};
use super::keys::{FileStamp, KeyLookup};
use super::remote::RemoteJwks;
use super::{AuthError, Principal, Role};
use crate::tls::TlsClient;

/// Longest accepted bearer token, in bytes. Real tokens are well under 2 KiB; the cap
/// bounds the work an unauthenticated client can make us do.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Most entries read from the `roles` claim.
pub const MAX_ROLES: usize = 16;

/// Verifies bearer JWTs against one pinned algorithm and key configuration.
///
/// Cheap to clone: clones share the keys, so a [`reload`](Authenticator::reload)
/// through any clone (or a [`KeyWatcher`](super::KeyWatcher)) changes them for all.
#[derive(Clone)]
pub struct Authenticator {
    verifier: Option<Arc<Verifier>>,
}

struct Verifier {
    algorithm: Algorithm,
    keys: KeyRing,
    validation: Validation,
    leeway_secs: u64,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.verifier {
            None => f.write_str("Authenticator(disabled)"),
            Some(v) => f
                .debug_struct("Authenticator")
                .field("algorithm", &v.algorithm)
                .field("issuer", &v.validation.iss)
                .field("audience", &v.validation.aud)
                .field("leeway_secs", &v.leeway_secs)
                .field("key_file", &v.keys.file())
                .finish(),
        }
    }
}

#[derive(serde::Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(serde::Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    roles: Option<serde_json::Value>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
}

impl Authenticator {
    /// Loads the key(s) and builds the validation rules.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when a file cannot be read, a key does not parse, the key kind
    /// does not fit the algorithm, the secret is too short, or the leeway is too large.
    /// A JWKS URL ([`KeySource::JwksUrl`](super::KeySource::JwksUrl)) is
    /// refused here ([`ConfigError::JwksUrl`]): its keys are fetched by
    /// [`Authenticator::start`].
    pub fn new(cfg: &AuthConfig) -> Result<Self, ConfigError> {
        if cfg.leeway_secs > MAX_LEEWAY_SECS {
            return Err(ConfigError::LeewayTooLarge);
        }
        let keys = KeyRing::load(&cfg.key, cfg.algorithm)?;
        Ok(Self::with_keys(cfg, keys))
    }

    /// Like [`Authenticator::new`], for every key source: the keys of a JWKS
    /// URL are fetched first, over https trusting `tls` (an unreachable URL
    /// or an unusable set fails the start, as an unreadable file does).
    ///
    /// ```no_run
    /// use service_guard::tls::TlsClient;
    /// use service_guard::{Algorithm, AuthConfig, Authenticator, KeySource};
    ///
    /// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
    /// let url = "https://issuer.example/.well-known/jwks.json".to_owned();
    /// let cfg = AuthConfig::new(Algorithm::RS256, KeySource::JwksUrl(url))
    ///     .with_issuer("https://issuer.example/");
    /// let auth = Authenticator::start(&cfg, &TlsClient::new(None)?).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// Those of [`Authenticator::new`]; [`ConfigError::JwksUrl`] for a URL
    /// that is not `https://`, [`ConfigError::JwksFetch`] when it cannot be
    /// fetched, [`ConfigError::InvalidJwks`] when its set is unusable.
    pub async fn start(cfg: &AuthConfig, tls: &TlsClient) -> Result<Self, ConfigError> {
        if cfg.leeway_secs > MAX_LEEWAY_SECS {
            return Err(ConfigError::LeewayTooLarge);
        }
        let keys = KeyRing::start(cfg, tls).await?;
        Ok(Self::with_keys(cfg, keys))
    }

    fn with_keys(cfg: &AuthConfig, keys: KeyRing) -> Self {
        let mut validation = Validation::new(cfg.algorithm.to_jwt());
        // exp and nbf are checked here, against an injectable clock, after the signature.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = cfg.leeway_secs;
        let mut required = HashSet::new();
        if let Some(iss) = &cfg.issuer {
            validation.set_issuer(&[iss]);
            required.insert("iss".to_owned());
        }
        match &cfg.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.insert("aud".to_owned());
            }
            None => validation.validate_aud = false,
        }
        validation.required_spec_claims = required;
        if cfg.issuer.is_none() || cfg.audience.is_none() {
            tracing::warn!(
                issuer = ?cfg.issuer,
                audience = ?cfg.audience,
                "jwt issuer or audience not configured: that claim is not checked"
            );
        }
        Authenticator {
            verifier: Some(Arc::new(Verifier {
                algorithm: cfg.algorithm,
                keys,
                validation,
                leeway_secs: cfg.leeway_secs,
            })),
        }
    }

    /// No key configured: every request is the [`Principal::open`] principal.
    ///
    /// Servers must only run this way on a loopback address (see [`open_allowed`]).
    pub fn disabled() -> Self {
        Authenticator { verifier: None }
    }

    /// Whether this authenticator lets every request through.
    pub fn is_disabled(&self) -> bool {
        self.verifier.is_none()
    }

    /// The pinned algorithm, `None` when disabled.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.verifier.as_ref().map(|v| v.algorithm)
    }

    /// Re-reads the configured key file (JWKS or PEM) and, when it yields at least
    /// one usable key, swaps it in atomically: requests verified from then on use
    /// the new keys, requests already verifying finish with the old ones.
    ///
    /// When the new file is unreadable, does not parse, or has no key for the
    /// pinned algorithm, the current keys stay in use, the error is logged and
    /// counted ([`Authenticator::failed_reloads`]). A secret given at start is
    /// never re-read. Servers call this through a [`KeyWatcher`](super::KeyWatcher)
    /// (on SIGHUP, and when the file changes).
    ///
    /// ```no_run
    /// use service_guard::{Algorithm, AuthConfig, Authenticator, KeyReload, KeySource};
    ///
    /// let cfg = AuthConfig::new(Algorithm::RS256, KeySource::JwksFile("/etc/shop/jwks.json".into()));
    /// let auth = Authenticator::new(&cfg)?;
    /// // ... the issuer rotates its keys and the file is replaced ...
    /// match auth.reload() {
    ///     Ok(KeyReload::Swapped { keys }) => println!("now verifying with {keys} keys"),
    ///     Ok(KeyReload::NoKeyFile) => unreachable!("a jwks file is configured"),
    ///     Err(e) => eprintln!("still using the previous keys: {e}"),
    /// }
    /// # Ok::<(), service_guard::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::Io`], [`ConfigError::InvalidKey`] or [`ConfigError::InvalidJwks`]
    /// when the new file is unusable; the previous keys are still in use then.
    pub fn reload(&self) -> Result<KeyReload, ConfigError> {
        match &self.verifier {
            Some(v) => v.keys.reload(),
            None => Ok(KeyReload::NoKeyFile),
        }
    }

    /// Fetches the keys again from their JWKS URL, or re-reads their file
    /// (as [`reload`](Authenticator::reload)); swaps them in only when the new
    /// set has a usable key, and otherwise keeps the current ones, logs and
    /// counts the failure. A [`KeyWatcher`](super::KeyWatcher) calls this on
    /// its schedule and on SIGHUP.
    ///
    /// # Errors
    /// Those of [`reload`](Authenticator::reload), and for a URL
    /// [`ConfigError::JwksFetch`] or [`ConfigError::InvalidJwks`]; the
    /// previous keys are still in use then.
    pub async fn refresh(&self) -> Result<KeyReload, ConfigError> {
        match &self.verifier {
            Some(v) => v.keys.refresh().await,
            None => Ok(KeyReload::NoKeyFile),
        }
    }

    /// The JWKS URL's fetcher, when the keys come from one.
    pub(crate) fn remote(&self) -> Option<&RemoteJwks> {
        self.verifier.as_ref().and_then(|v| v.keys.remote())
    }

    /// How many times the keys' JWKS URL was fetched since start (at start,
    /// on schedule, on SIGHUP, for unknown `kid`s); 0 without a URL.
    pub fn jwks_fetches(&self) -> u64 {
        self.remote().map_or(0, RemoteJwks::fetches)
    }

    /// How many [`reload`](Authenticator::reload)s failed (and kept the previous
    /// keys) since start, over every clone of this authenticator.
    pub fn failed_reloads(&self) -> u64 {
        self.verifier
            .as_ref()
            .map_or(0, |v| v.keys.failed_reloads())
    }

    /// The key file [`reload`](Authenticator::reload) re-reads; `None` for a
    /// secret or when disabled.
    pub fn key_file(&self) -> Option<&Path> {
        self.verifier.as_ref().and_then(|v| v.keys.file())
    }

    /// The stamp the key file had when the keys in use were read.
    pub(crate) fn loaded_stamp(&self) -> Option<FileStamp> {
        self.verifier.as_ref().and_then(|v| v.keys.current().stamp)
    }

    /// Whether a server without a key may listen on `addr` (loopback only).
    pub fn open_allowed(addr: &SocketAddr) -> bool {
        open_allowed(addr)
    }

    /// Authenticates a request from its `Authorization: Bearer <jwt>` header.
    ///
    /// With keys from a JWKS URL, a token naming a `kid` the current set
    /// lacks makes the set be fetched again before the token is judged (at
    /// most once per `jwks_unknown_kid_refetch_min_ms`; requests arriving
    /// during that fetch wait for it): an issuer that rotated its keys is
    /// followed at once.
    ///
    /// # Errors
    ///
    /// [`AuthError::Missing`] without bearer credentials, [`AuthError::Malformed`] for a
    /// broken header, and any error of [`Authenticator::verify_token`].
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, AuthError> {
        if self.is_disabled() {
            return Ok(Principal::open());
        }
        let token = bearer_token(headers)?;
        let now = unix_now();
        match self.check(token, now) {
            Err(Failure::UnknownKid) => {}
            other => return other.map_err(Failure::into_auth),
        }
        if let (Some(v), Some(remote)) = (&self.verifier, self.remote()) {
            remote
                .refetch_for_unknown_kid(async {
                    tracing::info!(url = %remote.url(), "a token names an unknown key id: fetching the keys");
                    let _ = v.keys.refresh().await;
                })
                .await;
        }
        self.check(token, now).map_err(Failure::into_auth)
    }

    /// Verifies a token at the current system time.
    ///
    /// # Errors
    ///
    /// See [`Authenticator::verify_token_at`].
    pub fn verify_token(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify_token_at(token, unix_now())
    }

    /// Verifies a token as if the time were `now_unix` (seconds since the epoch).
    ///
    /// Order of checks: size and shape, pinned `alg` (so `none` and algorithm
    /// confusion never reach a key), key by `kid`, signature, `iss`, `aud`, `exp`,
    /// `nbf`, `sub`.
    ///
    /// # Errors
    ///
    /// The [`AuthError`] variant naming the first failed check.
    pub fn verify_token_at(&self, token: &str, now_unix: u64) -> Result<Principal, AuthError> {
        self.check(token, now_unix).map_err(Failure::into_auth)
    }

    fn check(&self, token: &str, now_unix: u64) -> Result<Principal, Failure> {
        let Some(v) = &self.verifier else {
            return Ok(Principal::open());
        };
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed.into());
        }
        let header = parse_header(token)?;
        if header.alg != v.algorithm.as_str() {
            return Err(AuthError::WrongAlgorithm.into());
        }
        let keys = v.keys.current();
        let key = keys
            .keys
            .select(header.kid.as_deref())
            .map_err(|e| match e {
                KeyLookup::UnknownKid => Failure::UnknownKid,
                KeyLookup::MissingKid => AuthError::Invalid("token has no key id".into()).into(),
            })?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &v.validation).map_err(map_jwt)?;
        check_times(&data.claims, now_unix, v.leeway_secs)?;
        let subject = match data.claims.sub {
            Some(sub) if !sub.is_empty() => sub,
            _ => return Err(AuthError::Invalid("missing sub claim".into()).into()),
        };
        let roles = parse_roles(data.claims.roles)?;
        Ok(Principal { subject, roles })
    }
}

/// Why [`Authenticator::check`] refused a token: an unknown `kid` is told
/// apart, since fresh keys may know it.
enum Failure {
    UnknownKid,
    Auth(AuthError),
}

impl Failure {
    fn into_auth(self) -> AuthError {
        match self {
            Failure::UnknownKid => AuthError::Invalid("unknown key id".into()),
            Failure::Auth(e) => e,
        }
    }
}

impl From<AuthError> for Failure {
    fn from(e: AuthError) -> Self {
        Failure::Auth(e)
    }
}

/// Whether a server without a key may listen on `addr`: only loopback addresses
/// (`127.0.0.0/8`, `::1`, and IPv4-mapped loopback).
pub fn open_allowed(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn bearer_token(headers: &http::HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(AuthError::Missing);
    };
    if values.next().is_some() {
        return Err(AuthError::Malformed);
    }
    let value = value.to_str().map_err(|_| AuthError::Malformed)?.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        // RFC 6750 section 3.1: another scheme means no bearer credentials at all.
        return Err(AuthError::Missing);
    }
    let token = rest.trim();
    if token.is_empty() || token.contains(' ') {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

fn parse_header(token: &str) -> Result<RawHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)
}

fn map_jwt(err: jsonwebtoken::errors::Error) -> AuthError {
    match err.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => AuthError::WrongAlgorithm,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthError::WrongAudience,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => AuthError::Malformed,
        other => AuthError::Invalid(format!("{other:?}").to_lowercase()),
    }
}

fn check_times(claims: &Claims, now: u64, leeway: u64) -> Result<(), AuthError> {
    let Some(exp) = claims.exp else {
        return Err(AuthError::Invalid("missing exp claim".into()));
    };
    // RFC 7519 4.1.4: reject on or after exp; the leeway absorbs clock skew.
    if now >= exp.saturating_add(leeway) {
        return Err(AuthError::Expired);
    }
    if let Some(nbf) = claims.nbf {
        if now.saturating_add(leeway) < nbf {
            return Err(AuthError::NotYetValid);
        }
    }
    Ok(())
}

/// Reads `roles` as an array of strings (a single string is accepted too); role
/// names this service does not know are ignored.
fn parse_roles(value: Option<serde_json::Value>) -> Result<Vec<Role>, AuthError> {
    let names: Vec<serde_json::Value> = match value {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(s)) => vec![serde_json::Value::String(s)],
        Some(serde_json::Value::Array(items)) if items.len() <= MAX_ROLES => items,
        Some(_) => {
            return Err(AuthError::Invalid(
                "roles claim must be an array of strings".into(),
            ))
        }
    };
    let mut roles = Vec::with_capacity(names.len());
    for name in names {
        let serde_json::Value::String(name) = name else {
            return Err(AuthError::Invalid(
                "roles claim must be an array of strings".into(),
            ));
        };
        if let Ok(role) = name.parse::<Role>() {
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
    }
    Ok(roles)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::AUTHORIZATION;
    use http::{HeaderMap, HeaderValue};

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn bearer_token_extraction() {
        assert_eq!(bearer_token(&headers(&[])), Err(AuthError::Missing));
        assert_eq!(
            bearer_token(&headers(&["Basic abc"])),
            Err(AuthError::Missing)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer"])),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer a b"])),
            Err(AuthError::Malformed)
        );
        assert_eq!(
            bearer_token(&headers(&["Bearer a", "Bearer b"])),
            Err(AuthError::Malformed)
        );
        assert_eq!(bearer_token(&headers(&["bearer  x.y.z "])), Ok("x.y.z"));
    }

    #[test]
    fn open_only_on_loopback() {
        assert!(open_allowed(&"127.0.0.1:8080".parse().unwrap()));
        assert!(open_allowed(&"[::1]:8080".parse().unwrap()));
        assert!(open_allowed(&"[::ffff:127.0.0.1]:8080".parse().unwrap()));
        assert!(!open_allowed(&"0.0.0.0:8080".parse().unwrap()));
        assert!(!open_allowed(&"[::]:8080".parse().unwrap()));
        assert!(!open_allowed(&"192.168.1.10:8080".parse().unwrap()));
    }

    #[test]
    fn roles_claim_parsing() {
        let json = |s: &str| Some(serde_json::from_str::<serde_json::Value>(s).unwrap());
        assert_eq!(
            parse_roles(json(r#"["admin","root","admin","service"]"#)),
            Ok(vec![Role::Admin, Role::Service])
        );
        assert_eq!(parse_roles(json(r#""customer""#)), Ok(vec![Role::Customer]));
        assert_eq!(parse_roles(None), Ok(vec![]));
        assert!(parse_roles(json("[1]")).is_err());
        assert!(parse_roles(json("{}")).is_err());
    }

    #[tokio::test]
    async fn disabled_authenticator_admits_everyone_as_open() {
        let auth = Authenticator::disabled();
        assert!(auth.is_disabled());
        assert_eq!(
            auth.authenticate(&HeaderMap::new()).await,
            Ok(Principal::open())
        );
    }
}
