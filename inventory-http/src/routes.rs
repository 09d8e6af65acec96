//! The route table: every route the server answers, as a method and a path
//! template, and its matcher (service-kit's [`Router`]: 404 when no template
//! fits the path, 405 with `Allow` when the method is wrong).
//!
//! The table is the single source of truth: the dispatcher, the metrics labels,
//! authorization and the OpenAPI conformance test all read it.

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
    /// `GET /api/inventory?product_ids=...`.
    BulkAvailability,
    /// `GET /api/inventory/{product_id}`.
    Availability,
    /// `PUT /api/inventory/{product_id}`.
    SetQuantity,
    /// `POST /api/inventory/items`.
    CreateItem,
    /// `POST /api/inventory/reserve`.
    Reserve,
    /// `POST /api/inventory/reservations`.
    ReserveLines,
    /// `GET /api/inventory/reservations/{reservation_id}`.
    GetReservation,
    /// `POST /api/inventory/confirm`.
    Confirm,
    /// `POST /api/inventory/confirm/{reservation_id}`.
    ConfirmPath,
    /// `DELETE /api/inventory/reserve/{reservation_id}`.
    Release,
    /// `GET /api/inventory/{product_id}/adjustments`.
    Adjustments,
    /// `POST /api/inventory/{product_id}/adjustments`.
    Adjust,
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// The `service` or `admin` role (reserve, confirm, release).
    Service,
    /// The `admin` role (stock writes).
    Admin,
}

/// One row of the route table.
pub type Route = routing::Route<RouteId, Access>;

const fn route(id: RouteId, method: &'static str, template: &'static str, access: Access) -> Route {
    Route {
        id,
        method,
        template,
        access,
        rate_limited: true,
    }
}

const fn ops(id: RouteId, template: &'static str) -> Route {
    Route {
        id,
        method: "GET",
        template,
        access: Access::Public,
        rate_limited: false,
    }
}

/// Every route of the server.
pub const ROUTES: &[Route] = &[
    ops(RouteId::Health, "/health"),
    ops(RouteId::Ready, "/health/ready"),
    ops(RouteId::Metrics, "/metrics"),
    ops(RouteId::OpenApi, "/openapi.json"),
    route(
        RouteId::BulkAvailability,
        "GET",
        "/api/inventory",
        Access::Public,
    ),
    route(
        RouteId::Availability,
        "GET",
        "/api/inventory/{product_id}",
        Access::Public,
    ),
    route(
        RouteId::SetQuantity,
        "PUT",
        "/api/inventory/{product_id}",
        Access::Admin,
    ),
    route(
        RouteId::CreateItem,
        "POST",
        "/api/inventory/items",
        Access::Admin,
    ),
    route(
        RouteId::Reserve,
        "POST",
        "/api/inventory/reserve",
        Access::Service,
    ),
    route(
        RouteId::ReserveLines,
        "POST",
        "/api/inventory/reservations",
        Access::Service,
    ),
    route(
        RouteId::GetReservation,
        "GET",
        "/api/inventory/reservations/{reservation_id}",
        Access::Service,
    ),
    route(
        RouteId::Confirm,
        "POST",
        "/api/inventory/confirm",
        Access::Service,
    ),
    route(
        RouteId::ConfirmPath,
        "POST",
        "/api/inventory/confirm/{reservation_id}",
        Access::Service,
    ),
    route(
        RouteId::Release,
        "DELETE",
        "/api/inventory/reserve/{reservation_id}",
        Access::Service,
    ),
    route(
        RouteId::Adjustments,
        "GET",
        "/api/inventory/{product_id}/adjustments",
        Access::Admin,
    ),
    // The service role too: orders returns the sold units of an order it
    // had to cancel (keyed, so at most once).
    route(
        RouteId::Adjust,
        "POST",
        "/api/inventory/{product_id}/adjustments",
        Access::Service,
    ),
];

/// A matched route and the value of its one path parameter, if any.
pub type Matched<'p> = routing::Matched<'p, Route>;

/// The matcher of [`ROUTES`].
pub static ROUTER: Router<Route> = Router::new(ROUTES);

/// Finds the route for `method` and `path`; the template with the most
/// literal segments wins. Allocates nothing unless it fails.
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

    #[test]
    fn literal_segments_win_over_parameters() {
        let m = match_route("POST", "/api/inventory/reserve").unwrap();
        assert_eq!(m.route.id, RouteId::Reserve);
        let m = match_route("GET", "/api/inventory/abc").unwrap();
        assert_eq!((m.route.id, m.param), (RouteId::Availability, Some("abc")));
        let m = match_route("DELETE", "/api/inventory/reserve/xyz").unwrap();
        assert_eq!((m.route.id, m.param), (RouteId::Release, Some("xyz")));
    }

    #[test]
    fn wrong_method_is_405_with_allow_and_unknown_path_is_404() {
        let p = match_route("POST", "/api/inventory/abc").unwrap_err();
        assert_eq!(p.status().as_u16(), 405);
        let p = match_route("GET", "/api/inventory/reserve").unwrap_err();
        assert_eq!(p.status().as_u16(), 405);
        let p = match_route("GET", "/nope").unwrap_err();
        assert_eq!(p.status().as_u16(), 404);
        let p = match_route("GET", "/api/inventory/reserve/adjustments").unwrap_err();
        assert_eq!(
            p.status().as_u16(),
            405,
            "ties go to the first template in the table"
        );
        let p = match_route("GET", "/api/inventory//adjustments").unwrap_err();
        assert_eq!(p.status().as_u16(), 404);
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
