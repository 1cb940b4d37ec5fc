//! [`MemoryStore`]: the record store in ordered maps, for tests and ephemeral nodes.
//! Same contract as the SQLite store, nothing survives the process.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use weft_core::crdt::VersionHash;
use weft_core::hlc::Hlc;
use weft_core::key::{CollectionName, PartitionId, RecordKey};

use super::{RecordStore, StoreError, StoredRecord, WriteBatch};
use crate::wal::WalPosition;

#[derive(Debug, Default)]
struct Maps {
    records: BTreeMap<(CollectionName, RecordKey), StoredRecord>,
    by_seq: BTreeMap<(CollectionName, PartitionId, u64), RecordKey>,
    checkpoint: Option<WalPosition>,
    max_hlc: Option<Hlc>,
}

/// An in-memory record store. Clones share one set of records: a simulation keeps a
/// clone across a power loss of the engine and reopens on it, the way SQLite's file
/// outlives the process (a commit is all or nothing, and durable once it returned).
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    maps: Arc<Mutex<Maps>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn maps(&self) -> MutexGuard<'_, Maps> {
        // Plain maps stay consistent across a panicking reader.
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RecordStore for MemoryStore {
    fn checkpoint(&self) -> Result<Option<WalPosition>, StoreError> {
        Ok(self.maps().checkpoint)
    }

    fn max_hlc(&self) -> Result<Option<Hlc>, StoreError> {
        Ok(self.maps().max_hlc)
    }

    fn read(&self, collection: &CollectionName, key: &RecordKey) -> Result<Option<StoredRecord>, StoreError> {
        Ok(self.maps().records.get(&(collection.clone(), key.clone())).cloned())
    }

    fn commit(&self, batch: &WriteBatch<'_>) -> Result<(), StoreError> {
        let mut maps = self.maps();
        for &(collection, key, record) in &batch.records {
            let partition = key.hash().partition;
            let previous = maps.records.insert((collection.clone(), key.clone()), (*record).clone());
            if let Some(previous) = previous {
                maps.by_seq.remove(&(collection.clone(), partition, previous.seq));
            }
            maps.by_seq.insert((collection.clone(), partition, record.seq), key.clone());
        }
        if batch.checkpoint.is_some() {
            maps.checkpoint = batch.checkpoint;
        }
        maps.max_hlc = maps.max_hlc.max(batch.max_hlc);
        Ok(())
    }

    fn scan(
        &self,
        collection: &CollectionName,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<Vec<(RecordKey, StoredRecord)>, StoreError> {
        let start = match after {
            Some(key) => std::ops::Bound::Excluded((collection.clone(), key.clone())),
            None => std::ops::Bound::Unbounded,
        };
        Ok(self
            .maps()
            .records
            .range((start, std::ops::Bound::Unbounded))
            .skip_while(|((c, _), _)| c < collection)
            .take_while(|((c, _), _)| c == collection)
            .take(limit)
            .map(|((_, k), r)| (k.clone(), r.clone()))
            .collect())
    }

    fn changes_since(
        &self,
        collection: &CollectionName,
        partition: PartitionId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(RecordKey, StoredRecord)>, StoreError> {
        let from = (collection.clone(), partition, after_seq.saturating_add(1));
        let to = (collection.clone(), partition, u64::MAX);
        let maps = self.maps();
        Ok(maps
            .by_seq
            .range(from..=to)
            .take(limit)
            .filter_map(|(_, key)| {
                let record = maps.records.get(&(collection.clone(), key.clone()))?;
                Some((key.clone(), record.clone()))
            })
            .collect())
    }

    fn for_each_version(
        &self,
        visit: &mut dyn FnMut(&CollectionName, &RecordKey, VersionHash, u64),
    ) -> Result<(), StoreError> {
        for ((collection, key), record) in &self.maps().records {
            visit(collection, key, record.version, record.seq);
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
