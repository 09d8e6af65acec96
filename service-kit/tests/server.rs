//! The server loop over real sockets: timeouts, the connection cap, request
//! ids in logs, and graceful shutdown. Time is paused: nothing sleeps.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use service_kit::server::{Handler, RequestContext};
use service_kit::{serve, Body, ServerLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Answers `/slow` after 5 s, anything else at once; logs one line per request.
struct TestHandler;

impl Handler for TestHandler {
    async fn handle(&self, request: Request<Incoming>, ctx: RequestContext) -> Response<Body> {
        tracing::info!(peer = %ctx.peer, "handling");
        if request.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        service_kit::response::json(StatusCode::OK, &serde_json::json!({"ok": true}))
    }
}

async fn start(
    limits: ServerLimits,
) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, Arc::new(TestHandler), limits, async move {
        let _ = stopped.await;
    }));
    (addr, stop, task)
}

async fn get(addr: SocketAddr, path: &str, extra: &str) -> String {
    send(addr, "GET", path, extra).await
}

async fn send(addr: SocketAddr, method: &str, path: &str, extra: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// A client that never finishes its headers is disconnected after the
/// header-read timeout.
#[tokio::test(start_paused = true)]
async fn slow_headers_are_cut_off() {
    let limits = ServerLimits {
        header_read_timeout_ms: 200,
        ..ServerLimits::default()
    };
    let (addr, _stop, _task) = start(limits).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server closed the connection");
}

/// A request slower than the request timeout gets a 503 `request_timeout`
/// problem carrying the request id.
#[tokio::test(start_paused = true)]
async fn slow_requests_time_out() {
    let limits = ServerLimits {
        request_timeout_ms: 100,
        ..ServerLimits::default()
    };
    let (addr, _stop, _task) = start(limits).await;
    let out = get(addr, "/slow", "X-Request-Id: slow-1\r\n").await;
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert!(out.contains("\"code\":\"request_timeout\""), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("x-request-id: slow-1"),
        "{out}"
    );
}

/// A write that runs out of time may have happened: 504 `outcome_unknown`,
/// and no `Retry-After` inviting a blind repeat.
#[tokio::test(start_paused = true)]
async fn slow_writes_time_out_with_outcome_unknown() {
    let limits = ServerLimits {
        request_timeout_ms: 100,
        ..ServerLimits::default()
    };
    let (addr, _stop, _task) = start(limits).await;

    let out = send(addr, "POST", "/slow", "Content-Length: 0\r\n").await;

    assert!(out.starts_with("HTTP/1.1 504"), "{out}");
    assert!(out.contains("\"code\":\"outcome_unknown\""), "{out}");
    assert!(!out.to_ascii_lowercase().contains("retry-after"), "{out}");
}

/// With a cap of one connection, a second client waits until the first leaves.
#[tokio::test(start_paused = true)]
async fn connection_cap_holds_back_extra_clients() {
    let limits = ServerLimits {
        connections_max: 1,
        header_read_timeout_ms: 60_000,
        ..ServerLimits::default()
    };
    let (addr, _stop, _task) = start(limits).await;
    let first = TcpStream::connect(addr).await.unwrap();
    tokio::task::yield_now().await;
    let second = tokio::spawn(get(addr, "/", ""));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !second.is_finished(),
        "the second client is not served while the first holds the slot"
    );
    drop(first);
    let out = second.await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// Shutdown lets an in-flight request finish, then stops accepting.
#[tokio::test(start_paused = true)]
async fn shutdown_drains_in_flight_requests() {
    let (addr, stop, task) = start(ServerLimits::default()).await;
    let in_flight = tokio::spawn(get(addr, "/slow", ""));
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let out = in_flight.await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    task.await.unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}
