//! One collection held in memory: record states plus their merkle index, kept in step.

use foldhash::{HashMap, HashMapExt};

use crate::change::Change;
use crate::crdt::{Pruned, RecordState, VersionHash, Versioner};
use crate::hlc::Hlc;
use crate::key::{CollectionName, KeyHash, RecordKey};
use crate::merkle::{MerkleIndex, RecordSource};
use crate::value::{Document, Value};

#[derive(Clone, Debug)]
struct StoredRecord {
    hash: KeyHash,
    version: VersionHash,
    state: RecordState,
}

/// The records of one collection and their merkle index.
#[derive(Clone, Debug)]
pub struct Collection {
    name: CollectionName,
    // Boxed so that the table's slots stay small (key + pointer): the whole table of a
    // large collection then fits in cache, leaving one miss per lookup, on the record.
    records: HashMap<RecordKey, Box<StoredRecord>>,
    merkle: MerkleIndex,
}

impl Collection {
    /// An empty collection.
    pub fn new(name: CollectionName) -> Collection {
        Collection { name, records: HashMap::new(), merkle: MerkleIndex::new() }
    }

    /// The collection's name.
    pub fn name(&self) -> &CollectionName {
        &self.name
    }

    /// Joins `delta` into the record `key`. Returns whether the record changed.
    /// Cost: the merge of what the delta holds plus one merkle path.
    pub fn apply(&mut self, key: RecordKey, delta: RecordState) -> bool {
        match self.merge(&key, delta) {
            Some((hash, version)) => {
                self.merkle.set(hash, &key, Some(version));
                true
            }
            None => false,
        }
    }

    /// Merges without touching the merkle index; returns the index update to make.
    fn merge(&mut self, key: &RecordKey, delta: RecordState) -> Option<(KeyHash, VersionHash)> {
        if let Some(record) = self.records.get_mut(key.as_str()) {
            let mut versioner = Versioner::new(record.hash, record.version);
            if !record.state.merge(delta, &mut versioner) {
                return None;
            }
            record.version = versioner.version();
            debug_assert_eq!(record.version, full_version(record.hash, &record.state), "incremental version drifted");
            return Some((record.hash, record.version));
        }
        let hash = key.hash();
        let mut versioner = Versioner::new(hash, VersionHash::default());
        let mut state = RecordState::default();
        if !state.merge(delta, &mut versioner) {
            return None;
        }
        let version = versioner.version();
        self.records.insert(key.clone(), Box::new(StoredRecord { hash, version, state }));
        Some((hash, version))
    }

    /// Joins a batch of changes to this collection, in order (their `collection` field is
    /// not consulted: the caller routes them). Same result as calling
    /// [`Collection::apply`] for each, but faster on large collections, whose merges are
    /// bound by memory latency rather than instructions: a first pass reads every record
    /// the batch touches, so that their cache misses overlap instead of queueing one
    /// after another, and the merkle index is updated once per changed record at the
    /// end, in tree order, so that neighbouring updates share the cache lines of their
    /// path. Returns the keys of the records that changed, in tree order.
    pub fn apply_batch(&mut self, batch: Vec<Change>) -> Vec<RecordKey> {
        let mut touched = 0usize;
        for change in &batch {
            if let Some(record) = self.records.get(change.key.as_str()) {
                touched ^= record.state.fields.touch();
            }
        }
        std::hint::black_box(touched);
        let mut updates: Vec<(KeyHash, RecordKey)> = Vec::with_capacity(batch.len());
        for change in batch {
            if let Some((hash, _)) = self.merge(&change.key, change.state) {
                updates.push((hash, change.key));
            }
        }
        // One merkle update per record, with its final version, in tree order.
        updates.sort_unstable_by_key(|(hash, _)| (hash.partition, hash.bucket, hash.check));
        updates.dedup_by_key(|(hash, _)| hash.id());
        for (hash, key) in &updates {
            let version = self.records.get(key.as_str()).map(|record| record.version);
            self.merkle.set(*hash, key, version);
        }
        updates.into_iter().map(|(_, key)| key).collect()
    }

    /// The record's CRDT state (visible or not).
    pub fn state(&self, key: &str) -> Option<&RecordState> {
        self.records.get(key).map(|r| &r.state)
    }

    /// The record's visible fields, or `None` if it does not exist or is deleted.
    pub fn document(&self, key: &str) -> Option<Document> {
        self.state(key)?.document()
    }

    /// The record's visible set members.
    pub fn members(&self, key: &str) -> Vec<Value> {
        self.state(key).map(|s| s.members().into_iter().cloned().collect()).unwrap_or_default()
    }

    /// Every record (visible or not), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&RecordKey, &RecordState)> {
        self.records.iter().map(|(key, record)| (key, &record.state))
    }

    /// Number of records held, tombstones included.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The merkle index.
    pub fn merkle(&self) -> &MerkleIndex {
        &self.merkle
    }

    /// Drops tombstones older than `horizon` (see [`RecordState`] pruning rules).
    /// Returns how many records were removed entirely.
    pub fn prune(&mut self, horizon: Hlc) -> usize {
        let mut gone = Vec::new();
        for (key, record) in self.records.iter_mut() {
            let mut versioner = Versioner::new(record.hash, record.version);
            match record.state.prune(horizon, &mut versioner) {
                Pruned::Unchanged => {}
                Pruned::Compacted => {
                    record.version = versioner.version();
                    self.merkle.set(record.hash, key, Some(record.version));
                }
                Pruned::Gone => {
                    debug_assert_eq!(versioner.version(), VersionHash::default());
                    self.merkle.set(record.hash, key, None);
                    gone.push(key.clone());
                }
            }
        }
        for key in &gone {
            self.records.remove(key);
        }
        gone.len()
    }

    /// The record's whole state as a change (used to send it to a peer).
    pub fn record_change(&self, key: &RecordKey) -> Option<Change> {
        let record = self.records.get(key.as_str())?;
        let hlc = record.state.max_hlc()?;
        Some(Change { collection: self.name.clone(), key: key.clone(), hlc, state: record.state.clone() })
    }
}

impl RecordSource for Collection {
    fn record(&self, key: &RecordKey) -> Option<Change> {
        self.record_change(key)
    }
}

/// Recomputes a version hash from scratch (checks the incremental one in debug builds).
pub fn full_version(hash: KeyHash, state: &RecordState) -> VersionHash {
    let mut versioner = Versioner::new(hash, VersionHash::default());
    state.add_hashes(&mut versioner);
    versioner.version()
}
