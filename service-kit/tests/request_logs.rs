//! Request ids in logs. A binary of its own: tracing caches per call site
//! whether anyone listens, process-wide, so tests on other threads without a
//! subscriber would turn these call sites off.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use service_kit::server::{Handler, RequestContext};
use service_kit::{serve, Body, ServerLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Logs one line per request.
struct LoggingHandler;

impl Handler for LoggingHandler {
    async fn handle(&self, _request: Request<Incoming>, ctx: RequestContext) -> Response<Body> {
        tracing::info!(peer = %ctx.peer, "handling");
        service_kit::response::json(StatusCode::OK, &serde_json::json!({"ok": true}))
    }
}

async fn start() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        Arc::new(LoggingHandler),
        ServerLimits::default(),
        std::future::pending::<()>(),
    ));
    addr
}

async fn get(addr: SocketAddr, extra: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every log line written while serving a request carries its request id.
#[tokio::test]
async fn request_id_is_on_every_log_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let addr = start().await;
    let out = get(addr, "X-Request-Id: trace-77\r\n").await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("handling") || l.contains("request finished"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    for line in lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["span"]["request_id"], "trace-77", "{line}");
    }
}
