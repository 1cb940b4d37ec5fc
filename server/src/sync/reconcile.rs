//! Merkle reconciliation with a client (the fallback when a cursor cannot be used, and
//! what a client runs to verify it holds exactly the server's data). The records a step
//! carries are checked and made durable like a pushed batch before the answer is built.

use std::sync::Arc;

use weft_core::key::CollectionName;
use weft_core::merkle::ReconcileStep;
use weft_core::protocol::ErrorCode;

use super::{OpError, push};
use crate::auth::Principal;
use crate::auth::rules::{Access, Operation};
use crate::state::AppState;

/// Takes in one step; returns the answer, or `None` when the step asks nothing.
pub async fn answer(
    state: &Arc<AppState>,
    principal: &Principal,
    collection: &CollectionName,
    step: ReconcileStep,
    origin: u64,
) -> Result<Option<ReconcileStep>, OpError> {
    // Digests cover every row: only a caller who may read all of them may compare them.
    if state.rules.access(principal, collection.as_str(), Operation::Read) != Access::All {
        return Err(OpError::new(
            ErrorCode::Forbidden,
            format!("reconciliation of {collection} needs read access to every row; subscribe instead"),
        ));
    }
    let engine = Arc::clone(state.engine()?);
    let task_state = Arc::clone(state);
    let principal = principal.clone();
    let collection = collection.clone();
    let answer = tokio::task::spawn_blocking(move || -> Result<Option<ReconcileStep>, OpError> {
        if let Some(stray) = step.records.iter().position(|record| record.collection != collection) {
            return Err(OpError::at(ErrorCode::Malformed, stray, "reconciliation record for another collection"));
        }
        if !step.records.is_empty() {
            let appended = push::check_and_append(&task_state, &principal, step.records.clone(), origin)?;
            engine.wait(appended)?;
        }
        if step.asks_nothing() {
            return Ok(None);
        }
        Ok(Some(engine.reconcile(&collection, &step)?))
    })
    .await;
    answer.unwrap_or_else(|_| Err(OpError::new(ErrorCode::Internal, "reconciliation failed inside the server")))
}
