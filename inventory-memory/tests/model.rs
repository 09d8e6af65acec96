//! Model-based property test: random operation sequences (including the clock
//! moving forward) run against the memory store and against a small reference
//! model written here; after every step the results must agree exactly and
//! every invariant of DESIGN.md must hold.

use std::collections::BTreeMap;

use inventory_core::{
    Actor, Command, Error, EventPayload, Meta, OrderId, Outcome, ProductId, Quantity, Reason,
    Reservation, ReservationId, ReservationStatus, Reserve, ReserveLine, StockDelta, StockLevel,
    Timestamp, Ttl, Version, LAZY_EXPIRY_MAX, STOCK_MAX,
};
use inventory_memory::MemoryStore;
use proptest::prelude::*;
use uuid::Uuid;

const PRODUCTS: usize = 3;
const ORDERS: usize = 5;
const T0: i64 = 1_700_000_000_000;

#[derive(Clone, Debug)]
enum Op {
    Create {
        product: usize,
        quantity: i64,
    },
    Reserve {
        order: usize,
        lines: Vec<(usize, i64)>,
        ttl_secs: i64,
    },
    Confirm {
        pick: usize,
    },
    Release {
        pick: usize,
    },
    Expire {
        pick: usize,
    },
    Adjust {
        product: usize,
        delta: i64,
    },
    SetQuantity {
        product: usize,
        quantity: i64,
        stale: bool,
    },
    ExpireDue {
        limit: usize,
    },
    Purge {
        age_ms: i64,
    },
    Advance {
        ms: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let product = 0..PRODUCTS;
    prop_oneof![
        2 => (product.clone(), 0..12_i64).prop_map(|(product, quantity)| Op::Create { product, quantity }),
        6 => (
            0..ORDERS,
            proptest::sample::subsequence((0..PRODUCTS).collect::<Vec<_>>(), 1..=PRODUCTS),
            proptest::collection::vec(1..5_i64, PRODUCTS),
            any::<bool>(),
            1..30_i64,
        )
            .prop_map(|(order, products, quantities, reversed, ttl_secs)| {
                let mut lines: Vec<(usize, i64)> =
                    products.into_iter().map(|p| (p, quantities[p])).collect();
                if reversed {
                    lines.reverse();
                }
                Op::Reserve { order, lines, ttl_secs }
            }),
        3 => any::<usize>().prop_map(|pick| Op::Confirm { pick }),
        2 => any::<usize>().prop_map(|pick| Op::Release { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Expire { pick }),
        1 => (product.clone(), -8..8_i64)
            .prop_filter("non-zero", |(_, d)| *d != 0)
            .prop_map(|(product, delta)| Op::Adjust { product, delta }),
        1 => (product, 0..15_i64, any::<bool>())
            .prop_map(|(product, quantity, stale)| Op::SetQuantity { product, quantity, stale }),
        1 => (1..4_usize).prop_map(|limit| Op::ExpireDue { limit }),
        1 => (0..30_000_i64).prop_map(|age_ms| Op::Purge { age_ms }),
        3 => (0..20_000_i64).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn product_id(i: usize) -> ProductId {
    ProductId::from_uuid(Uuid::from_u128(0x1000 + i as u128))
}

fn order_id(i: usize) -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(0x2000 + i as u128))
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct MItem {
    quantity: u64,
    reserved: u64,
    version: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct MRes {
    order: OrderId,
    product: ProductId,
    quantity: u64,
    status: ReservationStatus,
    expires_at: Timestamp,
}

/// What a step did, in a form both sides can produce.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Created,
    Reserved(Vec<ReservationId>, bool),
    Reservation(ReservationId, ReservationStatus, bool),
    Item(u64, bool),
    Expired(usize),
    Purged(usize),
    Err(Error),
    Nothing,
}

/// The reference model: plain maps and the rules written out again.
#[derive(Default)]
struct Model {
    items: BTreeMap<ProductId, MItem>,
    reservations: BTreeMap<ReservationId, MRes>,
    /// Event kinds and products the last step produced.
    events: Vec<(&'static str, ProductId)>,
    /// The instant of the current step.
    now: Timestamp,
    /// When each finished reservation finished.
    finished_at: BTreeMap<ReservationId, Timestamp>,
    /// Units of confirmed reservations that were purged, per product.
    sold_purged: BTreeMap<ProductId, u64>,
    /// Sum of the deltas of ledger entries purged, per product.
    ledger_purged: BTreeMap<ProductId, i64>,
}

impl Model {
    fn find(&self, order: OrderId, product: ProductId) -> Option<ReservationId> {
        self.reservations
            .iter()
            .find(|(_, r)| r.order == order && r.product == product)
            .map(|(id, _)| *id)
    }

    fn finish(&mut self, id: ReservationId, to: ReservationStatus) {
        let r = self.reservations.get_mut(&id).unwrap();
        assert_eq!(r.status, ReservationStatus::Pending);
        r.status = to;
        let (product, quantity) = (r.product, r.quantity);
        self.finished_at.insert(id, self.now);
        let item = self.items.get_mut(&product).unwrap();
        item.reserved -= quantity;
        let kind = match to {
            ReservationStatus::Confirmed => {
                item.quantity -= quantity;
                "inventory.stock.confirmed"
            }
            ReservationStatus::Released => "inventory.stock.released",
            _ => "inventory.stock.expired",
        };
        self.events.push((kind, product));
    }

    fn due(&self, product: ProductId, now: Timestamp) -> Vec<ReservationId> {
        let mut due: Vec<(Timestamp, ReservationId)> = self
            .reservations
            .iter()
            .filter(|(_, r)| {
                r.product == product
                    && r.status == ReservationStatus::Pending
                    && now >= r.expires_at
            })
            .map(|(id, r)| (r.expires_at, *id))
            .collect();
        due.sort();
        due.into_iter().map(|(_, id)| id).collect()
    }

    fn create(&mut self, product: ProductId, quantity: u64) -> Step {
        if self.items.contains_key(&product) {
            return Step::Err(Error::AlreadyExists {
                product_id: product,
            });
        }
        self.items.insert(
            product,
            MItem {
                quantity,
                reserved: 0,
                version: 1,
            },
        );
        if quantity > 0 {
            self.events.push(("inventory.stock.adjusted", product));
        }
        Step::Created
    }

    fn reserve(&mut self, reserve: &Reserve, now: Timestamp) -> Step {
        let order = reserve.order_id();
        let mut missing = Vec::new();
        for line in reserve.lines() {
            match self.find(order, line.product_id) {
                Some(id) => {
                    let existing = self.reservations[&id].quantity;
                    if existing != line.quantity.get() {
                        return Step::Err(Error::IdempotencyConflict {
                            order_id: order,
                            product_id: line.product_id,
                            existing,
                            requested: line.quantity.get(),
                        });
                    }
                }
                None => missing.push(line.clone()),
            }
        }
        let mut touched = Vec::new();
        let mut failure = None;
        for line in &missing {
            let Some(item) = self.items.get(&line.product_id) else {
                failure = Some(Error::ProductNotFound {
                    product_id: line.product_id,
                });
                break;
            };
            let wanted = line.quantity.get();
            if item.quantity - item.reserved < wanted {
                let due = self.due(line.product_id, now);
                for id in due.into_iter().take(LAZY_EXPIRY_MAX) {
                    self.finish(id, ReservationStatus::Expired);
                    if !touched.contains(&line.product_id) {
                        touched.push(line.product_id);
                    }
                }
            }
            let item = &self.items[&line.product_id];
            let available = item.quantity - item.reserved;
            if available < wanted {
                failure = Some(Error::InsufficientStock {
                    product_id: line.product_id,
                    requested: wanted,
                    available,
                });
                break;
            }
        }
        if failure.is_none() {
            let expires_at = now.plus_ms(reserve.ttl().as_millis());
            for line in &missing {
                let item = self.items.get_mut(&line.product_id).unwrap();
                item.reserved += line.quantity.get();
                let depleted = item.quantity == item.reserved;
                if !touched.contains(&line.product_id) {
                    touched.push(line.product_id);
                }
                self.reservations.insert(
                    line.reservation_id,
                    MRes {
                        order,
                        product: line.product_id,
                        quantity: line.quantity.get(),
                        status: ReservationStatus::Pending,
                        expires_at,
                    },
                );
                self.events
                    .push(("inventory.stock.reserved", line.product_id));
                if depleted {
                    self.events
                        .push(("inventory.stock.depleted", line.product_id));
                }
            }
        }
        for p in touched {
            self.items.get_mut(&p).unwrap().version += 1;
        }
        match failure {
            Some(e) => Step::Err(e),
            None => Step::Reserved(
                reserve
                    .lines()
                    .iter()
                    .map(|l| self.find(order, l.product_id).unwrap())
                    .collect(),
                !missing.is_empty(),
            ),
        }
    }

    fn settle(&mut self, id: ReservationId, to: ReservationStatus, now: Timestamp) -> Step {
        let Some(r) = self.reservations.get(&id).cloned() else {
            return Step::Err(Error::ReservationNotFound { reservation_id: id });
        };
        let bump = |m: &mut Self| m.items.get_mut(&r.product).unwrap().version += 1;
        match (to, r.status) {
            (ReservationStatus::Expired, _) => {
                if r.status == ReservationStatus::Pending && now >= r.expires_at {
                    self.finish(id, ReservationStatus::Expired);
                    bump(self);
                    Step::Reservation(id, ReservationStatus::Expired, true)
                } else {
                    Step::Reservation(id, r.status, false)
                }
            }
            (to, from) if to == from => Step::Reservation(id, from, false),
            (_, ReservationStatus::Expired) => Step::Err(Error::ReservationExpired {
                reservation_id: id,
                expires_at: r.expires_at,
            }),
            (to, ReservationStatus::Pending) => {
                if to == ReservationStatus::Confirmed && now >= r.expires_at {
                    self.finish(id, ReservationStatus::Expired);
                    bump(self);
                    return Step::Err(Error::ReservationExpired {
                        reservation_id: id,
                        expires_at: r.expires_at,
                    });
                }
                self.finish(id, to);
                bump(self);
                Step::Reservation(id, to, true)
            }
            (to, from) => Step::Err(Error::InvalidTransition {
                reservation_id: id,
                from,
                to,
            }),
        }
    }

    fn set_stock(&mut self, product: ProductId, target: i64) -> Step {
        let item = self.items[&product].clone();
        if target < item.reserved as i64 {
            return Step::Err(Error::BelowReserved {
                product_id: product,
                requested: target,
                reserved: item.reserved,
            });
        }
        if target > STOCK_MAX as i64 {
            return Step::Err(Error::InvalidQuantity {
                value: target,
                min: 0,
                max: STOCK_MAX,
            });
        }
        let target = target as u64;
        if target == item.quantity {
            return Step::Item(target, false);
        }
        let it = self.items.get_mut(&product).unwrap();
        it.quantity = target;
        it.version += 1;
        self.events.push(("inventory.stock.adjusted", product));
        if item.quantity > item.reserved && target == item.reserved {
            self.events.push(("inventory.stock.depleted", product));
        }
        Step::Item(target, true)
    }
}

fn result_of(outcome: Result<Outcome, Error>) -> Step {
    match outcome {
        Ok(Outcome::Created(_)) => Step::Created,
        Ok(Outcome::Reserved {
            reservations,
            created,
        }) => Step::Reserved(reservations.iter().map(Reservation::id).collect(), created),
        Ok(Outcome::Reservation {
            reservation,
            changed,
        }) => Step::Reservation(reservation.id(), reservation.status(), changed),
        Ok(Outcome::Item { item, changed }) => Step::Item(item.quantity(), changed),
        Ok(other) => panic!("an outcome the model does not know: {other:?}"),
        Err(e) => Step::Err(e),
    }
}

struct Run {
    store: MemoryStore,
    model: Model,
    now: Timestamp,
    known: Vec<ReservationId>,
    next_id: u128,
    last_sequence: u64,
}

impl Run {
    fn new() -> Self {
        Self {
            store: MemoryStore::new(),
            model: Model::default(),
            now: Timestamp::from_millis(T0),
            known: Vec::new(),
            next_id: 1,
            last_sequence: 0,
        }
    }

    fn fresh(&mut self) -> ReservationId {
        self.next_id += 1;
        ReservationId::from_uuid(Uuid::from_u128(0x3000_0000 + self.next_id))
    }

    fn pick(&mut self, pick: usize) -> ReservationId {
        if pick % (self.known.len() + 1) == self.known.len() {
            self.fresh() // a reservation nobody made
        } else {
            self.known[pick % (self.known.len() + 1)]
        }
    }

    fn exec(&self, command: &Command) -> Step {
        result_of(
            self.store
                .execute_sync(command.clone(), &Meta::at(self.now)),
        )
    }

    fn step(&mut self, op: &Op) {
        self.model.events.clear();
        self.model.now = self.now;
        let now = self.now;
        let (got, want) = match op {
            Op::Create { product, quantity } => {
                let p = product_id(*product);
                let command = Command::CreateItem {
                    product_id: p,
                    quantity: StockLevel::try_from(*quantity).unwrap(),
                    actor: Actor::system(),
                };
                (self.exec(&command), self.model.create(p, *quantity as u64))
            }
            Op::Reserve {
                order,
                lines,
                ttl_secs,
            } => {
                let lines = lines
                    .iter()
                    .map(|(p, q)| ReserveLine {
                        product_id: product_id(*p),
                        quantity: Quantity::try_from(*q).unwrap(),
                        reservation_id: self.fresh(),
                    })
                    .collect();
                let reserve = Reserve::new(
                    order_id(*order),
                    lines,
                    Ttl::from_secs(*ttl_secs as u64).unwrap(),
                )
                .unwrap();
                let got = self.exec(&Command::Reserve(reserve.clone()));
                let want = self.model.reserve(&reserve, now);
                if let Step::Reserved(ids, true) = &want {
                    for id in ids {
                        if !self.known.contains(id) {
                            self.known.push(*id);
                        }
                    }
                }
                (got, want)
            }
            Op::Confirm { pick } | Op::Release { pick } | Op::Expire { pick } => {
                let id = self.pick(*pick);
                let (command, to) = match op {
                    Op::Confirm { .. } => (
                        Command::Confirm { reservation_id: id },
                        ReservationStatus::Confirmed,
                    ),
                    Op::Release { .. } => (
                        Command::Release { reservation_id: id },
                        ReservationStatus::Released,
                    ),
                    _ => (
                        Command::Expire { reservation_id: id },
                        ReservationStatus::Expired,
                    ),
                };
                (self.exec(&command), self.model.settle(id, to, now))
            }
            Op::Adjust { product, delta } => {
                let p = product_id(*product);
                let command = Command::Adjust {
                    product_id: p,
                    delta: StockDelta::new(*delta).unwrap(),
                    reason: Reason::new("count").unwrap(),
                    actor: Actor::system(),
                    key: None,
                };
                let want = match self.model.items.get(&p) {
                    None => Step::Err(Error::ProductNotFound { product_id: p }),
                    Some(item) => self.model.set_stock(p, item.quantity as i64 + delta),
                };
                (self.exec(&command), want)
            }
            Op::SetQuantity {
                product,
                quantity,
                stale,
            } => {
                let p = product_id(*product);
                let current = self.model.items.get(&p).map_or(1, |i| i.version);
                let expected = if *stale { current + 1 } else { current };
                let command = Command::SetQuantity {
                    product_id: p,
                    quantity: StockLevel::try_from(*quantity).unwrap(),
                    expected_version: Version::new(expected),
                    reason: Reason::new("recount").unwrap(),
                    actor: Actor::system(),
                };
                let want = match self.model.items.get(&p) {
                    None => Step::Err(Error::ProductNotFound { product_id: p }),
                    Some(item) if item.version != expected => Step::Err(Error::VersionConflict {
                        product_id: p,
                        expected: Version::new(expected),
                        actual: Version::new(item.version),
                    }),
                    Some(_) => self.model.set_stock(p, *quantity),
                };
                (self.exec(&command), want)
            }
            Op::ExpireDue { limit } => self.sweep(*limit),
            Op::Purge { age_ms } => {
                let before = Timestamp::from_millis(self.now.as_millis() - age_ms);
                for i in 0..PRODUCTS {
                    let p = product_id(i);
                    let old: i64 = self
                        .store
                        .adjustments_sync(p, usize::MAX)
                        .iter()
                        .filter(|a| a.at < before)
                        .map(|a| a.delta)
                        .sum();
                    *self.model.ledger_purged.entry(p).or_default() += old;
                }
                let got = self.store.purge_finished(before, usize::MAX);
                let old: Vec<ReservationId> = self
                    .model
                    .finished_at
                    .iter()
                    .filter(|(_, at)| **at < before)
                    .map(|(id, _)| *id)
                    .collect();
                for id in &old {
                    self.model.finished_at.remove(id);
                    let r = self
                        .model
                        .reservations
                        .remove(id)
                        .expect("finished ones exist");
                    if r.status == ReservationStatus::Confirmed {
                        *self.model.sold_purged.entry(r.product).or_default() += r.quantity;
                    }
                }
                (Step::Purged(got), Step::Purged(old.len()))
            }
            Op::Advance { ms } => {
                self.now = self.now.plus_ms(*ms as u64);
                (Step::Nothing, Step::Nothing)
            }
        };
        assert_eq!(got, want, "result of {op:?}");
        self.check_events(op);
        self.check_state();
    }

    /// The sweep may pick any due reservations (it visits products in no fixed
    /// order) but, per product, the earliest first: apply what it chose.
    fn sweep(&mut self, limit: usize) -> (Step, Step) {
        let due: BTreeMap<ProductId, Vec<ReservationId>> = self
            .model
            .items
            .keys()
            .map(|p| (*p, self.model.due(*p, self.now)))
            .collect();
        let total: usize = due.values().map(Vec::len).sum();
        let expired = self.store.expire_due_sync(&Meta::at(self.now), limit);
        for (product, ids) in &due {
            let chosen = ids
                .iter()
                .take_while(|id| {
                    self.store.reservation_sync(**id).unwrap().status()
                        == ReservationStatus::Expired
                })
                .count();
            for id in &ids[chosen..] {
                let status = self.store.reservation_sync(*id).unwrap().status();
                assert_eq!(
                    status,
                    ReservationStatus::Pending,
                    "sweep takes the earliest of {product}"
                );
            }
            for id in &ids[..chosen] {
                self.model.settle(*id, ReservationStatus::Expired, self.now);
            }
        }
        (Step::Expired(expired), Step::Expired(limit.min(total)))
    }

    fn check_events(&mut self, op: &Op) {
        let entries = self.store.drain(usize::MAX);
        for entry in &entries {
            assert!(entry.sequence > self.last_sequence, "sequences grow");
            self.last_sequence = entry.sequence;
            assert_eq!(entry.event.occurred_at, self.now);
        }
        let mut got: Vec<(&'static str, ProductId)> = entries
            .iter()
            .map(|e| (e.event.payload.event_type(), e.event.payload.product_id()))
            .collect();
        let mut want = std::mem::take(&mut self.model.events);
        if matches!(op, Op::ExpireDue { .. }) {
            // Products are swept in no fixed order.
            got.sort();
            want.sort();
        }
        assert_eq!(got, want, "events of {op:?}");
        for entry in &entries {
            if let EventPayload::Reserved {
                reservation_id,
                expires_at,
                ..
            } = entry.event.payload
            {
                assert_eq!(
                    expires_at,
                    self.model.reservations[&reservation_id].expires_at
                );
            }
        }
    }

    /// Every invariant of DESIGN.md, and store == model.
    fn check_state(&self) {
        self.store.assert_consistent();
        for i in 0..PRODUCTS {
            let p = product_id(i);
            let item = self.store.item_sync(p);
            let Some(want) = self.model.items.get(&p) else {
                assert!(item.is_none());
                continue;
            };
            let item = item.expect("created item exists");
            assert!(
                item.reserved() <= item.quantity(),
                "0 <= reserved <= quantity"
            );
            assert_eq!(item.available(), item.quantity() - item.reserved());
            assert_eq!(
                MItem {
                    quantity: item.quantity(),
                    reserved: item.reserved(),
                    version: item.version().get()
                },
                *want,
                "item {i}"
            );
            let reservations = self.store.reservations_of_product_sync(p);
            let pending: u64 = reservations
                .iter()
                .filter(|r| r.status() == ReservationStatus::Pending)
                .map(|r| r.quantity())
                .sum();
            assert_eq!(item.reserved(), pending, "reserved == sum of pending");
            // Confirmed units are counted once: the ledger's changes minus the
            // units sold give the quantity on hand.
            // (Sequences are shorter than one ledger page, so the page is all.)
            let ledger = self.store.adjustments_sync(p, usize::MAX);
            assert!(ledger.len() < inventory_core::ADJUSTMENTS_PAGE_MAX);
            let changes: i64 = ledger.iter().map(|a| a.delta).sum::<i64>()
                + self.model.ledger_purged.get(&p).copied().unwrap_or(0);
            // Sold = confirmed reservations still stored + those purged since.
            let sold: u64 = reservations
                .iter()
                .filter(|r| r.status() == ReservationStatus::Confirmed)
                .map(|r| r.quantity())
                .sum::<u64>()
                + self.model.sold_purged.get(&p).copied().unwrap_or(0);
            assert_eq!(
                changes - sold as i64,
                item.quantity() as i64,
                "sold units counted once"
            );
        }
        for (id, want) in &self.model.reservations {
            let r = self
                .store
                .reservation_sync(*id)
                .expect("reservation exists");
            assert_eq!(
                MRes {
                    order: r.order_id(),
                    product: r.product_id(),
                    quantity: r.quantity(),
                    status: r.status(),
                    expires_at: r.expires_at(),
                },
                *want,
                "reservation {id}"
            );
        }
        for order in 0..ORDERS {
            let got: Vec<ReservationId> = self
                .store
                .reservations_of_order_sync(order_id(order))
                .iter()
                .map(Reservation::id)
                .collect();
            let mut want: Vec<(ProductId, ReservationId)> = self
                .model
                .reservations
                .iter()
                .filter(|(_, r)| r.order == order_id(order))
                .map(|(id, r)| (r.product, *id))
                .collect();
            want.sort();
            assert_eq!(got, want.into_iter().map(|(_, id)| id).collect::<Vec<_>>());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Store and model agree on every result, event and state, and every
    /// invariant holds after every step; terminal states never move.
    #[test]
    fn store_matches_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut run = Run::new();
        let mut terminal: BTreeMap<ReservationId, ReservationStatus> = BTreeMap::new();
        for op in &ops {
            run.step(op);
            for id in run.model.reservations.keys() {
                let status = run.store.reservation_sync(*id).expect("stored").status();
                if let Some(before) = terminal.get(id) {
                    prop_assert_eq!(*before, status, "terminal states never move");
                }
                if status.is_terminal() {
                    terminal.insert(*id, status);
                }
            }
        }
    }
}
