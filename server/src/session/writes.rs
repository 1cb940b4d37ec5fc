//! Writes: pushed batches and the records of reconciliation steps are checked,
//! authorized and appended at once, then wait for durability outside the session; their
//! answers leave in batch order (`acks.rs`).

use std::sync::Arc;

use weft_core::change::Change;
use weft_core::key::CollectionName;
use weft_core::merkle::ReconcileStep;
use weft_core::protocol::{BatchId, ErrorCode, ServerMessage, SessionId};
use weft_storage::engine::Appended;

use super::acks::Answer;
use super::effect::{Effect, PendingPush, PushTicket};
use super::{Mode, Session};
use crate::error::OpError;
use crate::metrics::TransportLabels;
use crate::sync::{push, reconcile};

/// A change named by what makes it unique: its record and its timestamp.
pub(super) type ChangeId = (CollectionName, weft_core::key::RecordKey, weft_core::hlc::Hlc);

impl Session {
    pub(super) fn push(&mut self, batch_id: BatchId, changes: Vec<Change>) -> Vec<Effect> {
        let count = changes.len();
        // After a retryable refusal, batches the client sent before it heard of it are
        // refused the same way: applied now, they would overtake the refused batch (an
        // edit before its create, which row rules refuse for good; found by the
        // simulation, seed 851). A client that heard pushes the refused batch again
        // first, and every later one after it (`Outbox::requeue_from`): a push that
        // starts with the refused batch's first change ends the rule.
        if let Some((first, code)) = &self.retry_first {
            let resumed = changes
                .first()
                .is_some_and(|change| (&change.collection, &change.key, change.hlc) == (&first.0, &first.1, first.2));
            if !resumed {
                let error = OpError::new(
                    *code,
                    "an earlier batch of this connection must be retried first; push again in order",
                );
                return self.refuse_batch(batch_id, error);
            }
            self.retry_first = None;
        }
        let first = changes.first().map(|change| (change.collection.clone(), change.key.clone(), change.hlc));
        let now_ms = self.state.now_ms();
        if self.mode == Mode::Connection && !self.limiter.try_take(count, now_ms) {
            let limits = &self.state.config.limits;
            let error = OpError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} changes/s (burst {}) on this connection; retry later",
                    limits.ops_per_second, limits.ops_burst
                ),
            );
            return self.refuse_retryable(batch_id, first, error);
        }
        match self.append(changes) {
            Ok(appended) => {
                let seq = self.acks.wait(Answer::Ack { batch_id, changes: count });
                let ticket = PushTicket { session: self.id, seq, batch_id: Some(batch_id), changes: count };
                vec![Effect::AwaitDurable(PendingPush { ticket, appended })]
            }
            Err(error) => self.refuse_retryable(batch_id, first, error),
        }
    }

    /// Refuses a batch; a retryable refusal also holds back the batches behind it until
    /// the client pushes this one again (see `push`).
    fn refuse_retryable(&mut self, batch_id: BatchId, first: Option<ChangeId>, error: OpError) -> Vec<Effect> {
        if error.code.is_retryable()
            && let Some(first) = first
        {
            self.retry_first = Some((first, error.code));
        }
        self.refuse_batch(batch_id, error)
    }

    /// Refuses batch `batch_id`, after the answers of the batches before it.
    pub(super) fn refuse_batch(&mut self, batch_id: BatchId, error: OpError) -> Vec<Effect> {
        let refusal = Answer::Refusal(error.to_message(Some(batch_id), false));
        match self.acks.ready(refusal) {
            Some(now) => self.answered(now),
            None => Vec::new(),
        }
    }

    /// The checks, the write rules, then the append. Blocking.
    fn append(&self, changes: Vec<Change>) -> Result<Appended, OpError> {
        self.state.engine()?;
        push::check(&self.state, &changes)?;
        super::access::authorize_writes(&self.state, self.caller()?, &changes)?;
        push::append(&self.state, changes, self.origin())
    }

    pub(super) fn reconcile(
        &mut self,
        session_id: SessionId,
        collection: CollectionName,
        step: ReconcileStep,
    ) -> Vec<Effect> {
        let checked = self
            .caller()
            .and_then(|caller| super::access::whole_view(&self.state, caller, &collection))
            .and_then(|_| self.state.engine().map(Arc::clone))
            .and_then(|engine| reconcile::check_records(&collection, &step).map(|()| engine));
        let engine = match checked {
            Ok(engine) => engine,
            Err(error) => return self.reconcile_answered(session_id, collection, Err(error)),
        };
        if step.records.is_empty() {
            let answer = reconcile::answer(&engine, &collection, &step);
            return self.reconcile_answered(session_id, collection, answer);
        }
        let count = step.records.len();
        let appended = match self.append(step.records.clone()) {
            Ok(appended) => appended,
            Err(error) => return self.reconcile_answered(session_id, collection, Err(error)),
        };
        // The answer reads the merged records; it leaves once they are durable.
        let answer = reconcile::answer(&engine, &collection, &step);
        let seq = self.acks.wait(Answer::Reconcile { session_id, collection, answer });
        let ticket = PushTicket { session: self.id, seq, batch_id: None, changes: count };
        vec![Effect::AwaitDurable(PendingPush { ticket, appended })]
    }

    fn reconcile_answered(
        &mut self,
        session_id: SessionId,
        collection: CollectionName,
        answer: Result<Option<ReconcileStep>, OpError>,
    ) -> Vec<Effect> {
        self.answered(Answer::Reconcile { session_id, collection, answer })
    }

    /// The outcome of waiting for a batch from [`Effect::AwaitDurable`]: the answers now
    /// due — its own, and those queued behind it — in batch order. A ticket of another
    /// session, or one settled before, changes nothing.
    pub fn push_settled(&mut self, ticket: PushTicket, outcome: Result<(), OpError>) -> Vec<Effect> {
        if ticket.session != self.id {
            return Vec::new();
        }
        let due = self.acks.settle(ticket.seq, outcome);
        due.into_iter().flat_map(|answer| self.answered(answer)).collect()
    }

    /// Batches waiting for durability, and answers queued behind them.
    pub fn pushes_in_flight(&self) -> usize {
        self.acks.len()
    }

    /// The effects of an answer leaving the queue.
    fn answered(&mut self, answer: Answer) -> Vec<Effect> {
        match answer {
            Answer::Ack { batch_id, changes } => {
                let labels = TransportLabels { transport: self.mode.transport() };
                self.state.metrics.ops.get_or_create(&labels).inc_by(changes as u64);
                self.state.metrics.acks.get_or_create(&labels).inc();
                vec![Effect::Send(ServerMessage::Ack { batch_id })]
            }
            Answer::Refusal(message) => vec![Effect::Send(message)],
            Answer::Reconcile { session_id, collection, answer } => {
                let (mut effects, ended) = match answer {
                    Ok(Some(step)) => {
                        let ended = step.asks_nothing();
                        (vec![Effect::Send(ServerMessage::Reconcile { session_id, collection, step })], ended)
                    }
                    Ok(None) => (Vec::new(), true),
                    Err(error) => (vec![Effect::Send(error.to_message(None, false))], true),
                };
                if ended {
                    effects.extend(self.reconciliation_ended(session_id));
                }
                effects
            }
            Answer::Shutdown => {
                self.fatal(OpError::new(ErrorCode::Unavailable, "the server is shutting down; reconnect later"))
            }
        }
    }

    /// The server shuts down: once every batch already read is answered, the client is
    /// told `Unavailable` (fatal) and the connection closes. Stateless sessions end with
    /// their request anyway.
    pub fn shutdown(&mut self) -> Vec<Effect> {
        if self.mode == Mode::Stateless || self.is_closed() {
            return Vec::new();
        }
        match self.acks.ready(Answer::Shutdown) {
            Some(now) => self.answered(now),
            None => Vec::new(),
        }
    }
}
