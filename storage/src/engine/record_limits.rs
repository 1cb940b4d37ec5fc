//! Records never grow past what a client can decode: a batch that would make any record
//! larger than [`RecordLimits`] is refused whole, before any of it is logged or merged.
//!
//! The check runs under the engine lock, so concurrent batches cannot together push a
//! record past the limit. It is cheap when records are far from it: the merged record is
//! never larger than the current one plus the deltas ([`RecordSize::plus`]), so only a
//! record whose bound passes the limit is merged, on a copy, to measure it exactly. It
//! takes each record of the batch out of the working set — the lookup the merge would
//! make anyway — and hands it to the merge, so the check costs no extra lookup.

use std::collections::HashMap;

use weft_core::change::Change;
use weft_core::crdt::{RecordLimits, RecordSize, RecordState};
use weft_core::key::{CollectionName, KeyHash, RecordKey};

use super::read_ahead::ReadAhead;
use super::{Current, EngineError, Inner};
use crate::store::StoredRecord;

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
    /// Takes the current copy of each record of `changes` (with their key `hashes`) out
    /// of the working set, once per record, and returns them for the merges, one per
    /// change: `Current::Taken` for a record's first change, `Current::Ahead(None)` for
    /// later ones (their merge takes the record wherever the first merge put it back:
    /// the dirty map if it changed, else the cache or the store). If merging would make
    /// a record exceed `limits`, puts everything back and refuses the batch.
    pub(super) fn check_record_limits(
        &mut self,
        changes: &[Change],
        hashes: &[KeyHash],
        ahead: ReadAhead,
        limits: &RecordLimits,
    ) -> Result<Vec<Current>, EngineError> {
        let mut taken: Vec<Current> = Vec::with_capacity(changes.len());
        match self.measure_batch(changes, hashes, ahead, &mut taken, limits) {
            Ok(()) => Ok(taken),
            Err(error) => {
                self.put_back(changes, hashes, taken);
                Err(error)
            }
        }
    }

    /// Puts records taken by [`Inner::check_record_limits`] back where they were.
    pub(super) fn put_back(&mut self, changes: &[Change], hashes: &[KeyHash], taken: Vec<Current>) {
        for ((change, hash), current) in changes.iter().zip(hashes).zip(taken) {
            if let Current::Taken(Some((record, residence))) = current {
                let id = (change.collection.clone(), change.key.clone());
                self.put_unchanged(id, *hash, record, residence);
            }
        }
    }

    fn measure_batch(
        &mut self,
        changes: &[Change],
        hashes: &[KeyHash],
        ahead: ReadAhead,
        taken: &mut Vec<Current>,
        limits: &RecordLimits,
    ) -> Result<(), EngineError> {
        let mut ahead = ahead.into_iter();
        // Records seen earlier in this batch (most batches touch each record once).
        // A random seed per map: the keys come from clients, and a fixed one would let a
        // client craft colliding keys that make this loop quadratic under the lock.
        // Per record: what is known, exact checks so far, the index of its first change.
        let mut seen: HashMap<BatchKey<'_>, (Known, usize, usize), foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(changes.len(), foldhash::fast::RandomState::default());
        for (index, (change, hash)) in changes.iter().zip(hashes).enumerate() {
            let delta = change.state.size();
            let ahead_record: Option<StoredRecord> = ahead.next().flatten().map(|record| *record);
            let batch_key = (&change.collection, &change.key);
            let (known, exact_checks, first) = match seen.remove(&batch_key) {
                Some(entry) => {
                    taken.push(Current::Ahead(None));
                    entry
                }
                None => {
                    let id = (change.collection.clone(), change.key.clone());
                    let current = self.take_current(&id, *hash, ahead_record)?;
                    let size = current.as_ref().map_or_else(RecordSize::default, |(record, _)| record.state.size());
                    taken.push(Current::Taken(current));
                    let bound = size.plus(delta);
                    if limits.exceeded_by(bound).is_none() {
                        // The common case: far from the limit.
                        seen.insert(batch_key, (Known::Bound(bound), 0, index));
                        continue;
                    }
                    (Known::Bound(size), 0, index)
                }
            };
            let entry = match known {
                Known::Bound(bound) if limits.exceeded_by(bound.plus(delta)).is_none() => {
                    (Known::Bound(bound.plus(delta)), exact_checks, first)
                }
                Known::Exact(mut state, size) if limits.exceeded_by(size.plus(delta)).is_none() => {
                    join(&mut state, change, *hash);
                    (Known::Exact(state, size.plus(delta)), exact_checks, first)
                }
                known => {
                    // Near the limit: merge on a copy and measure.
                    if exact_checks >= EXACT_CHECKS_PER_RECORD {
                        let reason = "too many changes to a record at its size limit in one batch";
                        return Err(too_large(change, index, reason));
                    }
                    let mut state = match known {
                        Known::Exact(state, _) => state,
                        Known::Bound(_) => merged_before(changes, hashes, taken, first, index),
                    };
                    join(&mut state, change, *hash);
                    let size = state.size();
                    if let Some(reason) = limits.exceeded_by(size) {
                        return Err(too_large(change, index, &reason));
                    }
                    (Known::Exact(state, size), exact_checks + 1, first)
                }
            };
            seen.insert(batch_key, entry);
        }
        Ok(())
    }
}

/// The record of change `index` as the batch's earlier changes to it leave it: its
/// current copy (taken at its first change in the batch, `first`) merged with each of
/// them. Only the changes from `first` on are looked at.
fn merged_before(changes: &[Change], hashes: &[KeyHash], taken: &[Current], first: usize, index: usize) -> RecordState {
    let change = &changes[index];
    let mut state = match taken.get(first) {
        Some(Current::Taken(Some((record, _)))) => record.state.clone(),
        _ => RecordState::default(),
    };
    let same = |c: &Change| c.collection == change.collection && c.key == change.key;
    for (earlier, hash) in changes[first..index].iter().zip(&hashes[first..index]).filter(|(c, _)| same(c)) {
        join(&mut state, earlier, *hash);
    }
    state
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
