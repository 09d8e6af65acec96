//! The baseline of the load run: the smallest hyper 1.x server, answering
//! every request with the same fixed JSON body (the size of an availability
//! answer). No routing, no store, no logging: what the machine and hyper can
//! do, to put inventory-http's figures in proportion.
//!
//! `cargo run --release -p benches --example bare_server -- 127.0.0.1:8091`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// The body: an availability answer of the same shape and length.
const BODY: &str = r#"{"product_id":"6f1c2a8e-2b7d-4a1e-9c3f-0d5e8b7a6c41","quantity":1000,"reserved":0,"available":1000,"version":1,"updated_at":"2026-01-01T00:00:00.000Z"}"#;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8091".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|_req| async {
                let mut resp = http::Response::new(Full::new(Bytes::from_static(BODY.as_bytes())));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                Ok::<_, Infallible>(resp)
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
