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
    records: HashMap<RecordKey, StoredRecord>,
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
        if let Some(record) = self.records.get_mut(key.as_str()) {
            let mut versioner = Versioner::new(record.hash, record.version);
            if !record.state.merge(delta, &mut versioner) {
                return false;
            }
            record.version = versioner.version();
            debug_assert_eq!(record.version, full_version(record.hash, &record.state), "incremental version drifted");
            self.merkle.set(record.hash, &key, Some(record.version));
            return true;
        }
        let hash = key.hash();
        let mut versioner = Versioner::new(hash, VersionHash::default());
        let mut state = RecordState::default();
        if !state.merge(delta, &mut versioner) {
            return false;
        }
        let version = versioner.version();
        self.merkle.set(hash, &key, Some(version));
        self.records.insert(key, StoredRecord { hash, version, state });
        true
    }

    /// Joins a batch of deltas, in order. Same result as calling [`Collection::apply`]
    /// for each, but faster on large collections: the records of the next few changes
    /// are read ahead so that their cache misses overlap instead of queueing one after
    /// another (merging is bound by memory latency, not by instructions).
    /// Returns the keys of the records that changed.
    pub fn apply_batch(&mut self, batch: Vec<(RecordKey, RecordState)>) -> Vec<RecordKey> {
        const READ_AHEAD: usize = 8;
        let mut changed = Vec::new();
        let mut batch = batch.into_iter().peekable();
        let mut window: Vec<(RecordKey, RecordState)> = Vec::with_capacity(READ_AHEAD);
        while batch.peek().is_some() {
            window.extend(batch.by_ref().take(READ_AHEAD));
            let mut touched = 0usize;
            for (key, _) in &window {
                if let Some(record) = self.records.get(key.as_str()) {
                    touched ^= record.state.fields.touch();
                }
            }
            std::hint::black_box(touched);
            for (key, delta) in window.drain(..) {
                let copy = key.clone();
                if self.apply(key, delta) {
                    changed.push(copy);
                }
            }
        }
        changed
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
