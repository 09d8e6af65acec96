//! The auth suite through the gateway: every rejected token is a 401 (or 403)
//! problem with the right code, and nothing reaches the upstream.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use http::Method;
use serde_json::json;
use service_guard::{Algorithm, Role, TokenSigner};
use test_support::tokens::unix_now;

use crate::helpers::*;

const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "shop-api";

fn key(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn rs_signer() -> TokenSigner {
    TokenSigner::from_private_pem_file(Algorithm::RS256, &key("rsa_private.pem")).expect("key")
}

fn mint(signer: TokenSigner, roles: &[Role], now: u64, ttl_secs: u64) -> String {
    signer
        .mint("alice", roles, Duration::from_secs(ttl_secs), now)
        .expect("token")
}

fn valid(roles: &[Role]) -> String {
    mint(
        rs_signer().with_issuer(ISSUER).with_audience(AUDIENCE),
        roles,
        unix_now(),
        600,
    )
}

fn b64(value: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Every way a token can be wrong, through an RS256 gateway with issuer and
/// audience pinned: each answer is the right status and code, 401s carry a
/// Bearer challenge, and the upstream sees only the one valid request.
#[tokio::test]
async fn rejected_tokens_never_reach_the_upstream() {
    let orders = spawn_recorder().await;
    let mut cfg = config(orders.addr, dead_addr().await);
    cfg.auth.jwt_secret = None;
    cfg.auth.jwt_algorithm = Some(Algorithm::RS256);
    cfg.auth.jwt_public_key_file = Some(key("rsa_public.pem"));
    cfg.auth.jwt_issuer = Some(ISSUER.into());
    cfg.auth.jwt_audience = Some(AUDIENCE.into());
    let gw = spawn_gateway(cfg).await;
    let now = unix_now();
    let good = valid(&[Role::Customer]);
    let parts: Vec<&str> = good.split('.').collect();
    let other_payload = b64(
        &json!({"sub": "mallory", "roles": ["admin"], "exp": now + 600,
        "iss": ISSUER, "aud": AUDIENCE}),
    );
    let public_pem = std::fs::read(key("rsa_public.pem")).expect("pem");
    let cases: Vec<(&str, Option<String>, u16, &str)> = vec![
        ("no token", None, 401, "missing_token"),
        (
            "malformed",
            Some("not-a-jwt".into()),
            401,
            "malformed_token",
        ),
        (
            "bad signature",
            Some(format!("{}.{other_payload}.{}", parts[0], parts[2])),
            401,
            "invalid_signature",
        ),
        (
            "expired",
            Some(mint(
                rs_signer().with_issuer(ISSUER).with_audience(AUDIENCE),
                &[Role::Customer],
                now - 7_200,
                60,
            )),
            401,
            "token_expired",
        ),
        (
            "not yet valid",
            Some(mint(
                rs_signer().with_issuer(ISSUER).with_audience(AUDIENCE),
                &[Role::Customer],
                now + 3_600,
                600,
            )),
            401,
            "token_not_yet_valid",
        ),
        (
            "wrong issuer",
            Some(mint(
                rs_signer()
                    .with_issuer("https://evil.test/")
                    .with_audience(AUDIENCE),
                &[Role::Customer],
                now,
                600,
            )),
            401,
            "invalid_issuer",
        ),
        (
            "wrong audience",
            Some(mint(
                rs_signer().with_issuer(ISSUER).with_audience("other-api"),
                &[Role::Customer],
                now,
                600,
            )),
            401,
            "invalid_audience",
        ),
        (
            "alg none",
            Some(format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                parts[1]
            )),
            401,
            "invalid_algorithm",
        ),
        (
            "hs256 signed with the rsa public key",
            Some(mint(
                TokenSigner::hs256(&public_pem)
                    .expect("hs")
                    .with_issuer(ISSUER)
                    .with_audience(AUDIENCE),
                &[Role::Admin],
                now,
                600,
            )),
            401,
            "invalid_algorithm",
        ),
    ];
    for (what, token, status, code) in &cases {
        let r = get(gw.addr, "/api/orders", token.as_deref()).await;
        assert_eq!((r.status, r.code().as_str()), (*status, *code), "{what}");
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{what}"
        );
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm="),
            "{what}: {challenge}"
        );
    }

    let customer = valid(&[Role::Customer]);
    let r = json(
        gw.addr,
        Method::POST,
        "/api/products",
        &customer,
        &json!({"name": "x"}),
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (403, "forbidden"));
    assert!(r.header("www-authenticate").is_none());
    let r = json(
        gw.addr,
        Method::POST,
        "/api/inventory/reserve",
        &customer,
        &json!({}),
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (403, "forbidden"));

    assert!(orders.seen().is_empty(), "nothing was forwarded");
    let r = get(gw.addr, "/api/orders", Some(&good)).await;
    assert_eq!(r.status, 200);
    assert_eq!(orders.seen().len(), 1);
}

/// Public routes need no token, but a token sent to one must be valid.
#[tokio::test]
async fn public_routes_are_open_but_bad_tokens_are_not() {
    let orders = spawn_recorder().await;
    let gw = spawn_gateway(config(orders.addr, dead_addr().await)).await;
    assert_eq!(get(gw.addr, "/api/products", None).await.status, 200);
    assert_eq!(get(gw.addr, "/api/products/42", None).await.status, 200);
    let r = get(gw.addr, "/api/products", Some("garbage")).await;
    assert_eq!((r.status, r.code().as_str()), (401, "malformed_token"));
    let r = send(gw.addr, Method::POST, "/api/products", &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (401, "missing_token"));
    assert_eq!(orders.seen().len(), 2);
}

/// Configured public routes replace the defaults.
#[tokio::test]
async fn public_routes_are_configurable() {
    let orders = spawn_recorder().await;
    let mut cfg = config(orders.addr, dead_addr().await);
    cfg.public_routes = vec!["GET /api/orders/{id}/status".parse().expect("rule")];
    let gw = spawn_gateway(cfg).await;
    assert_eq!(get(gw.addr, "/api/orders/1/status", None).await.status, 200);
    assert_eq!(get(gw.addr, "/api/products", None).await.status, 401);
}
