//! TLS for the test suites, with certificates generated at test time
//! (rcgen, ring): a CA of the test's own ([`TestCa`]) and a server
//! certificate it signs for `localhost` and `127.0.0.1` ([`ServerCert`]);
//! files in a directory removed when the test ends ([`TempDir`]); servers
//! that speak TLS on `127.0.0.1:0`:
//!
//! - [`TlsTerminator`]: TLS in front of a plain-text local server (RabbitMQ,
//!   an HTTP service), forwarding each connection's bytes;
//! - [`HttpsBody`]: an https server answering every GET with one body that
//!   the test can swap, counting requests (a JWKS endpoint);
//! - [`TlsRedis`]: a `redis-server` process of its own with a TLS port only,
//!   killed when the test ends;
//!
//! and the local PostgreSQL given a certificate of a test CA
//! (`postgres_tls`, feature `postgres`), so that `sslmode=verify-full` can
//! be tested.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::server::bind_ephemeral;
use crate::services::skipped;

/// Longest wait for a server the tests start (a `redis-server` process, the
/// PostgreSQL reload) to be ready; it takes milliseconds, this only bounds a
/// broken machine.
pub const READY_WAIT_MS: u64 = 10_000;

/// Pause between two readiness checks, in milliseconds.
const READY_CHECK_MS: u64 = 20;

/// A certificate authority generated for one test.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A fresh CA named `name` (ECDSA P-256).
    ///
    /// # Panics
    /// When rcgen fails (a bug).
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca certificate");
        Self { cert, key }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the CA certificate to `dir/name` and returns its path.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write(&self, dir: &TempDir, name: &str) -> PathBuf {
        dir.write(name, &self.pem())
    }

    /// A server certificate signed by this CA for `localhost` and `127.0.0.1`.
    ///
    /// # Panics
    /// When rcgen fails (a bug).
    pub fn issue(&self) -> ServerCert {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned()]).expect("server params");
        // rcgen makes every name a DNS name: the address is added as one.
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("server certificate");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }
}

/// A server certificate and its private key.
#[derive(Clone)]
pub struct ServerCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCert").finish_non_exhaustive()
    }
}

impl ServerCert {
    /// A TLS acceptor presenting this certificate (rustls, ring).
    ///
    /// # Panics
    /// When rustls refuses the key (a bug).
    pub fn acceptor(&self) -> TlsAcceptor {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![self.cert_der.clone()], key)
            .expect("server certificate");
        TlsAcceptor::from(Arc::new(config))
    }
}

/// A directory of its own under the system's temporary directory, removed
/// with everything in it when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory whose name starts with `prefix`.
    ///
    /// # Panics
    /// When it cannot be created.
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{:016x}",
            std::process::id(),
            rand::rng().random::<u64>()
        ));
        std::fs::create_dir_all(&path).expect("create temporary directory");
        Self(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` to `name` in the directory and returns its path.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// TLS on `127.0.0.1:0` in front of a plain-text server at `upstream`: each
/// connection's handshake is completed with the given certificate, then its
/// bytes are copied both ways. Stops when dropped.
#[derive(Debug)]
pub struct TlsTerminator {
    addr: SocketAddr,
    handshakes: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl TlsTerminator {
    /// Starts terminating TLS for `upstream`.
    pub async fn start(cert: &ServerCert, upstream: SocketAddr) -> Self {
        let (listener, addr) = bind_ephemeral().await;
        let acceptor = cert.acceptor();
        let handshakes = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&handshakes);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let counted = Arc::clone(&counted);
                connections.spawn(async move {
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::Relaxed);
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                });
            }
        });
        Self {
            addr,
            handshakes,
            task,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Completed TLS handshakes so far.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        // Aborting the accept loop drops the JoinSet, which aborts every
        // forwarded connection with it.
        self.task.abort();
    }
}

/// An https server on `127.0.0.1:0` that answers every GET with `200` and
/// the current body (JSON), and counts the requests. Stops when dropped.
#[derive(Debug)]
pub struct HttpsBody {
    addr: SocketAddr,
    body: Arc<Mutex<Bytes>>,
    hits: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl HttpsBody {
    /// Starts serving `body` with `cert`.
    pub async fn start(cert: &ServerCert, body: impl Into<Bytes>) -> Self {
        let (listener, addr) = bind_ephemeral().await;
        let acceptor = cert.acceptor();
        let body = Arc::new(Mutex::new(body.into()));
        let hits = Arc::new(AtomicU64::new(0));
        let (served, counted) = (Arc::clone(&body), Arc::clone(&hits));
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let (served, counted) = (Arc::clone(&served), Arc::clone(&counted));
                connections.spawn(async move {
                    let Ok(tls) = acceptor.accept(client).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |_request| {
                        counted.fetch_add(1, Ordering::Relaxed);
                        let body = served.lock().expect("body lock").clone();
                        async move {
                            http::Response::builder()
                                .header(http::header::CONTENT_TYPE, "application/json")
                                .body(http_body_util::Full::new(body))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            body,
            hits,
            task,
        }
    }

    /// `https://localhost:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// Serves `body` from now on.
    ///
    /// # Panics
    /// When the lock is poisoned.
    pub fn set_body(&self, body: impl Into<Bytes>) {
        *self.body.lock().expect("body lock") = body.into();
    }

    /// Requests answered so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

impl Drop for HttpsBody {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `redis-server` process of its own, listening with TLS only on a free
/// port of `127.0.0.1`; killed when dropped.
#[derive(Debug)]
pub struct TlsRedis {
    port: u16,
    child: tokio::process::Child,
    _dir: TempDir,
}

impl TlsRedis {
    /// Starts `redis-server` with a certificate of `ca`, or returns `None`
    /// (after printing why) when there is no `redis-server` to run.
    ///
    /// # Panics
    /// When `redis-server` is absent and `REQUIRE_SERVICES=1`, or when it
    /// does not come up within [`READY_WAIT_MS`].
    pub async fn start(ca: &TestCa) -> Option<Self> {
        let dir = TempDir::new("tls-redis");
        let cert = ca.issue();
        let cert_file = dir.write("redis.crt", &cert.cert_pem);
        let key_file = dir.write("redis.key", &cert.key_pem);
        let ca_file = ca.write(&dir, "ca.crt");
        // A port the OS just handed out; the window until redis binds it is
        // a few milliseconds.
        let port = bind_ephemeral().await.1.port();
        let spawned = tokio::process::Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1"])
            .args(["--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(&cert_file)
            .arg("--tls-key-file")
            .arg(&key_file)
            .arg("--tls-ca-cert-file")
            .arg(&ca_file)
            .args(["--tls-auth-clients", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) => return skipped(&format!("cannot run redis-server: {e}")),
        };
        let mut redis = Self {
            port,
            child,
            _dir: dir,
        };
        redis.wait_ready().await;
        Some(redis)
    }

    async fn wait_ready(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let ready = tokio::time::timeout(Duration::from_millis(READY_WAIT_MS), async {
            loop {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("redis-server exited at start ({status}): is it built with TLS?");
                }
                if TcpStream::connect(addr).await.is_ok() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(READY_CHECK_MS)).await;
            }
        })
        .await;
        assert!(
            ready.is_ok(),
            "redis-server did not listen within {READY_WAIT_MS} ms"
        );
    }

    /// `rediss://localhost:<port>` (the certificate names `localhost`).
    pub fn url(&self) -> String {
        format!("rediss://localhost:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[cfg(feature = "postgres")]
pub use postgres::{postgres_tls, PostgresTls};

#[cfg(feature = "postgres")]
mod postgres {
    //! The local PostgreSQL with a server certificate of a test CA.

    use super::*;
    use crate::postgres::connect_or_skip;
    use sqlx::{Connection, PgConnection};

    /// Files in the server's data directory: the CA certificate (so that a
    /// later run finds which CA signed the server's certificate), the server
    /// certificate and its key. The number changes when the certificate
    /// does (a new name is installed afresh).
    const CA_FILE: &str = "shop-test-tls-2-ca.crt";
    const CERT_FILE: &str = "shop-test-tls-2-server.crt";
    const KEY_FILE: &str = "shop-test-tls-2-server.key";

    /// Largest file read back from the server, in bytes.
    const FILE_BYTES_MAX: u64 = 64 * 1024;

    /// One setup at a time within a test binary.
    static SETUP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// The local PostgreSQL serving TLS with a certificate of a test CA.
    #[derive(Debug)]
    pub struct PostgresTls {
        /// The test database's URL with `sslmode=verify-full` and
        /// `sslrootcert` naming the CA.
        pub url: String,
        /// The CA certificate file.
        pub ca_file: PathBuf,
        /// The test database's URL without TLS parameters.
        pub plain_url: String,
        _dir: TempDir,
    }

    /// Makes the test server (`TEST_DATABASE_URL`) present a certificate of
    /// a test CA for `localhost` and `127.0.0.1`, unless it already does:
    /// idempotent, and safe for every other test (those connecting with the
    /// default `sslmode=prefer` keep working, over TLS). The files are
    /// written by the server itself (`COPY ... TO PROGRAM`, so they belong
    /// to its user, mode 0600) into its data directory, which a restart keeps;
    /// `ALTER SYSTEM` turns `ssl` on and names them; `pg_reload_conf()`
    /// applies it. Needs a superuser; returns `None` (after printing why)
    /// without a server or a superuser.
    ///
    /// # Panics
    /// When skipping is not allowed (`REQUIRE_SERVICES=1`), or when the
    /// server does not present the certificate within [`READY_WAIT_MS`].
    pub async fn postgres_tls() -> Option<PostgresTls> {
        let _one = SETUP.lock().await;
        let (mut conn, plain_url) = connect_or_skip().await?;
        let superuser: bool =
            sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                .fetch_one(&mut conn)
                .await
                .expect("read role");
        if !superuser {
            return skipped("the test database's user is not a superuser: cannot configure TLS");
        }
        let dir = TempDir::new("pg-tls");
        let ca_file = dir.path().join("ca.crt");
        let separator = if plain_url.contains('?') { '&' } else { '?' };
        let url = format!(
            "{plain_url}{separator}sslmode=verify-full&sslrootcert={}",
            ca_file.display()
        );
        // Reuse what an earlier run installed when it verifies; else install.
        let reused = match installed_ca(&mut conn).await {
            Some(pem) => {
                std::fs::write(&ca_file, pem).expect("write the ca file");
                PgConnection::connect(&url).await.is_ok()
            }
            None => false,
        };
        if !reused {
            let pem = install(&mut conn).await;
            std::fs::write(&ca_file, pem).expect("write the ca file");
        }
        wait_verified(&mut conn, &url, &ca_file).await;
        let _ = conn.close().await;
        Some(PostgresTls {
            url,
            ca_file,
            plain_url,
            _dir: dir,
        })
    }

    /// The CA of the certificate the server is configured with, when it is
    /// one of ours.
    async fn installed_ca(conn: &mut PgConnection) -> Option<String> {
        let (ssl, cert): (String, String) =
            sqlx::query_as("SELECT current_setting('ssl'), current_setting('ssl_cert_file')")
                .fetch_one(&mut *conn)
                .await
                .expect("read ssl settings");
        if ssl != "on" || cert != CERT_FILE {
            return None;
        }
        read_server_file(conn, CA_FILE).await
    }

    async fn read_server_file(conn: &mut PgConnection, name: &str) -> Option<String> {
        sqlx::query_scalar::<_, Option<String>>("SELECT pg_read_file($1, 0, $2, true)")
            .bind(name)
            .bind(i64::try_from(FILE_BYTES_MAX).expect("small"))
            .fetch_one(conn)
            .await
            .expect("read a server file")
            .filter(|pem| pem.contains("BEGIN CERTIFICATE"))
    }

    /// Generates a CA and a server certificate, installs them and reloads.
    async fn install(conn: &mut PgConnection) -> String {
        let ca = TestCa::new("shop test postgres ca");
        let cert = ca.issue();
        for (name, pem) in [
            (KEY_FILE, cert.key_pem.as_str()),
            (CERT_FILE, cert.cert_pem.as_str()),
            (CA_FILE, ca.pem().as_str()),
        ] {
            write_server_file(conn, name, pem).await;
        }
        for statement in [
            format!("ALTER SYSTEM SET ssl_cert_file = '{CERT_FILE}'"),
            format!("ALTER SYSTEM SET ssl_key_file = '{KEY_FILE}'"),
            "ALTER SYSTEM SET ssl = on".to_owned(),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            sqlx::raw_sql(&statement)
                .execute(&mut *conn)
                .await
                .expect("configure ssl");
        }
        ca.pem()
    }

    /// Has the server write `pem` to `name` in its data directory, one line
    /// per row (PEM has no character COPY would escape), readable by its
    /// user only (PostgreSQL refuses a key file others may read).
    async fn write_server_file(conn: &mut PgConnection, name: &str, pem: &str) {
        assert!(pem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+/=- \n".contains(c)));
        let dir: String = sqlx::query_scalar("SELECT current_setting('data_directory')")
            .fetch_one(&mut *conn)
            .await
            .expect("read data_directory");
        assert!(
            !dir.contains(['"', '\'', '$', '`', '\\']),
            "an unusual data directory: {dir}"
        );
        let path = format!("{dir}/{name}");
        let sql = format!(
            "COPY (SELECT unnest(string_to_array('{pem}', chr(10)))) \
             TO PROGRAM 'umask 077 && cat > \"{path}\" && chmod 600 \"{path}\"'"
        );
        sqlx::raw_sql(&sql)
            .execute(conn)
            .await
            .expect("write a server file");
    }

    /// Waits until a `verify-full` connection succeeds (the reload is
    /// asynchronous); re-reads the CA from the server meanwhile, in case
    /// another test process installed its own.
    async fn wait_verified(conn: &mut PgConnection, url: &str, ca_file: &Path) {
        let waited = tokio::time::timeout(Duration::from_millis(READY_WAIT_MS), async {
            loop {
                match PgConnection::connect(url).await {
                    Ok(verified) => {
                        let _ = verified.close().await;
                        return;
                    }
                    Err(_) => {
                        if let Some(pem) = read_server_file(conn, CA_FILE).await {
                            std::fs::write(ca_file, pem).expect("rewrite the ca file");
                        }
                        tokio::time::sleep(Duration::from_millis(READY_CHECK_MS)).await;
                    }
                }
            }
        })
        .await;
        if waited.is_err() {
            let last = PgConnection::connect(url).await.err();
            panic!(
                "PostgreSQL does not present the test certificate within {READY_WAIT_MS} ms (see its log): {last:?}"
            );
        }
    }
}
