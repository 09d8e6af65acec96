//! The order flows, written once and run on the memory stores and on
//! PostgreSQL (see `memory.rs` and `postgres.rs`).

use std::sync::Arc;

use http::Method;
use inventory_core::InventoryStore;
use orders_http::config::Config;
use orders_http::domain::OrderId;
use orders_http::store::OrderStore;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{customer, orders_config, token, Inventory, Orders};

/// A real inventory and an orders server talking to it.
pub(crate) struct Stack<S: InventoryStore> {
    /// Inventory.
    pub(crate) inventory: Inventory<S>,
    /// Orders.
    pub(crate) orders: Orders,
}

impl<S: InventoryStore> Stack<S> {
    /// Starts both servers; `tweak` adjusts the orders configuration.
    pub(crate) async fn start(
        inventory_store: S,
        orders_store: Arc<dyn OrderStore>,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let inventory = Inventory::spawn(inventory_store).await;
        let mut config = orders_config(&inventory.url());
        tweak(&mut config);
        let orders = Orders::spawn(config, orders_store).await;
        Self { inventory, orders }
    }

    /// A product with `stock` units in inventory, sold at `price_minor`.
    pub(crate) async fn product(&self, stock: u64, price_minor: i64) -> Uuid {
        let id = Uuid::new_v4();
        self.inventory.stock(id, stock).await;
        self.orders.sell(id, price_minor).await;
        id
    }
}

fn id_of(reply: &Value) -> String {
    reply["id"].as_str().expect("order id").to_owned()
}

/// The API's acceptance cases: 202 pending with a server-side total, 400s for
/// bad items, 401 without a token, idempotent repeats per user, own orders
/// only with pagination, 404 for another user's order, a bare status view.
pub(crate) async fn acceptance<S: InventoryStore>(t: &Stack<S>) {
    let (a, b) = (customer("alice"), customer("bob"));
    let p = t.product(100, 1_250).await;
    let q = t.product(100, 99).await;

    let placed = t.orders.place(&a, &[(p, 2), (q, 1), (p, 1)], None).await;
    assert_eq!(placed.status, 202, "{:?}", placed.json);
    assert_eq!(placed.json["status"], "pending");
    assert_eq!(placed.json["total_minor"], 3 * 1_250 + 99);
    assert_eq!(
        placed.json["items"].as_array().map(Vec::len),
        Some(2),
        "duplicate lines merged"
    );
    let location = placed
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert_eq!(location, format!("/api/orders/{}", id_of(&placed.json)));

    let empty = t.orders.place(&a, &[], None).await;
    assert_eq!((empty.status, empty.code()), (400, "no_items"));
    let unknown = t.orders.place(&a, &[(Uuid::new_v4(), 1)], None).await;
    assert_eq!((unknown.status, unknown.code()), (422, "unknown_product"));
    let zero = t.orders.place(&a, &[(p, 0)], None).await;
    assert_eq!((zero.status, zero.code()), (400, "invalid_quantity"));
    let priced = t
        .orders
        .send(
            Method::POST,
            "/api/orders",
            Some(&a),
            &[],
            Some(&json!({"items": [{"product_id": p, "quantity": 1, "unit_price_minor": 1}]})),
        )
        .await;
    assert_eq!(priced.status, 400, "a client price is refused");
    let anonymous = t
        .orders
        .send(
            Method::POST,
            "/api/orders",
            None,
            &[],
            Some(&json!({"items": [{"product_id": p, "quantity": 1}]})),
        )
        .await;
    assert_eq!(anonymous.status, 401);
    assert!(anonymous.headers.contains_key("www-authenticate"));
    let admin_only = t
        .orders
        .send(
            Method::POST,
            "/api/products",
            Some(&a),
            &[],
            Some(&json!({"name": "x", "price_minor": 1, "currency": "EUR"})),
        )
        .await;
    assert_eq!(admin_only.status, 403);

    let first = t.orders.place(&a, &[(p, 1)], Some("key-1")).await;
    let again = t.orders.place(&a, &[(p, 1)], Some("key-1")).await;
    assert_eq!((first.status, again.status), (202, 202));
    assert_eq!(
        id_of(&first.json),
        id_of(&again.json),
        "same key, same order"
    );
    let other_body = t.orders.place(&a, &[(p, 2)], Some("key-1")).await;
    assert_eq!(
        (other_body.status, other_body.code()),
        (409, "idempotency_key_reused")
    );
    let bobs = t.orders.place(&b, &[(p, 1)], Some("key-1")).await;
    assert_eq!(bobs.status, 202);
    assert_ne!(
        id_of(&bobs.json),
        id_of(&first.json),
        "keys are scoped per user"
    );

    for _ in 0..3 {
        assert_eq!(t.orders.place(&a, &[(q, 1)], None).await.status, 202);
    }
    let page1 = t.orders.get("/api/orders?page=1&limit=2", &a).await;
    assert_eq!(page1.status, 200);
    assert_eq!(page1.json["total"], 5);
    assert_eq!(page1.json["has_next"], true);
    let page3 = t.orders.get("/api/orders?page=3&limit=2", &a).await;
    assert_eq!(page3.json["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page3.json["has_next"], false);
    let all = t.orders.get("/api/orders?limit=100", &a).await;
    let items = all.json["items"].as_array().expect("items").clone();
    assert!(items.iter().all(|o| o["user_id"] == "alice"));
    let created: Vec<&str> = items
        .iter()
        .map(|o| o["created_at"].as_str().unwrap_or(""))
        .collect();
    assert!(
        created.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {created:?}"
    );
    assert_eq!(t.orders.get("/api/orders?limit=101", &a).await.status, 400);

    let alices = id_of(&first.json);
    let stolen = t.orders.get(&format!("/api/orders/{alices}"), &b).await;
    assert_eq!((stolen.status, stolen.code()), (404, "order_not_found"));
    let status = t
        .orders
        .get(&format!("/api/orders/{alices}/status"), &a)
        .await;
    assert_eq!(status.status, 200);
    let keys: Vec<&String> = status.json.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["id", "status"]);
    assert_eq!(status.json["id"], alices.as_str());

    let spec = t.orders.get("/openapi.json", &a).await;
    assert_eq!(spec.json["openapi"], "3.1.0");
    let products = t.orders.get("/api/products", &a).await;
    assert!(products.json["items"]
        .as_array()
        .is_some_and(|v| v.len() >= 2));
    for o in &items {
        t.orders
            .wait_final(&a, o["id"].as_str().unwrap_or(""))
            .await;
    }
}

/// Happy path of a two-line order: one reservation call, both lines
/// confirmed, stock taken exactly once, nothing left pending, payment recorded.
pub(crate) async fn happy_path<S: InventoryStore>(t: &Stack<S>) {
    let user = customer("carol");
    let (p, q) = (t.product(10, 500).await, t.product(5, 1_000).await);
    let placed = t.orders.place(&user, &[(p, 2), (q, 1)], None).await;
    assert_eq!(placed.status, 202);
    let id = id_of(&placed.json);
    let done = t.orders.wait_final(&user, &id).await;
    assert_eq!(done["status"], "confirmed", "{done}");
    assert_eq!(done["cancel_reason"], Value::Null);
    assert_eq!(done["reservation_ids"].as_array().map(Vec::len), Some(2));
    assert!(done["payment_id"].is_string());
    assert_eq!(t.inventory.levels(p).await, (8, 0));
    assert_eq!(t.inventory.levels(q).await, (4, 0));
    assert_eq!(t.inventory.reservations(p).await, (0, 1, 0));
    assert_eq!(t.inventory.reservations(q).await, (0, 1, 0));
    let order_id = OrderId::from_uuid(id.parse().expect("uuid"));
    let record = t
        .orders
        .store
        .get(order_id)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(record.saga.reserve_attempts, 1, "one reservation call");
    let (payment, refund) = t.orders.store.money(order_id).await.expect("money");
    assert_eq!(payment.map(|p| p.amount_minor), Some(2_000));
    assert_eq!(refund, None);
}

/// Payment declined: cancelled `payment_declined`, stock back, reservation
/// released. The stack must decline every payment.
pub(crate) async fn payment_declined<S: InventoryStore>(t: &Stack<S>) {
    let user = customer("dave");
    let p = t.product(3, 700).await;
    let placed = t.orders.place(&user, &[(p, 2)], None).await;
    let done = t.orders.wait_final(&user, &id_of(&placed.json)).await;
    assert_eq!(
        (done["status"].as_str(), done["cancel_reason"].as_str()),
        (Some("cancelled"), Some("payment_declined"))
    );
    assert_eq!(t.inventory.levels(p).await, (3, 0));
    assert_eq!(t.inventory.reservations(p).await, (0, 0, 1), "released");
}

/// Out of stock: cancelled `out_of_stock`, nothing held, and the other line
/// of the order was not held either (all or nothing).
pub(crate) async fn out_of_stock<S: InventoryStore>(t: &Stack<S>) {
    let user = customer("erin");
    let (p, q) = (t.product(1, 100).await, t.product(10, 100).await);
    let placed = t.orders.place(&user, &[(q, 1), (p, 2)], None).await;
    let done = t.orders.wait_final(&user, &id_of(&placed.json)).await;
    assert_eq!(
        (done["status"].as_str(), done["cancel_reason"].as_str()),
        (Some("cancelled"), Some("out_of_stock"))
    );
    assert_eq!(t.inventory.levels(p).await, (1, 0));
    assert_eq!(t.inventory.levels(q).await, (10, 0));
    assert_eq!(t.inventory.reservations(q).await, (0, 0, 0), "nothing held");
    assert_eq!(done["payment_id"], Value::Null, "nothing charged");
}

/// A hundred customers order the last unit at once (the hundred requests are
/// in flight together): exactly one confirmed, 99 cancelled `out_of_stock`,
/// stock 0, no pending reservation.
pub(crate) async fn last_unit_race<S: InventoryStore>(t: &Stack<S>) {
    let p = t.product(1, 4_200).await;
    let orders = &t.orders;
    let placed = futures_join_all((0..100).map(|i| async move {
        let user = customer(&format!("rush-{i}"));
        let reply = orders.place(&user, &[(p, 1)], None).await;
        assert_eq!(reply.status, 202);
        (user, id_of(&reply.json))
    }))
    .await;
    let mut outcomes = std::collections::HashMap::new();
    for (user, id) in &placed {
        let done = orders.wait_final(user, id).await;
        let key = format!(
            "{}/{}",
            done["status"].as_str().unwrap_or(""),
            done["cancel_reason"].as_str().unwrap_or("")
        );
        *outcomes.entry(key).or_insert(0) += 1;
    }
    assert_eq!(outcomes.get("confirmed/"), Some(&1), "{outcomes:?}");
    assert_eq!(
        outcomes.get("cancelled/out_of_stock"),
        Some(&99),
        "{outcomes:?}"
    );
    assert_eq!(t.inventory.levels(p).await, (0, 0));
    assert_eq!(
        t.inventory.reservations(p).await.0,
        0,
        "no pending reservation"
    );
}

/// Runs futures concurrently on this task and collects their outputs in order.
pub(crate) async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("ready")).collect()
}

/// Admin catalog writes: create, update, deactivate; an inactive product
/// cannot be ordered.
pub(crate) async fn catalog_admin<S: InventoryStore>(t: &Stack<S>) {
    let admin = token("root", &[service_guard::Role::Admin]);
    let id = Uuid::new_v4();
    let body = json!({"id": id, "name": "Desk lamp", "price_minor": 3_499, "currency": "EUR"});
    let created = t
        .orders
        .send(
            Method::POST,
            "/api/products",
            Some(&admin),
            &[],
            Some(&body),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.json);
    let dup = t
        .orders
        .send(
            Method::POST,
            "/api/products",
            Some(&admin),
            &[],
            Some(&body),
        )
        .await;
    assert_eq!((dup.status, dup.code()), (409, "product_exists"));
    let bad = t
        .orders
        .send(
            Method::POST,
            "/api/products",
            Some(&admin),
            &[],
            Some(&json!({"name": "x", "price_minor": -1, "currency": "EUR"})),
        )
        .await;
    assert_eq!(bad.status, 400);
    let update =
        json!({"name": "Desk lamp", "price_minor": 2_999, "currency": "EUR", "active": false});
    let updated = t
        .orders
        .send(
            Method::PUT,
            &format!("/api/products/{id}"),
            Some(&admin),
            &[],
            Some(&update),
        )
        .await;
    assert_eq!(
        (updated.status, updated.json["active"].as_bool()),
        (200, Some(false))
    );
    let missing = t
        .orders
        .send(
            Method::PUT,
            &format!("/api/products/{}", Uuid::new_v4()),
            Some(&admin),
            &[],
            Some(&update),
        )
        .await;
    assert_eq!(missing.status, 404);
    let user = customer("frank");
    let inactive = t.orders.place(&user, &[(id, 1)], None).await;
    assert_eq!((inactive.status, inactive.code()), (422, "unknown_product"));
    let shown = t.orders.get(&format!("/api/products/{id}"), &user).await;
    assert_eq!(shown.json["price_minor"], 2_999);
}
