//! What a session asks its driver to do: the [`Effect`]s, and the pushed batches that
//! wait for durability outside the session ([`PendingPush`]).

use weft_core::protocol::{BatchId, ServerMessage, SubscriptionId};
use weft_storage::engine::{Appended, Engine};

use super::reads::QueryTask;
use crate::error::OpError;

/// One thing for the driver to do, in the order the session returned them.
#[derive(Debug)]
pub enum Effect {
    /// Send this message to the client (after every message returned before it).
    Send(ServerMessage),
    /// The hello of a connection opened with [`super::Session::connect`] named this token:
    /// verify it and hand the result to [`super::Session::authenticated`]. Verifying may
    /// fetch keys, which is why the session does not do it itself.
    Authenticate {
        /// The hello's token (`None`: none sent).
        token: Option<String>,
    },
    /// A pushed batch (or the records of a reconciliation step) is logged and merged but
    /// perhaps not durable: wait for it (`Engine::wait`) whenever suits, then hand the
    /// outcome to [`super::Session::push_settled`], which answers it. Its answer comes
    /// out in batch order, whatever order the waits end in.
    AwaitDurable(PendingPush),
    /// A subscription or pull has more catch-up pages: call
    /// [`super::Session::catch_up`] when the client can take the next one. Always the
    /// last effect of its list.
    CatchUp(SubscriptionId),
    /// A query to answer: [`QueryTask::run`] reads the store (and parses SQL on a thread
    /// with a known stack), so the driver chooses where it runs; send its answer.
    Query(QueryTask),
    /// The connection is over (a fatal error was sent): read nothing more from it, send
    /// the answers of batches still waiting for durability, then close it.
    Close,
}

/// A batch appended by a session, waiting for durability.
#[derive(Debug)]
pub struct PendingPush {
    /// What the session needs back to answer it.
    pub ticket: PushTicket,
    /// What `Engine::wait` takes.
    pub appended: Appended,
}

/// Names a pending batch to the session that appended it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTicket {
    pub(super) session: u64,
    pub(super) seq: u64,
    pub(super) batch_id: Option<BatchId>,
    pub(super) changes: usize,
}

impl PushTicket {
    /// The pushed batch's id; `None` for the records of a reconciliation step.
    pub fn batch_id(&self) -> Option<BatchId> {
        self.batch_id
    }

    /// How many changes the batch holds.
    pub fn changes(&self) -> usize {
        self.changes
    }
}

impl PendingPush {
    /// Waits until the batch is durable (blocking) and returns what
    /// [`super::Session::push_settled`] takes.
    pub fn wait(self, engine: &Engine) -> (PushTicket, Result<(), OpError>) {
        let outcome = engine.wait(self.appended).map(drop).map_err(OpError::from);
        (self.ticket, outcome)
    }
}
