//! Flushing: dirty records to the record store with the checkpoint, one flush at a
//! time, without holding the engine lock while SQLite writes; and the background
//! flusher thread that triggers it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use weft_core::key::{CollectionName, RecordKey};

use super::{DirtyMap, EngineError, RecordId, Shared, lock_store};
use crate::store::{StoredRecord, WriteBatch};
use crate::wal::{Receipt, WalPosition};

/// Most flushed records moved into the cache's free room per flush.
const RECACHE_MAX: usize = 4096;

/// What the first half of a flush took from the dirty map.
pub(super) enum Taken {
    /// A flush of one collection found none of its records dirty.
    Nothing,
    /// Nothing was dirty: the store is complete up to `applied` once `receipt` is durable.
    Clean {
        /// The position of the last WAL record merged.
        applied: Option<WalPosition>,
        /// That record's receipt.
        receipt: Option<Receipt>,
    },
    /// Records now in the flushing map.
    Records {
        /// The flushing map (shared with the engine's working set until written).
        map: Arc<DirtyMap>,
        /// The checkpoint the write completes (`None` for one collection's flush).
        checkpoint: Option<WalPosition>,
        /// The receipt of the last WAL record merged into `map`.
        receipt: Option<Receipt>,
    },
}

/// The records in store key order: B-tree inserts in order touch each page once, which
/// makes a flush of 100,000 random keys several times cheaper than in hash order.
pub(super) fn sorted_records(
    map: &HashMap<RecordId, StoredRecord>,
) -> Vec<(&CollectionName, &RecordKey, &StoredRecord)> {
    let mut records: Vec<_> = map.iter().map(|((collection, key), record)| (collection, key, record)).collect();
    records.sort_unstable_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
    records
}

impl Shared {
    pub(super) fn flush_locked(
        &self,
        spare: &mut MutexGuard<'_, DirtyMap>,
    ) -> Result<Option<WalPosition>, EngineError> {
        self.flush_some(spare, None)
    }

    /// Flushes every dirty record, or only those of `only` — then without moving the
    /// checkpoint, since records of other collections before it would still be dirty.
    /// Writing records early is safe: replay from the older checkpoint merges them again,
    /// which changes nothing.
    pub(super) fn flush_some(
        &self,
        spare: &mut MutexGuard<'_, DirtyMap>,
        only: Option<&CollectionName>,
    ) -> Result<Option<WalPosition>, EngineError> {
        let taken = self.take_dirty(spare, only);
        self.write_taken(spare, taken)
    }

    /// First half of a flush: moves the dirty records (all, or those of `only`) into the
    /// flushing map, where merges still find them, and starts a fresh dirty map.
    pub(super) fn take_dirty(&self, spare: &mut MutexGuard<'_, DirtyMap>, only: Option<&CollectionName>) -> Taken {
        // After a failed merge the working set may not hold everything up to `applied`:
        // records are still written (they are merged states), the checkpoint stays put.
        let failed = self.failed.lock().unwrap_or_else(|p| p.into_inner()).is_some();
        let mut inner = self.lock();
        assert!(inner.flushing.is_none(), "two flushes at once: the flush lock must serialize them");
        if let Some(collection) = only {
            let ids: Vec<RecordId> = inner.dirty.keys().filter(|(c, _)| c == collection).cloned().collect();
            if ids.is_empty() {
                return Taken::Nothing;
            }
            let mut map = HashMap::with_capacity(ids.len());
            for id in ids {
                if let Some(record) = inner.dirty.remove(&id) {
                    map.insert(id, record);
                }
            }
            let map = Arc::new(map);
            inner.flushing = Some(Arc::clone(&map));
            self.dirty_taken.notify_all();
            Taken::Records { map, checkpoint: None, receipt: inner.last_receipt }
        } else if inner.dirty.is_empty() {
            // Merges that changed nothing still advance `applied`: the WAL must hold
            // those records durably before anyone checkpoints there.
            Taken::Clean { applied: inner.applied.filter(|_| !failed), receipt: inner.last_receipt }
        } else {
            // The next dirty map is the one the last flush emptied, at its capacity; the
            // first starts at the current size, since growing a table of 100k+ records
            // by doubling moves every record several times under the engine lock.
            let next = if spare.capacity() == 0 {
                HashMap::with_capacity(inner.dirty.len())
            } else {
                std::mem::take(&mut **spare)
            };
            let map = Arc::new(std::mem::replace(&mut inner.dirty, next));
            inner.flushing = Some(Arc::clone(&map));
            self.dirty_taken.notify_all();
            Taken::Records { map, checkpoint: inner.applied.filter(|_| !failed), receipt: inner.last_receipt }
        }
    }

    /// Second half of a flush: writes what [`Shared::take_dirty`] took to the store, with
    /// the checkpoint, once the WAL holds it durably; then lets go of the flushing map.
    pub(super) fn write_taken(
        &self,
        spare: &mut MutexGuard<'_, DirtyMap>,
        taken: Taken,
    ) -> Result<Option<WalPosition>, EngineError> {
        let (flushing, checkpoint, receipt) = match taken {
            Taken::Nothing => return Ok(None),
            Taken::Clean { applied, receipt } => {
                if let Some(receipt) = receipt {
                    self.wal.wait_durable(receipt)?;
                }
                return Ok(applied);
            }
            Taken::Records { map, checkpoint, receipt } => (map, checkpoint, receipt),
        };
        // Never checkpoint past what the WAL holds durably.
        let durable = receipt.map_or(Ok(()), |receipt| self.wal.wait_durable(receipt).map(drop));
        let max_hlc = self.lock().max_hlc;
        let result = durable.map_err(EngineError::from).and_then(|()| {
            // Invariant: the store's checkpoint never passes the durable end of the WAL
            // (replay would start after records the store does not hold).
            if let Some(checkpoint) = checkpoint {
                let durable_end = self.wal.durable_end();
                assert!(
                    checkpoint < durable_end,
                    "checkpoint {checkpoint} at or past the durable WAL end {durable_end}"
                );
            }
            let batch = WriteBatch { records: sorted_records(&flushing), checkpoint, max_hlc };
            lock_store(&self.store).commit(&batch).map_err(EngineError::from)
        });
        let mut inner = self.lock();
        inner.flushing = None;
        let mut map = Arc::try_unwrap(flushing).unwrap_or_else(|shared| (*shared).clone());
        if let Err(error) = result {
            for (id, record) in map.drain() {
                inner.dirty.entry(id).or_insert(record);
            }
            return Err(error);
        }
        // Flushed records go into the cache only where it has room, at most a slice per
        // flush, in this one lock section: the rest are dropped after it. They never evict
        // cached records — pushing 200k flushed records through the LRU (evicting as many)
        // cost ~7 % of the CPU of a write-heavy node and held the lock ~200 ms per flush,
        // to cache records no one read again (records written again stay dirty until the
        // next flush anyway); and re-taking the lock slice by slice starved the flusher
        // behind 64 writers for seconds. `cache_clean` skips a record dirty again (it has a
        // newer version) and any copy that is not the latest.
        let room = inner.cache.cap().get().saturating_sub(inner.cache.len()).min(RECACHE_MAX);
        let mut records = map.drain();
        for (id, record) in records.by_ref().take(room) {
            let hash = id.1.hash();
            inner.cache_clean(id, hash, record);
        }
        drop(inner);
        drop(records);
        if spare.capacity() < map.capacity() {
            **spare = map;
        }
        Ok(checkpoint)
    }

    /// Flushes once the dirty map reaches its bound, or every `flush_interval`, until the
    /// engine stops. Runs on its own thread so that no writer pays for a flush.
    pub(super) fn flusher_loop(&self) {
        loop {
            {
                let mut inner = self.lock();
                let started = std::time::Instant::now();
                while inner.dirty.len() < self.config.flush_records.max(1) && !self.stopping.load(Ordering::Acquire) {
                    let interval = self.config.flush_interval.max(std::time::Duration::from_millis(10));
                    let left = interval.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        break;
                    }
                    inner = self.flush_wanted.wait_timeout(inner, left).map_or_else(|p| p.into_inner().0, |(g, _)| g);
                }
            }
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            let mut guard = self.flush_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if self.flush_locked(&mut guard).is_err() {
                // The records went back to the dirty map; try again after a pause (writers
                // held by backpressure flush themselves after a while and see the error).
                drop(guard);
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    }
}
