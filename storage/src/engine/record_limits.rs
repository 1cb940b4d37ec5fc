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
use weft_core::key::{CollectionName, KeyHash, RecordKey};

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

type BatchKey<'a> = (&'a CollectionName, &'a RecordKey);

impl Inner {
    /// Refuses `changes` (with their key `hashes`) if merging them would make a record
    /// exceed `limits`.
    pub(super) fn check_record_limits(
        &mut self,
        changes: &[Change],
        hashes: &[KeyHash],
        ahead: &ReadAhead,
        limits: &RecordLimits,
    ) -> Result<(), EngineError> {
        // Records seen earlier in this batch (most batches touch each record once).
        let mut seen: HashMap<BatchKey<'_>, (Known, usize), foldhash::fast::RandomState> = HashMap::default();
        for (index, (change, hash)) in changes.iter().zip(hashes).enumerate() {
            let delta = change.state.size();
            let ahead_record = ahead.get(index).and_then(|r| r.as_deref());
            let batch_key = (&change.collection, &change.key);
            let (known, exact_checks) = match seen.remove(&batch_key) {
                Some(entry) => entry,
                None => {
                    let id = (change.collection.clone(), change.key.clone());
                    let current = self.current_size(&id, *hash, ahead_record)?;
                    let bound = current.unwrap_or_default().plus(delta);
                    if limits.exceeded_by(bound).is_none() {
                        // The common case: far from the limit.
                        seen.insert(batch_key, (Known::Bound(bound), 0));
                        continue;
                    }
                    (Known::Bound(current.unwrap_or_default()), 0)
                }
            };
            let entry = match known {
                Known::Bound(bound) if limits.exceeded_by(bound.plus(delta)).is_none() => {
                    (Known::Bound(bound.plus(delta)), exact_checks)
                }
                Known::Exact(mut state, size) if limits.exceeded_by(size.plus(delta)).is_none() => {
                    join(&mut state, change, *hash);
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
                            // From the current record and every earlier change of this batch to it.
                            let id = (change.collection.clone(), change.key.clone());
                            let mut state = self.current_for_limits(&id, *hash, ahead_record)?.unwrap_or_default();
                            let earlier = changes[..index].iter().zip(hashes);
                            for (earlier, earlier_hash) in
                                earlier.filter(|(c, _)| c.collection == id.0 && c.key == id.1)
                            {
                                join(&mut state, earlier, *earlier_hash);
                            }
                            state
                        }
                    };
                    join(&mut state, change, *hash);
                    let size = state.size();
                    if let Some(reason) = limits.exceeded_by(size) {
                        return Err(too_large(change, index, &reason));
                    }
                    (Known::Exact(state, size), exact_checks + 1)
                }
            };
            seen.insert(batch_key, entry);
        }
        Ok(())
    }

    /// The current state of a record, copied, for measuring it merged (a copy read ahead
    /// of the lock is used when it is the latest).
    fn current_for_limits(
        &self,
        id: &RecordId,
        hash: KeyHash,
        ahead: Option<&crate::store::StoredRecord>,
    ) -> Result<Option<RecordState>, EngineError> {
        let latest = self.latest_version(id, hash);
        if latest.is_none() {
            return Ok(None);
        }
        if let Some(record) = ahead.filter(|record| Some(record.version) == latest) {
            return Ok(Some(record.state.clone()));
        }
        Ok(self.peek_current(id)?.map(|record| record.state))
    }
}

fn join(state: &mut RecordState, change: &Change, hash: KeyHash) {
    let version = state.version(hash);
    state.join(hash, version, change.state.clone());
}

fn too_large(change: &Change, index: usize, reason: &str) -> EngineError {
    EngineError::RecordTooLarge {
        collection: change.collection.to_string(),
        key: change.key.to_string(),
        index,
        reason: reason.to_owned(),
    }
}
