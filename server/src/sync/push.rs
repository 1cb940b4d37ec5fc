//! Pushed batches: size, clock drift and authorization checks, then the append to the
//! storage engine. A batch is all or nothing: the first offending change refuses the
//! whole batch, and the error names its index.

use weft_core::change::Change;
use weft_core::crdt::VersionHash;
use weft_core::protocol::ErrorCode;
use weft_storage::engine::Appended;

use super::OpError;
use crate::auth::Principal;
use crate::auth::rules::{Access, Operation};
use crate::state::AppState;

/// Checks `changes` and appends them (logged and merged, not yet durable: wait with
/// `Engine::wait`). `origin` is the connection id, so the writer is not sent its own
/// changes. Blocking: call from a blocking thread.
pub fn check_and_append(
    state: &AppState,
    principal: &Principal,
    changes: Vec<Change>,
    origin: u64,
) -> Result<Appended, OpError> {
    let engine = state.engine()?;
    check(state, principal, &changes)?;
    if let Some(latest) = changes.iter().map(|c| c.hlc).max() {
        state.lock_clock().advance_to(latest);
    }
    Ok(engine.append(changes, origin)?)
}

/// The checks alone.
pub fn check(state: &AppState, principal: &Principal, changes: &[Change]) -> Result<(), OpError> {
    let limit = state.config.limits.batch_changes_max;
    if changes.len() > limit {
        return Err(OpError::new(
            ErrorCode::BatchTooLarge,
            format!("batch of {} changes, at most {limit} allowed", changes.len()),
        ));
    }
    {
        let clock = state.lock_clock();
        for (index, change) in changes.iter().enumerate() {
            if let Err(error) = clock.check_drift(change.hlc) {
                return Err(OpError::at(
                    ErrorCode::ClockDrift,
                    index,
                    format!("{}/{}: {error}", change.collection, change.key),
                ));
            }
            // The same value rules as HTTP JSON writes (field names, depth 32).
            if let Err(error) = weft_core::replica::validate_state(&change.state) {
                let code = match error {
                    weft_core::replica::WriteError::TooDeep { .. } => ErrorCode::NestingTooDeep,
                    _ => ErrorCode::InvalidName,
                };
                return Err(OpError::at(code, index, format!("{}/{}: {error}", change.collection, change.key)));
            }
            if change.state.max_hlc().is_some_and(|inner| inner > change.hlc) {
                return Err(OpError::at(
                    ErrorCode::Malformed,
                    index,
                    format!(
                        "{}/{}: the state holds a timestamp later than the change's",
                        change.collection, change.key
                    ),
                ));
            }
        }
    }
    for (index, change) in changes.iter().enumerate() {
        authorize(state, principal, index, change)?;
    }
    Ok(())
}

fn authorize(state: &AppState, principal: &Principal, index: usize, change: &Change) -> Result<(), OpError> {
    let operation = if change.is_delete() { Operation::Delete } else { Operation::Write };
    let access = state.rules.access(principal, change.collection.as_str(), operation);
    let denied = || {
        OpError::at(
            ErrorCode::Forbidden,
            index,
            format!("{operation} of {}/{} denied for {:?}", change.collection, change.key, principal.sub),
        )
    };
    match access {
        Access::All => Ok(()),
        Access::Denied => Err(denied()),
        Access::Rows(_) => {
            // Conditions are judged on the record before (nobody takes over another's
            // row) and after (nobody writes a row they could not have created).
            let engine = state.engine()?;
            let before = engine.read(&change.collection, &change.key)?;
            if let Some(before) = before.as_ref().filter(|b| !b.is_empty()) {
                let document = before.document().unwrap_or_else(|| before.last_document());
                if !access.allows(Some(&document)) {
                    return Err(denied());
                }
            }
            if operation == Operation::Delete {
                return if before.is_some() { Ok(()) } else { Err(denied()) };
            }
            let mut after = before.unwrap_or_default();
            after.join(change.key.hash(), VersionHash::default(), change.state.clone());
            let document = after.document().unwrap_or_else(|| after.last_document());
            if access.allows(Some(&document)) { Ok(()) } else { Err(denied()) }
        }
    }
}
