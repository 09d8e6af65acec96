//! Header rewriting at the edge: hop-by-hop headers (RFC 9110 section 7.6.1)
//! removed in both directions, client-sent identity headers stripped,
//! `X-Forwarded-*` set, identity from the validated token added.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use service_guard::Principal;

/// `X-User-Id`: the validated token's subject, set by the gateway only.
pub const X_USER_ID: HeaderName = HeaderName::from_static("x-user-id");
/// `X-User-Roles`: the validated token's roles, comma-separated.
pub const X_USER_ROLES: HeaderName = HeaderName::from_static("x-user-roles");
/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Real-IP`, removed from untrusted clients.
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Identity headers always stripped from client requests.
pub const IDENTITY_HEADERS: [HeaderName; 2] = [X_USER_ID, X_USER_ROLES];

/// Most names a `Connection` header may list for removal; more is not a real
/// client, and the cap bounds the work per request.
pub const CONNECTION_TOKENS_MAX: usize = 32;

/// Headers that describe one connection, never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes the hop-by-hop headers and every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .take(CONNECTION_TOKENS_MAX)
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Removes identity headers a client may have sent to impersonate someone:
/// [`IDENTITY_HEADERS`] and `extra`.
pub fn strip_identity(headers: &mut HeaderMap, extra: &[HeaderName]) {
    for name in IDENTITY_HEADERS.iter().chain(extra) {
        headers.remove(name);
    }
}

/// Sets `X-User-Id` and `X-User-Roles` from a validated principal.
pub fn set_identity(headers: &mut HeaderMap, principal: &Principal) {
    if let Ok(v) = HeaderValue::from_str(&principal.subject) {
        headers.insert(X_USER_ID, v);
    }
    let roles: Vec<&str> = principal.roles.iter().map(|r| r.as_str()).collect();
    if let Ok(v) = HeaderValue::from_str(&roles.join(",")) {
        headers.insert(X_USER_ROLES, v);
    }
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host` for a request from `peer`.
///
/// With `trust_client` (the gateway sits behind a load balancer that sets
/// them) the peer is appended to the existing chain and the protocol kept;
/// otherwise whatever the client sent is replaced, and its `Forwarded` and
/// `X-Real-IP` are removed.
pub fn set_forwarded(headers: &mut HeaderMap, peer: IpAddr, trust_client: bool) {
    if !trust_client {
        // Other spellings of the client address an upstream might read.
        headers.remove(header::FORWARDED);
        headers.remove(X_REAL_IP);
    }
    let chain = trust_client
        .then(|| joined(headers, &X_FORWARDED_FOR))
        .flatten();
    let forwarded_for = match chain {
        Some(existing) => format!("{existing}, {peer}"),
        None => peer.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !trust_client || !headers.contains_key(X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if let Some(host) = headers.get(header::HOST).cloned() {
        if !trust_client || !headers.contains_key(X_FORWARDED_HOST) {
            headers.insert(X_FORWARDED_HOST, host);
        }
    }
}

/// The client address used for per-IP limits. With `trusted_hops` proxies in
/// front of the gateway, each appending the address it was reached from to
/// `X-Forwarded-For`, it is the entry the outermost one appended:
/// `trusted_hops` from the right (the left-most when the chain is shorter).
/// Entries further left were written by the client and are never believed.
/// With 0 trusted hops, or a chain that does not parse, the TCP peer.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted_hops: usize) -> IpAddr {
    if trusted_hops == 0 {
        return peer;
    }
    let Some(chain) = joined(headers, &X_FORWARDED_FOR) else {
        return peer;
    };
    let entries: Vec<&str> = chain.split(',').map(str::trim).collect();
    let outermost = entries.len().saturating_sub(trusted_hops);
    entries[outermost].parse().unwrap_or(peer)
}

fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// Hop-by-hop headers and those `Connection` names go; others stay.
    #[test]
    fn hop_by_hop_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("transfer-encoding", "chunked"),
            ("accept", "application/json"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    /// Untrusted forwarded headers are replaced; trusted ones are extended.
    #[test]
    fn forwarded_headers() {
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let sent = [
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("host", "shop.example"),
            ("forwarded", "for=1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
        ];
        let mut h = map(&sent);
        set_forwarded(&mut h, peer, false);
        assert!(h.get("forwarded").is_none() && h.get("x-real-ip").is_none());
        assert_eq!(h["x-forwarded-for"], "10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example");
        assert_eq!(client_ip(&map(&sent), peer, 0), peer);
        let mut h = map(&sent);
        set_forwarded(&mut h, peer, true);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "https");
    }

    /// Behind trusted proxies the client is the address the outermost one
    /// appended; what the client wrote to the left of it is ignored, so a
    /// forged entry cannot dodge the per-IP limit.
    #[test]
    fn client_ip_is_what_the_trusted_proxies_appended() {
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // One load balancer: it appended the client's address last.
        let forged = map(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4")]);
        assert_eq!(client_ip(&forged, peer, 1), ip("1.2.3.4"));
        // Two proxies: the outer one appended the client, the inner one the
        // outer one.
        let two = map(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.7")]);
        assert_eq!(client_ip(&two, peer, 2), ip("1.2.3.4"));
        // Several header lines count as one chain.
        let split = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "1.2.3.4"),
        ]);
        assert_eq!(client_ip(&split, peer, 1), ip("1.2.3.4"));
        // A chain shorter than the hops: its left-most entry.
        assert_eq!(
            client_ip(&map(&[("x-forwarded-for", "1.2.3.4")]), peer, 3),
            ip("1.2.3.4")
        );
        // Nothing trusted, nothing sent, or garbage: the peer.
        assert_eq!(client_ip(&forged, peer, 0), peer);
        assert_eq!(client_ip(&HeaderMap::new(), peer, 1), peer);
        assert_eq!(
            client_ip(&map(&[("x-forwarded-for", "nonsense")]), peer, 1),
            peer
        );
    }
}
