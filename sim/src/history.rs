//! A recorded history: every call a client made, when it was made and
//! answered (in logical time), and the answer; and its projection onto each
//! product, which [`crate::check`] searches.

use std::collections::BTreeMap;

use crate::check::Timed;
use crate::model::{ItemAnswer, LineRole, SettleAnswer, Step};
use inventory_core::{Command, Error, Outcome, ProductId, ReservationId};

/// What a call asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// One command at its instant (ms).
    One(Command, i64),
    /// A batch: commands in order, each at its instant (ms).
    Batch(Vec<(Command, i64)>),
    /// An expiry sweep at its instant (ms).
    Sweep(i64),
}

/// What a call got back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Not answered (yet, or ever: an unknown outcome).
    None,
    /// The answer of one command.
    One(Result<Outcome, Error>),
    /// The batch's answers, or its failure as a whole.
    Batch(Result<Vec<Result<Outcome, Error>>, Error>),
    /// How many holds a sweep expired.
    Swept(usize),
}

/// One call of the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// Who made it.
    pub client: usize,
    /// Logical time it was made.
    pub invoked: u64,
    /// Logical time it was answered.
    pub answered: Option<u64>,
    /// What it asked.
    pub request: Request,
    /// What it got.
    pub answer: Answer,
}

/// An answer the rules cannot give to what was asked (before any ordering
/// is considered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unexplained {
    /// The call's index in the history.
    pub call: usize,
    /// What was wrong.
    pub why: String,
}

/// True for an error that leaves the outcome unknown: the change may or may
/// not have happened (the store failed, or gave up under contention).
pub fn is_unknown(e: &Error) -> bool {
    matches!(
        e,
        Error::Unavailable { .. } | Error::Storage { .. } | Error::Contention | Error::Overloaded
    )
}

/// Each product of `all`'s steps, in no particular order; `products_of`
/// names the product of every reservation the history made.
///
/// # Errors
/// The first answer no state of the rules could give.
pub fn project(
    calls: &[Call],
    all: &[ProductId],
    products_of: &BTreeMap<ReservationId, ProductId>,
) -> Result<BTreeMap<ProductId, Vec<Timed>>, Unexplained> {
    let mut out: BTreeMap<ProductId, Vec<Timed>> = BTreeMap::new();
    for (index, call) in calls.iter().enumerate() {
        let answered = match call.answer {
            Answer::None => None,
            _ => call.answered,
        };
        let mut push = |product: ProductId, step: Step| {
            out.entry(product).or_default().push(Timed {
                invoked: call.invoked,
                answered,
                step,
            });
        };
        let unexplained = |why: String| Unexplained { call: index, why };
        match (&call.request, &call.answer) {
            (Request::Sweep(now), _) => {
                for p in all {
                    push(*p, Step::Sweep { now: *now });
                }
            }
            (Request::One(command, now), answer) => {
                let result = match answer {
                    Answer::One(result) => Some(result),
                    _ => None,
                };
                for (p, step) in
                    steps_of(command, *now, result, products_of).map_err(unexplained)?
                {
                    push(p, step);
                }
            }
            (Request::Batch(commands), answer) => {
                let results = match answer {
                    Answer::Batch(Ok(results)) if results.len() == commands.len() => {
                        results.iter().map(Some).collect()
                    }
                    Answer::Batch(Ok(_)) => {
                        return Err(unexplained("a batch answered another count".into()))
                    }
                    _ => vec![None; commands.len()],
                };
                for ((command, now), result) in commands.iter().zip(results) {
                    for (p, step) in
                        steps_of(command, *now, result, products_of).map_err(unexplained)?
                    {
                        push(p, step);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The steps one command projects onto each product it touches; `result`
/// `None` (or an unknown error) when its outcome is unknown.
fn steps_of(
    command: &Command,
    now: i64,
    result: Option<&Result<Outcome, Error>>,
    products_of: &BTreeMap<ReservationId, ProductId>,
) -> Result<Vec<(ProductId, Step)>, String> {
    let result = result.filter(|r| !matches!(r, Err(e) if is_unknown(e)));
    match command {
        Command::Reserve(reserve) => {
            let lines = reserve.lines();
            let roles: Vec<LineRole> = match result {
                None => vec![LineRole::Unknown; lines.len()],
                Some(Ok(Outcome::Reserved { created, .. })) => vec![
                    LineRole::Held {
                        all_existing: !created
                    };
                    lines.len()
                ],
                Some(Err(Error::InsufficientStock { product_id, .. })) => {
                    let at = lines
                        .iter()
                        .position(|l| l.product_id == *product_id)
                        .ok_or("short of a product the reserve did not name")?;
                    (0..lines.len())
                        .map(|i| match i.cmp(&at) {
                            std::cmp::Ordering::Less => LineRole::BeforeFailure,
                            std::cmp::Ordering::Equal => LineRole::Short,
                            std::cmp::Ordering::Greater => LineRole::Untouched,
                        })
                        .collect()
                }
                Some(Err(Error::IdempotencyConflict { .. } | Error::InvalidInput { .. })) => {
                    vec![LineRole::Untouched; lines.len()]
                }
                Some(other) => return Err(format!("a reserve answered {other:?}")),
            };
            let expires_at = now.saturating_add(reserve.ttl().as_millis() as i64);
            Ok(lines
                .iter()
                .zip(roles)
                .map(|(line, role)| {
                    let step = Step::Line {
                        rid: line.reservation_id.as_uuid(),
                        order: reserve.order_id().as_uuid(),
                        quantity: line.quantity.get(),
                        now,
                        expires_at,
                        role,
                    };
                    (line.product_id, step)
                })
                .collect())
        }
        Command::Confirm { reservation_id } | Command::Release { reservation_id } => {
            let Some(product) = products_of.get(reservation_id).copied() else {
                return Err(format!("{reservation_id} was never reserved"));
            };
            let answer = match result {
                None => None,
                Some(Ok(Outcome::Reservation { changed, .. })) => {
                    Some(SettleAnswer::Done(*changed))
                }
                Some(Err(Error::ReservationExpired { .. })) => Some(SettleAnswer::Expired),
                Some(Err(Error::InvalidTransition { .. })) => Some(SettleAnswer::InvalidTransition),
                Some(Err(Error::ReservationNotFound { .. })) => Some(SettleAnswer::NotFound),
                Some(other) => return Err(format!("a settle answered {other:?}")),
            };
            let rid = reservation_id.as_uuid();
            let step = if matches!(command, Command::Confirm { .. }) {
                Step::Confirm { rid, now, answer }
            } else {
                Step::Release { rid, answer }
            };
            Ok(vec![(product, step)])
        }
        Command::Adjust {
            product_id, delta, ..
        } => Ok(vec![(
            *product_id,
            Step::Adjust {
                delta: delta.get(),
                answer: item_answer(result)?,
            },
        )]),
        Command::SetQuantity {
            product_id,
            quantity,
            expected_version,
            ..
        } => Ok(vec![(
            *product_id,
            Step::Set {
                quantity: quantity.get(),
                expected_version: expected_version.get(),
                answer: item_answer(result)?,
            },
        )]),
        _ => Err("the simulation does not send this command".into()),
    }
}

fn item_answer(result: Option<&Result<Outcome, Error>>) -> Result<Option<ItemAnswer>, String> {
    Ok(match result {
        None => None,
        Some(Ok(Outcome::Item { item, changed })) => Some(ItemAnswer::Done {
            changed: *changed,
            quantity: item.quantity(),
            reserved: item.reserved(),
            version: item.version().get(),
        }),
        Some(Err(Error::BelowReserved { .. })) => Some(ItemAnswer::BelowReserved),
        Some(Err(Error::VersionConflict { .. })) => Some(ItemAnswer::VersionConflict),
        Some(other) => return Err(format!("a stock write answered {other:?}")),
    })
}
