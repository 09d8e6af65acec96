//! Which upstream serves a path, and who may call it: public routes (a
//! configurable list of method and path patterns) and the role rules the edge
//! enforces before anything is forwarded.

use std::fmt;
use std::str::FromStr;

use http::Method;
use service_guard::Role;
use service_kit::routing::PathPattern;

/// Routes anyone may call when none are configured: health, product reads,
/// and availability reads (one product, or a list).
pub const DEFAULT_PUBLIC_ROUTES: &[&str] = &[
    "GET /health",
    "GET /api/products",
    "GET /api/products/*",
    "GET /api/inventory",
    "GET /api/inventory/{product_id}",
];

/// Longest path the gateway routes, in bytes. Real paths are under 200 bytes;
/// longer ones are refused before any matching work.
pub const PATH_LEN_MAX: usize = 2_048;

/// The services behind the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Upstream {
    /// The orders service (orders and the product catalog).
    Orders,
    /// The inventory service.
    Inventory,
}

impl Upstream {
    /// Every upstream, in a fixed order.
    pub const ALL: [Upstream; 2] = [Upstream::Orders, Upstream::Inventory];

    /// The name used in logs, metrics and `/health`.
    pub fn name(self) -> &'static str {
        match self {
            Upstream::Orders => "orders",
            Upstream::Inventory => "inventory",
        }
    }
}

/// What the gateway does with a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The gateway's own `GET /health` (upstream readiness included).
    Health,
    /// The gateway's own `GET /health/ready`.
    Ready,
    /// The gateway's own `GET /metrics`.
    Metrics,
    /// The merged OpenAPI document of the public API, `GET /openapi.json`.
    OpenApi,
    /// The page that shows it, `GET /docs`.
    Docs,
    /// Forward to an upstream; `route` is the metrics label.
    Proxy {
        /// Where to.
        upstream: Upstream,
        /// Bounded label for metrics and logs.
        route: &'static str,
    },
}

/// The prefixes forwarded, each matching the exact path or the path followed
/// by `/` (so `/api/ordersX` matches nothing).
const PREFIXES: [(&str, Upstream, &str); 3] = [
    ("/api/orders", Upstream::Orders, "/api/orders"),
    ("/api/products", Upstream::Orders, "/api/products"),
    ("/api/inventory", Upstream::Inventory, "/api/inventory"),
];

/// Picks the target of a path, `None` when the gateway does not serve it.
pub fn target(path: &str) -> Option<Target> {
    match path {
        "/health" => return Some(Target::Health),
        "/health/ready" => return Some(Target::Ready),
        "/metrics" => return Some(Target::Metrics),
        "/openapi.json" => return Some(Target::OpenApi),
        "/docs" => return Some(Target::Docs),
        _ => {}
    }
    PREFIXES.iter().find_map(|(prefix, upstream, route)| {
        let rest = path.strip_prefix(prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(Target::Proxy {
            upstream: *upstream,
            route,
        })
    })
}

/// Whether a path is safe to match and forward: bounded, absolute, and free
/// of dot segments (plain or percent-encoded) that an upstream could resolve
/// to a different route than the one the access rules saw.
pub fn path_is_clean(path: &str) -> bool {
    path.len() <= PATH_LEN_MAX
        && path.starts_with('/')
        && path.split('/').skip(1).all(|segment| {
            let lowered = segment.to_ascii_lowercase().replace("%2e", ".");
            lowered != "." && lowered != ".."
        })
}

/// One `METHOD /path` pattern: the method (or `*` for any), then a path
/// pattern of the servers' route matcher ([`PathPattern`]: segments that
/// match literally, `{name}` matching any one segment, and an optional
/// trailing `*` matching whatever follows, including nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRule {
    method: Option<Method>,
    pattern: PathPattern,
    text: String,
}

/// A route pattern that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid route pattern {0:?}: expected `METHOD /path` (for example `GET /api/products*`)")]
pub struct RuleError(String);

impl FromStr for AccessRule {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || RuleError(s.to_owned());
        let (method, path) = s.trim().split_once(' ').ok_or_else(err)?;
        let path = path.trim();
        let method = match method {
            "*" => None,
            m => Some(Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| err())?),
        };
        let pattern = path.parse::<PathPattern>().map_err(|_| err())?;
        Ok(AccessRule {
            method,
            pattern,
            text: s.trim().to_owned(),
        })
    }
}

impl fmt::Display for AccessRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl AccessRule {
    /// Whether the rule covers `method` on `path` (a clean path, see
    /// [`path_is_clean`]). A `GET` rule also covers `HEAD`.
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        // A HEAD is a GET without the body: a rule for GET covers it too.
        let method_ok = match &self.method {
            None => true,
            Some(m) => m == method || (*m == Method::GET && *method == Method::HEAD),
        };
        if !method_ok {
            return false;
        }
        // Empty segments (`//`) are skipped, as the upstreams' paths see them.
        let segments = path.split('/').skip(1).filter(|s| !s.is_empty());
        self.pattern.fit(segments).is_some()
    }
}

/// The roles a non-public route needs at the edge. An empty list means any
/// authenticated caller. Services check authorization again themselves.
///
/// - catalog writes (`/api/products*` other than GET/HEAD): `admin`;
/// - stock management and the ledger (`/api/inventory/items`, `PUT
///   /api/inventory/{product_id}`, `/api/inventory/{product_id}/adjustments`,
///   reads too): `admin`;
/// - reservations (reserve, confirm, release, and reading one): `admin` or
///   `service`;
/// - orders: `customer` or `admin` (the orders service shows each customer
///   only their own);
/// - anything else: any authenticated caller.
///
/// These are inventory's own rules, checked once more at the edge.
pub fn required_roles(method: &Method, path: &str) -> &'static [Role] {
    let read = matches!(*method, Method::GET | Method::HEAD);
    match target(path) {
        Some(Target::Proxy { route, .. }) => match (route, read) {
            ("/api/products", false) => ADMIN,
            ("/api/inventory", _) => inventory_roles(read, path),
            ("/api/orders", _) => &[Role::Customer, Role::Admin],
            _ => &[],
        },
        _ => &[],
    }
}

const ADMIN: &[Role] = &[Role::Admin];
const ADMIN_OR_SERVICE: &[Role] = &[Role::Admin, Role::Service];

/// The roles an inventory route needs, by its segments after `/api/inventory`.
fn inventory_roles(read: bool, path: &str) -> &'static [Role] {
    let rest = path.strip_prefix("/api/inventory").unwrap_or_default();
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["reserve", ..] | ["reservations", ..] | ["confirm", ..] => ADMIN_OR_SERVICE,
        ["items", ..] | [_, "adjustments", ..] => ADMIN,
        [_] if !read => ADMIN,
        _ if read => &[],
        _ => ADMIN_OR_SERVICE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> AccessRule {
        s.parse().unwrap()
    }

    /// Prefixes match whole segments only.
    #[test]
    fn targets() {
        assert_eq!(
            target("/api/orders"),
            Some(Target::Proxy {
                upstream: Upstream::Orders,
                route: "/api/orders"
            })
        );
        assert!(matches!(
            target("/api/products/1"),
            Some(Target::Proxy {
                upstream: Upstream::Orders,
                ..
            })
        ));
        assert!(matches!(
            target("/api/inventory/x/adjustments"),
            Some(Target::Proxy {
                upstream: Upstream::Inventory,
                ..
            })
        ));
        assert_eq!(target("/api/ordersX"), None);
        assert_eq!(target("/"), None);
        assert_eq!(target("/health"), Some(Target::Health));
    }

    /// Patterns: literal, one-segment and rest wildcards, and the method.
    #[test]
    fn patterns_match() {
        let one = rule("GET /api/inventory/{id}");
        assert!(one.matches(&Method::GET, "/api/inventory/abc"));
        assert!(!one.matches(&Method::GET, "/api/inventory/reservations/abc"));
        assert!(!one.matches(&Method::GET, "/api/inventory"));
        assert!(!one.matches(&Method::POST, "/api/inventory/abc"));
        assert!(one.matches(&Method::HEAD, "/api/inventory/abc"));
        let rest = rule("GET /api/products*");
        assert!(rest.matches(&Method::GET, "/api/products"));
        assert!(rest.matches(&Method::GET, "/api/products/1/x"));
        assert!(!rest.matches(&Method::GET, "/api/orders"));
        assert!(rule("* /health").matches(&Method::DELETE, "/health"));
        for bad in ["GET", "GET api", "GET /a/*b", "GET /a//b", "G@T /a"] {
            assert!(bad.parse::<AccessRule>().is_err(), "{bad}");
        }
    }

    /// Dot segments, plain or encoded, are refused.
    #[test]
    fn unclean_paths() {
        assert!(path_is_clean("/api/products/1"));
        for bad in [
            "/api/products/../orders",
            "/api/products/%2E%2e/orders",
            "/api/./x",
            "relative",
        ] {
            assert!(!path_is_clean(bad), "{bad}");
        }
    }

    /// Writes need admin (or service for inventory); orders need a shopper or admin.
    #[test]
    fn roles_by_route() {
        assert_eq!(
            required_roles(&Method::POST, "/api/products"),
            &[Role::Admin]
        );
        assert_eq!(required_roles(&Method::GET, "/api/products"), &[]);
        assert_eq!(
            required_roles(&Method::POST, "/api/inventory/reserve"),
            &[Role::Admin, Role::Service]
        );
        assert_eq!(
            required_roles(&Method::GET, "/api/orders/1"),
            &[Role::Customer, Role::Admin]
        );
    }

    /// Inventory's routes need at the edge what inventory itself requires:
    /// reading a reservation is for services, the ledger and stock
    /// management for admins; availability is for any caller.
    #[test]
    fn inventory_roles_match_the_service() {
        let roles = |m: Method, p: &str| required_roles(&m, p);
        let both = &[Role::Admin, Role::Service][..];
        let admin = &[Role::Admin][..];
        assert_eq!(roles(Method::GET, "/api/inventory/reservations/r1"), both);
        assert_eq!(roles(Method::POST, "/api/inventory/reservations"), both);
        assert_eq!(roles(Method::DELETE, "/api/inventory/reserve/r1"), both);
        assert_eq!(roles(Method::POST, "/api/inventory/confirm/r1"), both);
        assert_eq!(roles(Method::GET, "/api/inventory/p1/adjustments"), admin);
        assert_eq!(roles(Method::POST, "/api/inventory/p1/adjustments"), admin);
        assert_eq!(roles(Method::POST, "/api/inventory/items"), admin);
        assert_eq!(roles(Method::PUT, "/api/inventory/p1"), admin);
        assert_eq!(roles(Method::GET, "/api/inventory/p1"), &[] as &[Role]);
        assert_eq!(roles(Method::GET, "/api/inventory"), &[] as &[Role]);
    }
}
