//! A reference model of the rules, simple enough to be obviously right, and a
//! generator of random operations to run against it (the checkers that run
//! them against a store and the model side by side live in `replay`).

use std::collections::BTreeMap;

use crate::{
    AdjustmentKey, Command, Error, OrderId, ProductId, ReservationId, ReservationStatus, Timestamp,
    Version, LAZY_EXPIRY_MAX,
};

/// Products a sequence works on.
pub const MODEL_PRODUCTS: u8 = 4;
/// Orders a sequence works on (few, so idempotent repeats happen).
pub const MODEL_ORDERS: u8 = 6;

/// One step of a generated sequence. Products and orders are small indexes;
/// reservations are picked by index among those created so far.
#[derive(Clone, Debug)]
pub enum Op {
    /// Create product `product` with `quantity` on hand.
    Create {
        /// Product index.
        product: u8,
        /// Units on hand.
        quantity: u64,
    },
    /// Reserve lines for order `order` (products distinct).
    Reserve {
        /// Order index.
        order: u8,
        /// (product index, quantity) pairs.
        lines: Vec<(u8, u64)>,
        /// Hold in seconds.
        ttl_secs: u64,
    },
    /// Confirm the `pick`-th reservation created so far (modulo their count).
    Confirm {
        /// Which reservation.
        pick: usize,
    },
    /// Release the `pick`-th reservation created so far (modulo their count).
    Release {
        /// Which reservation.
        pick: usize,
    },
    /// Expire every due reservation.
    Sweep,
    /// Change the stock of a product by `delta`, under idempotency key
    /// `k{key}` when there is one (few keys, so repeats and reuses happen).
    Adjust {
        /// Product index.
        product: u8,
        /// Signed change (non-zero).
        delta: i64,
        /// Idempotency key index.
        key: Option<u8>,
    },
    /// Set the stock of a product, with the current or a stale version.
    Set {
        /// Product index.
        product: u8,
        /// New units on hand.
        quantity: u64,
        /// Use a stale expected version.
        stale: bool,
    },
    /// Move the clock forward.
    Advance {
        /// Seconds.
        secs: i64,
    },
}

/// A small deterministic generator, so the kit needs no dependency.
pub(super) struct XorShift(u64);

impl XorShift {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n > 0`).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A reproducible random sequence of `len` operations.
pub fn random_ops(seed: u64, len: usize) -> Vec<Op> {
    let mut rng = XorShift::new(seed);
    let mut ops: Vec<Op> = (0..MODEL_PRODUCTS)
        .map(|product| Op::Create {
            product,
            quantity: rng.below(8),
        })
        .collect();
    while ops.len() < len {
        let product = rng.below(u64::from(MODEL_PRODUCTS)) as u8;
        let op = match rng.below(20) {
            0..=6 => {
                let n = 1 + rng.below(3) as u8;
                let first = rng.below(u64::from(MODEL_PRODUCTS)) as u8;
                let lines = (0..n)
                    .map(|i| ((first + i) % MODEL_PRODUCTS, 1 + rng.below(3)))
                    .collect();
                Op::Reserve {
                    order: rng.below(u64::from(MODEL_ORDERS)) as u8,
                    lines,
                    ttl_secs: 1 + rng.below(30),
                }
            }
            7..=9 => Op::Confirm {
                pick: rng.below(64) as usize,
            },
            10..=11 => Op::Release {
                pick: rng.below(64) as usize,
            },
            12 => Op::Sweep,
            13..=14 => Op::Adjust {
                product,
                delta: rng.below(9) as i64 - 4,
                key: (rng.below(2) == 0).then(|| rng.below(3) as u8),
            },
            15 => Op::Set {
                product,
                quantity: rng.below(10),
                stale: rng.below(3) == 0,
            },
            16 => Op::Create {
                product,
                quantity: 1,
            },
            _ => Op::Advance {
                secs: 1 + rng.below(15) as i64,
            },
        };
        ops.push(op);
    }
    ops
}

/// An item as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ModelItem {
    pub(super) quantity: u64,
    pub(super) reserved: u64,
    pub(super) version: u64,
}

/// A reservation as the model sees it.
#[derive(Clone, Debug)]
pub(super) struct ModelReservation {
    pub(super) id: ReservationId,
    order: OrderId,
    product: ProductId,
    pub(super) quantity: u64,
    pub(super) status: ReservationStatus,
    pub(super) expires_at: Timestamp,
}

/// The reference model: items and reservations as plain data.
#[derive(Debug, Default)]
pub struct Model {
    pub(super) items: BTreeMap<ProductId, ModelItem>,
    /// Every reservation ever made, in the order made.
    pub(super) reservations: Vec<ModelReservation>,
    /// The delta made under each idempotency key of each product.
    pub(super) keyed: BTreeMap<(ProductId, AdjustmentKey), i64>,
}

impl Model {
    fn touch(&mut self, product: ProductId, touched: &mut Vec<ProductId>) {
        if !touched.contains(&product) {
            touched.push(product);
        }
    }

    fn settle(&mut self, index: usize, to: ReservationStatus, touched: &mut Vec<ProductId>) {
        let r = &mut self.reservations[index];
        r.status = to;
        let (product, q) = (r.product, r.quantity);
        let item = self.items.get_mut(&product).expect("item of a reservation");
        item.reserved -= q;
        if to == ReservationStatus::Confirmed {
            item.quantity -= q;
        }
        self.touch(product, touched);
    }

    fn overdue(&self, product: ProductId, now: Timestamp) -> Vec<usize> {
        let mut due: Vec<usize> = (0..self.reservations.len())
            .filter(|&i| {
                let r = &self.reservations[i];
                r.product == product
                    && r.status == ReservationStatus::Pending
                    && now >= r.expires_at
            })
            .collect();
        due.sort_by_key(|&i| (self.reservations[i].expires_at, self.reservations[i].id));
        due.truncate(LAZY_EXPIRY_MAX);
        due
    }

    /// Where the reservation `id` is in [`Model::reservations`], if made.
    pub(super) fn index_of(&self, id: ReservationId) -> Option<usize> {
        self.reservations.iter().position(|r| r.id == id)
    }

    /// Applies a command the way the rules say, returning the expected error.
    pub(super) fn apply(&mut self, command: &Command, now: Timestamp) -> Result<(), Error> {
        let mut touched = Vec::new();
        let result = self.apply_inner(command, now, &mut touched);
        for p in touched {
            self.items.get_mut(&p).expect("touched item").version += 1;
        }
        result
    }

    fn apply_inner(
        &mut self,
        command: &Command,
        now: Timestamp,
        touched: &mut Vec<ProductId>,
    ) -> Result<(), Error> {
        match command {
            Command::CreateItem {
                product_id,
                quantity,
                ..
            } => {
                if self.items.contains_key(product_id) {
                    return Err(Error::AlreadyExists {
                        product_id: *product_id,
                    });
                }
                let item = ModelItem {
                    quantity: quantity.get(),
                    reserved: 0,
                    version: 1,
                };
                self.items.insert(*product_id, item);
                Ok(())
            }
            Command::Reserve(reserve) => {
                let order = reserve.order_id();
                let mut missing = Vec::new();
                for line in reserve.lines() {
                    let existing = self
                        .reservations
                        .iter()
                        .find(|r| r.order == order && r.product == line.product_id);
                    match existing {
                        Some(r) if r.quantity != line.quantity.get() => {
                            return Err(Error::IdempotencyConflict {
                                order_id: order,
                                product_id: line.product_id,
                                existing: r.quantity,
                                requested: line.quantity.get(),
                            })
                        }
                        Some(_) => {}
                        None => missing.push(line),
                    }
                }
                for line in &missing {
                    let p = line.product_id;
                    let want = line.quantity.get();
                    let available = |m: &Self| {
                        m.items
                            .get(&p)
                            .map(|i| i.quantity - i.reserved)
                            .ok_or(Error::ProductNotFound { product_id: p })
                    };
                    if available(self)? < want {
                        for i in self.overdue(p, now) {
                            self.settle(i, ReservationStatus::Expired, touched);
                        }
                    }
                    let available = available(self)?;
                    if available < want {
                        return Err(Error::InsufficientStock {
                            product_id: p,
                            requested: want,
                            available,
                        });
                    }
                }
                for line in missing {
                    self.items
                        .get_mut(&line.product_id)
                        .expect("checked")
                        .reserved += line.quantity.get();
                    self.touch(line.product_id, touched);
                    self.reservations.push(ModelReservation {
                        id: line.reservation_id,
                        order,
                        product: line.product_id,
                        quantity: line.quantity.get(),
                        status: ReservationStatus::Pending,
                        expires_at: now.plus_ms(reserve.ttl().as_millis()),
                    });
                }
                Ok(())
            }
            Command::Confirm { reservation_id } | Command::Release { reservation_id } => {
                let confirm = matches!(command, Command::Confirm { .. });
                let i = self
                    .index_of(*reservation_id)
                    .ok_or(Error::ReservationNotFound {
                        reservation_id: *reservation_id,
                    })?;
                let r = self.reservations[i].clone();
                let target = if confirm {
                    ReservationStatus::Confirmed
                } else {
                    ReservationStatus::Released
                };
                let expired = Error::ReservationExpired {
                    reservation_id: r.id,
                    expires_at: r.expires_at,
                };
                match r.status {
                    s if s == target => Ok(()),
                    ReservationStatus::Expired => Err(expired),
                    ReservationStatus::Pending if confirm && now >= r.expires_at => {
                        self.settle(i, ReservationStatus::Expired, touched);
                        Err(expired)
                    }
                    ReservationStatus::Pending => {
                        self.settle(i, target, touched);
                        Ok(())
                    }
                    from => Err(Error::InvalidTransition {
                        reservation_id: r.id,
                        from,
                        to: target,
                    }),
                }
            }
            Command::Expire { .. } => unreachable!("the model sweeps with expire_due"),
            Command::Adjust {
                product_id,
                delta,
                key,
                ..
            } => {
                let item = self.items.get(product_id).ok_or(Error::ProductNotFound {
                    product_id: *product_id,
                })?;
                let target = item.quantity as i64 + delta.get();
                let Some(key) = key else {
                    return self.set(*product_id, target, touched);
                };
                match self.keyed.get(&(*product_id, key.clone())) {
                    Some(&existing) if existing == delta.get() => Ok(()),
                    Some(&existing) => Err(Error::AdjustmentKeyConflict {
                        product_id: *product_id,
                        key: key.as_str().to_owned(),
                        existing,
                        requested: delta.get(),
                    }),
                    None => {
                        self.set(*product_id, target, touched)?;
                        self.keyed.insert((*product_id, key.clone()), delta.get());
                        Ok(())
                    }
                }
            }
            Command::SetQuantity {
                product_id,
                quantity,
                expected_version,
                ..
            } => {
                let item = self.items.get(product_id).ok_or(Error::ProductNotFound {
                    product_id: *product_id,
                })?;
                if item.version != expected_version.get() {
                    return Err(Error::VersionConflict {
                        product_id: *product_id,
                        expected: *expected_version,
                        actual: Version::new(item.version),
                    });
                }
                self.set(*product_id, quantity.get() as i64, touched)
            }
        }
    }

    fn set(
        &mut self,
        p: ProductId,
        target: i64,
        touched: &mut Vec<ProductId>,
    ) -> Result<(), Error> {
        let item = self.items.get_mut(&p).expect("checked by the caller");
        if target < item.reserved as i64 {
            return Err(Error::BelowReserved {
                product_id: p,
                requested: target,
                reserved: item.reserved,
            });
        }
        if item.quantity as i64 != target {
            item.quantity = target as u64;
            self.touch(p, touched);
        }
        Ok(())
    }

    /// Expires every pending reservation due at `now`; returns how many.
    pub(super) fn sweep(&mut self, now: Timestamp) -> usize {
        let mut touched = Vec::new();
        let due: Vec<usize> = (0..self.reservations.len())
            .filter(|&i| {
                let r = &self.reservations[i];
                r.status == ReservationStatus::Pending && now >= r.expires_at
            })
            .collect();
        for &i in &due {
            let mut one = Vec::new();
            self.settle(i, ReservationStatus::Expired, &mut one);
            touched.extend(one);
        }
        // The sweep expires each reservation as its own change.
        for p in touched {
            self.items.get_mut(&p).expect("touched item").version += 1;
        }
        due.len()
    }
}
