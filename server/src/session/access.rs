//! Authorization: the only place the server consults the rules. Every read — catch-up
//! pages, live changes, HTTP record reads and listings, queries, reconciliation — goes
//! through the one [`read_view`]; every write through [`authorize_writes`]. The
//! transports never see the rules, so both apply exactly the same ones.

use std::collections::HashMap;

use weft_core::change::Change;
use weft_core::crdt::RecordState;
use weft_core::key::{CollectionName, RecordKey};
use weft_core::protocol::{ErrorCode, Shape};

use crate::auth::Principal;
use crate::auth::rules::{Access, Operation};
use crate::error::OpError;
use crate::state::AppState;
use crate::sync::view::View;

/// What `principal` may read of `collection`, narrowed by `shape`; `Forbidden` when the
/// rules allow no row of it at all.
pub fn read_view(
    state: &AppState,
    principal: &Principal,
    collection: &CollectionName,
    shape: Option<Shape>,
) -> Result<View, OpError> {
    let access = state.rules.access(principal, collection.as_str(), Operation::Read);
    if access.is_denied() {
        return Err(OpError::new(ErrorCode::Forbidden, format!("read of {collection} denied for {:?}", principal.sub)));
    }
    Ok(View::new(access, shape))
}

/// A view of the whole collection, for merkle reconciliation: digests cover every row,
/// so only a caller who may read all of them may compare them.
pub fn whole_view(state: &AppState, principal: &Principal, collection: &CollectionName) -> Result<View, OpError> {
    match read_view(state, principal, collection, None) {
        Ok(view) if view.sees_every_row() => Ok(view),
        _ => Err(OpError::new(
            ErrorCode::Forbidden,
            format!("reconciliation of {collection} needs read access to every row; subscribe instead"),
        )),
    }
}

/// Whether `principal` may write every change of a batch; the first refused change
/// refuses the batch, naming its index. Blocking: row conditions read the current
/// record.
pub fn authorize_writes(state: &AppState, principal: &Principal, changes: &[Change]) -> Result<(), OpError> {
    // A change is judged on its record as the batch's earlier changes left it: a batch
    // that creates a record and then edits it (an offline create + edit) is judged on
    // the created record, not on the store's, which does not have it yet (found by the
    // simulation, tests/simulation).
    let mut written: HashMap<(&CollectionName, &RecordKey), RecordState> = HashMap::new();
    for (index, change) in changes.iter().enumerate() {
        let id = (&change.collection, &change.key);
        let before = match written.get(&id) {
            Some(state) => Some(state.clone()),
            None => state.engine()?.read(&change.collection, &change.key)?,
        };
        let after = authorize(state, principal, index, change, before)?;
        if let Some(after) = after {
            written.insert(id, after);
        }
    }
    Ok(())
}

/// Judges one change on `before`, its record's state; returns the state after it when
/// the rules needed it (row conditions).
fn authorize(
    state: &AppState,
    principal: &Principal,
    index: usize,
    change: &Change,
    before: Option<RecordState>,
) -> Result<Option<RecordState>, OpError> {
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
        Access::All => Ok(None),
        Access::Denied => Err(denied()),
        Access::Rows(_) => {
            // Conditions are judged on the record before (nobody takes over another's
            // row) and after (nobody writes a row they could not have created).
            if let Some(before) = before.as_ref().filter(|b| !b.is_empty()) {
                let document = before.document().unwrap_or_else(|| before.last_document());
                if !access.allows(Some(&document)) {
                    return Err(denied());
                }
            }
            let existed = before.is_some();
            let mut after = before.unwrap_or_default();
            let hash = change.key.hash();
            let version = after.version(hash);
            after.join(hash, version, change.state.clone());
            if operation == Operation::Delete {
                return if existed { Ok(Some(after)) } else { Err(denied()) };
            }
            let document = after.document().unwrap_or_else(|| after.last_document());
            if access.allows(Some(&document)) { Ok(Some(after)) } else { Err(denied()) }
        }
    }
}
