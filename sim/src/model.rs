//! The reference model of one product, written out again from the rules
//! (simple enough to be obviously right), and the steps of a history
//! projected onto one product. Each step says what the store answered; the
//! model says which states could follow (none: the answer cannot be
//! explained; several: the answer leaves room, as an unknown outcome does).

use std::collections::BTreeMap;

use inventory_core::LAZY_EXPIRY_MAX;
use uuid::Uuid;

/// Where a reservation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    /// Holding stock.
    Pending,
    /// Sold.
    Confirmed,
    /// Given back by a caller.
    Released,
    /// Given back because its hold ran out.
    Expired,
}

/// One reservation of the product.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Hold {
    /// The order that made it.
    pub order: Uuid,
    /// Units.
    pub quantity: u64,
    /// Its state.
    pub status: Status,
    /// When the hold ends (ms).
    pub expires_at: i64,
}

/// The product as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProductState {
    /// Units on hand.
    pub quantity: u64,
    /// Units held by pending reservations.
    pub reserved: u64,
    /// Bumped once per change that touched the item.
    pub version: u64,
    /// Every reservation of the product, by id.
    pub holds: BTreeMap<Uuid, Hold>,
}

/// What a settle (confirm or release) answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettleAnswer {
    /// Done; `true` when it changed the reservation.
    Done(bool),
    /// 410: the hold had run out.
    Expired,
    /// 409: already settled the other way.
    InvalidTransition,
    /// 404.
    NotFound,
}

/// What a stock write (adjust, set quantity) answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemAnswer {
    /// Done: whether it changed, and the item after.
    Done {
        /// Whether the quantity changed.
        changed: bool,
        /// Units on hand after.
        quantity: u64,
        /// Units held after.
        reserved: u64,
        /// Version after.
        version: u64,
    },
    /// 409: below the units held.
    BelowReserved,
    /// 412: the item moved on since the version the caller read.
    VersionConflict,
}

/// The part a product played in a reserve, read from its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineRole {
    /// The reserve succeeded; when `all_existing` it only found the order's
    /// reservations (a repeat), so no line was created.
    Held {
        /// The reserve created nothing.
        all_existing: bool,
    },
    /// The reserve failed short of stock on this product.
    Short,
    /// The reserve failed on a later line: this line was checked (and may
    /// have expired overdue holds) but holds nothing.
    BeforeFailure,
    /// The reserve failed before any effect on this product (a later line,
    /// or a conflict found before stock was looked at).
    Untouched,
    /// The outcome is unknown: it may or may not have happened.
    Unknown,
}

/// One step of a history, projected onto one product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A reserve line on this product.
    Line {
        /// The line's reservation id.
        rid: Uuid,
        /// The reserve's order.
        order: Uuid,
        /// Units.
        quantity: u64,
        /// The reserve's instant (ms).
        now: i64,
        /// When the hold would end (ms).
        expires_at: i64,
        /// What the answer says of this line.
        role: LineRole,
    },
    /// Confirm a reservation of this product.
    Confirm {
        /// The reservation.
        rid: Uuid,
        /// The instant (ms).
        now: i64,
        /// `None` when the outcome is unknown.
        answer: Option<SettleAnswer>,
    },
    /// Release a reservation of this product.
    Release {
        /// The reservation.
        rid: Uuid,
        /// `None` when the outcome is unknown.
        answer: Option<SettleAnswer>,
    },
    /// Change the stock by `delta`.
    Adjust {
        /// Signed units.
        delta: i64,
        /// `None` when the outcome is unknown.
        answer: Option<ItemAnswer>,
    },
    /// Set the stock, if the item is at `expected_version`.
    Set {
        /// New units on hand.
        quantity: u64,
        /// The version the caller read.
        expected_version: u64,
        /// `None` when the outcome is unknown.
        answer: Option<ItemAnswer>,
    },
    /// An expiry sweep at `now`: some of the due holds (the earliest first)
    /// expire, each as its own change.
    Sweep {
        /// The instant (ms).
        now: i64,
    },
}

impl ProductState {
    /// A product with `quantity` on hand, as created (version 1).
    pub fn new(quantity: u64) -> Self {
        Self {
            quantity,
            reserved: 0,
            version: 1,
            holds: BTreeMap::new(),
        }
    }

    fn available(&self) -> u64 {
        self.quantity - self.reserved
    }

    fn finish(&mut self, rid: Uuid, to: Status) {
        let hold = self.holds.get_mut(&rid).expect("finish a known hold");
        debug_assert_eq!(hold.status, Status::Pending);
        hold.status = to;
        self.reserved -= hold.quantity;
        if to == Status::Confirmed {
            self.quantity -= hold.quantity;
        }
    }

    /// Pending holds due at `now`, earliest first.
    fn due(&self, now: i64) -> Vec<Uuid> {
        let mut due: Vec<(i64, Uuid)> = self
            .holds
            .iter()
            .filter(|(_, h)| h.status == Status::Pending && h.expires_at <= now)
            .map(|(id, h)| (h.expires_at, *id))
            .collect();
        due.sort();
        due.into_iter().map(|(_, id)| id).collect()
    }

    /// Expires what a short reserve may expire; whether it changed anything.
    fn lazy_expire(&mut self, now: i64) -> bool {
        let due = self.due(now);
        for rid in due.iter().take(LAZY_EXPIRY_MAX) {
            self.finish(*rid, Status::Expired);
        }
        !due.is_empty()
    }

    fn bumped(mut self, touched: bool) -> Self {
        if touched {
            self.version += 1;
        }
        self
    }

    /// The states `step` can lead to, given what the store answered.
    pub fn after(&self, step: &Step) -> Vec<ProductState> {
        match step {
            Step::Line {
                rid,
                order,
                quantity,
                now,
                expires_at,
                role,
            } => self.line(*rid, *order, *quantity, *now, *expires_at, *role),
            Step::Confirm { rid, now, answer } => self.checked(*answer, |s| s.confirm(*rid, *now)),
            Step::Release { rid, answer } => self.checked(*answer, |s| s.release(*rid)),
            Step::Adjust { delta, answer } => {
                let target = self.quantity as i64 + delta;
                self.checked(*answer, |s| s.set_stock(target))
            }
            Step::Set {
                quantity,
                expected_version,
                answer,
            } => self.checked(*answer, |s| {
                if s.version != *expected_version {
                    return (s.clone(), ItemAnswer::VersionConflict);
                }
                s.set_stock(*quantity as i64)
            }),
            Step::Sweep { now } => {
                let due = self.due(*now);
                let mut states = vec![self.clone()];
                let mut s = self.clone();
                for rid in due {
                    s.finish(rid, Status::Expired);
                    s.version += 1;
                    states.push(s.clone());
                }
                states
            }
        }
    }

    fn line(
        &self,
        rid: Uuid,
        order: Uuid,
        quantity: u64,
        now: i64,
        expires_at: i64,
        role: LineRole,
    ) -> Vec<ProductState> {
        let existing = self.holds.values().find(|h| h.order == order);
        // What the rules do with this line alone: Ok(state) when it holds
        // (or finds its hold), Err(state) when it is short (with any lazy
        // expiry done).
        let held_or_short = |create: bool| -> Result<ProductState, ProductState> {
            let mut s = self.clone();
            let mut touched = false;
            if s.available() < quantity {
                touched = s.lazy_expire(now);
            }
            if s.available() < quantity {
                return Err(s.bumped(touched));
            }
            if create {
                s.reserved += quantity;
                s.holds.insert(
                    rid,
                    Hold {
                        order,
                        quantity,
                        status: Status::Pending,
                        expires_at,
                    },
                );
                touched = true;
            }
            Ok(s.bumped(touched))
        };
        match (role, existing) {
            (LineRole::Untouched, _) => vec![self.clone()],
            (LineRole::Held { .. }, Some(h)) if h.quantity == quantity => vec![self.clone()],
            (LineRole::Held { .. }, Some(_)) => vec![],
            (LineRole::Held { all_existing: true }, None) => vec![],
            (LineRole::Held { .. }, None) if self.holds.contains_key(&rid) => vec![],
            (LineRole::Held { .. }, None) => held_or_short(true).into_iter().collect(),
            (LineRole::Short, Some(_)) => vec![],
            (LineRole::Short, None) => held_or_short(true).err().into_iter().collect(),
            (LineRole::BeforeFailure, Some(_)) => vec![self.clone()],
            (LineRole::BeforeFailure, None) => held_or_short(false).into_iter().collect(),
            (LineRole::Unknown, Some(_)) => vec![self.clone()],
            (LineRole::Unknown, None) => {
                let happened = match held_or_short(true) {
                    Ok(s) | Err(s) => s,
                };
                let checked_only = held_or_short(false).ok();
                dedup(
                    [Some(self.clone()), Some(happened), checked_only]
                        .into_iter()
                        .flatten()
                        .collect(),
                )
            }
        }
    }

    fn confirm(&self, rid: Uuid, now: i64) -> (ProductState, SettleAnswer) {
        let mut s = self.clone();
        let Some(hold) = s.holds.get(&rid) else {
            return (s, SettleAnswer::NotFound);
        };
        match hold.status {
            Status::Confirmed => (s, SettleAnswer::Done(false)),
            Status::Released => (s, SettleAnswer::InvalidTransition),
            Status::Expired => (s, SettleAnswer::Expired),
            Status::Pending if hold.expires_at <= now => {
                s.finish(rid, Status::Expired);
                (s.bumped(true), SettleAnswer::Expired)
            }
            Status::Pending => {
                s.finish(rid, Status::Confirmed);
                (s.bumped(true), SettleAnswer::Done(true))
            }
        }
    }

    fn release(&self, rid: Uuid) -> (ProductState, SettleAnswer) {
        let mut s = self.clone();
        let Some(hold) = s.holds.get(&rid) else {
            return (s, SettleAnswer::NotFound);
        };
        match hold.status {
            Status::Released => (s, SettleAnswer::Done(false)),
            Status::Confirmed => (s, SettleAnswer::InvalidTransition),
            Status::Expired => (s, SettleAnswer::Expired),
            Status::Pending => {
                s.finish(rid, Status::Released);
                (s.bumped(true), SettleAnswer::Done(true))
            }
        }
    }

    fn set_stock(&self, target: i64) -> (ProductState, ItemAnswer) {
        if target < self.reserved as i64 {
            return (self.clone(), ItemAnswer::BelowReserved);
        }
        let target = target as u64;
        let changed = target != self.quantity;
        let mut s = self.clone();
        s.quantity = target;
        let s = s.bumped(changed);
        let answer = ItemAnswer::Done {
            changed,
            quantity: s.quantity,
            reserved: s.reserved,
            version: s.version,
        };
        (s, answer)
    }

    /// The state `rule` leads to when the store's `answer` is the rule's
    /// (or unknown: then the state may also be unchanged).
    fn checked<A: PartialEq>(
        &self,
        answer: Option<A>,
        rule: impl Fn(&Self) -> (ProductState, A),
    ) -> Vec<ProductState> {
        let (next, model) = rule(self);
        match answer {
            Some(got) if got == model => vec![next],
            Some(_) => vec![],
            None => dedup(vec![self.clone(), next]),
        }
    }
}

/// The distinct states of `states`, in their first order.
fn dedup(states: Vec<ProductState>) -> Vec<ProductState> {
    let mut distinct: Vec<ProductState> = Vec::with_capacity(states.len());
    for s in states {
        if !distinct.contains(&s) {
            distinct.push(s);
        }
    }
    distinct
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(rid: u128, order: u128, quantity: u64, role: LineRole) -> Step {
        Step::Line {
            rid: Uuid::from_u128(rid),
            order: Uuid::from_u128(order),
            quantity,
            now: 0,
            expires_at: 1_000,
            role,
        }
    }

    /// A hold needs stock; a short answer is explained only when stock is
    /// short; an unknown reserve may or may not have held.
    #[test]
    fn lines_follow_the_stock() {
        let s = ProductState::new(1);
        let held = s.after(&line(
            1,
            1,
            1,
            LineRole::Held {
                all_existing: false,
            },
        ));
        assert_eq!(held.len(), 1);
        assert_eq!((held[0].reserved, held[0].version), (1, 2));
        assert!(s
            .after(&line(
                1,
                1,
                2,
                LineRole::Held {
                    all_existing: false
                }
            ))
            .is_empty());
        assert!(s.after(&line(1, 1, 1, LineRole::Short)).is_empty());
        assert_eq!(held[0].after(&line(2, 2, 1, LineRole::Short)).len(), 1);
        assert_eq!(s.after(&line(1, 1, 1, LineRole::Unknown)).len(), 2);
    }

    /// A confirm after the hold ended expires it and answers 410.
    #[test]
    fn confirm_after_expiry_gives_back() {
        let s = ProductState::new(2).after(&line(
            1,
            1,
            2,
            LineRole::Held {
                all_existing: false,
            },
        ))[0]
            .clone();
        let late = Step::Confirm {
            rid: Uuid::from_u128(1),
            now: 1_000,
            answer: Some(SettleAnswer::Expired),
        };
        let after = s.after(&late);
        assert_eq!((after[0].quantity, after[0].reserved), (2, 0));
        let wrong = Step::Confirm {
            rid: Uuid::from_u128(1),
            now: 1_000,
            answer: Some(SettleAnswer::Done(true)),
        };
        assert!(s.after(&wrong).is_empty());
    }
}
