//! Replays generated operations against a store and the reference model side
//! by side, comparing every answer and the state afterwards: one command at a
//! time ([`check_sequence`]) or cut into batches ([`check_batches`]), which
//! must mean exactly the same thing.

use std::collections::BTreeMap;

use super::model::{Model, ModelItem, Op, XorShift, MODEL_ORDERS, MODEL_PRODUCTS};
use super::{at, drain_outbox, line_ids, new_order, new_product, random_ops, reserve_many};
use crate::{
    Actor, AdjustmentKey, Command, Error, EventPayload, InventoryStore, Meta, OrderId, Outbox,
    Outcome, ProductId, Reason, Reservation, StockDelta, StockLevel, Version, EXPIRE_BATCH_MAX,
};

/// Operations in each sequence [`check_batches`] generates.
pub const BATCH_CHECK_OPS: usize = 160;

/// Most commands in one batch of [`check_batches`]: room for a reserve, its
/// confirm and a few competitors, small enough that a sequence makes many
/// batches (and many cuts between them).
pub const BATCH_CHECK_SIZE_MAX: usize = 8;

/// What one [`Op`] asks of the store, and what the model answered.
enum Action {
    /// Nothing to run: the clock moved, or there was nothing to pick.
    Nothing,
    /// Expire everything due at this instant (the model does it in
    /// [`Replay::sweep`], once the store has run everything before).
    Sweep(Meta),
    /// Run `command` at `meta`; the model answered `expected`.
    Run(Planned),
}

/// A command, when it runs, and the model's answer to it.
struct Planned {
    command: Command,
    meta: Meta,
    expected: Result<(), Error>,
    /// Names the operation in failures.
    label: String,
}

/// One replay: the ids the small indexes of [`Op`] stand for, the model as
/// the operations lowered so far left it, and the clock in seconds.
struct Replay {
    products: Vec<ProductId>,
    orders: Vec<OrderId>,
    model: Model,
    clock: i64,
}

impl Replay {
    fn new() -> Self {
        Self {
            products: (0..MODEL_PRODUCTS).map(|_| new_product()).collect(),
            orders: (0..MODEL_ORDERS).map(|_| new_order()).collect(),
            model: Model::default(),
            clock: 0,
        }
    }

    /// What `op` asks of the store. The model applies a command at once, so
    /// the next operation is lowered against the state this one leaves (the
    /// store may run it later, in a batch: it must come to the same state).
    fn lower(&mut self, op: &Op, label: String) -> Action {
        let meta = at(self.clock);
        match op {
            Op::Advance { secs } => {
                self.clock += secs;
                Action::Nothing
            }
            Op::Sweep => Action::Sweep(meta),
            _ => match self.command(op) {
                None => Action::Nothing,
                Some(command) => Action::Run(Planned {
                    expected: self.model.apply(&command, meta.now),
                    command,
                    meta,
                    label,
                }),
            },
        }
    }

    /// The command of an operation that runs one (`None` when there is
    /// nothing to pick or the generated value is out of range).
    fn command(&self, op: &Op) -> Option<Command> {
        let product = |index: &u8| self.products[usize::from(*index)];
        let command = match op {
            Op::Advance { .. } | Op::Sweep => return None,
            Op::Create {
                product: p,
                quantity,
            } => Command::CreateItem {
                product_id: product(p),
                quantity: StockLevel::new(*quantity).expect("generated in range"),
                actor: Actor::system(),
            },
            Op::Reserve {
                order,
                lines,
                ttl_secs,
            } => {
                let lines: Vec<_> = lines.iter().map(|(p, q)| (product(p), *q)).collect();
                reserve_many(self.orders[usize::from(*order)], &lines, *ttl_secs)
            }
            Op::Confirm { pick } | Op::Release { pick } => {
                let made = &self.model.reservations;
                let reservation_id = made.get(pick % made.len().max(1))?.id;
                if matches!(op, Op::Confirm { .. }) {
                    Command::Confirm { reservation_id }
                } else {
                    Command::Release { reservation_id }
                }
            }
            Op::Adjust {
                product: p,
                delta,
                key,
            } => Command::Adjust {
                product_id: product(p),
                delta: StockDelta::new(*delta).ok()?,
                reason: Reason::new("model").expect("valid"),
                actor: Actor::system(),
                key: key.map(|k| AdjustmentKey::new(&format!("k{k}")).expect("valid")),
            },
            Op::Set {
                product: p,
                quantity,
                stale,
            } => {
                let current = self.model.items.get(&product(p)).map_or(1, |i| i.version);
                let version = if *stale { current + 100 } else { current };
                Command::SetQuantity {
                    product_id: product(p),
                    quantity: StockLevel::new(*quantity).expect("generated in range"),
                    expected_version: Version::new(version),
                    reason: Reason::new("model").expect("valid"),
                    actor: Actor::system(),
                }
            }
        };
        Some(command)
    }

    /// Sweeps `store` and the model at `meta.now` and compares how many
    /// reservations each expired, and the state afterwards.
    async fn sweep<S: InventoryStore>(&mut self, store: &S, meta: &Meta, label: &str) {
        let expected = self.model.sweep(meta.now);
        let got = store.expire_due(meta, EXPIRE_BATCH_MAX).await;
        assert_eq!(got, Ok(expected), "{label}");
        self.check_state(store, label).await;
    }

    /// Compares the store's answer to a planned command with the model's.
    fn check_answer(&self, planned: &Planned, got: &Result<Outcome, Error>, label: &str) {
        match (&planned.expected, got) {
            (Ok(()), Ok(outcome)) => self.check_outcome(&planned.command, outcome, label),
            (Err(e), Err(g)) => assert_eq!(e, g, "{label}"),
            (expected, _) => panic!("{label}: model says {expected:?}, store says {got:?}"),
        }
    }

    fn check_outcome(&self, command: &Command, outcome: &Outcome, label: &str) {
        if let (Command::Reserve(reserve), Outcome::Reserved { reservations, .. }) =
            (command, outcome)
        {
            assert_eq!(
                reservations.len(),
                reserve.lines().len(),
                "{label}: one per line"
            );
            for (line, r) in reserve.lines().iter().zip(reservations) {
                assert_eq!(r.product_id(), line.product_id, "{label}");
                assert!(
                    self.model.index_of(r.id()).is_some(),
                    "{label}: unknown reservation"
                );
            }
        }
    }

    /// Compares every item and reservation of the store with the model's,
    /// and checks each item's invariants.
    async fn check_state<S: InventoryStore>(&self, store: &S, label: &str) {
        for p in &self.products {
            let stored = store.item(*p).await.expect("read item");
            let expected = self.model.items.get(p);
            match (stored, expected) {
                (None, None) => {}
                (Some(item), Some(m)) => {
                    let got = ModelItem {
                        quantity: item.quantity(),
                        reserved: item.reserved(),
                        version: item.version().get(),
                    };
                    assert_eq!(&got, m, "{label}: item {p}");
                    super::assert_item_consistent(store, *p).await;
                }
                (got, _) => panic!("{label}: item {p}: store has {got:?}, model has {expected:?}"),
            }
        }
        for r in &self.model.reservations {
            let stored: Option<Reservation> =
                store.reservation(r.id).await.expect("read reservation");
            let stored = stored.unwrap_or_else(|| panic!("{label}: reservation {} missing", r.id));
            assert_eq!(stored.status(), r.status, "{label}: reservation {}", r.id);
            assert_eq!(stored.expires_at(), r.expires_at, "{label}");
            assert_eq!(stored.quantity(), r.quantity, "{label}");
        }
    }
}

/// Runs `ops` against `store` (which must be empty) and the model side by
/// side, one command at a time.
///
/// # Panics
/// At the first step where the store and the model disagree, or an invariant
/// breaks; the message shows the step.
pub async fn check_sequence<S: InventoryStore>(store: &S, ops: &[Op]) {
    let mut replay = Replay::new();
    for (step, op) in ops.iter().enumerate() {
        let label = format!("step {step}: {op:?}");
        match replay.lower(op, label.clone()) {
            Action::Nothing => {}
            Action::Sweep(meta) => replay.sweep(store, &meta, &label).await,
            Action::Run(planned) => {
                let got = store.execute(planned.command.clone(), &planned.meta).await;
                replay.check_answer(&planned, &got, &label);
                replay.check_state(store, &label).await;
            }
        }
    }
}

/// Runs a random sequence of [`BATCH_CHECK_OPS`] operations (from
/// [`random_ops`]) against `store` (which must be empty) in batches of 1 to
/// [`BATCH_CHECK_SIZE_MAX`] commands, cut at random (and before every sweep,
/// which is not a command), and against the model one command at a time.
/// Commands of one batch may run at different instants, as the clock moves
/// between them. Every answer must be the model's; after each batch the
/// state must be the model's, and each event must carry the correlation id
/// of the command that caused it, in batch order per product.
///
/// # Panics
/// At the first answer, state or event where the store and the model
/// disagree; the message shows the operation or the batch.
pub async fn check_batches<S: InventoryStore + Outbox>(store: &S, seed: u64) {
    let ops = random_ops(seed, BATCH_CHECK_OPS);
    // The cuts come from a generator of their own, so the operations are
    // exactly those `random_ops` gives for the seed.
    let mut cuts = XorShift::new(!seed);
    let mut size = 1 + cuts.below(BATCH_CHECK_SIZE_MAX as u64) as usize;
    let mut replay = Replay::new();
    let mut batch: Vec<Planned> = Vec::new();
    let mut names = (0..).map(|n| format!("seed {seed}, batch {n}"));
    let mut name = || names.next().expect("endless");
    for (step, op) in ops.iter().enumerate() {
        let label = format!("step {step}: {op:?}");
        match replay.lower(op, label.clone()) {
            Action::Nothing => {}
            Action::Sweep(meta) => {
                run_batch(store, &replay, std::mem::take(&mut batch), name()).await;
                replay
                    .sweep(store, &meta, &format!("seed {seed}, {label}"))
                    .await;
                drain_outbox(store).await;
            }
            Action::Run(planned) => {
                batch.push(planned);
                if batch.len() == size {
                    run_batch(store, &replay, std::mem::take(&mut batch), name()).await;
                    size = 1 + cuts.below(BATCH_CHECK_SIZE_MAX as u64) as usize;
                }
            }
        }
    }
    run_batch(store, &replay, batch, name()).await;
}

/// Runs one batch of planned commands (if any) and checks its answers, its
/// events and the state it leaves; the outbox holds only this batch's events
/// afterwards.
async fn run_batch<S: InventoryStore + Outbox>(
    store: &S,
    replay: &Replay,
    planned: Vec<Planned>,
    name: String,
) {
    if planned.is_empty() {
        return;
    }
    let batch: Vec<(Command, Meta)> = planned
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let meta = Meta {
                correlation_id: Some(format!("{name}, command {i}")),
                ..p.meta.clone()
            };
            (p.command.clone(), meta)
        })
        .collect();
    let answers = store
        .execute_batch(batch.clone())
        .await
        .unwrap_or_else(|e| panic!("{name} failed as a whole: {e}"));
    assert_eq!(answers.len(), planned.len(), "{name}: one answer each");
    for (i, (p, got)) in planned.iter().zip(&answers).enumerate() {
        replay.check_answer(p, got, &format!("{name}, command {i} ({})", p.label));
    }
    check_batch_events(store, &batch, &name).await;
    replay.check_state(store, &format!("after {name}")).await;
}

/// Every event in the outbox came from `batch` (the outbox was empty before
/// it ran): it carries the correlation id of the command that caused it (a
/// new reservation that of the reserve that named its id, a confirm or a
/// release that of the command naming the reservation), and per product the
/// events come in the order of their commands.
async fn check_batch_events<S: Outbox>(store: &S, batch: &[(Command, Meta)], name: &str) {
    let mut last: BTreeMap<ProductId, usize> = BTreeMap::new();
    for entry in drain_outbox(store).await {
        let payload = &entry.event.payload;
        let i = batch
            .iter()
            .position(|(_, meta)| meta.correlation_id == entry.correlation_id)
            .unwrap_or_else(|| panic!("{name}: {entry:?} has no command's correlation id"));
        let (command, meta) = &batch[i];
        assert_eq!(entry.event.occurred_at, meta.now, "{name}: {entry:?}");
        let product = payload.product_id();
        let before = last.insert(product, i).unwrap_or(0);
        assert!(before <= i, "{name}: events of {product} out of order");
        let caused_by = match payload {
            EventPayload::Reserved { reservation_id, .. } => {
                line_ids(command).contains(reservation_id)
            }
            EventPayload::Confirmed { reservation_id, .. }
            | EventPayload::Released { reservation_id, .. } => {
                command.reservation_id() == Some(*reservation_id)
            }
            // Expiries met on the way, depletion and ledger entries: the
            // order check above covers them.
            _ => true,
        };
        assert!(caused_by, "{name}: {entry:?} carries the id of {command:?}");
    }
}
