//! HTTP latency of inventory-http over loopback, memory store: one client,
//! one request at a time (`GET` availability and `POST` reserve). The load
//! run with many connections is `scripts/load-run.sh` (docs/benchmarks.md).

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_main, Criterion};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use inventory_http::{serve_app, AnyStore, App, Config, SystemClock};
use inventory_memory::MemoryStore;

/// Units of the benched product: enough that reserving one per iteration never
/// runs out.
const BENCH_STOCK: u64 = 1_000_000_000;

fn http(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut config = Config::embedded();
    config.rate_limit.rate_limit_per_minute = 0;
    let (addr, _stop) = rt.block_on(async {
        let store = AnyStore::Memory(Box::new(MemoryStore::new()));
        let app = App::new(Arc::new(store), Arc::new(SystemClock), &config)
            .await
            .expect("app");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_app(
            listener,
            Arc::new(app),
            config.server_limits(),
            async move {
                let _ = stopped.await;
            },
        ));
        (addr, stop)
    });
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let product = uuid::Uuid::new_v4();
    let send = |method: &str, path: String, body: Option<String>| {
        let client = client.clone();
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("request");
        async move {
            let resp = client.request(req).await.expect("response");
            let status = resp.status().as_u16();
            let _ = resp.into_body().collect().await.expect("body");
            status
        }
    };
    let create = format!("{{\"product_id\":\"{product}\",\"quantity\":{BENCH_STOCK}}}");
    let status = rt.block_on(send("POST", "/api/inventory/items".into(), Some(create)));
    assert_eq!(status, 201);

    let mut group = c.benchmark_group("http_loopback");
    group.bench_function("get_availability", |b| {
        b.iter(|| {
            let status = rt.block_on(send("GET", format!("/api/inventory/{product}"), None));
            assert_eq!(status, 200);
        });
    });
    group.bench_function("post_reserve", |b| {
        b.iter(|| {
            let body = format!(
                "{{\"product_id\":\"{product}\",\"quantity\":1,\"order_id\":\"{}\"}}",
                uuid::Uuid::new_v4()
            );
            let status = rt.block_on(send("POST", "/api/inventory/reserve".into(), Some(body)));
            assert_eq!(status, 201);
        });
    });
    group.finish();
}

mod group {
    //! `criterion_group!` makes an undocumented public function.
    #![allow(missing_docs)]
    criterion::criterion_group!(http_group, super::http);
}

criterion_main!(group::http_group);
