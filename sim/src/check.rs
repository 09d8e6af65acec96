//! The linearizability check of one product's history (the search of Wing
//! and Gong with Lowe's memo, as Knossos and Porcupine do it): is there an
//! order of the steps, consistent with real time, in which the model explains
//! every answer? A step whose outcome is unknown has no answer time: it may
//! take effect at any point after it was invoked, or never.

use std::collections::HashSet;

use crate::model::{ProductState, Step};

/// Most steps of one product one check takes: the search is exponential in
/// the steps in flight at once, so histories are kept to a few hundred.
pub const STEPS_MAX: usize = 4_096;

/// Most search states one check visits before it gives up undecided.
pub const VISITS_MAX: usize = 2_000_000;

/// One step of one product's history, with its real-time interval.
#[derive(Clone, Debug)]
pub struct Timed {
    /// Logical time the call was made.
    pub invoked: u64,
    /// Logical time its answer came back; `None` for an unknown outcome.
    pub answered: Option<u64>,
    /// What was asked and answered, projected on the product.
    pub step: Step,
}

/// Why a history failed the check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some order explains every answer.
    Linearizable,
    /// No order does.
    NotLinearizable,
    /// The search gave up ([`VISITS_MAX`]); nothing is known.
    Undecided,
}

/// The memo's hasher: states are the checker's own, not an attacker's, so
/// the fast variant is enough.
type MemoHasher = foldhash::fast::RandomState;

struct Search<'a> {
    steps: &'a [Timed],
    memo: HashSet<(Vec<u64>, ProductState), MemoHasher>,
    visits: usize,
}

/// Checks `steps` (any order) from `initial`.
pub fn check(initial: &ProductState, steps: &[Timed]) -> Verdict {
    assert!(steps.len() <= STEPS_MAX, "too many steps for one check");
    let mut search = Search {
        steps,
        memo: HashSet::default(),
        visits: 0,
    };
    let done = vec![0_u64; steps.len().div_ceil(64)];
    match search.from(initial.clone(), done) {
        Some(true) => Verdict::Linearizable,
        Some(false) => Verdict::NotLinearizable,
        None => Verdict::Undecided,
    }
}

fn is_done(done: &[u64], i: usize) -> bool {
    done[i / 64] & (1 << (i % 64)) != 0
}

impl Search<'_> {
    /// `Some(true)` when the steps not `done` can follow `state`; `None` when
    /// the search ran out of visits.
    fn from(&mut self, state: ProductState, done: Vec<u64>) -> Option<bool> {
        let open = (0..self.steps.len()).filter(|&i| !is_done(&done, i));
        let mut answered_open = open.clone().filter(|&i| self.steps[i].answered.is_some());
        if answered_open.next().is_none() {
            return Some(true);
        }
        let earliest_answer = open
            .clone()
            .filter_map(|i| self.steps[i].answered)
            .min()
            .expect("an answered step is open");
        let key = (done, state);
        if self.memo.contains(&key) {
            return Some(false);
        }
        self.visits += 1;
        if self.visits > VISITS_MAX {
            return None;
        }
        let (done, state) = key;
        let candidates: Vec<usize> = (0..self.steps.len())
            .filter(|&i| !is_done(&done, i) && self.steps[i].invoked < earliest_answer)
            .collect();
        for i in candidates {
            for next in state.after(&self.steps[i].step) {
                let mut with = done.clone();
                with[i / 64] |= 1 << (i % 64);
                if self.from(next, with)? {
                    return Some(true);
                }
            }
        }
        self.memo.insert((done, state));
        Some(false)
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::model::{LineRole, SettleAnswer};

    fn reserve(order: u128, role: LineRole) -> Step {
        Step::Line {
            rid: Uuid::from_u128(order),
            order: Uuid::from_u128(order),
            quantity: 1,
            now: 0,
            expires_at: 60_000,
            role,
        }
    }

    fn timed(invoked: u64, answered: Option<u64>, step: Step) -> Timed {
        Timed {
            invoked,
            answered,
            step,
        }
    }

    const HELD: LineRole = LineRole::Held {
        all_existing: false,
    };

    /// Two buyers overlap for the last unit: the one that lost must have
    /// come second, which an overlapping interval allows.
    #[test]
    fn overlapping_calls_may_go_either_way() {
        let steps = [
            timed(1, Some(4), reserve(1, LineRole::Short)),
            timed(2, Some(3), reserve(2, HELD)),
        ];
        assert_eq!(check(&ProductState::new(1), &steps), Verdict::Linearizable);
    }

    /// Two buyers both told they hold the last unit: no order explains it.
    #[test]
    fn the_last_unit_sold_twice_is_caught() {
        let steps = [
            timed(1, Some(2), reserve(1, HELD)),
            timed(3, Some(4), reserve(2, HELD)),
        ];
        assert_eq!(
            check(&ProductState::new(1), &steps),
            Verdict::NotLinearizable
        );
    }

    /// A short answer after a hold was released, in real time, is wrong; an
    /// unknown release explains nothing it did not have to.
    #[test]
    fn real_time_order_is_respected() {
        let release = |answer| Step::Release {
            rid: Uuid::from_u128(1),
            answer,
        };
        let known = [
            timed(1, Some(2), reserve(1, HELD)),
            timed(3, Some(4), release(Some(SettleAnswer::Done(true)))),
            timed(5, Some(6), reserve(2, LineRole::Short)),
        ];
        assert_eq!(
            check(&ProductState::new(1), &known),
            Verdict::NotLinearizable
        );
        let unknown = [
            timed(1, Some(2), reserve(1, HELD)),
            timed(3, None, release(None)),
            timed(5, Some(6), reserve(2, LineRole::Short)),
            timed(7, Some(8), reserve(3, LineRole::Short)),
        ];
        assert_eq!(
            check(&ProductState::new(1), &unknown),
            Verdict::Linearizable
        );
    }
}
