//! The ordered answers of a session's batches: acks and refusals leave in the order the
//! batches arrived, whatever order their waits for durability end in, and a batch
//! refused at once waits behind the batches before it that are still pending.

use std::collections::VecDeque;

use weft_core::key::CollectionName;
use weft_core::merkle::ReconcileStep;
use weft_core::protocol::{BatchId, ServerMessage, SessionId};

use crate::error::OpError;

/// What a batch's slot says once it may leave.
#[derive(Debug)]
pub(super) enum Answer {
    /// The batch is durable.
    Ack {
        /// Its id.
        batch_id: BatchId,
        /// How many changes it held (for the metrics).
        changes: usize,
    },
    /// The batch is refused: this error frame.
    Refusal(ServerMessage),
    /// The records of a reconciliation step are durable (or failed): this answer.
    Reconcile {
        /// The exchange.
        session_id: SessionId,
        /// Its collection.
        collection: CollectionName,
        /// The step that answers it, `None` when it asked nothing.
        answer: Result<Option<ReconcileStep>, OpError>,
    },
    /// The server shuts down: after every earlier answer, tell the client and close.
    Shutdown,
}

#[derive(Debug)]
enum Slot {
    /// Waiting for durability; the answer it gives if the wait succeeds.
    Waiting(Answer),
    Ready(Answer),
}

/// Slots in arrival order.
#[derive(Debug, Default)]
pub(super) struct AckQueue {
    next_seq: u64,
    slots: VecDeque<(u64, Slot)>,
}

impl AckQueue {
    /// A slot waiting for durability; returns its sequence number (for the ticket).
    pub(super) fn wait(&mut self, on_success: Answer) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.slots.push_back((seq, Slot::Waiting(on_success)));
        seq
    }

    /// An answer known now: returned at once if nothing waits before it, else queued.
    pub(super) fn ready(&mut self, answer: Answer) -> Option<Answer> {
        if self.slots.is_empty() {
            return Some(answer);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.slots.push_back((seq, Slot::Ready(answer)));
        None
    }

    /// Settles slot `seq` and returns every answer now due, in order. An unknown `seq`
    /// (settled twice, or another session's) settles nothing.
    pub(super) fn settle(&mut self, seq: u64, outcome: Result<(), OpError>) -> Vec<Answer> {
        let waiting = self.slots.iter().position(|(s, slot)| *s == seq && matches!(slot, Slot::Waiting(_)));
        if let Some(index) = waiting
            && let Some((_, Slot::Waiting(answer))) = self.slots.remove(index)
        {
            let answer = match outcome {
                Ok(()) => answer,
                Err(error) => failed(answer, error),
            };
            self.slots.insert(index, (seq, Slot::Ready(answer)));
        }
        let mut due = Vec::new();
        while let Some((_, Slot::Ready(_))) = self.slots.front() {
            if let Some((_, Slot::Ready(answer))) = self.slots.pop_front() {
                due.push(answer);
            }
        }
        due
    }

    /// Slots not yet answered (waiting, or ready behind one that waits).
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }
}

/// What a slot says when its wait for durability failed.
fn failed(answer: Answer, error: OpError) -> Answer {
    match answer {
        Answer::Ack { batch_id, .. } => Answer::Refusal(error.to_message(Some(batch_id), false)),
        Answer::Reconcile { session_id, collection, .. } => {
            Answer::Reconcile { session_id, collection, answer: Err(error) }
        }
        other => other,
    }
}
