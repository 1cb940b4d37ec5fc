//! Records never grow past what a client can decode: a batch that would make any record
//! larger than [`RecordLimits`] is refused whole, before any of it is logged or merged.
//!
//! The check runs under the engine lock, so concurrent batches cannot together push a
//! record past the limit. It is cheap when records are far from it: the merged record is
//! never larger than the current one plus the deltas ([`RecordSize::plus`]), so only a
//! record whose bound passes the limit is merged, on a copy, to measure it exactly.

use std::collections::HashMap;

use weft_core::change::Change;
use weft_core::crdt::{RecordLimits, RecordSize, RecordState};

use super::read_ahead::ReadAhead;
use super::{EngineError, Inner, RecordId};

/// Exact re-measurements of one record within one batch before the batch is refused: a
/// batch of thousands of small changes to one record at its limit would otherwise make
/// the engine measure a large record thousands of times under its lock.
const EXACT_CHECKS_PER_RECORD: usize = 8;

/// What the check knows of one record of the batch.
enum Known {
    /// An upper bound of its merged size.
    Bound(RecordSize),
    /// Its merged state, computed exactly (near the limit).
    Exact(RecordState, RecordSize),
}

impl Inner {
    /// Refuses `changes` if merging them would make a record exceed `limits`.
    pub(super) fn check_record_limits(
        &mut self,
        changes: &[Change],
        ahead: &ReadAhead,
        limits: &RecordLimits,
    ) -> Result<(), EngineError> {
        let mut records: HashMap<RecordId, (Known, usize)> = HashMap::new();
        for (index, change) in changes.iter().enumerate() {
            let id = (change.collection.clone(), change.key.clone());
            let delta = change.state.size();
            let (known, exact_checks) = match records.remove(&id) {
                Some(entry) => entry,
                None => {
                    let current = self.current_size(&id, ahead.get(index).and_then(|r| r.as_deref()))?;
                    (Known::Bound(current.unwrap_or_default()), 0)
                }
            };
            let (known, exact_checks) = match known {
                Known::Bound(bound) if limits.exceeded_by(bound.plus(delta)).is_none() => {
                    (Known::Bound(bound.plus(delta)), exact_checks)
                }
                Known::Exact(state, size) if limits.exceeded_by(size.plus(delta)).is_none() => {
                    let mut state = state;
                    let hash = change.key.hash();
                    let version = state.version(hash);
                    state.join(hash, version, change.state.clone());
                    (Known::Exact(state, size.plus(delta)), exact_checks)
                }
                known => {
                    // Near the limit: merge on a copy and measure.
                    if exact_checks >= EXACT_CHECKS_PER_RECORD {
                        return Err(too_large(
                            change,
                            index,
                            "too many changes to a record at its size limit in one batch",
                        ));
                    }
                    let mut state = match known {
                        Known::Exact(state, _) => state,
                        Known::Bound(_) => {
                            // Recompute from the current record and every earlier delta of
                            // this batch for it.
                            let ahead_record = ahead.get(index).and_then(|r| r.as_deref());
                            let mut state = self.current_for_limits(&id, ahead_record)?.unwrap_or_default();
                            for earlier in changes[..index].iter().filter(|c| c.collection == id.0 && c.key == id.1) {
                                let hash = earlier.key.hash();
                                let version = state.version(hash);
                                state.join(hash, version, earlier.state.clone());
                            }
                            state
                        }
                    };
                    let hash = change.key.hash();
                    let version = state.version(hash);
                    state.join(hash, version, change.state.clone());
                    let size = state.size();
                    if let Some(reason) = limits.exceeded_by(size) {
                        return Err(too_large(change, index, &reason));
                    }
                    (Known::Exact(state, size), exact_checks + 1)
                }
            };
            records.insert(id, (known, exact_checks));
        }
        Ok(())
    }

    /// The current state of a record, copied, for measuring it merged (a copy read ahead
    /// of the lock is used when it is the latest).
    fn current_for_limits(
        &self,
        id: &RecordId,
        ahead: Option<&crate::store::StoredRecord>,
    ) -> Result<Option<RecordState>, EngineError> {
        let latest = self.latest_version(id, id.1.hash());
        if latest.is_none() {
            return Ok(None);
        }
        if let Some(record) = ahead.filter(|record| Some(record.version) == latest) {
            return Ok(Some(record.state.clone()));
        }
        Ok(self.peek_current(id)?.map(|record| record.state))
    }
}

fn too_large(change: &Change, index: usize, reason: &str) -> EngineError {
    EngineError::RecordTooLarge {
        collection: change.collection.to_string(),
        key: change.key.to_string(),
        index,
        reason: reason.to_owned(),
    }
}
