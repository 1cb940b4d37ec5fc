//! The record store: the materialised state of every collection, written from the WAL
//! in large batches, behind one trait with two backends — SQLite ([`SqliteStore`], the
//! default, one file in the data directory) and memory ([`MemoryStore`], tests).
//!
//! Per record the store keeps its CRDT state, its version hash (so the merkle index can
//! be rebuilt without decoding states) and its sequence number in its (collection,
//! partition) log. Each key holds exactly one sequence number, its latest, so the
//! `(collection, partition, seq)` index is the compacted change log of docs/storage.md:
//! "everything since cursor C" is a range scan.
//!
//! A [`WriteBatch`] carries the WAL position up to which the store is complete after it;
//! the backends write records and that checkpoint atomically.

mod encoding;
mod memory;
mod sqlite;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use weft_core::crdt::{RecordState, VersionHash};
use weft_core::hlc::Hlc;
use weft_core::key::{CollectionName, PartitionId, RecordKey};

use crate::wal::WalPosition;

/// One record as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRecord {
    /// Position in its (collection, partition) change log.
    pub seq: u64,
    /// Version hash of `state`.
    pub version: VersionHash,
    /// The CRDT state.
    pub state: RecordState,
}

/// Records to write and the checkpoint they complete, applied atomically.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch<'a> {
    /// Records to insert or replace.
    pub records: Vec<(&'a CollectionName, &'a RecordKey, &'a StoredRecord)>,
    /// The WAL position up to which the store is complete once this batch is written.
    pub checkpoint: Option<WalPosition>,
    /// The greatest HLC merged so far (at least that of every record written), stored so
    /// that a restarted server's clock starts past every timestamp it has accepted.
    pub max_hlc: Option<Hlc>,
}

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("SQLite store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: String,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A stored record that cannot be decoded.
    #[error("stored record {collection}/{key} is corrupt: {reason}")]
    CorruptRecord {
        /// Its collection.
        collection: String,
        /// Its key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The stored checkpoint cannot be read.
    #[error("stored checkpoint is corrupt: {0}")]
    CorruptCheckpoint(String),
    /// The database was written by a newer format.
    #[error("store format version {found} is newer than this build's {supported}")]
    FutureVersion {
        /// Found in the database.
        found: u32,
        /// What this build writes.
        supported: u32,
    },
}

/// What the storage engine needs from a record store.
pub trait RecordStore: Send + Sync {
    /// The WAL position up to which the store is complete (`None`: nothing written yet).
    fn checkpoint(&self) -> Result<Option<WalPosition>, StoreError>;

    /// The greatest HLC the store has seen: the one last committed with a
    /// [`WriteBatch`], or, for a store that holds none (written by an older build, or
    /// the row is damaged), the greatest HLC of its records, computed once.
    fn max_hlc(&self) -> Result<Option<Hlc>, StoreError>;

    /// One record.
    fn read(&self, collection: &CollectionName, key: &RecordKey) -> Result<Option<StoredRecord>, StoreError>;

    /// Writes records and the checkpoint atomically.
    fn commit(&self, batch: &WriteBatch<'_>) -> Result<(), StoreError>;

    /// Up to `limit` records of a collection in key order, after `after`.
    fn scan(
        &self,
        collection: &CollectionName,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<Vec<(RecordKey, StoredRecord)>, StoreError>;

    /// Up to `limit` records of a (collection, partition) log with a sequence number
    /// greater than `after_seq`, in sequence order (each record appears once, at its
    /// latest sequence number).
    fn changes_since(
        &self,
        collection: &CollectionName,
        partition: PartitionId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(RecordKey, StoredRecord)>, StoreError>;

    /// Every (collection, key, version, seq) — for rebuilding the merkle index and the
    /// sequence counters at start-up, without decoding states.
    fn for_each_version(
        &self,
        visit: &mut dyn FnMut(&CollectionName, &RecordKey, VersionHash, u64),
    ) -> Result<(), StoreError>;

    /// Makes everything committed so far durable (before WAL segments are removed).
    fn sync(&self) -> Result<(), StoreError>;
}
