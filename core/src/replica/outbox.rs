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

    /// Puts changes of a batch the server asked to retry back at the front, in order.
    pub fn requeue_front(&mut self, changes: Vec<Change>) {
        for change in changes.into_iter().rev() {
            self.pending.push_front(change);
        }
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
