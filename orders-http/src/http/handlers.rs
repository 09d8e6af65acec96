//! One function per route: parse, call the store or the saga engine, respond.

use http::{header, HeaderValue, Request, Response, StatusCode};
use service_kit::metrics::{catch_up, gauge_value};
use service_kit::response::json;
use service_kit::server::RequestContext;
use service_kit::{Body, Problem};
use uuid::Uuid;

use super::dto::{OrderList, OrderView, PlaceOrderRequest, ProductList, ProductView, StatusView};
use super::{store_problem, App};
use crate::catalog::ProductInput;
use crate::domain::{
    CancelReason, IdempotencyKey, Order, OrderError, OrderId, OrderItems, OrderStatus, ProductId,
    UserId,
};
use crate::events::EventsHealth;
use crate::saga::{CancelOutcome, SagaState};
use crate::store::{OrderRecord, Placed};

/// The request header carrying a client's idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// Orders per page when the client does not say.
pub const PAGE_LIMIT_DEFAULT: u32 = 20;

/// Most orders per page.
pub const PAGE_LIMIT_MAX: u32 = 100;

/// Highest page number accepted (keeps offsets small).
pub const PAGE_MAX: u32 = 100_000;

/// Retry hint of a readiness failure caused by the event broker, in
/// milliseconds (the relay's longest back-off).
pub const BROKER_RETRY_AFTER_MS: u64 = 5_000;

fn order_problem(e: &OrderError) -> Problem {
    if e.fits_the_schema() {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            e.code(),
            "Unprocessable content",
            e.to_string(),
        )
    } else {
        Problem::bad_request(e.code(), e.to_string())
    }
}

/// What a 404 is about.
#[derive(Clone, Copy)]
enum Missing {
    Order,
    Product,
}

fn not_found(what: Missing, id: &str) -> Problem {
    let shown: String = id.chars().take(64).collect();
    let (code, noun) = match what {
        Missing::Order => ("order_not_found", "order"),
        Missing::Product => ("product_not_found", "product"),
    };
    Problem::new(
        StatusCode::NOT_FOUND,
        code,
        "Not found",
        format!("no {noun} {shown}"),
    )
}

fn parse_uuid(what: Missing, text: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(text).map_err(|_| not_found(what, text))
}

fn order_view(status: StatusCode, record: &OrderRecord) -> Response<Body> {
    let mut resp = json(status, &OrderView::from(record));
    let location = format!("/api/orders/{}", record.order.id);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn parse_page(query: Option<&str>) -> Result<(u32, u32), Problem> {
    let (mut page, mut limit) = (1u32, PAGE_LIMIT_DEFAULT);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let parsed = || {
            value.parse::<u32>().map_err(|_| {
                Problem::bad_request(
                    "invalid_query",
                    format!("{name} must be a positive integer"),
                )
            })
        };
        match name {
            "page" => page = parsed()?,
            "limit" => limit = parsed()?,
            _ => {}
        }
    }
    if page == 0 || page > PAGE_MAX {
        return Err(Problem::bad_request(
            "invalid_query",
            format!("page must be 1 to {PAGE_MAX}"),
        ));
    }
    if limit == 0 || limit > PAGE_LIMIT_MAX {
        return Err(Problem::bad_request(
            "invalid_query",
            format!("limit must be 1 to {PAGE_LIMIT_MAX}"),
        ));
    }
    Ok((page, limit))
}

impl App {
    pub(super) fn health(&self) -> Response<Body> {
        json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
    }

    pub(super) async fn ready(&self) -> Result<Response<Body>, Problem> {
        self.store.ping().await.map_err(store_problem)?;
        let events = self.events_health();
        if let Some(problem) = events.and_then(EventsHealth::broker_problem) {
            return Err(Problem::unavailable(
                "broker_unavailable",
                format!("{problem}; order events wait in the outbox"),
                std::time::Duration::from_millis(BROKER_RETRY_AFTER_MS),
            ));
        }
        Ok(json(
            StatusCode::OK,
            &serde_json::json!({
                "status": "ready",
                "store": "ok",
                "broker": events.map_or("not started", |e| e.transport),
                "outbox_depth": events.map_or(0, |e| e.relay.outbox_depth()),
                "sagas_running": self.engine.running(),
            }),
        ))
    }

    pub(super) fn render_metrics(&self) -> Response<Body> {
        if let Some(events) = self.events_health() {
            let m = &self.metrics;
            m.events_outbox_depth
                .set(gauge_value(events.relay.outbox_depth()));
            m.events_broker_up
                .set(i64::from(events.broker_problem().is_none()));
            catch_up(&m.events_published, events.relay.published());
            if let Some(c) = &events.consumer {
                catch_up(&m.events_consumed, c.applied());
                catch_up(&m.events_dead_lettered, c.dead_lettered());
            }
        }
        service_kit::metrics::render(&self.registry)
    }

    async fn owned(&self, user: &UserId, id: &str) -> Result<OrderRecord, Problem> {
        let order_id = OrderId::from_uuid(parse_uuid(Missing::Order, id)?);
        match self.store.get(order_id).await.map_err(store_problem)? {
            // Another user's order is reported as missing: its existence is
            // not the caller's business.
            Some(r) if r.order.user_id == *user => Ok(r),
            _ => Err(not_found(Missing::Order, id)),
        }
    }

    pub(super) async fn place_order<B>(
        &self,
        user: &UserId,
        request: Request<B>,
        ctx: &RequestContext,
    ) -> Result<Response<Body>, Problem>
    where
        B: hyper::body::Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let key = match request.headers().get(IDEMPOTENCY_KEY_HEADER) {
            None => None,
            Some(v) => {
                let text = v
                    .to_str()
                    .map_err(|_| order_problem(&OrderError::InvalidIdempotencyKey))?;
                Some(IdempotencyKey::parse(text).map_err(|e| order_problem(&e))?)
            }
        };
        let (parts, body) = request.into_parts();
        let body: PlaceOrderRequest =
            service_kit::body::read_json(&parts.headers, body, self.body_bytes_max).await?;
        let items = OrderItems::parse(&body.items).map_err(|e| order_problem(&e))?;
        let fingerprint = items.fingerprint();
        if let Some(key) = &key {
            if let Some(existing) = self.store.by_key(user, key).await.map_err(store_problem)? {
                return repeat(&existing, &fingerprint);
            }
        }
        let ids: Vec<ProductId> = items.lines().iter().map(|(p, _)| *p).collect();
        let catalog = self
            .store
            .products_by_id(&ids)
            .await
            .map_err(store_problem)?;
        let (lines, total_minor, currency) =
            items.price(&catalog).map_err(|e| order_problem(&e))?;
        let now = self.clock.now_ms();
        let order = Order {
            id: OrderId::generate(),
            user_id: user.clone(),
            status: OrderStatus::Pending,
            lines,
            total_minor,
            currency,
            idempotency_key: key,
            fingerprint: fingerprint.clone(),
            created_at_ms: now,
            updated_at_ms: now,
        };
        let deadline = now.saturating_add(
            i64::try_from(self.engine.config().pending_deadline_ms).unwrap_or(i64::MAX),
        );
        let request_id = ctx.request_id.to_string();
        let saga = SagaState::new(&order, deadline).with_request_id(&request_id);
        let event = crate::events::created(&order, Some(&request_id));
        match self
            .store
            .place(&order, &saga, &event)
            .await
            .map_err(store_problem)?
        {
            Placed::Created => {
                self.metrics.orders_placed.inc();
                tracing::info!(order_id = %order.id, request_id = %ctx.request_id, total_minor, "order placed");
                self.engine.start(order.id);
                let record = OrderRecord {
                    order,
                    saga,
                    cancel_requested: false,
                    holds: Vec::new(),
                };
                Ok(order_view(StatusCode::ACCEPTED, &record))
            }
            Placed::Existing(existing) => repeat(&existing, &fingerprint),
        }
    }

    pub(super) async fn list_orders<B>(
        &self,
        user: &UserId,
        request: &Request<B>,
    ) -> Result<Response<Body>, Problem> {
        let (page, limit) = parse_page(request.uri().query())?;
        let offset = u64::from(page - 1) * u64::from(limit);
        let found = self
            .store
            .list(user, offset, limit)
            .await
            .map_err(store_problem)?;
        let items: Vec<OrderView> = found.records.iter().map(OrderView::from).collect();
        let has_next = offset + (items.len() as u64) < found.total;
        Ok(json(
            StatusCode::OK,
            &OrderList {
                items,
                page,
                limit,
                total: found.total,
                has_next,
            },
        ))
    }

    pub(super) async fn get_order(
        &self,
        user: &UserId,
        id: &str,
    ) -> Result<Response<Body>, Problem> {
        let record = self.owned(user, id).await?;
        Ok(json(StatusCode::OK, &OrderView::from(&record)))
    }

    pub(super) async fn order_status(
        &self,
        user: &UserId,
        id: &str,
    ) -> Result<Response<Body>, Problem> {
        let record = self.owned(user, id).await?;
        Ok(json(
            StatusCode::OK,
            &StatusView {
                id: record.order.id.as_uuid(),
                status: record.order.status.as_str().to_owned(),
            },
        ))
    }

    pub(super) async fn cancel_order(
        &self,
        user: &UserId,
        id: &str,
    ) -> Result<Response<Body>, Problem> {
        let record = self.owned(user, id).await?;
        if record.order.status.is_final() {
            return Err(not_pending(&record));
        }
        match self
            .engine
            .cancel(record.order.id)
            .await
            .map_err(store_problem)?
        {
            CancelOutcome::Finished(r)
                if r.order.status == OrderStatus::Cancelled(CancelReason::CancelledByUser) =>
            {
                Ok(order_view(StatusCode::OK, &r))
            }
            CancelOutcome::Finished(r) | CancelOutcome::NotPending(r) => Err(not_pending(&r)),
            CancelOutcome::Accepted(r) => Ok(order_view(StatusCode::ACCEPTED, &r)),
            CancelOutcome::NotFound => Err(not_found(Missing::Order, id)),
        }
    }

    pub(super) async fn list_products(&self) -> Result<Response<Body>, Problem> {
        let products = self.store.products().await.map_err(store_problem)?;
        Ok(json(
            StatusCode::OK,
            &ProductList {
                items: products.iter().map(ProductView::from).collect(),
            },
        ))
    }

    pub(super) async fn get_product(&self, id: &str) -> Result<Response<Body>, Problem> {
        let pid = ProductId::from_uuid(parse_uuid(Missing::Product, id)?);
        let found = self
            .store
            .products_by_id(&[pid])
            .await
            .map_err(store_problem)?;
        match found.first() {
            Some(p) => Ok(json(StatusCode::OK, &ProductView::from(p))),
            None => Err(not_found(Missing::Product, id)),
        }
    }

    pub(super) async fn create_product<B>(
        &self,
        request: Request<B>,
    ) -> Result<Response<Body>, Problem>
    where
        B: hyper::body::Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = request.into_parts();
        let input: ProductInput =
            service_kit::body::read_json(&parts.headers, body, self.body_bytes_max).await?;
        let id = ProductId::from_uuid(input.id.unwrap_or_else(Uuid::new_v4));
        let product = input
            .into_product(id, self.clock.now_ms())
            .map_err(|e| Problem::bad_request("invalid_product", e.to_string()))?;
        self.store
            .create_product(&product)
            .await
            .map_err(store_problem)?;
        tracing::info!(product_id = %product.id, "product created");
        Ok(json(StatusCode::CREATED, &ProductView::from(&product)))
    }

    pub(super) async fn update_product<B>(
        &self,
        id: &str,
        request: Request<B>,
    ) -> Result<Response<Body>, Problem>
    where
        B: hyper::body::Body + Send,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let pid = ProductId::from_uuid(parse_uuid(Missing::Product, id)?);
        let (parts, body) = request.into_parts();
        let input: ProductInput =
            service_kit::body::read_json(&parts.headers, body, self.body_bytes_max).await?;
        let product = input
            .into_product(pid, self.clock.now_ms())
            .map_err(|e| Problem::bad_request("invalid_product", e.to_string()))?;
        if !self
            .store
            .update_product(&product)
            .await
            .map_err(store_problem)?
        {
            return Err(not_found(Missing::Product, id));
        }
        tracing::info!(product_id = %product.id, "product updated");
        Ok(json(StatusCode::OK, &ProductView::from(&product)))
    }
}

/// The answer to a repeated `Idempotency-Key`: the same order when the items
/// are the same, 409 otherwise.
fn repeat(existing: &OrderRecord, fingerprint: &str) -> Result<Response<Body>, Problem> {
    if existing.order.fingerprint == fingerprint {
        Ok(order_view(StatusCode::ACCEPTED, existing))
    } else {
        Err(Problem::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            "Conflict",
            "this idempotency key was used for a different order",
        ))
    }
}

fn not_pending(record: &OrderRecord) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "order_not_pending",
        "Conflict",
        format!(
            "order {} is {}",
            record.order.id,
            record.order.status.as_str()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_bounded() {
        assert_eq!(parse_page(None).unwrap(), (1, PAGE_LIMIT_DEFAULT));
        assert_eq!(parse_page(Some("page=3&limit=100")).unwrap(), (3, 100));
        for bad in ["page=0", "limit=101", "limit=0", "page=x", "limit=-1"] {
            assert_eq!(
                parse_page(Some(bad)).unwrap_err().status(),
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }
}
