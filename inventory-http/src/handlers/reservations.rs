//! Reservations: reserve one or several lines, confirm, release.

use http::{header, HeaderValue, Request, StatusCode};
use inventory_core::{
    Command, Error, InventoryStore, OrderId, Outcome, ProductId, Quantity, ReservationId, Reserve,
    ReserveLine, LINES_MAX,
};
use service_kit::body::{read_json, RequestBody};
use service_kit::response;
use service_kit::server::RequestContext;
use service_kit::Problem;
use uuid::Uuid;

use crate::app::App;
use crate::dto::{
    ConfirmRequest, OrderReservations, ReservationView, ReserveLinesRequest, ReserveRequest,
};
use crate::errors::problem;

use super::{domain, parse_id, ttl, unexpected, Handled};

impl<S: InventoryStore> App<S> {
    async fn reserve_command(
        &self,
        reserve: Reserve,
        ctx: &RequestContext,
    ) -> Result<(Vec<ReservationView>, bool), Problem> {
        let touched: Vec<ProductId> = reserve.lines().iter().map(|l| l.product_id).collect();
        let outcome = self.execute(Command::Reserve(reserve), ctx, &touched).await;
        match outcome {
            Ok(Outcome::Reserved {
                reservations,
                created,
            }) => {
                self.metrics
                    .reservation(if created { "created" } else { "repeated" });
                Ok((
                    reservations.iter().map(ReservationView::from).collect(),
                    created,
                ))
            }
            Ok(other) => Err(unexpected(&other)),
            Err(e) => {
                self.metrics.reservation(e.code());
                Err(problem(&e))
            }
        }
    }

    pub(crate) async fn reserve<B: RequestBody>(
        &self,
        request: Request<B>,
        ctx: &RequestContext,
    ) -> Handled {
        let (parts, body) = request.into_parts();
        let req: ReserveRequest = read_json(&parts.headers, body, self.body_bytes_max).await?;
        let line = ReserveLine {
            product_id: ProductId::from_uuid(req.product_id),
            quantity: domain(Quantity::try_from(req.quantity))?,
            reservation_id: new_reservation_id(),
        };
        let reserve = Reserve::single(
            OrderId::from_uuid(req.order_id),
            line,
            ttl(req.ttl_seconds)?,
        );
        let (mut views, created) = self.reserve_command(reserve, ctx).await?;
        let view = views.pop().ok_or_else(Problem::internal)?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let mut resp = response::json(status, &view);
        if let Ok(v) = HeaderValue::from_str(&format!(
            "/api/inventory/reservations/{}",
            view.reservation_id
        )) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Ok(resp)
    }

    pub(crate) async fn reserve_lines<B: RequestBody>(
        &self,
        request: Request<B>,
        ctx: &RequestContext,
    ) -> Handled {
        let (parts, body) = request.into_parts();
        let req: ReserveLinesRequest = read_json(&parts.headers, body, self.body_bytes_max).await?;
        if req.lines.len() > LINES_MAX {
            return Err(Problem::bad_request(
                "invalid_request",
                format!("lines must hold 1 to {LINES_MAX} lines"),
            ));
        }
        let mut lines = Vec::with_capacity(req.lines.len());
        for l in &req.lines {
            lines.push(ReserveLine {
                product_id: ProductId::from_uuid(l.product_id),
                quantity: domain(Quantity::try_from(l.quantity))?,
                reservation_id: new_reservation_id(),
            });
        }
        let order_id = OrderId::from_uuid(req.order_id);
        let reserve = domain(Reserve::new(order_id, lines, ttl(req.ttl_seconds)?))?;
        let (views, created) = self.reserve_command(reserve, ctx).await?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok(response::json(
            status,
            &OrderReservations {
                order_id: order_id.as_uuid(),
                reservations: views,
            },
        ))
    }

    pub(crate) async fn confirm_body<B: RequestBody>(
        &self,
        request: Request<B>,
        ctx: &RequestContext,
    ) -> Handled {
        let (parts, body) = request.into_parts();
        let req: ConfirmRequest = read_json(&parts.headers, body, self.body_bytes_max).await?;
        self.finish(
            Command::Confirm {
                reservation_id: ReservationId::from_uuid(req.reservation_id),
            },
            ctx,
        )
        .await
    }

    pub(crate) async fn confirm(&self, param: &str, ctx: &RequestContext) -> Handled {
        let reservation_id: ReservationId = parse_id(param, "reservation_id")?;
        self.finish(Command::Confirm { reservation_id }, ctx).await
    }

    pub(crate) async fn release(&self, param: &str, ctx: &RequestContext) -> Handled {
        let reservation_id: ReservationId = parse_id(param, "reservation_id")?;
        self.finish(Command::Release { reservation_id }, ctx).await
    }

    /// Confirm or release: the reservation's product is only known from the
    /// outcome, so its cache entry is dropped afterwards.
    async fn finish(&self, command: Command, ctx: &RequestContext) -> Handled {
        let reservation_id = command.reservation_id();
        let outcome = self.writes.execute(command, &self.meta(ctx)).await;
        if let (Err(Error::ReservationExpired { .. }), Some(cache), Some(id)) =
            (&outcome, &self.cache, reservation_id)
        {
            // Confirming an overdue reservation expires it on the way.
            if let Ok(Some(r)) = self.store.reservation(id).await {
                cache.invalidate(&[r.product_id()]).await;
            }
        }
        let outcome = domain(outcome)?;
        let Outcome::Reservation { reservation, .. } = outcome else {
            return Err(unexpected(&outcome));
        };
        if let Some(cache) = &self.cache {
            cache.invalidate(&[reservation.product_id()]).await;
        }
        Ok(response::json(
            StatusCode::OK,
            &ReservationView::from(&reservation),
        ))
    }
}

/// A new reservation id: time-ordered (UUIDv7), so a SQL store's primary key
/// grows at its end instead of dirtying a random index page per insert.
fn new_reservation_id() -> ReservationId {
    ReservationId::from_uuid(Uuid::now_v7())
}
