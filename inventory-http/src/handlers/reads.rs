//! Reads: availability (single and bulk, with ETags, through the cache), the
//! stock ledger and reservations.

use http::{header, HeaderMap, HeaderValue, Request, StatusCode};
use inventory_core::{
    Error, InventoryStore, ProductId, ReservationId, ADJUSTMENTS_PAGE_MAX, AVAILABILITY_BATCH_MAX,
};
use service_kit::response;
use service_kit::Problem;

use crate::app::App;
use crate::dto::{AdjustmentList, AdjustmentView, Availability, BulkAvailability, ReservationView};
use crate::errors::problem;

use super::{domain, etag, none_match, parse_id, query_param, Handled, ADJUSTMENTS_PAGE_DEFAULT};

impl<S: InventoryStore> App<S> {
    /// Availability of products, from the cache where it has them.
    async fn read_availability(
        &self,
        ids: &[ProductId],
    ) -> Result<Vec<Option<Availability>>, Problem> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
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
        let limit = || {
            Problem::bad_request(
                "invalid_request",
                format!(
                    "product_ids must name 0 to {AVAILABILITY_BATCH_MAX} comma-separated products"
                ),
            )
        };
        // Present and empty is an empty list (answered with empty lists);
        // absent is a malformed request.
        let raw = query_param(query, "product_ids").ok_or_else(limit)?;
        let raw = raw.replace("%2C", ",").replace("%2c", ",");
        let texts: Vec<&str> = raw.split(',').filter(|s| !s.is_empty()).collect();
        if texts.len() > AVAILABILITY_BATCH_MAX {
            return Err(limit());
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

    pub(crate) async fn get_reservation(&self, param: &str) -> Handled {
        let id: ReservationId = parse_id(param, "reservation_id")?;
        match domain(self.store.reservation(id).await)? {
            Some(r) => Ok(response::json(StatusCode::OK, &ReservationView::from(&r))),
            None => Err(problem(&Error::ReservationNotFound { reservation_id: id })),
        }
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
