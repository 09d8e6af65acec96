//! Fault runs of the whole system on real services.
//!
//! The `fault-run` binary starts the three services as processes on
//! PostgreSQL, Redis and RabbitMQ, drives a mixed load through the gateway,
//! injects faults one after another and checks the result (see
//! `docs/operations.md`). This library holds its parts that stand alone:
//! the proxy below, and [`check`], the invariants of the whole system in SQL.
//!
//! [`FaultProxy`] sits on a TCP path between two services (orders and
//! inventory, say) and can be switched at run time between passing traffic,
//! dropping it (every connection, open or new, is cut at once: the caller
//! sees resets and refusals) and blackholing it (connections are accepted
//! and kept open, but nothing goes through: the caller sees timeouts).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use faults::{FaultProxy, Mode};
//!
//! let upstream = "127.0.0.1:8080".parse().unwrap();
//! let proxy = FaultProxy::start("127.0.0.1:0".parse().unwrap(), upstream).await?;
//! // Point the client at proxy.local_addr() instead of the upstream, then:
//! proxy.set_mode(Mode::Blackhole);
//! proxy.set_mode(Mode::Pass);
//! proxy.stop().await;
//! # Ok(()) }
//! ```

pub mod check;

use std::net::SocketAddr;

use tokio::io::{self, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What the proxy does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass,
    /// Cut every open connection and refuse new ones at once (they are
    /// accepted and closed: the caller sees a reset or an early close).
    Drop,
    /// Accept connections and keep them open, forwarding nothing: the caller
    /// waits until its own timeout.
    Blackhole,
}

/// A TCP proxy whose [`Mode`] can be switched while it runs.
pub struct FaultProxy {
    local: SocketAddr,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on `listen` (port 0 for any) and forwards to `upstream`,
    /// starting in [`Mode::Pass`].
    ///
    /// # Errors
    /// The listener's error.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let local = listener.local_addr()?;
        let (mode, watching) = watch::channel(Mode::Pass);
        let task = tokio::spawn(accept(listener, upstream, watching));
        Ok(Self { local, mode, task })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Switches the mode; open connections follow at once.
    pub fn set_mode(&self, mode: Mode) {
        tracing::info!(?mode, proxy = %self.local, "fault proxy mode");
        self.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Stops listening and cuts every connection.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, mode: watch::Receiver<Mode>) {
    // Connections live in the set, so aborting the accept task cuts them all.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let _ = client.set_nodelay(true);
                connections.spawn(serve(client, upstream, mode.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One client connection, for as long as the mode lets it live.
async fn serve(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let current = *mode.borrow_and_update();
    match current {
        Mode::Drop => {
            let _ = client.shutdown().await;
            return;
        }
        Mode::Blackhole => {
            // Hold the connection, say nothing, until the mode changes;
            // then close (a blackholed request is never forwarded late).
            let _ = mode.changed().await;
            return;
        }
        Mode::Pass => {}
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    loop {
        tokio::select! {
            copied = io::copy_bidirectional(&mut client, &mut server) => {
                let _ = copied;
                return;
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                match *mode.borrow_and_update() {
                    Mode::Pass => continue,
                    // Both cut the connection: a blackhole must not let a
                    // request already in flight through either.
                    Mode::Drop | Mode::Blackhole => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server that echoes each chunk it reads.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0_u8; 64];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 || conn.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> io::Result<Vec<u8>> {
        let mut conn = TcpStream::connect(addr).await?;
        conn.write_all(b"ping").await?;
        let mut buf = [0_u8; 4];
        tokio::time::timeout(Duration::from_millis(500), conn.read_exact(&mut buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer"))??;
        Ok(buf.to_vec())
    }

    /// Pass forwards; Drop cuts at once (an error, not a wait); Blackhole
    /// answers nothing until the caller's timeout; Pass again recovers.
    #[tokio::test]
    async fn modes_pass_drop_blackhole_and_recover() {
        let proxy = FaultProxy::start("127.0.0.1:0".parse().expect("addr"), echo().await)
            .await
            .expect("proxy");
        let addr = proxy.local_addr();
        assert_eq!(round_trip(addr).await.expect("pass"), b"ping");

        proxy.set_mode(Mode::Drop);
        let dropped = round_trip(addr).await.expect_err("drop");
        assert_ne!(dropped.kind(), io::ErrorKind::TimedOut, "{dropped}");

        proxy.set_mode(Mode::Blackhole);
        let silent = round_trip(addr).await.expect_err("blackhole");
        assert_eq!(silent.kind(), io::ErrorKind::TimedOut, "{silent}");

        proxy.set_mode(Mode::Pass);
        assert_eq!(round_trip(addr).await.expect("recovered"), b"ping");
        proxy.stop().await;
    }

    /// A connection open when the mode turns to Drop is cut.
    #[tokio::test]
    async fn open_connections_are_cut_by_drop() {
        let proxy = FaultProxy::start("127.0.0.1:0".parse().expect("addr"), echo().await)
            .await
            .expect("proxy");
        let mut conn = TcpStream::connect(proxy.local_addr())
            .await
            .expect("connect");
        conn.write_all(b"ping").await.expect("write");
        let mut buf = [0_u8; 4];
        conn.read_exact(&mut buf).await.expect("echo");
        proxy.set_mode(Mode::Drop);
        let read = tokio::time::timeout(Duration::from_millis(500), conn.read(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            other => panic!("the open connection was not cut: {other:?}"),
        }
        proxy.stop().await;
    }
}
