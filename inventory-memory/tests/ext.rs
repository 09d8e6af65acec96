//! The convenience methods of `InventoryStoreExt`, on the memory store: each
//! runs its command and answers what the command made.

use inventory_core::{
    Error, InventoryStoreExt, OrderId, ProductId, ReservationId, ReservationStatus, SharedStore,
    Timestamp, Ttl, Uuid,
};
use inventory_memory::MemoryStore;
use std::sync::Arc;

fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

#[test]
fn the_common_calls_read_like_the_domain() {
    pollster::block_on(async {
        // Through the trait object, so both ends are covered.
        let store: SharedStore = Arc::new(MemoryStore::new());
        let now = Timestamp::from_millis(1_000);
        let (shoes, socks) = (ProductId::from(id(1)), ProductId::from(id(2)));
        let order = OrderId::from(id(10));

        let item = store.create_item(shoes, 5, now).await.unwrap();
        assert_eq!(item.available(), 5);
        store.create_item(socks, 3, now).await.unwrap();

        let held = store
            .reserve(order, shoes, 2, Ttl::default(), now)
            .await
            .unwrap();
        assert_eq!(held.id(), ReservationId::for_line(order, shoes));
        assert_eq!(store.availability(shoes).await.unwrap(), Some(3));

        // Asking again for the same order and product is the same hold.
        let again = store
            .reserve(order, shoes, 2, Ttl::default(), now)
            .await
            .unwrap();
        assert_eq!(again.id(), held.id());
        assert_eq!(store.availability(shoes).await.unwrap(), Some(3));

        let sold = store.confirm(held.id(), now).await.unwrap();
        assert_eq!(sold.status(), ReservationStatus::Confirmed);

        let basket = OrderId::from(id(11));
        let lines = store
            .reserve_lines(basket, &[(shoes, 1), (socks, 3)], Ttl::default(), now)
            .await
            .unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(store.availability(socks).await.unwrap(), Some(0));
        let given_back = store.release(lines[1].id(), now).await.unwrap();
        assert_eq!(given_back.status(), ReservationStatus::Released);

        let item = store.adjust(socks, 7, "delivery", now).await.unwrap();
        assert_eq!((item.quantity(), item.available()), (10, 10));
        assert_eq!(
            store.availability(ProductId::from(id(99))).await.unwrap(),
            None
        );
    });
}

#[test]
fn bad_counts_and_shortages_are_errors_not_panics() {
    pollster::block_on(async {
        let store = MemoryStore::new();
        let now = Timestamp::from_millis(1_000);
        let product = ProductId::from(id(1));
        store.create_item(product, 1, now).await.unwrap();
        let order = OrderId::from(id(10));
        let zero = store.reserve(order, product, 0, Ttl::default(), now).await;
        assert!(
            matches!(zero, Err(Error::InvalidQuantity { .. })),
            "{zero:?}"
        );
        let short = store.reserve(order, product, 2, Ttl::default(), now).await;
        assert!(
            matches!(short, Err(Error::InsufficientStock { .. })),
            "{short:?}"
        );
        let none = store.adjust(product, 0, "nothing", now).await;
        assert!(
            matches!(none, Err(Error::InvalidQuantity { .. })),
            "{none:?}"
        );
        let blank = store.adjust(product, 1, "  ", now).await;
        assert!(
            matches!(blank, Err(Error::InvalidInput { .. })),
            "{blank:?}"
        );
        assert_eq!(store.availability(product).await.unwrap(), Some(1));
    });
}
