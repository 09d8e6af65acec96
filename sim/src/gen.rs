//! What simulated clients ask: a seeded mix of every write (single and
//! multi-line reserves, confirms and releases of their own holds, stock
//! adjustments, sets with a version they read, batches of those), over a few
//! products with little stock, so buyers really compete.

use std::collections::BTreeMap;

use inventory_core::{
    Actor, Command, OrderId, ProductId, Quantity, Reason, ReservationId, Reserve, ReserveLine,
    StockDelta, StockLevel, Ttl, Version,
};
use rand::rngs::StdRng;
use rand::Rng;
use uuid::Uuid;

use crate::history::Request;

/// Shortest hold asked, in seconds.
pub const TTL_SECS_MIN: u64 = 1;

/// Longest hold asked, in seconds.
pub const TTL_SECS_MAX: u64 = 15;

/// Most commands in one simulated batch.
pub const BATCH_COMMANDS_MAX: usize = 3;

/// Sizes of a simulation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    /// Products the clients share.
    pub products: usize,
    /// Most units a product starts with.
    pub stock_max: u64,
    /// Clients at once.
    pub clients: usize,
    /// Scheduler steps (memory) or calls per client (concurrent).
    pub steps: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            products: 3,
            stock_max: 3,
            clients: 5,
            steps: 300,
        }
    }
}

/// One client's memory: the holds it made and the versions it read.
#[derive(Clone, Debug, Default)]
pub struct ClientMemory {
    /// Reservations this client made (or may have made).
    pub mine: Vec<ReservationId>,
    /// The last call whose outcome was unknown, to repeat.
    pub unknown: Option<Request>,
}

/// Draws requests for the clients of one run.
pub struct Generator {
    /// The products, created before the run.
    pub products: Vec<ProductId>,
    /// The product of every reservation id handed out.
    pub products_of: BTreeMap<ReservationId, ProductId>,
    /// Mixed into every id drawn (0 for a fresh store).
    pub nonce: u128,
}

impl Generator {
    /// A generator over `products`; `nonce` is mixed into the ids it draws.
    pub fn new(products: Vec<ProductId>, nonce: u128) -> Self {
        Self {
            products,
            products_of: BTreeMap::new(),
            nonce,
        }
    }

    fn uuid(&self, rng: &mut StdRng) -> Uuid {
        Uuid::from_u128(rng.random::<u128>() ^ self.nonce)
    }

    /// The next request of a client at `now` (ms); `version_of` reads a
    /// product's current version (what a client does before a set).
    pub fn request(
        &mut self,
        rng: &mut StdRng,
        client: &mut ClientMemory,
        now: i64,
        version_of: impl Fn(ProductId) -> u64,
    ) -> Request {
        if let Some(repeat) = client.unknown.take() {
            if rng.random_bool(0.5) {
                return match repeat {
                    Request::One(command, _) => Request::One(command, now),
                    Request::Batch(commands) => {
                        Request::Batch(commands.into_iter().map(|(c, _)| (c, now)).collect())
                    }
                    sweep @ Request::Sweep(_) => sweep,
                };
            }
        }
        if rng.random_range(0..10) == 0 {
            let n = rng.random_range(2..=BATCH_COMMANDS_MAX);
            let commands = (0..n)
                .map(|_| (self.command(rng, client, &version_of), now))
                .collect();
            return Request::Batch(commands);
        }
        Request::One(self.command(rng, client, &version_of), now)
    }

    fn command(
        &mut self,
        rng: &mut StdRng,
        client: &mut ClientMemory,
        version_of: &impl Fn(ProductId) -> u64,
    ) -> Command {
        let product = self.products[rng.random_range(0..self.products.len())];
        match rng.random_range(0..100) {
            0..=44 => self.reserve(rng, client),
            45..=64 if !client.mine.is_empty() => {
                let rid = client.mine[rng.random_range(0..client.mine.len())];
                Command::Confirm {
                    reservation_id: rid,
                }
            }
            65..=79 if !client.mine.is_empty() => {
                let rid = client.mine[rng.random_range(0..client.mine.len())];
                Command::Release {
                    reservation_id: rid,
                }
            }
            80..=89 => {
                let mut delta = rng.random_range(-2..=2_i64);
                if delta == 0 {
                    delta = 3;
                }
                Command::Adjust {
                    product_id: product,
                    delta: StockDelta::new(delta).expect("small delta"),
                    reason: Reason::new("simulated count").expect("valid"),
                    actor: Actor::system(),
                    key: None,
                }
            }
            90..=99 => {
                let read = version_of(product);
                // Now and then a version read a while ago: a stale write.
                let expected = if rng.random_bool(0.3) {
                    read.saturating_sub(1).max(1)
                } else {
                    read
                };
                Command::SetQuantity {
                    product_id: product,
                    quantity: StockLevel::new(rng.random_range(0..=4)).expect("small"),
                    expected_version: Version::new(expected),
                    reason: Reason::new("simulated stock take").expect("valid"),
                    actor: Actor::system(),
                }
            }
            _ => self.reserve(rng, client),
        }
    }

    fn reserve(&mut self, rng: &mut StdRng, client: &mut ClientMemory) -> Command {
        let n = if rng.random_bool(0.3) {
            rng.random_range(2..=self.products.len().max(2))
        } else {
            1
        };
        let first = rng.random_range(0..self.products.len());
        let lines: Vec<ReserveLine> = (0..n.min(self.products.len()))
            .map(|i| {
                let product_id = self.products[(first + i) % self.products.len()];
                let reservation_id = ReservationId::from_uuid(self.uuid(rng));
                self.products_of.insert(reservation_id, product_id);
                client.mine.push(reservation_id);
                ReserveLine {
                    product_id,
                    quantity: Quantity::new(rng.random_range(1..=2)).expect("small"),
                    reservation_id,
                }
            })
            .collect();
        let ttl = Ttl::from_secs(rng.random_range(TTL_SECS_MIN..=TTL_SECS_MAX)).expect("valid ttl");
        let order = OrderId::from_uuid(self.uuid(rng));
        Command::Reserve(Reserve::new(order, lines, ttl).expect("distinct products"))
    }
}
