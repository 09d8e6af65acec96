//! https upstreams: the real inventory server behind a TLS terminator with a
//! certificate of a CA made for the test.

use test_support::tls::{TempDir, TestCa, TlsTerminator};

use crate::helpers::*;

/// A public read of the inventory behind the gateway.
const PRODUCT_PATH: &str = "/api/inventory/00000000-0000-4000-8000-000000000001";

/// Goal: an `https://` upstream whose certificate the extra CA
/// (`TLS_CA_FILE`) signed is reached through the gateway; without that CA
/// the same upstream is refused with the documented 502 `bad_gateway`.
#[tokio::test]
async fn https_upstream_is_trusted_only_with_the_extra_ca() {
    let inventory = spawn_inventory().await;
    let ca = TestCa::new("gateway test ca");
    let terminator = TlsTerminator::start(&ca.issue(), inventory.addr).await;
    let dir = TempDir::new("gateway-tls");
    let ca_file = ca.write(&dir, "ca.pem");
    let https = format!("https://localhost:{}", terminator.addr().port());

    let mut trusting = config(dead_addr().await, inventory.addr);
    trusting.inventory_url = https.clone();
    trusting.tls.tls_ca_file = Some(ca_file);
    let gw = spawn_gateway(trusting).await;
    let through = get(gw.addr, PRODUCT_PATH, None).await;

    let mut untrusting = config(dead_addr().await, inventory.addr);
    untrusting.inventory_url = https;
    let refused_gw = spawn_gateway(untrusting).await;
    let refused = get(refused_gw.addr, PRODUCT_PATH, None).await;

    // The inventory answers (404 for an unknown product, as over http).
    assert_eq!(through.status, 404, "{:?}", through.json());
    assert_eq!(through.code(), "product_not_found");
    assert!(terminator.handshakes() >= 1, "the request went over TLS");
    assert_eq!(
        (refused.status, refused.code().as_str()),
        (502, "bad_gateway")
    );
    assert!(
        refused.json()["detail"]
            .as_str()
            .is_some_and(|d| d.contains("TLS certificate")),
        "{:?}",
        refused.json()
    );
    assert_eq!(refused.header("retry-after"), None);
}
