//! Keys from a JWKS URL: served over https by a local server with a
//! certificate of a CA made for the test, trusted through the extra CA file.

use std::path::PathBuf;
use std::time::Duration;

use crate::bearer;

use service_guard::tls::TlsClient;
use service_guard::{
    Algorithm, AuthConfig, AuthError, Authenticator, ConfigError, KeySource, KeyWatcher, Role,
    TokenSigner,
};
use test_support::tls::{HttpsBody, TempDir, TestCa};
use test_support::tokens::unix_now;

/// The scheduled refresh of the refresh test, in milliseconds: short, so the
/// test waits for a few of them only.
const REFRESH_INTERVAL_MS: u64 = 50;

/// Longest wait for a condition the background refresh makes true: it takes
/// a few refresh intervals; this bounds a broken build.
const WAIT_MS: u64 = 10_000;

/// Pause between two checks while waiting.
const CHECK_MS: u64 = 10;

/// Tokens with unknown key ids sent at once by the flood test.
const FLOOD: usize = 64;

fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

/// A JWKS holding the entries of the checked-in test set named by `kids`.
fn jwks(kids: &[&str]) -> String {
    let all: serde_json::Value =
        serde_json::from_slice(&std::fs::read(key_path("jwks.json")).unwrap()).unwrap();
    let keys: Vec<_> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| kids.iter().any(|kid| k["kid"] == *kid))
        .cloned()
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

/// A token signed by the private key of `rsa-1` or `rsa-2`, naming `kid`.
fn token(kid: &str, private_pem: &str) -> String {
    let pem = std::fs::read(key_path(private_pem)).unwrap();
    TokenSigner::from_private_pem(Algorithm::RS256, &pem)
        .unwrap()
        .with_key_id(kid)
        .mint(
            "svc",
            &[Role::Service],
            Duration::from_secs(600),
            unix_now(),
        )
        .unwrap()
}

/// A JWKS server with a certificate of a test CA, and a TLS client
/// trusting that CA.
struct Issuer {
    server: HttpsBody,
    tls: TlsClient,
    _dir: TempDir,
}

async fn issuer(body: String) -> Issuer {
    let ca = TestCa::new("jwks test ca");
    let server = HttpsBody::start(&ca.issue(), body).await;
    let dir = TempDir::new("jwks-url");
    let tls = TlsClient::new(Some(&ca.write(&dir, "ca.pem"))).unwrap();
    Issuer {
        server,
        tls,
        _dir: dir,
    }
}

fn config(url: String) -> AuthConfig {
    AuthConfig {
        jwks_refresh_interval_ms: 0,
        ..AuthConfig::new(Algorithm::RS256, KeySource::JwksUrl(url))
    }
}

/// Waits until `done` holds, at most [`WAIT_MS`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_millis(WAIT_MS), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(CHECK_MS)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what} within {WAIT_MS} ms");
}

/// Goal: keys fetched over https verify tokens when the server's CA is the
/// extra CA; the same URL trusted by the system's roots only is refused at
/// start, naming the certificate.
#[tokio::test]
async fn keys_are_fetched_over_https_trusting_the_extra_ca() {
    let issuer = issuer(jwks(&["rsa-1"])).await;
    let url = issuer.server.url("/.well-known/jwks.json");

    let auth = Authenticator::start(&config(url.clone()), &issuer.tls)
        .await
        .unwrap();
    let principal = auth
        .authenticate(&bearer(&token("rsa-1", "rsa_private.pem")))
        .await;
    let untrusted = Authenticator::start(&config(url), &TlsClient::system()).await;

    assert_eq!(principal.unwrap().subject, "svc");
    assert_eq!(auth.jwks_fetches(), 1);
    let Err(ConfigError::JwksFetch(reason)) = untrusted else {
        panic!("a server of an unknown ca must be refused: {untrusted:?}");
    };
    assert!(reason.contains("certificate"), "{reason}");
}

/// Goal: a token naming a key the issuer added after start (a rotation)
/// fetches the set again and verifies at once; a flood of tokens naming
/// made-up key ids right after fetches nothing more (at most one fetch per
/// `JWKS_UNKNOWN_KID_REFETCH_MIN_MS`).
#[tokio::test]
async fn an_unknown_kid_refetches_at_most_once_per_interval() {
    let issuer = issuer(jwks(&["rsa-1"])).await;
    let auth = Authenticator::start(&config(issuer.server.url("/jwks")), &issuer.tls)
        .await
        .unwrap();
    issuer.server.set_body(jwks(&["rsa-1", "rsa-2"]));

    let rotated = auth
        .authenticate(&bearer(&token("rsa-2", "rsa_other_private.pem")))
        .await;
    let fetched_for_rotation = issuer.server.hits();
    let flood = futures_util::future::join_all((0..FLOOD).map(|n| {
        let auth = auth.clone();
        async move {
            let made_up = token(&format!("made-up-{n}"), "rsa_private.pem");
            auth.authenticate(&bearer(&made_up)).await
        }
    }))
    .await;

    assert_eq!(rotated.unwrap().subject, "svc");
    assert_eq!(fetched_for_rotation, 2, "one fetch at start, one for rsa-2");
    assert!(flood
        .iter()
        .all(|r| matches!(r, Err(AuthError::Invalid(reason)) if reason == "unknown key id")));
    assert_eq!(issuer.server.hits(), 2, "the flood fetched nothing");
    assert_eq!(auth.jwks_fetches(), 2);
}

/// Goal: the scheduled refresh picks up a changed set without any token
/// asking for it, and a fetch that fails (a broken set) keeps the last good
/// keys, counted as a failed reload.
#[tokio::test]
async fn the_scheduled_refresh_follows_the_issuer_and_keeps_good_keys() {
    let issuer = issuer(jwks(&["rsa-1"])).await;
    let cfg = AuthConfig {
        jwks_refresh_interval_ms: REFRESH_INTERVAL_MS,
        ..config(issuer.server.url("/jwks"))
    };
    let auth = Authenticator::start(&cfg, &issuer.tls).await.unwrap();
    let watcher = KeyWatcher::spawn(auth.clone(), 0);
    let (old, new) = (
        token("rsa-1", "rsa_private.pem"),
        token("rsa-2", "rsa_other_private.pem"),
    );

    issuer.server.set_body(jwks(&["rsa-2"]));
    // verify_token never fetches: only the schedule can make this true.
    wait_until("the rotated set is in use", || {
        auth.verify_token(&new).is_ok()
    })
    .await;
    let rotated_out = auth.verify_token(&old);
    issuer.server.set_body("{ not a jwks");
    let hits = issuer.server.hits();
    wait_until("two fetches of the broken set", || {
        issuer.server.hits() >= hits + 2 && auth.failed_reloads() >= 2
    })
    .await;
    let kept = auth.verify_token(&new);
    watcher.stop().await;

    assert!(rotated_out.is_err(), "rsa-1 left the set");
    assert_eq!(kept.unwrap().subject, "svc", "the last good keys stay");
}
