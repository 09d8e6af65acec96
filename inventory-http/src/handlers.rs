//! The route handlers: parse input into domain values, call the store, map
//! the outcome to a response. No business rule lives here.

use std::str::FromStr;

use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use inventory_core::{
    Command, Error, InventoryStore, Meta, OrderId, Outcome, ProductId, Quantity, Reason,
    ReservationId, Reserve, ReserveLine, StockDelta, StockLevel, Ttl, Version,
    ADJUSTMENTS_PAGE_MAX, AVAILABILITY_BATCH_MAX, LINES_MAX,
};
use serde_json::json;
use service_kit::body::read_json;
use service_kit::response;
use service_kit::server::RequestContext;
use service_kit::{Body, Problem};
use uuid::Uuid;

use crate::app::App;
use crate::auth::Caller;
use crate::dto::{
    AdjustRequest, AdjustmentList, AdjustmentView, Availability, BulkAvailability, ConfirmRequest,
    CreateItemRequest, OrderReservations, ReservationView, ReserveLinesRequest, ReserveRequest,
    SetQuantityRequest, SET_QUANTITY_REASON_DEFAULT,
};
use crate::errors::problem;

/// `Retry-After` of a 503 from `/health/ready`.
pub(crate) const NOT_READY_RETRY_AFTER_SECS: u64 = 5;

/// Ledger entries returned when the client names no `limit`.
pub(crate) const ADJUSTMENTS_PAGE_DEFAULT: usize = 50;

type Handled = Result<Response<Body>, Problem>;

fn parse_id<T: FromStr>(text: &str, field: &str) -> Result<T, Problem> {
    T::from_str(text)
        .map_err(|_| Problem::bad_request("invalid_id", format!("{field} must be a UUID")))
}

fn ttl(seconds: Option<i64>) -> Result<Ttl, Problem> {
    seconds.map_or(Ok(Ttl::default()), |s| {
        Ttl::from_secs(s).map_err(|e| problem(&e))
    })
}

fn domain<T>(r: Result<T, Error>) -> Result<T, Problem> {
    r.map_err(|e| problem(&e))
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// True when `If-None-Match` lists `tag` or `*` (weak comparison).
fn none_match(headers: &HeaderMap, tag: &HeaderValue) -> bool {
    let tag = tag.to_str().unwrap_or("");
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == tag)
}

/// The version an `If-Match` names: exactly one strong tag `"N"`.
fn if_match(headers: &HeaderMap) -> Result<Version, Problem> {
    let Some(raw) = headers.get(header::IF_MATCH) else {
        return Err(Problem::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
            "Precondition required",
            "send If-Match with the ETag of the item you read",
        ));
    };
    raw.to_str()
        .ok()
        .map(str::trim)
        .and_then(|t| t.strip_prefix('"')?.strip_suffix('"'))
        .and_then(|n| n.parse::<u64>().ok())
        .map(Version::new)
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid_if_match",
                "If-Match must be one strong ETag such as \"3\"",
            )
        })
}

fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl<S: InventoryStore> App<S> {
    fn meta(&self, ctx: &RequestContext) -> Meta {
        Meta {
            now: self.clock.now(),
            correlation_id: Some(ctx.request_id.as_str().to_owned()),
        }
    }

    /// Runs a command, then drops the cached figures of `touched` products.
    async fn execute(
        &self,
        command: Command,
        ctx: &RequestContext,
        touched: &[ProductId],
    ) -> Result<Outcome, Error> {
        let outcome = self.store.execute(command, &self.meta(ctx)).await;
        // Business errors may still have expired overdue reservations on the
        // way, so only operating errors (nothing committed) skip invalidation.
        let committed_something = outcome.as_ref().map_or_else(|e| !is_operating(e), |_| true);
        if let (true, Some(cache)) = (committed_something, &self.cache) {
            cache.invalidate(touched).await;
        }
        outcome
    }

    pub(crate) fn health(&self) -> Response<Body> {
        response::json(StatusCode::OK, &json!({"status": "ok"}))
    }

    pub(crate) async fn ready(&self) -> Handled {
        let store_ok = self
            .store
            .item(ProductId::from_uuid(Uuid::nil()))
            .await
            .is_ok();
        let redis_ok = match &self.redis {
            Some(r) => Some(r.healthy().await),
            None => None,
        };
        let mut down = Vec::new();
        if !store_ok {
            down.push("store");
        }
        if redis_ok == Some(false) {
            down.push("redis");
        }
        if !down.is_empty() {
            return Err(Problem::unavailable(
                "not_ready",
                format!("unreachable: {}", down.join(", ")),
                std::time::Duration::from_secs(NOT_READY_RETRY_AFTER_SECS),
            ));
        }
        let state = |ok: Option<bool>| match ok {
            Some(true) => "ok",
            Some(false) => "down",
            None => "disabled",
        };
        Ok(response::json(
            StatusCode::OK,
            &json!({"status": "ready", "checks": {"store": "ok", "redis": state(redis_ok)}}),
        ))
    }

    pub(crate) fn openapi(&self) -> Response<Body> {
        response::bytes_with_type(StatusCode::OK, self.openapi.clone(), "application/json")
    }

    /// Availability of products, from the cache where it has them.
    async fn read_availability(
        &self,
        ids: &[ProductId],
    ) -> Result<Vec<Option<Availability>>, Problem> {
        if let ([id], None) = (ids, &self.cache) {
            let item = domain(self.store.item(*id).await)?;
            return Ok(vec![item.map(|item| {
                self.metrics.stock(&item);
                Availability::from(&item)
            })]);
        }
        let mut found = match &self.cache {
            Some(cache) => cache.get_many(ids).await,
            None => vec![None; ids.len()],
        };
        let misses: Vec<ProductId> = ids
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(id, _)| *id)
            .collect();
        if misses.is_empty() {
            return Ok(found);
        }
        let items = if misses.len() == 1 {
            domain(self.store.item(misses[0]).await)?
                .into_iter()
                .collect()
        } else {
            domain(self.store.items(&misses).await)?
        };
        let fresh: Vec<Availability> = items
            .iter()
            .map(|item| {
                self.metrics.stock(item);
                Availability::from(item)
            })
            .collect();
        for slot in found.iter_mut().zip(ids) {
            if slot.0.is_none() {
                *slot.0 = fresh
                    .iter()
                    .find(|a| a.product_id == slot.1.as_uuid())
                    .cloned();
            }
        }
        if let Some(cache) = &self.cache {
            cache.put_many(&fresh).await;
        }
        Ok(found)
    }

    pub(crate) async fn availability(&self, param: &str, headers: &HeaderMap) -> Handled {
        let id: ProductId = parse_id(param, "product_id")?;
        let found = self.read_availability(&[id]).await?.pop().flatten();
        let Some(a) = found else {
            return Err(problem(&Error::ProductNotFound { product_id: id }));
        };
        let tag = etag(a.version);
        let mut resp = if none_match(headers, &tag) {
            response::empty(StatusCode::NOT_MODIFIED)
        } else {
            response::json(StatusCode::OK, &a)
        };
        resp.headers_mut().insert(header::ETAG, tag);
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Ok(resp)
    }

    pub(crate) async fn bulk_availability<B>(&self, request: &Request<B>) -> Handled {
        let query = request.uri().query().unwrap_or("");
        let raw = query_param(query, "product_ids").unwrap_or("");
        let raw = raw.replace("%2C", ",").replace("%2c", ",");
        let texts: Vec<&str> = raw.split(',').filter(|s| !s.is_empty()).collect();
        if texts.is_empty() || texts.len() > AVAILABILITY_BATCH_MAX {
            return Err(Problem::bad_request(
                "invalid_request",
                format!(
                    "product_ids must name 1 to {AVAILABILITY_BATCH_MAX} comma-separated products"
                ),
            ));
        }
        let mut ids = Vec::with_capacity(texts.len());
        for t in texts {
            let id: ProductId = parse_id(t, "product_ids")?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let found = self.read_availability(&ids).await?;
        let mut body = BulkAvailability {
            items: Vec::new(),
            missing: Vec::new(),
        };
        for (id, a) in ids.iter().zip(found) {
            match a {
                Some(a) => body.items.push(a),
                None => body.missing.push(id.as_uuid()),
            }
        }
        let tag = bulk_etag(&body);
        let mut resp = if none_match(request.headers(), &tag) {
            response::empty(StatusCode::NOT_MODIFIED)
        } else {
            response::json(StatusCode::OK, &body)
        };
        resp.headers_mut().insert(header::ETAG, tag);
        Ok(resp)
    }

    pub(crate) async fn create_item<B>(
        &self,
        request: Request<B>,
        caller: &Caller,
        ctx: &RequestContext,
    ) -> Handled
    where
        B: hyper::body::Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = request.into_parts();
        let req: CreateItemRequest = read_json(&parts.headers, body, self.body_bytes_max).await?;
        let product_id = ProductId::from_uuid(req.product_id);
        let command = Command::CreateItem {
            product_id,
            quantity: domain(StockLevel::new(req.quantity))?,
            actor: caller.actor.clone(),
        };
        let outcome = domain(self.execute(command, ctx, &[product_id]).await)?;
        let Outcome::Created(item) = outcome else {
            return Err(unexpected(&outcome));
        };
        self.metrics.stock(&item);
        let a = Availability::from(&item);
        let mut resp = response::json(StatusCode::CREATED, &a);
        resp.headers_mut().insert(header::ETAG, etag(a.version));
        if let Ok(v) = HeaderValue::from_str(&format!("/api/inventory/{product_id}")) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        Ok(resp)
    }

    pub(crate) async fn set_quantity<B>(
        &self,
        param: &str,
        request: Request<B>,
        caller: &Caller,
        ctx: &RequestContext,
    ) -> Handled
    where
        B: hyper::body::Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let product_id: ProductId = parse_id(param, "product_id")?;
        let expected_version = if_match(request.headers())?;
        let (parts, body) = request.into_parts();
        let req: SetQuantityRequest = read_json(&parts.headers, body, self.body_bytes_max).await?;
        let reason = req.reason.as_deref().unwrap_or(SET_QUANTITY_REASON_DEFAULT);
        let command = Command::SetQuantity {
            product_id,
            quantity: domain(StockLevel::new(req.quantity))?,
            expected_version,
            reason: domain(Reason::new(reason))?,
            actor: caller.actor.clone(),
        };
        self.item_outcome(self.execute(command, ctx, &[product_id]).await)
    }

    pub(crate) async fn adjust<B>(
        &self,
        param: &str,
        request: Request<B>,
        caller: &Caller,
        ctx: &RequestContext,
    ) -> Handled
    where
        B: hyper::body::Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let product_id: ProductId = parse_id(param, "product_id")?;
        let (parts, body) = request.into_parts();
        let req: AdjustRequest = read_json(&parts.headers, body, self.body_bytes_max).await?;
        let command = Command::Adjust {
            product_id,
            delta: domain(StockDelta::new(req.delta))?,
            reason: domain(Reason::new(&req.reason))?,
            actor: caller.actor.clone(),
        };
        self.item_outcome(self.execute(command, ctx, &[product_id]).await)
    }

    fn item_outcome(&self, outcome: Result<Outcome, Error>) -> Handled {
        let outcome = domain(outcome)?;
        let Outcome::Item { item, .. } = outcome else {
            return Err(unexpected(&outcome));
        };
        self.metrics.stock(&item);
        let a = Availability::from(&item);
        let mut resp = response::json(StatusCode::OK, &a);
        resp.headers_mut().insert(header::ETAG, etag(a.version));
        Ok(resp)
    }

    pub(crate) async fn adjustments<B>(&self, param: &str, request: &Request<B>) -> Handled {
        let product_id: ProductId = parse_id(param, "product_id")?;
        let limit = match query_param(request.uri().query().unwrap_or(""), "limit") {
            None => ADJUSTMENTS_PAGE_DEFAULT,
            Some(t) => t
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=ADJUSTMENTS_PAGE_MAX).contains(n))
                .ok_or_else(|| {
                    Problem::bad_request(
                        "invalid_request",
                        format!("limit must be 1 to {ADJUSTMENTS_PAGE_MAX}"),
                    )
                })?,
        };
        if domain(self.store.item(product_id).await)?.is_none() {
            return Err(problem(&Error::ProductNotFound { product_id }));
        }
        let entries = domain(self.store.adjustments(product_id, limit).await)?;
        Ok(response::json(
            StatusCode::OK,
            &AdjustmentList {
                product_id: product_id.as_uuid(),
                adjustments: entries.iter().map(AdjustmentView::from).collect(),
            },
        ))
    }

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

    pub(crate) async fn reserve<B>(&self, request: Request<B>, ctx: &RequestContext) -> Handled
    where
        B: hyper::body::Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = request.into_parts();
        let req: ReserveRequest = read_json(&parts.headers, body, self.body_bytes_max).await?;
        let line = ReserveLine {
            product_id: ProductId::from_uuid(req.product_id),
            quantity: domain(Quantity::new(req.quantity))?,
            reservation_id: ReservationId::from_uuid(Uuid::new_v4()),
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

    pub(crate) async fn reserve_lines<B>(
        &self,
        request: Request<B>,
        ctx: &RequestContext,
    ) -> Handled
    where
        B: hyper::body::Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
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
                quantity: domain(Quantity::new(l.quantity))?,
                reservation_id: ReservationId::from_uuid(Uuid::new_v4()),
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

    pub(crate) async fn get_reservation(&self, param: &str) -> Handled {
        let id: ReservationId = parse_id(param, "reservation_id")?;
        match domain(self.store.reservation(id).await)? {
            Some(r) => Ok(response::json(StatusCode::OK, &ReservationView::from(&r))),
            None => Err(problem(&Error::ReservationNotFound { reservation_id: id })),
        }
    }

    pub(crate) async fn confirm_body<B>(&self, request: Request<B>, ctx: &RequestContext) -> Handled
    where
        B: hyper::body::Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
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
        let outcome = self.store.execute(command, &self.meta(ctx)).await;
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

/// A weak ETag over the versions in a bulk answer (FNV-1a).
fn bulk_etag(body: &BulkAvailability) -> HeaderValue {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for a in &body.items {
        feed(a.product_id.as_bytes());
        feed(&a.version.to_le_bytes());
    }
    for m in &body.missing {
        feed(m.as_bytes());
    }
    HeaderValue::from_str(&format!("W/\"{h:016x}\"")).unwrap_or(HeaderValue::from_static("W/\"0\""))
}

fn is_operating(e: &Error) -> bool {
    matches!(
        e,
        Error::Contention | Error::Unavailable { .. } | Error::Storage { .. }
    )
}

fn unexpected(outcome: &Outcome) -> Problem {
    tracing::error!(?outcome, "store returned an outcome of another command");
    Problem::internal()
}
