//! Operations routes: liveness, readiness and the OpenAPI document.

use http::{Response, StatusCode};
use inventory_core::{InventoryStore, ProductId};
use serde_json::json;
use service_kit::response;
use service_kit::{Body, Problem};
use uuid::Uuid;

use crate::app::App;
use crate::events::EventsStatus;

use super::{Handled, NOT_READY_RETRY_AFTER_SECS};

impl<S: InventoryStore> App<S> {
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
            down.push("store".to_owned());
        }
        if redis_ok == Some(false) {
            down.push("redis".to_owned());
        }
        let events_problem = self.events.as_ref().and_then(EventsStatus::problem);
        if let Some(p) = &events_problem {
            down.push(p.clone());
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
        let events = self.events.as_ref().map(|_| events_problem.is_none());
        Ok(response::json(
            StatusCode::OK,
            &json!({"status": "ready", "checks": {
                "store": "ok",
                "redis": state(redis_ok),
                "events": state(events),
            }}),
        ))
    }

    pub(crate) fn openapi(&self) -> Response<Body> {
        response::bytes_with_type(StatusCode::OK, self.openapi.clone(), "application/json")
    }
}
