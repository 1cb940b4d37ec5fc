//! One collection held in memory: record states plus their merkle index, kept in step.

use foldhash::{HashMap, HashMapExt};
use smallvec::SmallVec;

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
            debug_assert_eq!(record.version, record.state.version(record.hash), "incremental version drifted");
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
    /// bound by memory latency rather than instructions: the records of the next few
    /// changes are prefetched while the current ones merge, so that cache misses overlap
    /// instead of queueing one after another, and the merkle index is updated once per
    /// changed record at the end, in tree order, so that neighbouring updates share the
    /// cache lines of their path. Returns the keys of the records that changed, in tree
    /// order.
    pub fn apply_batch(&mut self, batch: Vec<Change>) -> Vec<RecordKey> {
        // While merging a window of changes, the records of the next window are
        // prefetched, so their cache misses overlap with useful work.
        const WINDOW: usize = 32;
        let mut updates: Vec<(KeyHash, RecordKey)> = Vec::with_capacity(batch.len());
        let mut changes = batch.into_iter();
        prefetch_records(&self.records, changes.as_slice().get(..WINDOW).unwrap_or(changes.as_slice()));
        let mut index = 0;
        while let Some(change) = changes.next() {
            if index % WINDOW == 0 {
                let rest = changes.as_slice();
                let start = (WINDOW - 1).min(rest.len());
                prefetch_records(&self.records, &rest[start..(start + WINDOW).min(rest.len())]);
            }
            index += 1;
            if let Some((hash, _)) = self.merge(&change.key, change.state) {
                updates.push((hash, change.key));
            }
        }
        // One merkle update per record, with its final version, in tree order.
        updates.sort_unstable_by_key(|(hash, _)| (hash.partition, hash.bucket, hash.check));
        updates.dedup_by_key(|(hash, _)| hash.id());
        const MERKLE_AHEAD: usize = 8;
        for (index, (hash, key)) in updates.iter().enumerate() {
            if let Some((ahead, _)) = updates.get(index + MERKLE_AHEAD) {
                self.merkle.prefetch_leaf(*ahead);
            }
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

    /// Drops a record from this replica (it left the subscribed view); the server still
    /// has it. Returns whether the record was here.
    pub fn forget(&mut self, key: &RecordKey) -> bool {
        match self.records.remove(key.as_str()) {
            Some(record) => {
                self.merkle.set(record.hash, key, None);
                true
            }
            None => false,
        }
    }

    /// Appends the record's whole state in the wire form of a change — what
    /// [`Collection::record_change`] then `Change::encode` give, without cloning the
    /// state. Returns false (writing nothing) when the record is absent or empty.
    pub fn encode_record(&self, key: &RecordKey, writer: &mut crate::codec::Writer) -> bool {
        let Some(record) = self.records.get(key.as_str()) else { return false };
        let Some(hlc) = record.state.max_hlc() else { return false };
        crate::change::encode_change_parts(&self.name, key, hlc, &record.state, writer);
        true
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

/// Prefetches what merging `changes` will read of their records: first every record box
/// (one table lookup each, independent of each other, so the misses overlap), then,
/// once those have had time to arrive, the field arrays they point to.
fn prefetch_records(records: &HashMap<RecordKey, Box<StoredRecord>>, changes: &[Change]) {
    let found: SmallVec<[&StoredRecord; 64]> = changes
        .iter()
        .filter_map(|change| records.get(change.key.as_str()))
        .map(|record| {
            crate::prefetch::value::<StoredRecord>(record);
            &**record
        })
        .collect();
    for record in found {
        record.state.fields.prefetch();
    }
}
