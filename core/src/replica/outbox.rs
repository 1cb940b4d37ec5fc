//! Local changes not yet acknowledged by the server.
//!
//! Changes wait in `pending` until a push takes them; a pushed batch stays `in_flight`
//! until its ack. On disconnect every in-flight batch returns to the front of `pending`,
//! in order, and is pushed again on reconnect: re-applying a change is harmless
//! (idempotent merge), losing one is not. The host persists [`Outbox::unacknowledged`]
//! (IndexedDB, a file) so the outbox survives restarts.

use std::collections::VecDeque;

use crate::change::Change;
use crate::protocol::BatchId;

/// A pushed batch awaiting its ack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// The batch's id on the current connection.
    pub batch_id: BatchId,
    /// Its changes.
    pub changes: Vec<Change>,
}

/// The queue of unacknowledged local changes.
#[derive(Clone, Debug, Default)]
pub struct Outbox {
    pending: VecDeque<Change>,
    in_flight: VecDeque<InFlight>,
    next_batch_id: u64,
}

impl Outbox {
    /// Queues a local change.
    pub fn push(&mut self, change: Change) {
        self.pending.push_back(change);
    }

    /// Moves up to `max` pending changes into a new in-flight batch and returns it.
    pub fn take_batch(&mut self, max: usize) -> Option<&InFlight> {
        if self.pending.is_empty() || max == 0 {
            return None;
        }
        let n = self.pending.len().min(max);
        let changes: Vec<Change> = self.pending.drain(..n).collect();
        self.next_batch_id += 1;
        self.in_flight.push_back(InFlight { batch_id: BatchId(self.next_batch_id), changes });
        self.in_flight.back()
    }

    /// Removes an acknowledged batch; returns it, or `None` if no such batch is in flight.
    pub fn acknowledge(&mut self, batch_id: BatchId) -> Option<InFlight> {
        let index = self.in_flight.iter().position(|b| b.batch_id == batch_id)?;
        self.in_flight.remove(index)
    }

    /// Returns every in-flight batch to the front of the queue, oldest first.
    pub fn requeue(&mut self) {
        while let Some(batch) = self.in_flight.pop_back() {
            for change in batch.changes.into_iter().rev() {
                self.pending.push_front(change);
            }
        }
    }

    /// Returns batch `batch_id` and every batch pushed after it to the front of the
    /// queue, oldest first (the server asked to retry it: later batches must not overtake
    /// it). Returns whether the batch was in flight.
    pub fn requeue_from(&mut self, batch_id: BatchId) -> bool {
        let Some(index) = self.in_flight.iter().position(|b| b.batch_id == batch_id) else { return false };
        while self.in_flight.len() > index {
            let Some(batch) = self.in_flight.pop_back() else { break };
            for change in batch.changes.into_iter().rev() {
                self.pending.push_front(change);
            }
        }
        true
    }

    /// Every unacknowledged change, oldest first (in flight, then pending).
    pub fn unacknowledged(&self) -> impl Iterator<Item = &Change> {
        self.in_flight.iter().flat_map(|b| b.changes.iter()).chain(self.pending.iter())
    }

    /// The change queued last (a host persists and shares each local write as it is made).
    pub fn last(&self) -> Option<&Change> {
        self.pending.back()
    }

    /// Number of unacknowledged changes.
    pub fn len(&self) -> usize {
        self.pending.len() + self.in_flight.iter().map(|b| b.changes.len()).sum::<usize>()
    }

    /// True when every local change has been acknowledged.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.in_flight.is_empty()
    }

    /// Number of batches awaiting an ack.
    pub fn in_flight_batches(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Change;
    use crate::crdt::ops;
    use crate::hlc::{Hlc, NodeId};
    use crate::key::{CollectionName, RecordKey};

    fn change(n: u64) -> Change {
        let hlc = Hlc::new(1_000 + n, 0, NodeId(1));
        let key = RecordKey::new(format!("k{n}")).unwrap_or_else(|e| panic!("{e}"));
        let collection = CollectionName::new("c").unwrap_or_else(|e| panic!("{e}"));
        Change { collection, key, hlc, state: ops::delete(None, hlc) }
    }

    fn order(outbox: &Outbox) -> Vec<u64> {
        outbox.unacknowledged().map(|c| c.hlc.wall_ms - 1_000).collect()
    }

    #[test]
    fn a_batch_to_retry_goes_back_with_every_later_one_in_write_order() {
        let mut outbox = Outbox::default();
        for n in 0..6 {
            outbox.push(change(n));
        }
        let first = outbox.take_batch(2).map(|b| b.batch_id);
        let second = outbox.take_batch(2).map(|b| b.batch_id);
        let _third = outbox.take_batch(1).map(|b| b.batch_id);
        assert!(outbox.requeue_from(second.unwrap_or(BatchId(0))));
        // Batch 1 still in flight; 2 and 3 back at the front of the queue, in order.
        assert_eq!(outbox.in_flight_batches(), 1);
        assert_eq!(order(&outbox), [0, 1, 2, 3, 4, 5]);
        assert!(outbox.acknowledge(first.unwrap_or(BatchId(0))).is_some());
        assert!(!outbox.requeue_from(BatchId(99)), "an unknown batch changes nothing");
        assert_eq!(order(&outbox), [2, 3, 4, 5]);
    }
}
