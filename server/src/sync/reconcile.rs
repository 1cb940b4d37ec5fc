//! Merkle reconciliation with a client (the fallback when a cursor cannot be used, and
//! what a client runs to verify it holds exactly the server's data): answering a step,
//! and the snapshot a server-started exchange begins from. Who may reconcile, and when
//! the records a step carries are durable, is the session's business.

use weft_core::key::{CollectionName, PartitionId};
use weft_core::merkle::ReconcileStep;
use weft_core::protocol::{Cursor, ErrorCode, LogId};
use weft_storage::engine::Engine;

use crate::error::OpError;

/// Refuses a step carrying a record of another collection (naming its index).
pub fn check_records(collection: &CollectionName, step: &ReconcileStep) -> Result<(), OpError> {
    match step.records.iter().position(|record| &record.collection != collection) {
        Some(stray) => Err(OpError::at(ErrorCode::Malformed, stray, "reconciliation record for another collection")),
        None => Ok(()),
    }
}

/// The answer to `step` (its records already merged), or `None` when it asks nothing.
/// Blocking.
pub fn answer(
    engine: &Engine,
    collection: &CollectionName,
    step: &ReconcileStep,
) -> Result<Option<ReconcileStep>, OpError> {
    if step.asks_nothing() {
        return Ok(None);
    }
    Ok(Some(engine.reconcile(collection, step)?))
}

/// The opening step of an exchange the server starts, and the cursor of the snapshot it
/// describes: what lies before the cursor comes by reconciliation, what follows arrives
/// live. Blocking.
pub fn start(engine: &Engine, log: LogId, collection: &CollectionName) -> (Cursor, ReconcileStep) {
    let seqs = engine.seqs(collection);
    let step = engine.reconcile_start(collection);
    let mut cursor = Cursor::new(log);
    for (index, seq) in seqs.into_iter().enumerate() {
        if let Some(partition) = u16::try_from(index).ok().and_then(PartitionId::new)
            && seq > 0
        {
            cursor.advance(partition, seq);
        }
    }
    (cursor, step)
}
