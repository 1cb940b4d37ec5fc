//! Which copy of a record is current: the one rule every read and merge goes through.
//!
//! A record's state can be in up to four places at once: the dirty map (merged, not yet
//! in the store), the flushing map (being written by a flush), the cache (clean copies),
//! and the store. Copies in the last three can be stale — a flush copies a record into
//! the flushing map and a later merge supersedes it; a cache copy can outlive the merge
//! that made it old. Deciding "current" by where a copy sits is how acknowledged writes
//! were once lost (a cached copy from a flushing map was merged onto after the newer
//! version had been flushed and left memory).
//!
//! **The rule**: the merkle index names the latest version of every key (each merge
//! updates it under the engine lock, in the same step that assigns the sequence number).
//! The dirty map holds exactly that version whenever it holds the key. Any other copy —
//! flushing map, cache, a record read ahead of the lock, the store — is current only if
//! its version equals the one the merkle index names; a copy with another version is
//! never merged onto or returned. If no copy with the latest version exists anywhere,
//! the engine has lost a version: that is a bug, reported as
//! [`EngineError::StaleRecord`] (and writes stop), never silently merged over.
//!
//! Version hashes identify states (a hash over every (field, hlc) pair, as merkle
//! reconciliation relies on), and states only grow under merge, so two copies with the
//! latest version are the same state with the same sequence number.

use weft_core::crdt::VersionHash;
use weft_core::key::KeyHash;

use super::{EngineError, Inner, RecordId, lock_store};
use crate::store::StoredRecord;

/// Where the current copy of a record was taken from, so an unchanged record can go back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Residence {
    /// The dirty map: not yet in the store.
    Dirty,
    /// Anywhere else: the store holds it, or will once the flush in progress commits.
    Clean,
}

/// A copy of a record found by [`Inner::find_current`].
enum Found {
    /// In memory (dirty map, flushing map or cache).
    Memory(StoredRecord),
    /// Read from the store.
    Store(StoredRecord),
}

fn stale(id: &RecordId, place: &'static str, found: Option<VersionHash>, latest: Option<VersionHash>) -> EngineError {
    let hex = |version: Option<VersionHash>| version.map_or_else(|| "none".to_owned(), |v| format!("{:032x}", v.0));
    EngineError::StaleRecord {
        collection: id.0.to_string(),
        key: id.1.to_string(),
        place,
        found: hex(found),
        latest: hex(latest),
    }
}

impl Inner {
    /// The latest version of a record as the merkle index names it; `None` for a key
    /// never written.
    pub(super) fn latest_version(&self, id: &RecordId, hash: KeyHash) -> Option<VersionHash> {
        self.collections.get(&id.0).and_then(|meta| meta.merkle.version(hash))
    }

    /// Takes the current copy of a record out of memory for a merge (or reads it from
    /// the store); `ahead` is the record as read before the engine lock was taken. The
    /// caller puts the result back with [`Inner::put_changed`] or
    /// [`Inner::put_unchanged`].
    pub(super) fn take_current(
        &mut self,
        id: &RecordId,
        hash: KeyHash,
        ahead: Option<StoredRecord>,
    ) -> Result<Option<(StoredRecord, Residence)>, EngineError> {
        // A cached copy never outlives a take, current or not: once the record is put
        // back, no other copy of it is left in the cache.
        let cached = self.cache.pop(id);
        let latest = self.latest_version(id, hash);
        // Checked before it is taken: a stale dirty copy stays where it is (the error
        // stops writes; a restart replays the WAL over it).
        if let Some(found) = self.dirty.get(id).map(|record| record.version).filter(|found| Some(*found) != latest) {
            return Err(stale(id, "dirty map", Some(found), latest));
        }
        if let Some(record) = self.dirty.remove(id) {
            return Ok(Some((record, Residence::Dirty)));
        }
        let Some(latest) = latest else {
            // Never written: no copy can exist anywhere.
            debug_assert!(cached.is_none() && !self.flushing.as_ref().is_some_and(|f| f.contains_key(id)));
            return Ok(None);
        };
        let is_latest = |record: &StoredRecord| record.version == latest;
        if let Some(record) = self.flushing.as_ref().and_then(|f| f.get(id)).filter(|r| is_latest(r)) {
            return Ok(Some((record.clone(), Residence::Clean)));
        }
        if let Some(record) = cached.filter(is_latest).or_else(|| ahead.filter(is_latest)) {
            return Ok(Some((record, Residence::Clean)));
        }
        match lock_store(&self.store).read(&id.0, &id.1)? {
            Some(record) if is_latest(&record) => Ok(Some((record, Residence::Clean))),
            other => Err(stale(id, "store", other.map(|r| r.version), Some(latest))),
        }
    }

    /// Puts back a record a merge changed: it is dirty now, at the version the merkle
    /// index names.
    pub(super) fn put_changed(&mut self, id: RecordId, record: StoredRecord) {
        debug_assert!(!self.cache.contains(&id), "a cached copy outlived take_current");
        self.dirty.insert(id, record);
    }

    /// Puts back a record a merge left unchanged, where it was taken from.
    pub(super) fn put_unchanged(&mut self, id: RecordId, hash: KeyHash, record: StoredRecord, from: Residence) {
        match from {
            Residence::Dirty => {
                self.dirty.insert(id, record);
            }
            Residence::Clean => self.cache_clean(id, hash, record),
        }
    }

    /// Caches a clean copy of a record, if it is the latest version and not dirty (a
    /// dirty record's copy in the dirty map is the current one). Anything else is
    /// dropped, so the cache only ever receives current copies.
    pub(super) fn cache_clean(&mut self, id: RecordId, hash: KeyHash, record: StoredRecord) {
        if self.dirty.contains_key(&id) || self.latest_version(&id, hash) != Some(record.version) {
            return;
        }
        self.cache.put(id, record);
    }

    /// The current copy of a record without changing anything (the cache's order
    /// included); `None` for a key never written.
    fn find_current(&self, id: &RecordId, hash: KeyHash) -> Result<Option<Found>, EngineError> {
        let latest = self.latest_version(id, hash);
        if let Some(record) = self.dirty.get(id) {
            if Some(record.version) != latest {
                return Err(stale(id, "dirty map", Some(record.version), latest));
            }
            return Ok(Some(Found::Memory(record.clone())));
        }
        let Some(latest) = latest else { return Ok(None) };
        let is_latest = |record: &&StoredRecord| record.version == latest;
        let flushing = self.flushing.as_ref().and_then(|f| f.get(id)).filter(is_latest);
        if let Some(record) = flushing.or_else(|| self.cache.peek(id).filter(is_latest)) {
            return Ok(Some(Found::Memory(record.clone())));
        }
        match lock_store(&self.store).read(&id.0, &id.1)? {
            Some(record) if record.version == latest => Ok(Some(Found::Store(record))),
            other => Err(stale(id, "store", other.map(|r| r.version), Some(latest))),
        }
    }

    /// The current copy of a record, for a reader: a copy read from the store is cached,
    /// a cached one becomes the most recently used.
    pub(super) fn read_current(&mut self, id: &RecordId) -> Result<Option<StoredRecord>, EngineError> {
        let hash = id.1.hash();
        match self.find_current(id, hash)? {
            None => Ok(None),
            Some(Found::Memory(record)) => {
                self.cache.promote(id);
                Ok(Some(record))
            }
            Some(Found::Store(record)) => {
                self.cache_clean(id.clone(), hash, record.clone());
                Ok(Some(record))
            }
        }
    }

    /// The current copy of a record without touching the cache (for merkle responses,
    /// which hold the engine lock shared).
    pub(super) fn peek_current(&self, id: &RecordId) -> Result<Option<StoredRecord>, EngineError> {
        Ok(self.find_current(id, id.1.hash())?.map(|found| match found {
            Found::Memory(record) | Found::Store(record) => record,
        }))
    }
}
