//! Stock management: create an item, set its quantity (`If-Match`), adjust it
//! with a reason.

use http::{header, HeaderValue, Request, StatusCode};
use inventory_core::{
    Command, Error, InventoryStore, Outcome, ProductId, Reason, StockDelta, StockLevel,
};
use service_kit::body::{read_json, RequestBody};
use service_kit::response;
use service_kit::server::RequestContext;
use service_kit::Problem;

use crate::app::App;
use crate::auth::Caller;
use crate::dto::{
    AdjustRequest, Availability, CreateItemRequest, SetQuantityRequest, SET_QUANTITY_REASON_DEFAULT,
};

use super::{domain, etag, idempotency_key, if_match, parse_id, unexpected, Handled, IfMatch};

/// Attempts at a set-quantity under `If-Match: *` when other writes keep
/// landing between its read of the item and its write.
pub(crate) const IF_MATCH_ANY_ATTEMPTS_MAX: u32 = 5;

impl<S: InventoryStore> App<S> {
    pub(crate) async fn create_item<B: RequestBody>(
        &self,
        request: Request<B>,
        caller: &Caller,
        ctx: &RequestContext,
    ) -> Handled {
        let (parts, body) = request.into_parts();
        let req: CreateItemRequest = read_json(&parts.headers, body, self.body_bytes_max).await?;
        let product_id = ProductId::from_uuid(req.product_id);
        let command = Command::CreateItem {
            product_id,
            quantity: domain(StockLevel::try_from(req.quantity))?,
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

    pub(crate) async fn set_quantity<B: RequestBody>(
        &self,
        param: &str,
        request: Request<B>,
        caller: &Caller,
        ctx: &RequestContext,
    ) -> Handled {
        let product_id: ProductId = parse_id(param, "product_id")?;
        let precondition = if_match(request.headers())?;
        let (parts, body) = request.into_parts();
        let req: SetQuantityRequest = read_json(&parts.headers, body, self.body_bytes_max).await?;
        let reason = req.reason.as_deref().unwrap_or(SET_QUANTITY_REASON_DEFAULT);
        let quantity = domain(StockLevel::try_from(req.quantity))?;
        let reason = domain(Reason::new(reason))?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let expected_version = match precondition {
                IfMatch::Version(v) => v,
                // `*`: whatever version the item is at now; none at all is
                // a failed precondition (RFC 9110, 13.1.1).
                IfMatch::Any => match domain(self.store.item(product_id).await)? {
                    Some(item) => item.version(),
                    None => {
                        return Err(Problem::new(
                            StatusCode::PRECONDITION_FAILED,
                            "precondition_failed",
                            "Precondition failed",
                            "If-Match: * names a current item, and there is none",
                        ))
                    }
                },
            };
            let command = Command::SetQuantity {
                product_id,
                quantity,
                expected_version,
                reason: reason.clone(),
                actor: caller.actor.clone(),
            };
            let outcome = self.execute(command, ctx, &[product_id]).await;
            // With `*`, a write that landed between the read and this one
            // is no conflict: read again (a bounded number of times).
            if precondition == IfMatch::Any
                && matches!(outcome, Err(Error::VersionConflict { .. }))
                && attempts < IF_MATCH_ANY_ATTEMPTS_MAX
            {
                continue;
            }
            return self.item_outcome(outcome);
        }
    }

    pub(crate) async fn adjust<B: RequestBody>(
        &self,
        param: &str,
        request: Request<B>,
        caller: &Caller,
        ctx: &RequestContext,
    ) -> Handled {
        let product_id: ProductId = parse_id(param, "product_id")?;
        let key = idempotency_key(request.headers())?;
        let (parts, body) = request.into_parts();
        let req: AdjustRequest = read_json(&parts.headers, body, self.body_bytes_max).await?;
        let command = Command::Adjust {
            product_id,
            delta: domain(StockDelta::new(req.delta))?,
            reason: domain(Reason::new(&req.reason))?,
            actor: caller.actor.clone(),
            key,
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
}
