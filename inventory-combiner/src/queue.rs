//! The waiting line of a combiner: commands in arrival order, and which keys
//! a batch in flight holds. Pure bookkeeping, no locks of its own (the
//! combiner keeps it behind one mutex), so the rules of who may go next are
//! tested here without a store.
//!
//! The rule: a committer takes, in arrival order, every waiting command none
//! of whose keys is held by another batch in flight or by an earlier command
//! it had to leave waiting, up to the batch size. So commands on one key run
//! in arrival order (one batch at a time per key, and inside a batch in
//! order), and commands on other keys never wait behind them.

use std::collections::{HashSet, VecDeque};

use inventory_core::{Command, ProductId, ReservationId};

/// What a command contends on: the products it names, or for a command that
/// names a reservation, the reservation (its product is known only to the
/// store).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Key {
    /// A product.
    Product(ProductId),
    /// A reservation.
    Reservation(ReservationId),
}

/// The keys of `command`.
pub(crate) fn keys(command: &Command) -> Vec<Key> {
    match command.reservation_id() {
        Some(id) => vec![Key::Reservation(id)],
        None => command.products().into_iter().map(Key::Product).collect(),
    }
}

/// A waiting command, with whatever the combiner keeps beside it.
#[derive(Debug)]
pub(crate) struct Waiting<T> {
    pub(crate) keys: Vec<Key>,
    pub(crate) item: T,
}

/// Waiting commands and the keys of the batches in flight.
#[derive(Debug)]
pub(crate) struct Line<T> {
    waiting: VecDeque<Waiting<T>>,
    held: HashSet<Key>,
}

impl<T> Default for Line<T> {
    fn default() -> Self {
        Self {
            waiting: VecDeque::new(),
            held: HashSet::new(),
        }
    }
}

impl<T> Line<T> {
    /// How many commands wait.
    pub(crate) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Adds a command at the end of the line.
    pub(crate) fn push(&mut self, waiting: Waiting<T>) {
        self.waiting.push_back(waiting);
    }

    /// True when a batch in flight holds one of `keys`.
    pub(crate) fn is_held(&self, keys: &[Key]) -> bool {
        keys.iter().any(|key| self.held.contains(key))
    }

    /// Takes the next batch (at most `max` commands, in arrival order) and
    /// holds its keys until [`Line::release`]. Empty when nothing can go.
    pub(crate) fn take(&mut self, max: usize) -> (Vec<T>, Vec<Key>) {
        let mut batch = Vec::new();
        let mut keys = Vec::new();
        let mut left = VecDeque::new();
        // Keys of commands left waiting in this pass: later commands on them
        // must wait too, or they would overtake.
        let mut passed: HashSet<Key> = HashSet::new();
        while let Some(waiting) = self.waiting.pop_front() {
            if batch.len() == max {
                left.push_back(waiting);
                left.append(&mut self.waiting);
                break;
            }
            let blocked = waiting
                .keys
                .iter()
                .any(|key| self.held.contains(key) || passed.contains(key));
            if blocked {
                passed.extend(waiting.keys.iter().copied());
                left.push_back(waiting);
            } else {
                keys.extend(waiting.keys);
                batch.push(waiting.item);
            }
        }
        self.waiting = left;
        keys.sort_unstable_by_key(|key| match key {
            Key::Product(p) => (0, p.as_uuid()),
            Key::Reservation(r) => (1, r.as_uuid()),
        });
        keys.dedup();
        self.held.extend(keys.iter().copied());
        (batch, keys)
    }

    /// Lets go of the keys a finished batch held.
    pub(crate) fn release(&mut self, keys: &[Key]) {
        for key in keys {
            self.held.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn product(n: u128) -> Key {
        Key::Product(ProductId::from_uuid(Uuid::from_u128(n)))
    }

    fn line(commands: &[(&[Key], u32)]) -> Line<u32> {
        let mut line = Line::default();
        for (keys, item) in commands {
            line.push(Waiting {
                keys: keys.to_vec(),
                item: *item,
            });
        }
        line
    }

    /// A batch takes everything in arrival order, up to its size.
    #[test]
    fn takes_in_order_up_to_max() {
        let mut line = line(&[(&[product(1)], 1), (&[product(1)], 2), (&[product(2)], 3)]);
        let (batch, keys) = line.take(2);
        assert_eq!(batch, [1, 2]);
        assert_eq!(keys, [product(1)]);
        assert_eq!(line.len(), 1);
    }

    /// While a batch holds a product, a second committer takes only the
    /// other products, and never a later command on a held product.
    #[test]
    fn held_products_wait_and_others_go() {
        let mut line = line(&[(&[product(1)], 1)]);
        let (first, held) = line.take(10);
        assert_eq!(first, [1]);
        for (keys, item) in [
            (vec![product(1)], 2),
            (vec![product(2)], 3),
            (vec![product(1), product(3)], 4),
            (vec![product(3)], 5),
            (vec![product(4)], 6),
        ] {
            line.push(Waiting { keys, item });
        }
        let (second, _) = line.take(10);
        // 4 waits for product 1, so 5 (product 3, after 4) waits too.
        assert_eq!(second, [3, 6]);
        line.release(&held);
        let (third, _) = line.take(10);
        assert_eq!(third, [2, 4, 5]);
    }

    /// Nothing to take gives an empty batch and holds nothing.
    #[test]
    fn empty_when_all_held() {
        let mut line = line(&[(&[product(1)], 1), (&[product(1)], 2)]);
        let (_, held) = line.take(1);
        let (batch, keys) = line.take(10);
        assert!(batch.is_empty() && keys.is_empty());
        assert!(line.is_held(&held));
        line.release(&held);
        assert!(!line.is_held(&held));
    }
}
