//! Reading the records a batch misses from the store before the engine lock is taken.
//!
//! Merges run one batch at a time under the engine lock, and a batch over keys that are
//! not in memory spends most of that time in store reads (a SQLite seek and a decode per
//! key). Reading them first, outside the lock, lets writers do those reads in parallel
//! and keeps the lock for the merges themselves.
//!
//! A record read early is used only if it is still the latest. Under the lock, a record
//! in the dirty map, the flushing map or the cache is always newer than the store and
//! wins. Otherwise the store holds the latest version, and what was read is that version
//! unless the store changed in between: every store commit bumps `store_epoch`, and the
//! reads are dropped if it moved. (A record merged after the read sits in the dirty or
//! flushing map until a commit, so it can only leave memory by bumping the epoch.)

use weft_core::change::Change;
use weft_core::key::KeyHash;

use super::{EngineError, Inner, RecordId, Shared, lock_store};
use crate::store::StoredRecord;

impl Inner {
    /// Whether merging into record `id` would read it from the store.
    fn misses(&self, id: &RecordId, hash: KeyHash) -> bool {
        !self.dirty.contains_key(id)
            && !self.flushing.as_ref().is_some_and(|flushing| flushing.contains_key(id))
            && !self.cache.contains(id)
            && self.collections.get(&id.0).is_some_and(|meta| meta.merkle.contains(hash))
    }
}

/// Records read from the store for a batch, outside the engine lock.
pub(super) struct ReadAhead {
    /// `store_epoch` before the reads.
    pub(super) epoch: u64,
    /// Per change, its record if it was read (`None` for the rest, and for every change
    /// if nothing missed). Boxed: a batch's worth of records inline is a large
    /// allocation per batch, which the allocator serves from freshly faulted pages.
    pub(super) records: Vec<Option<Box<StoredRecord>>>,
}

impl Shared {
    /// Reads the records of `changes` that merging would otherwise read under the lock.
    pub(super) fn read_ahead(&self, changes: &[Change]) -> Result<ReadAhead, EngineError> {
        // Ids and hashes are built before taking the lock, which then only looks up.
        let ids: Vec<(RecordId, KeyHash)> =
            changes.iter().map(|change| ((change.collection.clone(), change.key.clone()), change.key.hash())).collect();
        let (epoch, misses) = {
            let inner = self.lock();
            let misses: Vec<bool> = ids.iter().map(|(id, hash)| inner.misses(id, *hash)).collect();
            (inner.store_epoch, misses)
        };
        drop(ids);
        let mut records = Vec::with_capacity(changes.len());
        if !misses.contains(&true) {
            return Ok(ReadAhead { epoch, records });
        }
        let store = lock_store(&self.store);
        for (change, miss) in changes.iter().zip(misses) {
            records.push(if miss { store.read(&change.collection, &change.key)?.map(Box::new) } else { None });
        }
        Ok(ReadAhead { epoch, records })
    }
}
