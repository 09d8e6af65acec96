//! The generic part of a test server: a listener on `127.0.0.1:0` (or on an
//! address to reuse after a restart) and a [`Running`] handle that stops the
//! server spawned on it. Which app the server runs stays in the suite.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// `127.0.0.1:0`: loopback only, and a port the OS picks, so that tests run
/// in parallel without clashing.
pub const EPHEMERAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// A listener on `addr` and the address it got.
///
/// # Panics
/// When `addr` cannot be bound.
pub async fn bind(addr: SocketAddr) -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind(addr).await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

/// A listener on [`EPHEMERAL`] and the address it got.
///
/// # Panics
/// When no port is free.
pub async fn bind_ephemeral() -> (TcpListener, SocketAddr) {
    bind(EPHEMERAL).await
}

/// An address on which nothing listens: connections to it are refused. The
/// port stays bound (a socket that never listens, kept open until the test
/// process ends), so no other test's ephemeral bind can take it meanwhile.
///
/// # Panics
/// When no port is free.
pub fn dead_addr() -> SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(EPHEMERAL).expect("bind");
    let addr = socket.local_addr().expect("local addr");
    // Kept for the process's life on purpose: closing it would free the port.
    std::mem::forget(socket);
    addr
}

/// Resolves when the server should stop: [`Running`] was told to stop or
/// was dropped. Pass it as the shutdown future of a server's `run`/`serve`.
#[derive(Debug)]
pub struct Shutdown(oneshot::Receiver<()>);

impl Future for Shutdown {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A sent signal and a dropped sender both mean: stop.
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// A trigger and the [`Shutdown`] it resolves (also when the trigger is
/// dropped).
pub fn stop_signal() -> (oneshot::Sender<()>, Shutdown) {
    let (stop, stopped) = oneshot::channel();
    (stop, Shutdown(stopped))
}

/// A server spawned on a task: where it listens and how to stop it. Dropping
/// it tells the server to stop without waiting for it.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Running {
    /// Spawns `serve(shutdown)` for a server listening on `addr`; the
    /// server should return once `shutdown` resolves.
    pub fn spawn<F>(addr: SocketAddr, serve: impl FnOnce(Shutdown) -> F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = stop_signal();
        let task = tokio::spawn(serve(stopped));
        Self {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Tells the server to stop and waits until its task ends (its port
    /// then refuses connections). A second call does nothing.
    ///
    /// # Panics
    /// When the server's task panicked.
    pub async fn shutdown(&mut self) {
        self.signal_stop();
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }

    fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.signal_stop();
    }
}
