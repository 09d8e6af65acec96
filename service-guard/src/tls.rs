//! TLS for every client the servers open: the one place that decides which
//! servers a connection trusts and builds what each client library takes.
//!
//! A [`TlsClient`] trusts the system's roots (the operating system's store,
//! read by `rustls-native-certs`; `SSL_CERT_FILE` / `SSL_CERT_DIR` override
//! it) plus, optionally, the certificates of one extra CA bundle (a PEM file,
//! the `TLS_CA_FILE` setting), and hands them out in the form each client
//! needs:
//!
//! | client | takes |
//! |---|---|
//! | hyper (gateway upstreams, orders' inventory client, the JWKS fetch) | [`TlsClient::https_connector`] |
//! | lapin (`amqps://`) | [`TlsClient::client_config`] |
//! | redis (`rediss://`, feature `redis`) | `TlsClient::redis_client` (the roots as PEM) |
//! | sqlx (`sslmode=verify-full`) | [`TlsClient::postgres_root_cert`] (the CA file, unless the URL names one) |
//!
//! Every configuration uses rustls with the *ring* provider only (see
//! `docs/adr/0010-tls-with-rustls-and-ring.md`): no OpenSSL, no aws-lc.
//!
//! ```no_run
//! use service_guard::tls::TlsClient;
//!
//! // The system's roots plus the company CA.
//! let tls = TlsClient::new(Some("/etc/shop/ca.pem".as_ref()))?;
//! let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
//! http.set_nodelay(true);
//! let https = tls.https_connector(http); // http:// and https:// URLs
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// Largest CA bundle read, in bytes: a bundle of every public root is about
/// 200 KiB; more suggests the wrong file.
pub const CA_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Which servers TLS connections trust, and the client configurations built
/// from that. Cheap to clone; clones share one configuration. Two values are
/// equal when they are clones of one another (or both [`TlsClient::system`]).
#[derive(Clone)]
pub struct TlsClient {
    inner: Arc<Inner>,
}

struct Inner {
    /// The trusted roots, system first, then the extra CA's.
    roots: Vec<CertificateDer<'static>>,
    /// The extra CA bundle, when one is configured.
    ca_file: Option<PathBuf>,
    config: Arc<ClientConfig>,
}

/// The extra CA bundle cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read the ca file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not a PEM bundle of certificates rustls accepts as roots.
    #[error("invalid ca file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl TlsClient {
    /// Trusts the system's roots only. Loaded once per process; a root that
    /// does not parse is skipped with a warning (as every TLS library does).
    pub fn system() -> TlsClient {
        static SYSTEM: OnceLock<TlsClient> = OnceLock::new();
        SYSTEM
            .get_or_init(|| TlsClient::build(system_roots().to_vec(), None))
            .clone()
    }

    /// Trusts the system's roots plus every certificate in `ca_file` (PEM),
    /// or the system's roots only when `ca_file` is `None`.
    ///
    /// # Errors
    /// [`TlsError`] when the file cannot be read, holds no certificate, or
    /// holds one rustls refuses as a root.
    pub fn new(ca_file: Option<&Path>) -> Result<TlsClient, TlsError> {
        let Some(path) = ca_file else {
            return Ok(TlsClient::system());
        };
        let extra = read_ca_file(path)?;
        let mut check = RootCertStore::empty();
        for cert in &extra {
            check.add(cert.clone()).map_err(|e| TlsError::Invalid {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        }
        let mut roots = system_roots().to_vec();
        roots.extend(extra);
        tracing::info!(ca_file = %path.display(), roots = roots.len(), "tls: trusting the system roots and the extra ca");
        Ok(TlsClient::build(roots, Some(path.to_owned())))
    }

    fn build(roots: Vec<CertificateDer<'static>>, ca_file: Option<PathBuf>) -> TlsClient {
        let mut store = RootCertStore::empty();
        let (added, skipped) = store.add_parsable_certificates(roots.iter().cloned());
        if skipped > 0 {
            tracing::warn!(
                added,
                skipped,
                "tls: some trusted roots do not parse and are skipped"
            );
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(store)
            .with_no_client_auth();
        TlsClient {
            inner: Arc::new(Inner {
                roots,
                ca_file,
                config: Arc::new(config),
            }),
        }
    }

    /// The rustls client configuration (ring provider, TLS 1.2 and 1.3, no
    /// client certificate), for clients that take one (lapin).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.inner.config)
    }

    /// The extra CA bundle, when one is configured.
    pub fn ca_file(&self) -> Option<&Path> {
        self.inner.ca_file.as_deref()
    }

    /// How many roots are trusted.
    pub fn roots_len(&self) -> usize {
        self.inner.roots.len()
    }

    /// Wraps `http` (its timeouts and socket options kept) so that it opens
    /// `https://` URLs with this configuration and `http://` URLs as before
    /// (HTTP/1.1 either way).
    pub fn https_connector(&self, mut http: HttpConnector) -> HttpsConnector<HttpConnector> {
        // The TLS layer checks the scheme; the TCP layer must let https through.
        http.enforce_http(false);
        hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.inner.config).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http)
    }

    /// A Redis client for `url`: `rediss://` connects over TLS trusting these
    /// roots, `redis://` in plain text (feature `redis`).
    ///
    /// # Errors
    /// The redis error when the URL does not parse.
    #[cfg(feature = "redis")]
    pub fn redis_client(&self, url: &str) -> Result<redis::Client, redis::RedisError> {
        if !url.starts_with("rediss://") {
            return redis::Client::open(url);
        }
        // The redis crate builds its own rustls configuration from a PEM
        // bundle, which replaces its default roots: hand it all of ours.
        redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(self.roots_pem()),
            },
        )
    }

    /// The trusted roots as one PEM bundle.
    pub fn roots_pem(&self) -> Vec<u8> {
        let engine = base64::engine::general_purpose::STANDARD;
        let mut pem = String::new();
        for cert in &self.inner.roots {
            pem.push_str("-----BEGIN CERTIFICATE-----\n");
            let b64 = engine.encode(cert.as_ref());
            for line in b64.as_bytes().chunks(64) {
                pem.push_str(std::str::from_utf8(line).expect("base64 is ascii"));
                pem.push('\n');
            }
            pem.push_str("-----END CERTIFICATE-----\n");
        }
        pem.into_bytes()
    }

    /// The root certificate file to give a PostgreSQL connection to
    /// `database_url`: the extra CA file, unless the URL names its own with
    /// `sslrootcert` (the URL wins). `None` without an extra CA file. It
    /// matters with `sslmode=verify-ca` or `verify-full`, which the URL sets.
    pub fn postgres_root_cert(&self, database_url: &str) -> Option<&Path> {
        let names_its_own = database_url.split_once('?').is_some_and(|(_, query)| {
            query.split('&').any(|pair| {
                matches!(
                    pair.split('=').next(),
                    Some("sslrootcert" | "ssl-root-cert" | "ssl-ca")
                )
            })
        });
        if names_its_own {
            None
        } else {
            self.ca_file()
        }
    }
}

impl Default for TlsClient {
    /// [`TlsClient::system`].
    fn default() -> Self {
        TlsClient::system()
    }
}

impl PartialEq for TlsClient {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

impl Eq for TlsClient {}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("ca_file", &self.inner.ca_file)
            .field("roots", &self.inner.roots.len())
            .finish()
    }
}

/// Whether `error` or one of its causes is a TLS failure (a certificate that
/// is not trusted or does not name the host, a failed handshake): the peer
/// answered, but not as a server this client trusts.
pub fn is_tls_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<rustls::Error>() {
            return true;
        }
        next = match e.downcast_ref::<std::io::Error>() {
            // io::Error's source() skips the error it wraps (which may be
            // another io::Error around the rustls one): look inside instead.
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    false
}

/// The system's roots, read once per process.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::warn!(%error, "tls: cannot read some of the system's roots");
        }
        if loaded.certs.is_empty() {
            tracing::warn!(
                "tls: the system has no trusted roots; only an extra ca file is trusted"
            );
        }
        loaded.certs
    })
}

fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let io = |source| TlsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(CA_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let invalid = |reason: String| TlsError::Invalid {
        path: path.to_owned(),
        reason,
    };
    if bytes.len() as u64 > CA_FILE_BYTES_MAX {
        return Err(invalid(format!("larger than {CA_FILE_BYTES_MAX} bytes")));
    }
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in it".to_owned()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_s_own_root_certificate_wins() {
        let dir = std::env::temp_dir().join(format!("service-guard-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let none = TlsClient::system();
        assert_eq!(none.postgres_root_cert("postgres://h/db"), None);
        // A file that is not PEM is refused with its name.
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        let err = TlsClient::new(Some(&bad)).unwrap_err();
        assert!(err.to_string().contains("bad.pem"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn system_is_one_shared_configuration() {
        assert_eq!(TlsClient::system(), TlsClient::default());
        let pem = String::from_utf8(TlsClient::system().roots_pem()).unwrap();
        assert_eq!(
            pem.matches("BEGIN CERTIFICATE").count(),
            TlsClient::system().roots_len()
        );
    }

    #[test]
    fn a_plain_io_error_is_not_a_tls_error() {
        let plain = std::io::Error::other("connection refused");
        assert!(!is_tls_error(&plain));
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(is_tls_error(&tls));
        // hyper-rustls wraps tokio-rustls' io::Error in another one.
        assert!(is_tls_error(&std::io::Error::other(tls)));
    }
}
