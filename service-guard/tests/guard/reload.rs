//! Key reloading: a replaced JWKS file takes effect through `Authenticator::reload`
//! or a `KeyWatcher`, and a bad replacement keeps the keys in use.
//!
//! The SIGHUP test is a unit test of `auth::watch`: a signal reaches the whole
//! process, and would reload the watchers of the tests here at any moment.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use service_guard::{
    Algorithm, AuthConfig, AuthError, Authenticator, ConfigError, KeyReload, KeySource, KeyWatcher,
    Role, TokenSigner,
};
use test_support::tokens::unix_now;

/// The poll interval the watcher tests use, in milliseconds.
const POLL_INTERVAL_MS: u64 = 1_000;

/// Polls the watcher test waits at most before giving up.
const POLLS_MAX: u32 = 10;

const HOUR: Duration = Duration::from_secs(3600);

fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

/// The test keys: A is `rsa-1` (`rsa_private.pem`), B is `rsa-2` (`rsa_other_private.pem`).
#[derive(Clone, Copy)]
enum Key {
    A,
    B,
}

impl Key {
    fn kid(self) -> &'static str {
        match self {
            Key::A => "rsa-1",
            Key::B => "rsa-2",
        }
    }

    /// A token signed with this key, naming its `kid`, valid now.
    fn token(self) -> String {
        let file = match self {
            Key::A => "rsa_private.pem",
            Key::B => "rsa_other_private.pem",
        };
        let pem = std::fs::read(key_path(file)).expect("test key is checked in");
        TokenSigner::from_private_pem(Algorithm::RS256, &pem)
            .expect("test key parses")
            .with_key_id(self.kid())
            .mint("svc", &[Role::Service], HOUR, unix_now())
            .expect("token")
    }
}

/// The JWKS text holding only `key`, taken from the checked-in `jwks.json`.
fn jwks_with(key: Key) -> String {
    let all: serde_json::Value =
        serde_json::from_slice(&std::fs::read(key_path("jwks.json")).expect("jwks is checked in"))
            .expect("jwks parses");
    let entry = all["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .find(|k| k["kid"] == key.kid())
        .expect("kid is in jwks.json")
        .clone();
    serde_json::json!({ "keys": [entry] }).to_string()
}

/// A directory of its own under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "service-guard-{test}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Replaces `path` the way an operator should: write a new file, rename it over.
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).expect("write new key file");
    std::fs::rename(&tmp, path).expect("rename over the key file");
}

/// An RS256 authenticator reading the JWKS file at `path`.
fn jwks_auth(path: &Path) -> Authenticator {
    let cfg = AuthConfig::new(Algorithm::RS256, KeySource::JwksFile(path.to_owned()));
    Authenticator::new(&cfg).expect("valid jwks")
}

fn accepts(auth: &Authenticator, key: Key) -> bool {
    auth.verify_token(&key.token()).is_ok()
}

/// After the JWKS file is replaced by one holding only key B, `reload` makes B's
/// tokens pass and A's fail: the keys are swapped at run time, not read once.
#[test]
fn reload_swaps_in_the_keys_of_the_replaced_file() {
    let dir = TempDir::new("swap");
    let jwks = dir.path("jwks.json");
    std::fs::write(&jwks, jwks_with(Key::A)).unwrap();
    let auth = jwks_auth(&jwks);
    assert!(accepts(&auth, Key::A));
    assert!(!accepts(&auth, Key::B));

    replace(&jwks, &jwks_with(Key::B));
    let outcome = auth.reload().expect("the new file is valid");

    assert_eq!(outcome, KeyReload::Swapped { keys: 1 });
    assert!(
        accepts(&auth, Key::B),
        "a token signed by the new key passes"
    );
    assert_eq!(
        auth.verify_token(&Key::A.token()),
        Err(AuthError::Invalid("unknown key id".into())),
        "a token signed by the removed key is refused"
    );
    assert_eq!(auth.failed_reloads(), 0);
}

/// A garbled, empty-handed or missing replacement is refused: the keys in use
/// keep working and every failed reload is counted.
#[test]
fn a_bad_replacement_keeps_the_keys_in_use_and_is_counted() {
    let dir = TempDir::new("bad");
    let jwks = dir.path("jwks.json");
    std::fs::write(&jwks, jwks_with(Key::A)).unwrap();
    let auth = jwks_auth(&jwks);
    replace(&jwks, &jwks_with(Key::B));
    auth.reload().expect("the new file is valid");

    replace(&jwks, "{\"keys\": [{\"kty\": \"RSA\", \"kid\": \"rsa-");
    assert!(matches!(auth.reload(), Err(ConfigError::InvalidJwks(_))));
    assert!(accepts(&auth, Key::B), "garbled file: B still verifies");
    assert_eq!(auth.failed_reloads(), 1);

    let only_ec = r#"{"keys":[{"kty":"EC","kid":"ec-1","crv":"P-256","x":"r2SGwtLNNZWNcVgrarzOts9Wiqo7m6c4QGNEiCOSppw","y":"xNhMFSD6g_stHJkgxgVZRkhEYRH7jkSCS4IknSESGT4"}]}"#;
    replace(&jwks, only_ec);
    assert!(matches!(auth.reload(), Err(ConfigError::InvalidJwks(_))));
    assert!(
        accepts(&auth, Key::B),
        "no RS256 key in the file: B still verifies"
    );
    assert_eq!(auth.failed_reloads(), 2);

    std::fs::remove_file(&jwks).unwrap();
    assert!(matches!(auth.reload(), Err(ConfigError::Io { .. })));
    assert!(accepts(&auth, Key::B), "file gone: B still verifies");
    assert_eq!(auth.failed_reloads(), 3);
    assert!(!accepts(&auth, Key::A));
}

/// A PEM public key file is re-read too; a secret and a disabled authenticator
/// have nothing to re-read.
#[test]
fn reload_rereads_a_pem_file_but_not_a_secret() {
    let dir = TempDir::new("pem");
    let pem = dir.path("public.pem");
    std::fs::copy(key_path("rsa_public.pem"), &pem).unwrap();
    let auth = Authenticator::new(&AuthConfig::new(
        Algorithm::RS256,
        KeySource::PublicKeyPem(pem.clone()),
    ))
    .unwrap();
    assert_eq!(auth.key_file(), Some(pem.as_path()));
    assert_eq!(auth.reload().unwrap(), KeyReload::Swapped { keys: 1 });
    replace(
        &pem,
        "-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n",
    );
    assert!(matches!(auth.reload(), Err(ConfigError::InvalidKey(_))));
    assert!(
        accepts(&auth, Key::A),
        "bad pem: the previous key still verifies"
    );
    assert_eq!(auth.failed_reloads(), 1);

    let secret = Authenticator::new(&AuthConfig::hs256(
        "test-secret-of-at-least-thirty-two-bytes",
    ))
    .unwrap();
    assert_eq!(secret.key_file(), None);
    assert_eq!(secret.reload().unwrap(), KeyReload::NoKeyFile);
    assert_eq!(
        Authenticator::disabled().reload().unwrap(),
        KeyReload::NoKeyFile
    );
}

/// The watcher notices a replaced file at its next poll and swaps the keys,
/// with nobody calling `reload`; a garbled file later is counted once and
/// leaves the keys alone. Time is paused, so the polls cost no waiting.
#[tokio::test(start_paused = true)]
async fn watcher_reloads_a_changed_file_without_a_manual_reload() {
    let dir = TempDir::new("watch");
    let jwks = dir.path("jwks.json");
    std::fs::write(&jwks, jwks_with(Key::A)).unwrap();
    let auth = jwks_auth(&jwks);
    let watcher = KeyWatcher::spawn(auth.clone(), POLL_INTERVAL_MS);
    assert!(watcher.is_running());

    replace(&jwks, &jwks_with(Key::B));
    let mut polls = 0;
    while !accepts(&auth, Key::B) && polls < POLLS_MAX {
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
        polls += 1;
    }

    assert!(accepts(&auth, Key::B), "not reloaded after {polls} polls");
    assert!(!accepts(&auth, Key::A));
    replace(&jwks, "garbled");
    let mut polls = 0;
    while auth.failed_reloads() == 0 && polls < POLLS_MAX {
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
        polls += 1;
    }
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
    assert_eq!(auth.failed_reloads(), 1, "one change, one failed reload");
    assert!(accepts(&auth, Key::B));
    watcher.stop().await;
}

/// A disabled authenticator starts no watcher task.
#[tokio::test]
async fn disabled_authenticator_starts_no_watcher() {
    let watcher = KeyWatcher::spawn(Authenticator::disabled(), POLL_INTERVAL_MS);
    assert!(!watcher.is_running());
    watcher.stop().await;
}
