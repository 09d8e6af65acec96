//! [`KeyWatcher`]: the background task that reloads an authenticator's key file
//! on SIGHUP and when the file changes, or fetches its JWKS URL again on SIGHUP
//! and every `jwks_refresh_interval_ms` ([`AuthConfig`](super::AuthConfig)).
//!
//! Changes are found by polling the file's modification time, length and inode
//! every [`JWKS_POLL_INTERVAL_MS_DEFAULT`] (configurable; 0 turns polling off),
//! not by inotify or kqueue: a `stat` every few seconds costs nothing, works the
//! same on every platform and file system (including the network and
//! bind-mounted volumes where file events are unreliable), and needs no extra
//! dependency. See `docs/adr/0007-key-reload.md`.

use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::keyring::KeyReload;
use super::keys::FileStamp;
use super::Authenticator;

/// Default pause between two looks at the key file, in milliseconds: an
/// issuer publishes a new key well before signing with it, so a few seconds
/// of delay are harmless, and a `stat` this often costs nothing.
pub const JWKS_POLL_INTERVAL_MS_DEFAULT: u64 = 10_000;

/// Reloads an [`Authenticator`]'s keys in the background: on SIGHUP (Unix), and
/// when a poll finds the key file changed; keys from a JWKS URL are fetched
/// again on SIGHUP and on their own schedule (the authenticator's
/// `jwks_refresh_interval_ms`, not the file poll). Stops when
/// [`stop`](KeyWatcher::stop)ped or dropped.
///
/// A failed reload keeps the current keys (see [`Authenticator::reload`]); the
/// watcher tries again at the next change or SIGHUP, not at every poll.
///
/// ```no_run
/// use service_guard::{Algorithm, AuthConfig, Authenticator, KeySource, KeyWatcher};
/// use service_guard::JWKS_POLL_INTERVAL_MS_DEFAULT;
///
/// # async fn serve(_auth: Authenticator) {}
/// # async fn example() -> Result<(), service_guard::ConfigError> {
/// let cfg = AuthConfig::new(Algorithm::RS256, KeySource::JwksFile("/etc/shop/jwks.json".into()));
/// let auth = Authenticator::new(&cfg)?;
/// let watcher = KeyWatcher::spawn(auth.clone(), JWKS_POLL_INTERVAL_MS_DEFAULT);
/// serve(auth).await;
/// watcher.stop().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct KeyWatcher {
    task: Option<JoinHandle<()>>,
}

impl KeyWatcher {
    /// Starts watching `auth`'s keys on the current tokio runtime, polling the
    /// key file every `poll_interval_ms` milliseconds (0: only on SIGHUP).
    ///
    /// The SIGHUP handler is installed before this returns. Without a key file
    /// (a secret), SIGHUP is only logged, since a secret is never re-read; a
    /// disabled authenticator starts no task at all.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(auth: Authenticator, poll_interval_ms: u64) -> KeyWatcher {
        if auth.is_disabled() {
            return KeyWatcher { task: None };
        }
        let file = auth.key_file().map(|p| p.to_path_buf());
        let poll = match auth.remote() {
            Some(remote) => remote.refresh_interval(),
            None => (poll_interval_ms > 0 && file.is_some())
                .then(|| Duration::from_millis(poll_interval_ms)),
        };
        let hangup = listen_hangup();
        if poll.is_none() && hangup.is_none() {
            return KeyWatcher { task: None };
        }
        tracing::info!(
            file = ?file,
            url = ?auth.remote().map(|r| r.url().to_string()),
            poll_interval_ms = poll.map(|p| p.as_millis() as u64),
            "watching the verification keys"
        );
        let task = tokio::spawn(watch(auth, file, poll, hangup));
        KeyWatcher { task: Some(task) }
    }

    /// Whether a background task is running (false for a disabled authenticator).
    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the task and waits until it has stopped. A reload is one atomic
    /// swap, so stopping never leaves keys half replaced.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            if let Err(e) = task.await {
                if !e.is_cancelled() {
                    tracing::error!(error = %e, "key watcher failed");
                }
            }
        }
    }
}

impl Drop for KeyWatcher {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// What woke the watcher.
enum Cause {
    /// Time to compare the file's stamp with the last one read, or to fetch
    /// the JWKS URL again.
    Poll,
    /// SIGHUP: read the file whatever its stamp.
    Hangup,
}

/// The watch loop. File reads are synchronous: a `stat` per poll and, on a
/// change, one read of at most `MAX_KEY_FILE_BYTES`, too little to hand to a
/// blocking thread.
async fn watch(
    auth: Authenticator,
    file: Option<PathBuf>,
    poll: Option<Duration>,
    mut hangup: Option<Hangup>,
) {
    let mut seen = auth.loaded_stamp();
    let mut ticker = poll.map(|period| {
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker
    });
    loop {
        let cause = tokio::select! {
            () = tick(&mut ticker) => Cause::Poll,
            received = next_hangup(&mut hangup) => {
                if !received {
                    hangup = None;
                    if ticker.is_none() {
                        return;
                    }
                    continue;
                }
                Cause::Hangup
            }
        };
        if auth.remote().is_some() {
            // A failed fetch is logged and counted by refresh; the next tick
            // or SIGHUP tries again.
            let _ = auth.refresh().await;
            continue;
        }
        let now = file.as_deref().and_then(FileStamp::of);
        match cause {
            Cause::Poll if now == seen => continue,
            Cause::Poll => tracing::info!(file = ?file, "key file changed: reloading"),
            Cause::Hangup => {
                tracing::info!(file = ?file, "SIGHUP: reloading the verification keys")
            }
        }
        seen = now;
        if let Ok(KeyReload::NoKeyFile) = auth.reload() {
            tracing::info!("the verification key is a secret given at start: nothing to reload");
        }
    }
}

/// Waits for the next poll; never completes without polling.
async fn tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(unix)]
type Hangup = tokio::signal::unix::Signal;

#[cfg(not(unix))]
type Hangup = std::convert::Infallible;

#[cfg(unix)]
fn listen_hangup() -> Option<Hangup> {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: keys reload only when the file changes");
            None
        }
    }
}

#[cfg(not(unix))]
fn listen_hangup() -> Option<Hangup> {
    None
}

/// Waits for the next SIGHUP: true when one came, false when the stream ended.
/// Never completes without a stream.
async fn next_hangup(hangup: &mut Option<Hangup>) -> bool {
    match hangup {
        #[cfg(unix)]
        Some(hangup) => hangup.recv().await.is_some(),
        #[cfg(not(unix))]
        Some(never) => match *never {},
        None => std::future::pending().await,
    }
}

#[cfg(all(test, unix))]
mod tests {
    //! Here rather than with the integration tests: SIGHUP reaches the whole
    //! process, and this test binary runs no other watcher it could disturb.

    use std::path::PathBuf;

    use super::*;
    use crate::{Algorithm, AuthConfig, KeySource, Role, TokenSigner};

    /// Longest the test waits for the reload, in milliseconds: the signal is
    /// handled in microseconds; this only bounds a broken build.
    const SIGHUP_WAIT_MS: u64 = 10_000;

    /// Pause between two checks while waiting, in milliseconds.
    const CHECK_MS: u64 = 10;

    fn test_key(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/keys")
            .join(name)
    }

    /// A JWKS holding only the `kid` entry of the checked-in test set.
    fn jwks_with(kid: &str) -> String {
        let all: serde_json::Value =
            serde_json::from_slice(&std::fs::read(test_key("jwks.json")).unwrap()).unwrap();
        let entry = all["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap()
            .clone();
        serde_json::json!({ "keys": [entry] }).to_string()
    }

    fn token(kid: &str, private_pem: &str) -> String {
        let pem = std::fs::read(test_key(private_pem)).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        TokenSigner::from_private_pem(Algorithm::RS256, &pem)
            .unwrap()
            .with_key_id(kid)
            .mint("svc", &[Role::Service], Duration::from_secs(600), now)
            .unwrap()
    }

    /// SIGHUP reloads the keys, with polling off (interval 0).
    #[tokio::test]
    async fn sighup_reloads_the_keys() {
        let dir = std::env::temp_dir().join(format!("service-guard-sighup-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let jwks = dir.join("jwks.json");
        std::fs::write(&jwks, jwks_with("rsa-1")).unwrap();
        let auth = Authenticator::new(&AuthConfig::new(
            Algorithm::RS256,
            KeySource::JwksFile(jwks.clone()),
        ))
        .unwrap();
        let token_a = token("rsa-1", "rsa_private.pem");
        let token_b = token("rsa-2", "rsa_other_private.pem");
        // The handler is installed before spawn returns, so the signal below
        // never meets the default action (exit).
        let watcher = KeyWatcher::spawn(auth.clone(), 0);
        std::fs::write(dir.join("next.json"), jwks_with("rsa-2")).unwrap();
        std::fs::rename(dir.join("next.json"), &jwks).unwrap();
        assert!(auth.verify_token(&token_b).is_err(), "polling is off");

        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let waited = tokio::time::timeout(Duration::from_millis(SIGHUP_WAIT_MS), async {
            while auth.verify_token(&token_b).is_err() {
                tokio::time::sleep(Duration::from_millis(CHECK_MS)).await;
            }
        })
        .await;

        assert!(waited.is_ok(), "SIGHUP did not reload the keys");
        assert!(auth.verify_token(&token_a).is_err());
        watcher.stop().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
