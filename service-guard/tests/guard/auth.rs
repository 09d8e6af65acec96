//! The auth suite: every way a token is accepted or rejected, with status and code.

use std::path::PathBuf;
use std::time::Duration;

use crate::bearer;

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue, StatusCode};
use service_guard::{
    authorize, Algorithm, AuthConfig, AuthError, Authenticator, ConfigError, KeySource, Principal,
    Role, TokenSigner, MAX_TOKEN_BYTES,
};
use test_support::tokens::unix_now;

const SECRET: &str = "test-secret-of-at-least-thirty-two-bytes";
const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "inventory-api";
/// A fixed "now" so expiry tests do not depend on the wall clock.
const NOW: u64 = 1_800_000_000;
const HOUR: Duration = Duration::from_secs(3600);

fn key_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn key_bytes(name: &str) -> Vec<u8> {
    std::fs::read(key_path(name)).expect("test key is checked in")
}

fn checked(cfg: AuthConfig) -> AuthConfig {
    cfg.with_issuer(ISSUER).with_audience(AUDIENCE)
}

fn hs_auth() -> Authenticator {
    Authenticator::new(&checked(AuthConfig::hs256(SECRET))).expect("valid config")
}

fn hs_signer() -> TokenSigner {
    TokenSigner::hs256(SECRET)
        .expect("long secret")
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
}

fn rs_auth() -> Authenticator {
    let cfg = AuthConfig::new(
        Algorithm::RS256,
        KeySource::PublicKeyPem(key_path("rsa_public.pem")),
    );
    Authenticator::new(&checked(cfg)).expect("valid config")
}

fn pem_signer(alg: Algorithm, file: &str) -> TokenSigner {
    TokenSigner::from_private_pem(alg, &key_bytes(file))
        .expect("test key parses")
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
}

fn b64(json: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
}

fn valid_claims() -> serde_json::Value {
    serde_json::json!({
        "sub": "svc-orders", "roles": ["service"], "iss": ISSUER, "aud": AUDIENCE,
        "exp": NOW + 600, "nbf": NOW - 10, "iat": NOW - 10,
    })
}

/// Asserts the error, and that it maps to `status` and `code` (and a challenge on 401).
fn assert_rejected(result: Result<Principal, AuthError>, expected: AuthError, code: &str) {
    let err = result.expect_err("token must be rejected");
    assert_eq!(err, expected);
    assert_eq!(err.code(), code);
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
    let challenge = err
        .www_authenticate()
        .expect("401 carries WWW-Authenticate");
    assert!(challenge.starts_with("Bearer realm="), "{challenge}");
    assert!(HeaderValue::from_str(&challenge).is_ok());
}

/// A valid HS256 token yields its subject and roles.
#[test]
fn valid_hs256_token_is_accepted() {
    let token = hs_signer()
        .mint("user-1", &[Role::Customer, Role::Admin], HOUR, NOW)
        .unwrap();
    let principal = hs_auth().verify_token_at(&token, NOW + 1).unwrap();
    assert_eq!(principal.subject, "user-1");
    assert_eq!(principal.roles, vec![Role::Customer, Role::Admin]);
}

/// The header path works end to end at the real current time.
#[tokio::test]
async fn authenticate_reads_the_bearer_header() {
    let token = hs_signer()
        .mint("svc", &[Role::Service], HOUR, unix_now())
        .unwrap();
    let principal = hs_auth().authenticate(&bearer(&token)).await.unwrap();
    assert_eq!(principal.subject, "svc");
    assert!(principal.has_any(&[Role::Service, Role::Admin]));
    assert_eq!(hs_auth().verify_token(&token).unwrap(), principal);
}

/// RS256 with a PEM public key.
#[test]
fn valid_rs256_token_is_accepted() {
    let token = pem_signer(Algorithm::RS256, "rsa_private.pem")
        .mint("svc-orders", &[Role::Service], HOUR, NOW)
        .unwrap();
    let principal = rs_auth().verify_token_at(&token, NOW).unwrap();
    assert_eq!(principal.subject, "svc-orders");
    assert_eq!(principal.roles, vec![Role::Service]);
}

/// ES256 with a PEM public key.
#[test]
fn valid_es256_token_is_accepted() {
    let cfg = AuthConfig::new(
        Algorithm::ES256,
        KeySource::PublicKeyPem(key_path("ec_public.pem")),
    );
    let auth = Authenticator::new(&checked(cfg)).unwrap();
    let token = pem_signer(Algorithm::ES256, "ec_private.pem")
        .mint("admin-1", &[Role::Admin], HOUR, NOW)
        .unwrap();
    assert_eq!(
        auth.verify_token_at(&token, NOW).unwrap().roles,
        vec![Role::Admin]
    );
}

/// With a JWKS file, the token's `kid` selects the key; an unknown kid is rejected.
#[test]
fn jwks_selects_the_key_by_kid() {
    let cfg = AuthConfig::new(Algorithm::RS256, KeySource::JwksFile(key_path("jwks.json")));
    let auth = Authenticator::new(&checked(cfg)).unwrap();
    for (kid, file) in [
        ("rsa-1", "rsa_private.pem"),
        ("rsa-2", "rsa_other_private.pem"),
    ] {
        let token = pem_signer(Algorithm::RS256, file)
            .with_key_id(kid)
            .mint("svc", &[Role::Service], HOUR, NOW)
            .unwrap();
        assert_eq!(
            auth.verify_token_at(&token, NOW).unwrap().subject,
            "svc",
            "{kid}"
        );
    }
    let swapped = pem_signer(Algorithm::RS256, "rsa_private.pem")
        .with_key_id("rsa-2")
        .mint("svc", &[Role::Service], HOUR, NOW)
        .unwrap();
    assert_rejected(
        auth.verify_token_at(&swapped, NOW),
        AuthError::BadSignature,
        "invalid_signature",
    );
    let unknown = pem_signer(Algorithm::RS256, "rsa_private.pem")
        .with_key_id("rsa-9")
        .mint("svc", &[Role::Service], HOUR, NOW)
        .unwrap();
    assert_rejected(
        auth.verify_token_at(&unknown, NOW),
        AuthError::Invalid("unknown key id".into()),
        "invalid_token",
    );
    let no_kid = pem_signer(Algorithm::RS256, "rsa_private.pem")
        .mint("svc", &[Role::Service], HOUR, NOW)
        .unwrap();
    assert_rejected(
        auth.verify_token_at(&no_kid, NOW),
        AuthError::Invalid("token has no key id".into()),
        "invalid_token",
    );
}

/// The same JWKS file serves ES256 deployments: only the P-256 key is kept.
#[test]
fn jwks_keeps_only_keys_for_the_pinned_algorithm() {
    let cfg = AuthConfig::new(Algorithm::ES256, KeySource::JwksFile(key_path("jwks.json")));
    let auth = Authenticator::new(&checked(cfg)).unwrap();
    let token = pem_signer(Algorithm::ES256, "ec_private.pem")
        .with_key_id("ec-1")
        .mint("u", &[Role::Customer], HOUR, NOW)
        .unwrap();
    assert_eq!(auth.verify_token_at(&token, NOW).unwrap().subject, "u");
    let rsa = pem_signer(Algorithm::RS256, "rsa_private.pem")
        .with_key_id("rsa-1")
        .mint("u", &[Role::Customer], HOUR, NOW)
        .unwrap();
    assert_rejected(
        auth.verify_token_at(&rsa, NOW),
        AuthError::WrongAlgorithm,
        "invalid_algorithm",
    );
}

/// No Authorization header, or another scheme: 401 `missing_token` with a bare challenge.
#[tokio::test]
async fn missing_token_is_401() {
    let auth = hs_auth();
    assert_rejected(
        auth.authenticate(&HeaderMap::new()).await,
        AuthError::Missing,
        "missing_token",
    );
    let mut basic = HeaderMap::new();
    basic.insert(
        AUTHORIZATION,
        HeaderValue::from_static("Basic dXNlcjpwYXNz"),
    );
    assert_rejected(
        auth.authenticate(&basic).await,
        AuthError::Missing,
        "missing_token",
    );
    assert_eq!(
        AuthError::Missing.www_authenticate().as_deref(),
        Some("Bearer realm=\"api\"")
    );
}

/// Tokens that are not JWTs: 401 `malformed_token`.
#[tokio::test]
async fn malformed_tokens_are_401() {
    let auth = hs_auth();
    let oversized = "a".repeat(MAX_TOKEN_BYTES + 1);
    for token in [
        "not-a-jwt",
        "a.b",
        "a.b.c.d",
        "!!!.e30.sig",
        &format!("{}.e30.sig", b64(&serde_json::json!("not an object"))),
        &oversized,
    ] {
        assert_rejected(
            auth.verify_token_at(token, NOW),
            AuthError::Malformed,
            "malformed_token",
        );
    }
    let mut empty = HeaderMap::new();
    empty.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
    assert_rejected(
        auth.authenticate(&empty).await,
        AuthError::Malformed,
        "malformed_token",
    );
    // A header that names HS256 but whose payload is not JSON.
    let header = b64(&serde_json::json!({"alg": "HS256", "typ": "JWT"}));
    let token = format!("{header}.bm90IGpzb24.c2ln");
    let err = auth.verify_token_at(&token, NOW).unwrap_err();
    assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
}

/// A token signed with another key, or altered after signing: 401 `invalid_signature`.
#[test]
fn bad_signature_is_401() {
    let other = TokenSigner::hs256("another-secret-of-at-least-thirty-two-bytes")
        .unwrap()
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
        .mint("user-1", &[Role::Admin], HOUR, NOW)
        .unwrap();
    assert_rejected(
        hs_auth().verify_token_at(&other, NOW),
        AuthError::BadSignature,
        "invalid_signature",
    );

    // Same header and signature, payload swapped for one granting admin.
    let genuine = hs_signer()
        .mint("user-1", &[Role::Customer], HOUR, NOW)
        .unwrap();
    let parts: Vec<&str> = genuine.split('.').collect();
    let mut claims = valid_claims();
    claims["sub"] = "user-1".into();
    claims["roles"] = serde_json::json!(["admin"]);
    let forged = format!("{}.{}.{}", parts[0], b64(&claims), parts[2]);
    assert_rejected(
        hs_auth().verify_token_at(&forged, NOW),
        AuthError::BadSignature,
        "invalid_signature",
    );

    let rs_other = pem_signer(Algorithm::RS256, "rsa_other_private.pem")
        .mint("svc", &[Role::Service], HOUR, NOW)
        .unwrap();
    assert_rejected(
        rs_auth().verify_token_at(&rs_other, NOW),
        AuthError::BadSignature,
        "invalid_signature",
    );
}

/// Past `exp` plus the leeway: 401 `token_expired`; within the leeway: accepted.
#[test]
fn expired_token_is_401() {
    let token = hs_signer()
        .mint("u", &[Role::Customer], Duration::from_secs(60), NOW)
        .unwrap();
    let auth = hs_auth();
    assert!(
        auth.verify_token_at(&token, NOW + 60 + 29).is_ok(),
        "inside the 30 s leeway"
    );
    assert_rejected(
        auth.verify_token_at(&token, NOW + 60 + 30),
        AuthError::Expired,
        "token_expired",
    );
    assert_rejected(
        auth.verify_token_at(&token, NOW + 7200),
        AuthError::Expired,
        "token_expired",
    );
}

/// Before `nbf` minus the leeway: 401 `token_not_yet_valid`; within the leeway: accepted.
#[test]
fn not_yet_valid_token_is_401() {
    let token = hs_signer().mint("u", &[Role::Customer], HOUR, NOW).unwrap();
    let auth = hs_auth();
    assert!(
        auth.verify_token_at(&token, NOW - 30).is_ok(),
        "inside the leeway"
    );
    assert_rejected(
        auth.verify_token_at(&token, NOW - 31),
        AuthError::NotYetValid,
        "token_not_yet_valid",
    );
}

/// A token without `exp` never passes.
#[test]
fn token_without_exp_is_401() {
    let token = hs_signer().mint("u", &[Role::Customer], HOUR, NOW).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = valid_claims();
    claims.as_object_mut().unwrap().remove("exp");
    let unsigned = format!("{}.{}", parts[0], b64(&claims));
    let signed = resign_hs256(&unsigned);
    assert_rejected(
        hs_auth().verify_token_at(&signed, NOW),
        AuthError::Invalid("missing exp claim".into()),
        "invalid_token",
    );
}

/// Signs `header.payload` with the test secret, bypassing `TokenSigner`'s claims.
fn resign_hs256(signing_input: &str) -> String {
    let (header_b64, payload_b64) = signing_input.split_once('.').unwrap();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload_b64)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    let header_json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header_b64)
        .unwrap();
    let header: jsonwebtoken::Header = serde_json::from_slice(&header_json).unwrap();
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Another issuer, or none: 401 `invalid_issuer`.
#[test]
fn wrong_issuer_is_401() {
    let auth = hs_auth();
    let wrong = TokenSigner::hs256(SECRET)
        .unwrap()
        .with_issuer("https://evil.test/")
        .with_audience(AUDIENCE)
        .mint("u", &[Role::Admin], HOUR, NOW)
        .unwrap();
    assert_rejected(
        auth.verify_token_at(&wrong, NOW),
        AuthError::WrongIssuer,
        "invalid_issuer",
    );
    let none = TokenSigner::hs256(SECRET)
        .unwrap()
        .with_audience(AUDIENCE)
        .mint("u", &[Role::Admin], HOUR, NOW)
        .unwrap();
    assert_rejected(
        auth.verify_token_at(&none, NOW),
        AuthError::WrongIssuer,
        "invalid_issuer",
    );
}

/// Another audience, or none: 401 `invalid_audience`.
#[test]
fn wrong_audience_is_401() {
    let auth = hs_auth();
    let wrong = TokenSigner::hs256(SECRET)
        .unwrap()
        .with_issuer(ISSUER)
        .with_audience("orders-api")
        .mint("u", &[Role::Admin], HOUR, NOW)
        .unwrap();
    assert_rejected(
        auth.verify_token_at(&wrong, NOW),
        AuthError::WrongAudience,
        "invalid_audience",
    );
    let none = TokenSigner::hs256(SECRET)
        .unwrap()
        .with_issuer(ISSUER)
        .mint("u", &[Role::Admin], HOUR, NOW)
        .unwrap();
    assert_rejected(
        auth.verify_token_at(&none, NOW),
        AuthError::WrongAudience,
        "invalid_audience",
    );
}

/// `alg: none` (any spelling, with or without a signature): 401 `invalid_algorithm`.
#[test]
fn alg_none_is_rejected() {
    for alg in ["none", "None", "NONE"] {
        let header = b64(&serde_json::json!({"alg": alg, "typ": "JWT"}));
        let payload = b64(&valid_claims());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.c2ln"),
        ] {
            assert_rejected(
                hs_auth().verify_token_at(&token, NOW),
                AuthError::WrongAlgorithm,
                "invalid_algorithm",
            );
            assert_rejected(
                rs_auth().verify_token_at(&token, NOW),
                AuthError::WrongAlgorithm,
                "invalid_algorithm",
            );
        }
    }
}

/// Key confusion: an HS256 token whose HMAC key is the RSA public key is rejected
/// when RS256 is configured, as is any other algorithm than the pinned one.
#[test]
fn hs256_token_is_rejected_when_rs256_is_configured() {
    let public_pem = key_bytes("rsa_public.pem");
    let confused = TokenSigner::hs256(&public_pem)
        .unwrap()
        .with_issuer(ISSUER)
        .with_audience(AUDIENCE)
        .mint("attacker", &[Role::Admin], HOUR, NOW)
        .unwrap();
    assert_rejected(
        rs_auth().verify_token_at(&confused, NOW),
        AuthError::WrongAlgorithm,
        "invalid_algorithm",
    );

    let es = pem_signer(Algorithm::ES256, "ec_private.pem")
        .mint("u", &[Role::Admin], HOUR, NOW)
        .unwrap();
    assert_rejected(
        rs_auth().verify_token_at(&es, NOW),
        AuthError::WrongAlgorithm,
        "invalid_algorithm",
    );
    let rs = pem_signer(Algorithm::RS256, "rsa_private.pem")
        .mint("u", &[Role::Admin], HOUR, NOW)
        .unwrap();
    assert_rejected(
        hs_auth().verify_token_at(&rs, NOW),
        AuthError::WrongAlgorithm,
        "invalid_algorithm",
    );
}

/// A valid token without the needed role: 403 `forbidden`, no challenge.
#[test]
fn insufficient_role_is_403() {
    let token = hs_signer()
        .mint("shopper", &[Role::Customer], HOUR, NOW)
        .unwrap();
    let principal = hs_auth().verify_token_at(&token, NOW).unwrap();
    let err = authorize(&principal, &[Role::Admin]).unwrap_err();
    assert_eq!(err, AuthError::Forbidden);
    assert_eq!(err.status(), StatusCode::FORBIDDEN);
    assert_eq!(err.code(), "forbidden");
    assert_eq!(err.www_authenticate(), None);
    assert!(authorize(&principal, &[Role::Service, Role::Admin]).is_err());
    assert!(authorize(&principal, &[Role::Customer]).is_ok());
}

/// Unknown role names are ignored, so they grant nothing.
#[test]
fn unknown_roles_grant_nothing() {
    let mut claims = valid_claims();
    claims["roles"] = serde_json::json!(["superuser", "root"]);
    let header = b64(&serde_json::json!({"alg": "HS256", "typ": "JWT"}));
    let token = resign_hs256(&format!("{header}.{}", b64(&claims)));
    let principal = hs_auth().verify_token_at(&token, NOW).unwrap();
    assert!(principal.roles.is_empty());
    assert_eq!(
        authorize(&principal, &[Role::Admin]),
        Err(AuthError::Forbidden)
    );
}

/// Configurations that would weaken verification are refused at start.
#[test]
fn unsafe_configurations_are_refused() {
    assert!(matches!(
        Authenticator::new(&AuthConfig::hs256("short")),
        Err(ConfigError::WeakSecret)
    ));
    assert!(matches!(
        Authenticator::new(&AuthConfig::new(
            Algorithm::RS256,
            KeySource::Secret(SECRET.into())
        )),
        Err(ConfigError::KeyMismatch { .. })
    ));
    assert!(matches!(
        Authenticator::new(&AuthConfig::new(
            Algorithm::HS256,
            KeySource::PublicKeyPem(key_path("rsa_public.pem"))
        )),
        Err(ConfigError::KeyMismatch { .. })
    ));
    assert!(matches!(
        Authenticator::new(&AuthConfig::new(
            Algorithm::ES256,
            KeySource::PublicKeyPem(key_path("missing.pem"))
        )),
        Err(ConfigError::Io { .. })
    ));
    assert!(matches!(
        Authenticator::new(&AuthConfig::new(
            Algorithm::RS256,
            KeySource::JwksFile(key_path("rsa_public.pem"))
        )),
        Err(ConfigError::InvalidJwks(_))
    ));
    let mut lax = AuthConfig::hs256(SECRET);
    lax.leeway_secs = 3600;
    assert!(matches!(
        Authenticator::new(&lax),
        Err(ConfigError::LeewayTooLarge)
    ));
    assert!(TokenSigner::hs256("short").is_err());
}

/// A disabled authenticator ignores headers and admits the open principal.
#[tokio::test]
async fn disabled_authenticator_is_open() {
    let auth = Authenticator::disabled();
    assert!(auth.is_disabled());
    let principal = auth.authenticate(&bearer("garbage")).await.unwrap();
    assert_eq!(principal, Principal::open());
    assert!(authorize(&principal, &[Role::Admin]).is_ok());
    assert!(Authenticator::open_allowed(
        &"127.0.0.1:8080".parse().unwrap()
    ));
    assert!(!Authenticator::open_allowed(
        &"0.0.0.0:8080".parse().unwrap()
    ));
}
