//! The conformance kit: every rule of this crate, checked through the storage
//! port, so that any store that passes it is interchangeable with any other.
//!
//! A store's test crate implements [`Harness`] (how to make a fresh store, how
//! to run tasks truly concurrently) and calls [`run_all`] once. Each case gets a
//! fresh store and names itself on stderr before it runs, so a failure says
//! which rule broke.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use uuid::Uuid;

use crate::{
    Actor, Command, Error, InventoryItem, InventoryStore, Meta, OrderId, Outbox, OutboxEntry,
    Outcome, ProductId, Quantity, Reservation, ReservationId, Reserve, ReserveLine, StockLevel,
    Timestamp, Ttl, OUTBOX_BATCH_MAX,
};

mod batch;
mod batch_context;
mod concurrency;
mod model;
mod replay;
mod rules;

pub use model::{random_ops, Model, Op, MODEL_ORDERS, MODEL_PRODUCTS};
pub use replay::{check_batches, check_sequence, BATCH_CHECK_OPS, BATCH_CHECK_SIZE_MAX};

/// A task the kit hands to [`Harness::run_concurrently`].
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Sizes of the kit's heavier cases.
#[derive(Clone, Copy, Debug)]
pub struct KitConfig {
    /// Tasks racing for the last unit in one round.
    pub race_tasks: usize,
    /// Rounds of the last-unit race.
    pub race_rounds: usize,
    /// Tasks in the random concurrent mix.
    pub mix_tasks: usize,
    /// Operations each mix task runs.
    pub mix_ops_per_task: usize,
    /// Seeds of the random sequential model check.
    pub model_seeds: u64,
    /// Operations per model sequence.
    pub model_ops: usize,
    /// Seeds of the random batched model check ([`check_batches`]).
    pub batch_seeds: u64,
}

impl Default for KitConfig {
    fn default() -> Self {
        Self {
            race_tasks: 100,
            race_rounds: 20,
            mix_tasks: 50,
            mix_ops_per_task: 40,
            model_seeds: 8,
            model_ops: 120,
            batch_seeds: 24,
        }
    }
}

/// How the kit gets stores and concurrency from the store under test.
pub trait Harness: Sync {
    /// The store under test.
    type Store: InventoryStore + Outbox;

    /// A fresh, empty store.
    fn store(&self) -> impl Future<Output = Self::Store> + Send;

    /// Runs all tasks at the same time (on threads or a multi-thread runtime)
    /// and returns when every one has finished. A panicking task must fail the
    /// test.
    fn run_concurrently(&self, tasks: Vec<Task>) -> impl Future<Output = ()> + Send;

    /// Sizes of the heavier cases.
    fn config(&self) -> KitConfig {
        KitConfig::default()
    }
}

/// Runs every conformance case against fresh stores from `harness`.
///
/// # Panics
/// When the store breaks a rule; the message names the case and the rule.
pub async fn run_all<H: Harness>(harness: &H) {
    macro_rules! case {
        ($name:ident) => {
            case!(rules::$name)
        };
        ($module:ident :: $name:ident) => {{
            eprintln!("conformance: {}", stringify!($name));
            $module::$name(&harness.store().await).await;
        }};
    }
    case!(create_and_read);
    case!(create_twice_is_already_exists);
    case!(reserve_holds_stock);
    case!(reserve_more_than_available_changes_nothing);
    case!(reserve_unknown_product);
    case!(reserve_repeat_is_idempotent);
    case!(multi_line_is_all_or_nothing);
    case!(multi_line_reserves_every_line);
    case!(confirm_ships_once);
    case!(confirm_after_expiry_fails_and_gives_back);
    case!(release_gives_back_once);
    case!(terminal_states_do_not_move);
    case!(unknown_reservation);
    case!(sweep_expires_in_bounded_batches);
    case!(lazy_expiry_frees_stock_for_a_reserve);
    case!(adjust_keeps_a_ledger);
    case!(adjust_with_a_key_applies_once);
    case!(adjust_never_below_reserved);
    case!(set_quantity_checks_version);
    case!(events_follow_every_change_in_order);
    case!(bulk_read_and_order_lookup);
    case!(reservation_id_is_never_reused);
    case!(batch::same_order_twice_in_one_batch);
    case!(batch::reserve_then_confirm_in_one_batch);
    case!(batch::reserve_then_release_in_one_batch);
    case!(batch::unknown_reservation_fails_alone);
    case!(batch::failures_change_nothing_and_later_commands_see_earlier);
    case!(batch::last_unit_goes_to_the_first_in_the_batch);
    case!(batch::overlapping_orders_in_one_batch);
    case!(batch::create_then_reserve_in_one_batch);
    case!(batch_context::each_command_at_its_own_instant);
    case!(batch_context::lazy_expiry_inside_a_batch);
    case!(batch_context::lazy_expiry_bound_is_per_command);
    case!(batch_context::each_command_has_its_own_correlation_id);
    case!(batch_context::empty_and_oversized_batches);
    eprintln!("conformance: model_sequences");
    let cfg = harness.config();
    for seed in 0..cfg.model_seeds {
        let ops = random_ops(seed, cfg.model_ops);
        check_sequence(&harness.store().await, &ops).await;
    }
    eprintln!("conformance: model_batches");
    for seed in 0..cfg.batch_seeds {
        check_batches(&harness.store().await, seed).await;
    }
    eprintln!("conformance: race_for_last_unit");
    concurrency::race_for_last_unit(harness).await;
    eprintln!("conformance: random_mix_keeps_invariants");
    concurrency::random_mix_keeps_invariants(harness).await;
    eprintln!("conformance: concurrent_sweepers_expire_once");
    concurrency::concurrent_sweepers_expire_once(harness).await;
    eprintln!("conformance: multi_line_orders_do_not_deadlock");
    concurrency::multi_line_orders_do_not_deadlock(harness).await;
    eprintln!("conformance: concurrent_batches_keep_invariants");
    concurrency::concurrent_batches_keep_invariants(harness).await;
    eprintln!("conformance: settle_races_its_own_reserve");
    concurrency::settle_races_its_own_reserve(harness).await;
}

/// An instant well after the epoch, where the kit's clocks start.
pub const T0: Timestamp = Timestamp::from_millis(1_700_000_000_000);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh UUID, unique within this process (ids carry a per-kind tag and a
/// counter, so they are readable in failures).
fn fresh(tag: u128) -> Uuid {
    Uuid::from_u128((tag << 96) | u128::from(NEXT_ID.fetch_add(1, Ordering::Relaxed)))
}

/// A fresh product id.
pub fn new_product() -> ProductId {
    ProductId::from_uuid(fresh(0x_a1))
}

/// A fresh order id.
pub fn new_order() -> OrderId {
    OrderId::from_uuid(fresh(0x_b2))
}

/// A fresh reservation id.
pub fn new_reservation() -> ReservationId {
    ReservationId::from_uuid(fresh(0x_c3))
}

/// `T0` plus `secs` seconds.
pub fn at(secs: i64) -> Meta {
    Meta::at(Timestamp::from_millis(T0.as_millis() + secs * 1000))
}

/// Creates an item with `quantity` on hand at `T0`.
pub async fn create<S: InventoryStore>(store: &S, quantity: u64) -> ProductId {
    let product_id = new_product();
    let command = Command::CreateItem {
        product_id,
        quantity: StockLevel::new(quantity).expect("valid stock"),
        actor: Actor::system(),
    };
    store.execute(command, &at(0)).await.expect("create item");
    product_id
}

/// A reserve command for one line.
pub fn reserve_one(
    order_id: OrderId,
    product_id: ProductId,
    quantity: u64,
    ttl_secs: u64,
) -> Command {
    let line = ReserveLine {
        product_id,
        quantity: Quantity::new(quantity).expect("valid quantity"),
        reservation_id: new_reservation(),
    };
    Command::Reserve(Reserve::single(
        order_id,
        line,
        Ttl::from_secs(ttl_secs).expect("valid ttl"),
    ))
}

/// A reserve command for several lines.
pub fn reserve_many(order_id: OrderId, lines: &[(ProductId, u64)], ttl_secs: u64) -> Command {
    let lines = lines
        .iter()
        .map(|(product_id, q)| ReserveLine {
            product_id: *product_id,
            quantity: Quantity::new(*q).expect("valid quantity"),
            reservation_id: new_reservation(),
        })
        .collect();
    Command::Reserve(
        Reserve::new(
            order_id,
            lines,
            Ttl::from_secs(ttl_secs).expect("valid ttl"),
        )
        .expect("valid lines"),
    )
}

/// The ids a reserve command gives its lines (empty for other commands).
pub fn line_ids(command: &Command) -> Vec<ReservationId> {
    match command {
        Command::Reserve(reserve) => reserve.lines().iter().map(|l| l.reservation_id).collect(),
        _ => Vec::new(),
    }
}

/// Takes every unpublished outbox entry, lowest sequence first, and marks
/// them published.
pub async fn drain_outbox<S: Outbox>(store: &S) -> Vec<OutboxEntry> {
    let mut entries = Vec::new();
    loop {
        let batch = store
            .unpublished(OUTBOX_BATCH_MAX)
            .await
            .expect("read outbox");
        if batch.is_empty() {
            return entries;
        }
        let sequences: Vec<u64> = batch.iter().map(|e| e.sequence).collect();
        store
            .mark_published(&sequences)
            .await
            .expect("mark published");
        entries.extend(batch);
    }
}

/// The reservations of a successful reserve.
pub fn reserved(outcome: Result<Outcome, Error>) -> Vec<Reservation> {
    match outcome {
        Ok(Outcome::Reserved { reservations, .. }) => reservations,
        other => panic!("expected a reservation, got {other:?}"),
    }
}

/// The item, which must exist.
pub async fn item<S: InventoryStore>(store: &S, product_id: ProductId) -> InventoryItem {
    store
        .item(product_id)
        .await
        .expect("read item")
        .expect("item exists")
}

/// Checks the invariants of one item against its reservations:
/// `reserved <= quantity` and `reserved == sum of pending reservations`.
pub async fn assert_item_consistent<S: InventoryStore>(store: &S, product_id: ProductId) {
    let item = item(store, product_id).await;
    let pending: u64 = store
        .reservations_of_product(product_id)
        .await
        .expect("read reservations")
        .iter()
        .filter(|r| r.status() == crate::ReservationStatus::Pending)
        .map(|r| r.quantity())
        .sum();
    assert!(
        item.reserved() <= item.quantity(),
        "reserved above quantity: {item:?}"
    );
    assert_eq!(item.available(), item.quantity() - item.reserved());
    assert_eq!(
        item.reserved(),
        pending,
        "reserved must equal the sum of pending reservations: {item:?}"
    );
}
