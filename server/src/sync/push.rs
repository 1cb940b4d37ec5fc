//! Pushed batches: size, clock drift and value checks, then the append to the storage
//! engine. A batch is all or nothing: the first offending change refuses the whole
//! batch, and the error names its index. Whether the caller may write the batch is
//! decided before the append by the session (`crate::session::access`).

use weft_core::change::Change;
use weft_core::protocol::ErrorCode;
use weft_storage::engine::Appended;

use crate::error::OpError;
use crate::state::AppState;

/// Appends `changes` (logged and merged, not yet durable: wait with `Engine::wait`).
/// `origin` is the connection id, so the writer is not sent its own changes. Blocking.
pub fn append(state: &AppState, changes: Vec<Change>, origin: u64) -> Result<Appended, OpError> {
    let engine = state.engine()?;
    if let Some(latest) = changes.iter().map(|c| c.hlc).max() {
        state.lock_clock().advance_to(latest);
    }
    Ok(engine.append(changes, origin)?)
}

/// The checks that need no rules: batch size, clock drift, value and name rules, inner
/// timestamps.
pub fn check(state: &AppState, changes: &[Change]) -> Result<(), OpError> {
    let limit = state.config.limits.batch_changes_max;
    if changes.len() > limit {
        return Err(OpError::new(
            ErrorCode::BatchTooLarge,
            format!("batch of {} changes, at most {limit} allowed", changes.len()),
        ));
    }
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
                format!("{}/{}: the state holds a timestamp later than the change's", change.collection, change.key),
            ));
        }
    }
    Ok(())
}
