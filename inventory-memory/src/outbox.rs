//! The in-memory outbox: committed events waiting for a consumer, numbered in
//! commit order.
//!
//! Writers append to one of [`OUTBOX_SHARDS`] queues (picked per thread, so
//! threads working on different products do not queue on one lock) and take a
//! sequence number from one global counter while holding that queue's lock.
//! Because an event is numbered and queued in the same critical section, and
//! readers lock every queue at once, a reader always sees a gap-free prefix
//! of the sequence: the outbox is in global commit order, not only per product.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use inventory_core::{Event, Meta, OutboxEntry, OUTBOX_BATCH_MAX};
use parking_lot::{Mutex, MutexGuard};
use uuid::Uuid;

/// Number of outbox queues. A power of two at least as large as the number of
/// cores that commonly write at once, so two writers rarely share a queue;
/// readers lock all of them, which stays cheap at this size.
pub const OUTBOX_SHARDS: usize = 16;

/// One queue, alone on its cache lines so writers on different queues do not
/// slow each other down.
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    entries: Mutex<VecDeque<OutboxEntry>>,
}

/// Committed, unpublished events.
pub(crate) struct MemoryOutbox {
    shards: [Shard; OUTBOX_SHARDS],
    next_sequence: Padded<AtomicU64>,
}

#[repr(align(128))]
struct Padded<T>(T);

impl Default for MemoryOutbox {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Shard::default()),
            next_sequence: Padded(AtomicU64::new(1)),
        }
    }
}

static NEXT_THREAD_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The queue this thread writes to: threads are spread round-robin.
fn thread_shard() -> usize {
    THREAD_SHARD.with(|cell| {
        let mut shard = cell.get();
        if shard == usize::MAX {
            shard = NEXT_THREAD_SHARD.fetch_add(1, Ordering::Relaxed) % OUTBOX_SHARDS;
            cell.set(shard);
        }
        shard
    })
}

impl MemoryOutbox {
    /// A writer for one change. It locks its queue on the first event and
    /// keeps it until dropped (the end of the change).
    pub(crate) fn writer<'a>(&'a self, meta: &'a Meta) -> OutboxWriter<'a> {
        OutboxWriter {
            outbox: self,
            correlation_id: meta.correlation_id.as_deref(),
            queue: None,
        }
    }

    fn lock_all(&self) -> Vec<MutexGuard<'_, VecDeque<OutboxEntry>>> {
        // Always in index order; writers hold at most one queue, so no deadlock.
        self.shards.iter().map(|s| s.entries.lock()).collect()
    }

    /// Up to `limit.min(OUTBOX_BATCH_MAX)` entries, lowest sequence first;
    /// removes them when `remove` is set.
    pub(crate) fn take(&self, limit: usize, remove: bool) -> Vec<OutboxEntry> {
        let limit = limit.min(OUTBOX_BATCH_MAX);
        let mut queues = self.lock_all();
        let mut positions = [0_usize; OUTBOX_SHARDS];
        let mut out = Vec::with_capacity(limit.min(queues.iter().map(|q| q.len()).sum()));
        while out.len() < limit {
            // Each queue is sorted by sequence: merge by picking the lowest head.
            let lowest = queues
                .iter()
                .enumerate()
                .filter_map(|(i, q)| q.get(positions[i]).map(|e| (e.sequence, i)))
                .min();
            let Some((_, i)) = lowest else { break };
            if remove {
                out.extend(queues[i].pop_front());
            } else {
                out.push(queues[i][positions[i]].clone());
                positions[i] += 1;
            }
        }
        out
    }

    /// Removes the entries with these sequence numbers; unknown ones are ignored.
    pub(crate) fn remove(&self, sequences: &[u64]) {
        if sequences.is_empty() {
            return;
        }
        let mut sorted = sequences.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        for shard in &self.shards {
            let mut queue = shard.entries.lock();
            // Consumers usually acknowledge the oldest entries: pop those first.
            while queue
                .front()
                .is_some_and(|e| sorted.binary_search(&e.sequence).is_ok())
            {
                queue.pop_front();
            }
            if queue.is_empty() {
                continue;
            }
            let first = queue.front().map_or(0, |e| e.sequence);
            let start = sorted.partition_point(|s| *s < first);
            for sequence in &sorted[start..] {
                if let Ok(at) = queue.binary_search_by_key(sequence, |e| e.sequence) {
                    queue.remove(at);
                }
            }
        }
    }

    /// Number of entries waiting.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.entries.lock().len()).sum()
    }
}

/// Appends the events of one change to the outbox.
pub(crate) struct OutboxWriter<'a> {
    outbox: &'a MemoryOutbox,
    correlation_id: Option<&'a str>,
    queue: Option<MutexGuard<'a, VecDeque<OutboxEntry>>>,
}

impl OutboxWriter<'_> {
    /// Numbers the event and queues it. Called while the change still holds
    /// the locks of its items, so events of one product are numbered in the
    /// order their changes committed.
    pub(crate) fn push(&mut self, event: Event) {
        let outbox = self.outbox;
        let queue = self
            .queue
            .get_or_insert_with(|| outbox.shards[thread_shard()].entries.lock());
        // Numbered under the queue lock: each queue stays sorted, and a reader
        // holding every queue lock never sees a number whose predecessor is
        // still on its way.
        let sequence = outbox.next_sequence.0.fetch_add(1, Ordering::Relaxed);
        queue.push_back(OutboxEntry {
            sequence,
            event_id: Uuid::new_v4(),
            correlation_id: self.correlation_id.map(str::to_owned),
            event,
        });
    }
}
