//! Opening the engine: rebuild the merkle index, sequence counters and clock from the
//! store, replay the WAL after the store's checkpoint, write the replayed records back,
//! and start the flusher.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use super::{
    CollectionMeta, Engine, EngineConfig, EngineError, Inner, OpenReport, Shared, SharedStore, decode_batch, lock_store,
};
use crate::store::{RecordStore, StoreError, WriteBatch};
use crate::wal::{Scheduling, Wal, WalError, WalPosition};

impl Engine {
    /// Opens the engine on the WAL directory `wal_dir` and `store`: rebuilds the merkle
    /// index from the store, replays the WAL after the store's checkpoint, and writes the
    /// replayed records back to the store.
    pub fn open(
        wal_dir: &Path,
        store: Box<dyn RecordStore>,
        config: EngineConfig,
    ) -> Result<(Engine, OpenReport), EngineError> {
        let cache_capacity = NonZeroUsize::new(config.cache_records.max(1)).unwrap_or(NonZeroUsize::MIN);
        let store: SharedStore = Arc::from(store);
        let mut inner = Inner {
            store: Arc::clone(&store),
            collections: HashMap::new(),
            // Grown as needed, not sized up front: records land in random slots, so a big
            // empty table becomes resident (huge page by huge page) after a few thousand
            // writes — 300 MB and a page fault per write for a small workload. Flushes
            // recycle the maps, so each grows to its peak once.
            dirty: HashMap::new(),
            flushing: None,
            cache: LruCache::new(cache_capacity),
            applied: None,
            last_receipt: None,
            max_hlc: lock_store(&store).max_hlc()?,
        };
        let stored_checkpoint = lock_store(&store).checkpoint();
        let (checkpoint, checkpoint_corrupt) = match stored_checkpoint {
            Ok(checkpoint) => (checkpoint, None),
            Err(StoreError::CorruptCheckpoint(reason)) => (None, Some(reason)),
            Err(error) => return Err(error.into()),
        };
        let mut stored_records = 0;
        {
            let collections = &mut inner.collections;
            lock_store(&store).for_each_version(&mut |collection, key, version, seq| {
                let meta = collections.entry(collection.clone()).or_insert_with(CollectionMeta::new);
                let hash = key.hash();
                meta.merkle.set(hash, key, Some(version));
                let slot = &mut meta.seqs[hash.partition.index()];
                *slot = (*slot).max(seq);
                stored_records += 1;
            })?;
        }
        let mut failure: Option<EngineError> = None;
        let flush_records = config.flush_records.max(1);
        let (wal, recovery) = Wal::open(wal_dir, config.wal.clone(), checkpoint, |at, payload| {
            if failure.is_some() {
                return;
            }
            let changes = match decode_batch(payload) {
                Ok(changes) => changes,
                Err(reason) => {
                    failure = Some(EngineError::CorruptWalRecord { at, reason });
                    return;
                }
            };
            for change in changes {
                let hash = change.key.hash();
                if let Err(error) = inner.merge(change, hash, false, super::Current::Ahead(None)) {
                    failure = Some(error);
                    return;
                }
            }
            inner.applied = Some(at);
            if inner.dirty.len() >= flush_records
                && let Err(error) = inner.flush_now()
            {
                failure = Some(error.into());
            }
        })?;
        if let Some(error) = failure {
            return Err(error);
        }
        if inner.applied.is_none() {
            inner.applied = checkpoint;
        }
        // A stored checkpoint beyond the end of the WAL (the WAL lost an unsynced tail the
        // store had seen) would hide every record appended from here on at a position
        // below it: pull it back to just before the end.
        if inner.applied.is_some_and(|applied| applied >= recovery.end) {
            inner.applied = Some(WalPosition { segment: recovery.end.segment, offset: recovery.end.offset - 1 });
            let rewind = WriteBatch { records: Vec::new(), checkpoint: inner.applied, max_hlc: inner.max_hlc };
            lock_store(&store).commit(&rewind)?;
        }
        inner.flush_now()?;
        // Store the clock now: a store written before it was kept has it computed from
        // every record at open, which should happen once, not at every start until the
        // first write.
        if inner.max_hlc.is_some() {
            lock_store(&store).commit(&WriteBatch { records: Vec::new(), checkpoint: None, max_hlc: inner.max_hlc })?;
        }
        let report = OpenReport { checkpoint, checkpoint_corrupt, stored_records, wal: recovery };
        let shared = Arc::new(Shared {
            wal,
            config,
            inner: Mutex::new(inner),
            store,
            flush_lock: Mutex::new(HashMap::new()),
            flush_wanted: std::sync::Condvar::new(),
            dirty_taken: std::sync::Condvar::new(),
            stopping: std::sync::atomic::AtomicBool::new(false),
            failed: Mutex::new(None),
            feed: Mutex::new(None),
        });
        let flusher = match shared.config.wal.scheduling {
            // Flushes run when asked for (`Engine::flush`) or when a writer passes the
            // dirty bound (`Engine::wait`), in that caller's thread.
            Scheduling::Caller => None,
            Scheduling::Background => {
                let flusher_shared = Arc::clone(&shared);
                let thread = std::thread::Builder::new()
                    .name("weft-flusher".to_owned())
                    .spawn(move || flusher_shared.flusher_loop())
                    .map_err(|source| {
                        EngineError::Wal(WalError::Io {
                            action: "start flusher thread for",
                            path: wal_dir.to_path_buf(),
                            source,
                        })
                    })?;
                Some(thread)
            }
        };
        Ok((Engine { shared, flusher }, report))
    }
}
