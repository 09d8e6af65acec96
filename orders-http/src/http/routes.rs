//! The route table of the orders server (method, path template, who may call
//! it) and the matcher that picks a route for a request. The table is the only
//! list of routes: dispatch, metrics labels, authorization and the OpenAPI
//! conformance test read it.

use service_kit::routing::{self, Router};
use service_kit::Problem;

/// Which route a request matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteId {
    /// `GET /health`.
    Health,
    /// `GET /health/ready`.
    Ready,
    /// `GET /metrics`.
    Metrics,
    /// `GET /openapi.json`.
    OpenApi,
    /// `POST /api/orders`.
    PlaceOrder,
    /// `GET /api/orders`.
    ListOrders,
    /// `GET /api/orders/{id}`.
    GetOrder,
    /// `GET /api/orders/{id}/status`.
    OrderStatus,
    /// `POST /api/orders/{id}/cancel`.
    CancelOrder,
    /// `GET /api/products`.
    ListProducts,
    /// `GET /api/products/{id}`.
    GetProduct,
    /// `POST /api/products`.
    CreateProduct,
    /// `PUT /api/products/{id}`.
    UpdateProduct,
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token.
    Public,
    /// A `customer` (or `admin`) acting on their own orders.
    Customer,
    /// An `admin` (catalog writes).
    Admin,
}

/// One row of the route table. The orders routes count against the
/// caller's rate limit; the catalog and operations routes do not.
pub type Route = routing::Route<RouteId, Access>;

const fn route(id: RouteId, method: &'static str, template: &'static str, access: Access) -> Route {
    Route {
        id,
        method,
        template,
        access,
        rate_limited: starts_with(template, RATE_LIMITED_PREFIX),
    }
}

/// Routes under this prefix (the orders routes) count against the caller's
/// rate limit.
pub const RATE_LIMITED_PREFIX: &str = "/api/orders";

/// `str::starts_with`, in a `const` context.
const fn starts_with(text: &str, prefix: &str) -> bool {
    let (text, prefix) = (text.as_bytes(), prefix.as_bytes());
    if text.len() < prefix.len() {
        return false;
    }
    let mut i = 0;
    while i < prefix.len() {
        if text[i] != prefix[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Every route of the server.
pub const ROUTES: &[Route] = &[
    route(RouteId::Health, "GET", "/health", Access::Public),
    route(RouteId::Ready, "GET", "/health/ready", Access::Public),
    route(RouteId::Metrics, "GET", "/metrics", Access::Public),
    route(RouteId::OpenApi, "GET", "/openapi.json", Access::Public),
    route(RouteId::PlaceOrder, "POST", "/api/orders", Access::Customer),
    route(RouteId::ListOrders, "GET", "/api/orders", Access::Customer),
    route(
        RouteId::GetOrder,
        "GET",
        "/api/orders/{id}",
        Access::Customer,
    ),
    route(
        RouteId::OrderStatus,
        "GET",
        "/api/orders/{id}/status",
        Access::Customer,
    ),
    route(
        RouteId::CancelOrder,
        "POST",
        "/api/orders/{id}/cancel",
        Access::Customer,
    ),
    route(
        RouteId::ListProducts,
        "GET",
        "/api/products",
        Access::Public,
    ),
    route(
        RouteId::GetProduct,
        "GET",
        "/api/products/{id}",
        Access::Public,
    ),
    route(
        RouteId::CreateProduct,
        "POST",
        "/api/products",
        Access::Admin,
    ),
    route(
        RouteId::UpdateProduct,
        "PUT",
        "/api/products/{id}",
        Access::Admin,
    ),
];

/// A matched route and the value of its path parameter, if any.
pub type Matched<'p> = routing::Matched<'p, Route>;

/// The matcher of [`ROUTES`].
pub static ROUTER: Router<Route> = Router::new(ROUTES);

/// Finds the route for `method` and `path`.
///
/// # Errors
/// 404 `route_not_found` when no template fits the path; 405
/// `method_not_allowed` (with `Allow`) when templates fit but none has the method.
pub fn match_route<'p>(method: &str, path: &'p str) -> Result<Matched<'p>, Problem> {
    ROUTER.find(method, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The orders routes count against the rate limit; the catalog and the
    /// operations routes do not.
    #[test]
    fn only_the_orders_routes_are_rate_limited() {
        for r in ROUTES {
            assert_eq!(
                r.rate_limited,
                r.template.starts_with("/api/orders"),
                "{}",
                r.template
            );
        }
    }

    #[test]
    fn literal_segments_win_and_wrong_methods_are_405() {
        let m = match_route("GET", "/api/orders/abc/status").unwrap();
        assert_eq!((m.route.id, m.param), (RouteId::OrderStatus, Some("abc")));
        let m = match_route("POST", "/api/orders").unwrap();
        assert_eq!(m.route.id, RouteId::PlaceOrder);
        assert_eq!(
            match_route("DELETE", "/api/orders/x")
                .unwrap_err()
                .status()
                .as_u16(),
            405
        );
        assert_eq!(
            match_route("GET", "/api/nope")
                .unwrap_err()
                .status()
                .as_u16(),
            404
        );
        assert_eq!(
            match_route("GET", "/api/orders//status")
                .unwrap_err()
                .status()
                .as_u16(),
            404
        );
    }

    #[test]
    fn every_route_is_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(!(a.method == b.method && a.template == b.template), "{a:?}");
            }
        }
    }
}
