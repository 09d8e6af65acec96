//! Servers on 127.0.0.1:0 for the gateway tests: the real inventory server, a
//! recording upstream (for header assertions only), the gateway itself, an
//! in-process log capture, and a small client.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use service_guard::Role;
use test_support::server::{bind_ephemeral, Running};
use test_support::tokens;

/// The HS256 secret of the test gateways.
pub const SECRET: &str = "gateway-test-secret-of-at-least-32-bytes";

/// The real inventory server (memory store, no rate limit), verifying tokens
/// signed with [`SECRET`].
pub async fn spawn_inventory() -> Running {
    let (listener, addr) = bind_ephemeral().await;
    let mut config = inventory_http::Config::embedded();
    config.listen = addr;
    config.rate_limit.rate_limit_per_minute = 0;
    config.auth.jwt_secret = Some(SECRET.to_owned());
    Running::spawn(addr, |stopped| async move {
        inventory_http::run(listener, config, stopped)
            .await
            .expect("inventory starts");
    })
}

/// The real orders server (memory store, demo catalog) verifying tokens
/// signed with [`SECRET`] and calling inventory at `inventory` with
/// `service` tokens minted from it.
pub async fn spawn_orders(inventory: SocketAddr) -> Running {
    let (listener, addr) = bind_ephemeral().await;
    let mut config = orders_http::config::Config::embedded();
    config.listen = addr;
    config.inventory_url = format!("http://{inventory}");
    config.auth.jwt_secret = Some(SECRET.to_owned());
    config.inventory_jwt_secret = Some(SECRET.to_owned());
    Running::spawn(addr, |stopped| async move {
        orders_http::run(listener, config, stopped)
            .await
            .expect("orders starts");
    })
}

/// The gateway with `config`, on an ephemeral port.
pub async fn spawn_gateway(mut config: gateway::Config) -> Running {
    let (listener, addr) = bind_ephemeral().await;
    config.listen = addr;
    let gw = Arc::new(
        gateway::Gateway::new(&config)
            .await
            .expect("gateway builds"),
    );
    let limits = config.server_limits();
    Running::spawn(addr, |stopped| {
        gateway::server::serve(listener, gw, limits, stopped)
    })
}

/// A gateway configuration with the HS256 test key, no rate limits, and
/// the given upstreams.
pub fn config(orders: SocketAddr, inventory: SocketAddr) -> gateway::Config {
    let mut c = gateway::Config::embedded();
    c.auth.jwt_secret = Some(SECRET.to_owned());
    c.orders_url = format!("http://{orders}");
    c.inventory_url = format!("http://{inventory}");
    c.rate_limit_ip_per_minute = 0;
    c.rate_limit_user_per_minute = 0;
    c
}

/// A token signed with [`SECRET`].
pub fn token(sub: &str, roles: &[Role]) -> String {
    tokens::hs256(SECRET, sub, roles, Duration::from_secs(600))
}

/// One request as the recording upstream saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub target: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body length in bytes.
    pub body_len: usize,
}

/// An upstream that records what reaches it and answers 200 `{"upstream":"recorder"}`
/// with a hop-by-hop header the gateway must drop.
pub struct Recorder {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it received.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    _server: Running,
}

impl Recorder {
    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

/// Starts a [`Recorder`].
pub async fn spawn_recorder() -> Recorder {
    let (listener, addr) = bind_ephemeral().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let server = Running::spawn(addr, |mut stopped| async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = &mut stopped => break,
                a = listener.accept() => a.expect("accept"),
            };
            let log = log.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let log = log.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    log.lock().expect("lock").push(Seen {
                        method: parts.method,
                        target: parts.uri.to_string(),
                        headers: parts.headers,
                        body_len: body.len(),
                    });
                    let response = Response::builder()
                        .header("content-type", "application/json")
                        .header("keep-alive", "timeout=5")
                        .header("connection", "x-upstream-hop")
                        .header("x-upstream-hop", "1")
                        .body(Full::new(Bytes::from_static(
                            b"{\"upstream\":\"recorder\"}",
                        )))
                        .expect("response");
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
        }
    });
    Recorder {
        addr,
        seen,
        _server: server,
    }
}

/// An address where nothing listens (connections are refused).
pub async fn dead_addr() -> SocketAddr {
    test_support::server::dead_addr()
}

/// A server that accepts connections and never answers.
pub async fn spawn_silent() -> Running {
    let (listener, addr) = bind_ephemeral().await;
    Running::spawn(addr, |mut stopped| async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                a = listener.accept() => held.push(a.expect("accept")),
            }
        }
    })
}

pub use test_support::http::Reply;

/// Sends `method path` to `addr` with `headers` and `body`.
pub async fn send(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    static CLIENT: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    let client = CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http());
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body)))
        .expect("request");
    let response = client.request(request).await.expect("response");
    Reply::read(response).await
}

/// `GET path` with an optional bearer token.
pub async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("authorization", a)])
        .unwrap_or_default();
    send(addr, Method::GET, path, &headers, b"").await
}

/// `method path` with a JSON body and a bearer token.
pub async fn json(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: &str,
    body: &Value,
) -> Reply {
    let auth = format!("Bearer {token}");
    send(
        addr,
        method,
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
    .await
}

/// Everything logged in this test process so far (JSON lines).
pub fn logs() -> String {
    String::from_utf8_lossy(&capture().lock().expect("lock")).into_owned()
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Capture(buffer.clone());
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_target(true)
            .with_env_filter("info")
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buffer
    })
}

/// Installs the log capture (call before starting servers whose logs a test reads).
pub fn capture_logs() {
    let _ = capture();
}
