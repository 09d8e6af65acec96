//! Ways to break the broker connection on purpose: a TCP proxy that cuts
//! every connection through it, and a vhost of one's own whose connections
//! the broker is told to close.

use std::str::FromStr;
use std::sync::Arc;

use parking_lot::Mutex;
use rand::Rng;
use test_support::services::skip;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// A TCP proxy in front of the broker that can cut every connection through
/// it and refuse new ones, as a broker restart does.
pub(crate) struct Proxy {
    up: watch::Sender<bool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    /// A proxy to the broker of `url`; returns it and the URL through it.
    pub(crate) async fn start(url: &str) -> (Proxy, String) {
        let uri = lapin::uri::AMQPUri::from_str(url).expect("valid AMQP URL");
        let upstream = format!("{}:{}", uri.authority.host, uri.authority.port);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (up, up_rx) = watch::channel(true);
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept_links = Arc::clone(&links);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !*up_rx.borrow() {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut links = accept_links.lock();
                links.retain(|l| !l.is_finished());
                links.push(link.abort_handle());
            }
        })
        .abort_handle();
        let vhost = uri.vhost.replace('/', "%2f");
        let proxied = format!(
            "amqp://{}:{}@{addr}/{vhost}",
            uri.authority.userinfo.username, uri.authority.userinfo.password
        );
        (Proxy { up, links, accept }, proxied)
    }

    /// Cuts every open connection and refuses new ones until [`Proxy::restore`].
    pub(crate) fn cut(&self) {
        self.up.send_replace(false);
        for link in self.links.lock().drain(..) {
            link.abort();
        }
    }

    /// Accepts connections again.
    pub(crate) fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for link in self.links.lock().drain(..) {
            link.abort();
        }
    }
}

/// A RabbitMQ virtual host of its own, made and deleted (with everything in
/// it) through `rabbitmqctl`, so the broker can be told to close every
/// connection of this test and no other.
pub(crate) struct Vhost {
    name: String,
}

fn rabbitmqctl(args: &[&str]) -> Result<(), String> {
    let output = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .map_err(|e| format!("rabbitmqctl cannot run: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "rabbitmqctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

impl Vhost {
    /// A fresh vhost the URL's user may use, and the URL to reach it; `None`
    /// (after printing why) when `rabbitmqctl` is missing or refuses.
    pub(crate) async fn create(url: &str) -> Option<(Vhost, String)> {
        let name = format!("test_{:012x}", rand::rng().random::<u64>() >> 16);
        let uri = lapin::uri::AMQPUri::from_str(url).expect("valid AMQP URL");
        let user = uri.authority.userinfo.username.clone();
        let made = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || {
                rabbitmqctl(&["add_vhost", &name])?;
                rabbitmqctl(&["set_permissions", "-p", &name, &user, ".*", ".*", ".*"])
            })
            .await
            .expect("rabbitmqctl task")
        };
        let vhost = Vhost { name };
        if let Err(reason) = made {
            skip(&reason);
            return None;
        }
        let url = format!(
            "amqp://{}:{}@{}:{}/{}",
            uri.authority.userinfo.username,
            uri.authority.userinfo.password,
            uri.authority.host,
            uri.authority.port,
            vhost.name
        );
        Some((vhost, url))
    }

    /// Has the broker close every connection to this vhost.
    pub(crate) async fn close_all_connections(&self) {
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || {
            rabbitmqctl(&[
                "close_all_connections",
                "--vhost",
                &name,
                "forced by a test",
            ])
        })
        .await
        .expect("rabbitmqctl task")
        .expect("close connections");
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        if let Err(e) = rabbitmqctl(&["delete_vhost", &self.name]) {
            eprintln!("could not delete vhost {}: {e}", self.name);
        }
    }
}
