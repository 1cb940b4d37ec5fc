//! [`Engine`]: the storage engine the server uses — apply a batch of changes (returns
//! once durable, with the sequence numbers assigned), read a record, scan a collection,
//! list changes since a sequence number, reconcile by merkle.
//!
//! Write path: under one lock, the batch is appended to the WAL (which fixes its place in
//! the log) and merged into the in-memory working set, where each changed record gets the
//! next sequence number of its (collection, partition) and its merkle path is updated.
//! The lock is released and the caller waits for the WAL sync that covers its record, so
//! concurrent writers share syncs (group commit). Because merging happens in WAL order,
//! replaying the WAL after a crash assigns the same sequence numbers.
//!
//! Changed records stay in a dirty map until a flush writes them to the record store in
//! one transaction, together with the checkpoint: the position of the last WAL record
//! they include. Recovery = open the store, rebuild the merkle index and sequence
//! counters from it, replay the WAL after the checkpoint (merging is idempotent, so
//! records the store already holds change nothing).
//!
//! Memory: dirty records are bounded by `flush_records`, clean ones by an LRU cache of
//! `cache_records`; the store on disk is the source of truth. The merkle index (about 100
//! bytes per key) is rebuilt at start-up from the versions stored beside each record.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;
use weft_core::change::Change;
use weft_core::codec::{DecodeError, DecodeLimits, Reader, Writer};
use weft_core::crdt::{RecordLimits, RecordState, VersionHash};
use weft_core::hlc::Hlc;
use weft_core::key::{CollectionName, KeyHash, PARTITION_COUNT, PartitionId, RecordKey};
use weft_core::merkle::{MerkleIndex, ReconcileError, ReconcileStep, RecordSource, respond};

mod flush;
mod open;
mod read_ahead;
mod record_limits;
mod working_set;

use working_set::Residence;

use flush::sorted_records;

use crate::feed::{Feed, FeedBatch, FeedFilter, FeedRecord};
use crate::store::{RecordStore, StoreError, StoredRecord, WriteBatch};
use crate::wal::{Receipt, Recovery, Wal, WalConfig, WalError, WalPosition};

/// Settings of the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// WAL settings. Their `scheduling` also decides the flusher: a thread of its own, or
    /// flushes run by the caller (`Engine::flush`, and a writer past the dirty bound).
    pub wal: WalConfig,
    /// Flush dirty records to the store once this many have accumulated.
    pub flush_records: usize,
    /// Clean records kept in memory (least recently used are dropped first).
    pub cache_records: usize,
    /// The background flusher also writes dirty records this often, below the bound,
    /// which limits how much WAL a restart replays.
    pub flush_interval: std::time::Duration,
    /// How large one record may grow; a batch that would pass it is refused whole.
    pub record_limits: RecordLimits,
}

impl EngineConfig {
    /// Dirty records past which writers stop running ahead of the flusher and wait for it
    /// (backpressure).
    fn dirty_bound(&self) -> usize {
        self.flush_records.max(1).saturating_mul(4)
    }
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            wal: WalConfig::default(),
            flush_records: 100_000,
            cache_records: 100_000,
            flush_interval: std::time::Duration::from_secs(1),
            record_limits: RecordLimits::default(),
        }
    }
}

/// Why the engine failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The write-ahead log failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A batch was logged but could not be merged; restart to replay it.
    #[error("engine stopped accepting writes after a failed merge: {0}; restart to recover")]
    Failed(String),
    /// The record store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A WAL record whose checksum is fine but whose content does not decode: a bug, or a
    /// log written by something else.
    #[error("WAL record at {at} does not decode: {reason}")]
    CorruptWalRecord {
        /// Where the record is.
        at: WalPosition,
        /// The decode error.
        reason: DecodeError,
    },
    /// No copy of a record holds the version the engine merged last: the working set lost
    /// a version (a bug, never expected). Nothing is merged onto the older copy; writes
    /// stop until a restart replays the WAL.
    #[error(
        "record {collection}/{key}: the {place} holds version {found} but the latest merged is {latest}; \
         refusing to merge onto an older version (restart to replay the WAL)"
    )]
    StaleRecord {
        /// The record's collection.
        collection: String,
        /// The record's key.
        key: String,
        /// Where the stale copy was found.
        place: &'static str,
        /// Its version (hex), or "none" when the record was missing.
        found: String,
        /// The version the merkle index names (hex).
        latest: String,
    },
    /// A batch would make a record larger than the record limits; nothing of it was
    /// logged or merged.
    #[error("{collection}/{key} (change {index} of the batch) would grow to {reason}")]
    RecordTooLarge {
        /// The record's collection.
        collection: String,
        /// The record's key.
        key: String,
        /// Index of the change in the batch.
        index: usize,
        /// Which limit and by how much.
        reason: String,
    },
    /// A reconciliation step that cannot be answered.
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
}

/// What opening found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    /// The store's checkpoint (where replay started).
    pub checkpoint: Option<WalPosition>,
    /// Set when the stored checkpoint was unreadable: the whole WAL was replayed instead.
    pub checkpoint_corrupt: Option<String>,
    /// Records known to the store before replay.
    pub stored_records: u64,
    /// What WAL recovery found (records replayed, torn tail truncated).
    pub wal: Recovery,
}

/// A change that altered its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedChange {
    /// Index of the change in the batch.
    pub index: usize,
    /// Its partition.
    pub partition: PartitionId,
    /// The sequence number its record now has.
    pub seq: u64,
}

/// A batch logged and merged but perhaps not yet durable (see [`Engine::append`]).
#[derive(Debug)]
#[must_use = "the batch is not durable until Engine::wait returns"]
pub struct Appended {
    applied: Vec<AppliedChange>,
    receipt: Option<Receipt>,
    flush: bool,
}

/// Where a merge finds its record's current copy.
enum Current {
    /// Already taken out of the working set (by the record-limits check).
    Taken(Option<(StoredRecord, Residence)>),
    /// To be taken by the merge (`Some`: a copy read ahead of the lock).
    Ahead(Option<StoredRecord>),
}

struct Merged {
    partition: PartitionId,
    seq: u64,
    observed: Option<FeedRecord>,
}

#[derive(Debug)]
struct CollectionMeta {
    merkle: MerkleIndex,
    seqs: Vec<u64>,
}

impl CollectionMeta {
    fn new() -> CollectionMeta {
        CollectionMeta { merkle: MerkleIndex::new(), seqs: vec![0; PARTITION_COUNT as usize] }
    }
}

type RecordId = (CollectionName, RecordKey);
type SharedStore = Arc<dyn RecordStore>;

fn lock_store(store: &SharedStore) -> &dyn RecordStore {
    // The store synchronizes itself (reads never wait for a flush in progress).
    &**store
}

/// Records by id: the dirty map, the flushing map, the spare.
type DirtyMap = HashMap<RecordId, StoredRecord>;

struct Inner {
    /// Locked after `Inner` when both are needed, never before.
    store: SharedStore,
    collections: HashMap<CollectionName, CollectionMeta>,
    dirty: DirtyMap,
    /// Records being written to the store by a flush (read-only until it finishes).
    flushing: Option<Arc<DirtyMap>>,
    cache: LruCache<RecordId, StoredRecord>,
    /// Position of the last WAL record merged.
    applied: Option<WalPosition>,
    last_receipt: Option<Receipt>,
    /// The greatest HLC merged (store and WAL): a restarted server's clock starts past it.
    max_hlc: Option<Hlc>,
}

/// The storage engine of one node.
pub struct Engine {
    shared: Arc<Shared>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    wal: Wal,
    config: EngineConfig,
    inner: Mutex<Inner>,
    store: SharedStore,
    /// Held for the whole of a flush: one flush at a time. It holds the map the last flush
    /// emptied, kept with its capacity to become the next dirty map: allocating a fresh
    /// table of 100k+ records per flush costs page faults and zeroing on every flush.
    flush_lock: Mutex<DirtyMap>,
    /// Signalled (with `inner`) when the dirty map reaches its bound.
    flush_wanted: std::sync::Condvar,
    /// Signalled (with `inner`) when a flush takes the dirty map, which empties it.
    dirty_taken: std::sync::Condvar,
    stopping: std::sync::atomic::AtomicBool,
    /// Set when a batch was appended to the WAL but could not be merged: the working set
    /// no longer matches the log, so the engine refuses writes until restarted (replay
    /// then merges the whole batch, in order).
    failed: Mutex<Option<String>>,
    feed: Mutex<Option<Feed>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("wal", &self.shared.wal).finish_non_exhaustive()
    }
}

fn storage_limits() -> DecodeLimits {
    DecodeLimits {
        frame_bytes_max: usize::MAX,
        batch_len_max: u32::MAX as usize,
        string_bytes_max: usize::MAX,
        ..DecodeLimits::default()
    }
}

fn encode_batch(changes: &[Change]) -> Vec<u8> {
    // Sized for typical changes (~100 bytes) so a batch of thousands is not grown, and
    // copied, a dozen times.
    let mut writer = Writer::with_capacity(changes.len().saturating_mul(128));
    writer.array_len(changes.len());
    for change in changes {
        change.encode(&mut writer);
    }
    writer.into_bytes()
}

fn decode_batch(bytes: &[u8]) -> Result<Vec<Change>, DecodeError> {
    let limits = storage_limits();
    let mut reader = Reader::new(bytes, &limits)?;
    let len = reader.array("WAL batch")?;
    let mut changes = Vec::with_capacity(len);
    for _ in 0..len {
        changes.push(Change::decode(&mut reader)?);
    }
    reader.leave();
    reader.finish()?;
    Ok(changes)
}

impl Inner {
    /// Merges one change; returns what changed if it changed the record (with the
    /// record's states before and after when `observe` is set).
    fn merge(
        &mut self,
        change: Change,
        hash: KeyHash,
        observe: bool,
        current: Current,
    ) -> Result<Option<Merged>, EngineError> {
        self.max_hlc = self.max_hlc.max(Some(change.hlc));
        debug_assert_eq!(hash, change.key.hash(), "merge given the hash of another key");
        let id = (change.collection, change.key);
        let current = match current {
            Current::Taken(taken) => taken,
            Current::Ahead(ahead) => self.take_current(&id, hash, ahead)?,
        };
        let (mut state, version, seq, residence) = match current {
            Some((record, residence)) => (record.state, record.version, record.seq, residence),
            None => (RecordState::default(), VersionHash::default(), 0, Residence::Clean),
        };
        let before = (observe && seq > 0).then(|| state.clone());
        let meta = self.collections.entry(id.0.clone()).or_insert_with(CollectionMeta::new);
        let outcome = match state.join(hash, version, change.state) {
            Some(new_version) => {
                let slot = &mut meta.seqs[hash.partition.index()];
                // Invariant: seqs of a partition strictly increase, so a catch-up cursor
                // never skips a change; the record's own seq came from this counter.
                assert!(*slot >= seq, "partition {} at seq {} below its record's {seq}", hash.partition.index(), *slot);
                *slot += 1;
                meta.merkle.set(hash, &id.1, Some(new_version));
                let after = observe.then(|| state.clone());
                let record = StoredRecord { seq: *slot, version: new_version, state };
                let seq = record.seq;
                let observed = after.map(|after| FeedRecord {
                    collection: id.0.clone(),
                    key: id.1.clone(),
                    partition: hash.partition,
                    seq,
                    before,
                    after,
                });
                self.put_changed(id, record);
                Some(Merged { partition: hash.partition, seq, observed })
            }
            None => {
                // Unchanged: back where it came from (a key never written stays absent).
                if seq > 0 {
                    self.put_unchanged(id, hash, StoredRecord { seq, version, state }, residence);
                }
                None
            }
        };
        Ok(outcome)
    }

    /// Writes every dirty record and the checkpoint to the store, holding the engine lock
    /// (used while opening, before anyone else can write).
    fn flush_now(&mut self) -> Result<(), StoreError> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let batch =
            WriteBatch { records: sorted_records(&self.dirty), checkpoint: self.applied, max_hlc: self.max_hlc };
        lock_store(&self.store).commit(&batch)?;
        drop(batch);
        // Drained rather than replaced: the map keeps its capacity.
        let mut dirty = std::mem::take(&mut self.dirty);
        for (id, record) in dirty.drain() {
            let hash = id.1.hash();
            self.cache_clean(id, hash, record);
        }
        self.dirty = dirty;
        Ok(())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The guarded state stays consistent across a panic in a reader; keep serving.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Engine {
    /// Applies a batch of changes; returns once they are durable in the WAL, with the
    /// sequence numbers of the records they changed. Changes must already be validated
    /// (drift, authorization) by the caller.
    pub fn apply(&self, changes: Vec<Change>) -> Result<Vec<AppliedChange>, EngineError> {
        let appended = self.append(changes, 0)?;
        self.wait(appended)
    }

    /// First half of [`Engine::apply`]: logs and merges the batch and returns without
    /// waiting for the WAL sync, so one caller can have several batches in flight (their
    /// [`Engine::wait`]s complete in append order). `origin` tags the batch in the change
    /// feed.
    pub fn append(&self, changes: Vec<Change>, origin: u64) -> Result<Appended, EngineError> {
        if changes.is_empty() {
            return Ok(Appended { applied: Vec::new(), receipt: None, flush: false });
        }
        self.check_failed()?;
        let payload = encode_batch(&changes);
        // Key hashes (blake3) once per batch, before the lock.
        let hashes: Vec<KeyHash> = changes.iter().map(|change| change.key.hash()).collect();
        let ahead = self.shared.read_ahead(&changes, &hashes)?;
        let mut inner = self.shared.lock();
        // Before the batch is logged: a refused batch leaves no trace. The check takes
        // each record of the batch out of the working set once; the merges use them.
        let taken = match inner.check_record_limits(&changes, &hashes, ahead, &self.shared.config.record_limits) {
            Ok(taken) => taken,
            Err(error) => {
                if matches!(error, EngineError::StaleRecord { .. }) {
                    self.fail(&error);
                }
                return Err(error);
            }
        };
        let receipt = match self.shared.wal.append(&payload) {
            Ok(receipt) => receipt,
            Err(error) => {
                inner.put_back(&changes, &hashes, taken);
                return Err(error.into());
            }
        };
        let feed_guard = self.shared.feed.lock().unwrap_or_else(|p| p.into_inner());
        let feed = feed_guard.as_ref();
        let mut observed = Vec::new();
        let mut last_filtered: Option<(CollectionName, bool)> = None;
        let mut applied = Vec::new();
        let mut items = changes.into_iter().enumerate().zip(hashes).zip(taken);
        while let Some((((index, change), hash), current)) = items.next() {
            let observe = match (feed, &last_filtered) {
                (None, _) => false,
                (Some(_), Some((collection, wanted))) if *collection == change.collection => *wanted,
                (Some(feed), _) => {
                    let wanted = (feed.filter)(&change.collection);
                    last_filtered = Some((change.collection.clone(), wanted));
                    wanted
                }
            };
            match inner.merge(change, hash, observe, current) {
                Ok(Some(merged)) => {
                    applied.push(AppliedChange { index, partition: merged.partition, seq: merged.seq });
                    observed.extend(merged.observed);
                }
                Ok(None) => {}
                Err(error) => {
                    // Records the check took for the changes not merged go back: dropped,
                    // they would be nowhere in memory while the merkle index names them.
                    for (((_, change), hash), current) in items {
                        if let Current::Taken(Some((record, residence))) = current {
                            inner.put_unchanged((change.collection, change.key), hash, record, residence);
                        }
                    }
                    self.fail(&error);
                    return Err(error);
                }
            }
        }
        // Invariant: batches merge in WAL order (replay then assigns the same seqs).
        assert!(
            inner.applied.is_none_or(|applied| applied < receipt.position),
            "batch at {} merged after {:?}",
            receipt.position,
            inner.applied
        );
        inner.applied = Some(receipt.position);
        inner.last_receipt = Some(receipt);
        if let Some(feed) = feed
            && !observed.is_empty()
        {
            feed.send(FeedBatch { receipt, origin, records: observed });
        }
        let flush = inner.dirty.len() >= self.shared.config.flush_records.max(1);
        Ok(Appended { applied, receipt: Some(receipt), flush })
    }

    /// Second half of [`Engine::apply`]: waits until the batch is durable.
    pub fn wait(&self, appended: Appended) -> Result<Vec<AppliedChange>, EngineError> {
        let Some(receipt) = appended.receipt else { return Ok(appended.applied) };
        self.shared.wal.wait_durable(receipt)?;
        if appended.flush {
            self.shared.flush_wanted.notify_one();
            self.backpressure()?;
        }
        Ok(appended.applied)
    }

    /// Backpressure: far past the bound, the writer waits until the flusher takes the
    /// dirty map. Writers used to flush themselves here, one after another behind the
    /// flush lock — with 64 writers a convoy of small flushes and acks of 3–10 s. If the
    /// flusher makes no progress for a while (a failing store), the writer flushes itself,
    /// which reports the error.
    fn backpressure(&self) -> Result<(), EngineError> {
        const PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);
        let bound = self.shared.config.dirty_bound();
        if self.shared.config.wal.scheduling == crate::wal::Scheduling::Caller {
            // No flusher thread to wait for: the writer flushes, unless a flush is under
            // way (one thread: waiting for it would never end), which empties the map.
            if self.shared.lock().dirty.len() >= bound
                && let Ok(mut guard) = self.shared.flush_lock.try_lock()
            {
                self.shared.flush_locked(&mut guard)?;
            }
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut inner = self.shared.lock();
        while inner.dirty.len() >= bound {
            let left = PATIENCE.saturating_sub(started.elapsed());
            if left.is_zero() || self.shared.stopping.load(Ordering::Acquire) {
                drop(inner);
                let mut guard = self.shared.flush_lock.lock().unwrap_or_else(|p| p.into_inner());
                self.shared.flush_locked(&mut guard)?;
                return Ok(());
            }
            self.shared.flush_wanted.notify_one();
            inner = self.shared.dirty_taken.wait_timeout(inner, left).map_or_else(|p| p.into_inner().0, |(g, _)| g);
        }
        Ok(())
    }

    /// Waits until the WAL record behind `receipt` (from a [`FeedBatch`]) is durable.
    pub fn wait_durable(&self, receipt: Receipt) -> Result<(), EngineError> {
        self.shared.wal.wait_durable(receipt)?;
        Ok(())
    }

    /// Starts the change feed: from now on every appended batch that changes records of a
    /// collection `filter` selects is queued for the returned receiver (at most
    /// `capacity` batches; see [`crate::feed`] for what a full queue does). Replaces an
    /// earlier feed.
    pub fn set_feed(&self, filter: FeedFilter, capacity: usize) -> crate::feed::FeedReceiver {
        let (feed, receiver) = Feed::new(filter, capacity);
        *self.shared.feed.lock().unwrap_or_else(|p| p.into_inner()) = Some(feed);
        receiver
    }

    /// Stops the change feed (its receiver then sees the channel close).
    pub fn stop_feed(&self) {
        *self.shared.feed.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The sequence number last assigned in each partition of `collection` (index =
    /// partition number; all zero for an unknown collection).
    pub fn seqs(&self, collection: &CollectionName) -> Vec<u64> {
        self.shared
            .lock()
            .collections
            .get(collection)
            .map_or_else(|| vec![0; PARTITION_COUNT as usize], |meta| meta.seqs.clone())
    }

    /// Latency histogram of the WAL's group writes (write + `fdatasync`).
    pub fn wal_sync_stats(&self) -> crate::wal::SyncSnapshot {
        self.shared.wal.sync_stats()
    }

    /// The greatest HLC merged so far, from the store, the WAL replayed at start and every
    /// batch since (`None` when nothing was ever written). A server advances its clock
    /// past it before stamping writes, so a server-stamped write made after a restart is
    /// ordered after every write accepted before it.
    pub fn max_hlc(&self) -> Option<Hlc> {
        self.shared.lock().max_hlc
    }

    /// The collections that hold records.
    pub fn collections(&self) -> Vec<CollectionName> {
        let mut names: Vec<CollectionName> = self.shared.lock().collections.keys().cloned().collect();
        names.sort();
        names
    }

    /// Writes every dirty record to the store (with the checkpoint) once the WAL records
    /// they come from are durable. Writers keep merging meanwhile: the engine lock is
    /// held only to take the dirty map and to move the written records to the cache.
    /// Returns the checkpoint written.
    pub fn flush(&self) -> Result<Option<WalPosition>, EngineError> {
        let mut guard = self.shared.flush_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.shared.flush_locked(&mut guard)
    }

    /// Starts a flush and stops half way: the dirty records are in the flushing map (where
    /// merges and reads still find them) but not yet written. Writes may go on meanwhile
    /// through [`Engine::append`] (not [`Engine::apply`]: its backpressure may wait for
    /// this flush); [`FlushInProgress::finish`] writes them. For tests that interleave
    /// writes with a flush deterministically; other flushes wait until it finishes.
    #[doc(hidden)]
    pub fn begin_flush(&self) -> FlushInProgress<'_> {
        let mut guard = self.shared.flush_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let taken = self.shared.take_dirty(&mut guard, None);
        FlushInProgress { shared: &self.shared, guard, taken }
    }

    /// Writes the dirty records of one collection to the store (not the checkpoint), so
    /// that reading its change log from the store sees everything merged so far — what a
    /// subscription's catch-up needs — without paying for the other collections' records.
    pub fn flush_collection(&self, collection: &CollectionName) -> Result<(), EngineError> {
        let mut guard = self.shared.flush_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.shared.flush_some(&mut guard, Some(collection)).map(drop)
    }

    /// Flushes, makes the store durable, and removes the WAL segments wholly before the
    /// checkpoint (handing each to `archive` first, when given). Returns the checkpoint.
    pub fn checkpoint(&self, archive: Option<crate::wal::Archiver<'_>>) -> Result<Option<WalPosition>, EngineError> {
        let mut guard = self.shared.flush_lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let checkpoint = self.shared.flush_locked(&mut guard)?;
        let Some(position) = checkpoint else { return Ok(None) };
        {
            let store = lock_store(&self.shared.store);
            // Records up to `position` are all in the store (the flush above, or merges
            // that changed nothing); make that the stored checkpoint, then durable.
            let max_hlc = self.shared.lock().max_hlc;
            store.commit(&WriteBatch { records: Vec::new(), checkpoint: Some(position), max_hlc })?;
            store.sync()?;
        }
        drop(guard);
        self.shared.wal.remove_segments_before(position, archive)?;
        Ok(checkpoint)
    }

    /// A record's state.
    pub fn read(&self, collection: &CollectionName, key: &RecordKey) -> Result<Option<RecordState>, EngineError> {
        let mut inner = self.shared.lock();
        Ok(inner.read_current(&(collection.clone(), key.clone()))?.map(|r| r.state))
    }

    /// Why the engine accepts no more writes, if it does not: the WAL failed (a failed
    /// write or `fdatasync` poisons it) or a logged batch could not be merged. Only a
    /// restart recovers; a server reports itself not ready meanwhile.
    pub fn failure(&self) -> Option<String> {
        if let Some(reason) = self.shared.wal.failure() {
            return Some(format!("WAL failed: {reason}"));
        }
        self.shared.failed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// [`Engine::read`] that leaves the cache as it is: a check that must not change
    /// what it checks (the simulation reads every acknowledged record after every step;
    /// a caching read would repair the very states it looks for).
    #[doc(hidden)]
    pub fn peek(&self, collection: &CollectionName, key: &RecordKey) -> Result<Option<RecordState>, EngineError> {
        let inner = self.shared.lock();
        Ok(inner.peek_current(&(collection.clone(), key.clone()))?.map(|r| r.state))
    }

    /// A record with its sequence number and version.
    pub fn read_stored(
        &self,
        collection: &CollectionName,
        key: &RecordKey,
    ) -> Result<Option<StoredRecord>, EngineError> {
        let mut inner = self.shared.lock();
        inner.read_current(&(collection.clone(), key.clone()))
    }

    /// Up to `limit` records of a collection in key order after `after`.
    pub fn scan(
        &self,
        collection: &CollectionName,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<Vec<(RecordKey, StoredRecord)>, EngineError> {
        self.flush_collection(collection)?;
        self.scan_flushed(collection, after, limit)
    }

    /// [`Engine::scan`] without the flush: sees what the store held at the caller's last
    /// [`Engine::flush_collection`] (for callers reading many pages in a row).
    pub fn scan_flushed(
        &self,
        collection: &CollectionName,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<Vec<(RecordKey, StoredRecord)>, EngineError> {
        Ok(lock_store(&self.shared.store).scan(collection, after, limit)?)
    }

    /// Up to `limit` records changed in a (collection, partition) after sequence
    /// `after_seq`, in sequence order. Flushes the collection first so that the store
    /// has everything; a caller walking many partitions flushes once with
    /// [`Engine::flush_collection`] and then uses [`Engine::changes_since_flushed`].
    pub fn changes_since(
        &self,
        collection: &CollectionName,
        partition: PartitionId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(RecordKey, StoredRecord)>, EngineError> {
        self.flush_collection(collection)?;
        self.changes_since_flushed(collection, partition, after_seq, limit)
    }

    /// [`Engine::changes_since`] without the flush: sees what the store held at the
    /// caller's last flush (later changes reach a subscriber through the change feed).
    pub fn changes_since_flushed(
        &self,
        collection: &CollectionName,
        partition: PartitionId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(RecordKey, StoredRecord)>, EngineError> {
        Ok(lock_store(&self.shared.store).changes_since(collection, partition, after_seq, limit)?)
    }

    /// The merkle root of a collection (0 when empty or unknown).
    pub fn merkle_root(&self, collection: &CollectionName) -> u128 {
        self.shared.lock().collections.get(collection).map_or(0, |meta| meta.merkle.root())
    }

    /// Answers a merkle reconciliation step for `collection` (after merging its records
    /// with [`Engine::apply`], which the caller does first).
    pub fn reconcile(&self, collection: &CollectionName, step: &ReconcileStep) -> Result<ReconcileStep, EngineError> {
        let inner = self.shared.lock();
        let empty = MerkleIndex::new();
        let merkle = inner.collections.get(collection).map_or(&empty, |meta| &meta.merkle);
        let source = InnerSource { inner: &inner, collection };
        Ok(respond(merkle, step, &source)?)
    }

    /// The first step of a reconciliation this side starts (the root digests of
    /// `collection`), for a peer whose cursor cannot be used.
    pub fn reconcile_start(&self, collection: &CollectionName) -> ReconcileStep {
        let inner = self.shared.lock();
        let empty = MerkleIndex::new();
        ReconcileStep::start(inner.collections.get(collection).map_or(&empty, |meta| &meta.merkle))
    }

    /// Stops the engine accepting writes (the working set may no longer match the log; a
    /// restart replays the WAL) and keeps flushes from moving the checkpoint.
    fn fail(&self, error: &EngineError) {
        *self.shared.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
    }

    fn check_failed(&self) -> Result<(), EngineError> {
        match self.shared.failed.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            Some(reason) => Err(EngineError::Failed(reason)),
            None => Ok(()),
        }
    }

    fn stop_flusher(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.flush_wanted.notify_all();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }

    /// Stops the flusher and flushes everything; the WAL closes when the engine drops
    /// (every record is already durable: a flush waits for that).
    pub fn close(mut self) -> Result<(), EngineError> {
        self.stop_flusher();
        self.check_failed()?;
        self.flush()?;
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_flusher();
    }
}

/// A flush stopped between taking the dirty map and writing it (see
/// [`Engine::begin_flush`]).
#[doc(hidden)]
pub struct FlushInProgress<'a> {
    shared: &'a Shared,
    guard: MutexGuard<'a, DirtyMap>,
    taken: flush::Taken,
}

impl FlushInProgress<'_> {
    /// Writes what the flush took; returns the checkpoint written.
    pub fn finish(mut self) -> Result<Option<WalPosition>, EngineError> {
        self.shared.write_taken(&mut self.guard, self.taken)
    }
}

impl std::fmt::Debug for FlushInProgress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushInProgress").finish_non_exhaustive()
    }
}

struct InnerSource<'a> {
    inner: &'a Inner,
    collection: &'a CollectionName,
}

impl RecordSource for InnerSource<'_> {
    fn record(&self, key: &RecordKey) -> Option<Change> {
        let id = (self.collection.clone(), key.clone());
        // An error here (a failing store) leaves the key out of this answer; the peer
        // asks again in its next reconciliation.
        let state = self.inner.peek_current(&id).ok().flatten()?.state;
        let hlc = state.max_hlc()?;
        Some(Change { collection: self.collection.clone(), key: key.clone(), hlc, state })
    }
}
