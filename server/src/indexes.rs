//! Secondary indexes on the server: declared per collection in the config, built from
//! the store at start-up (before the server reports ready), kept in step by the change
//! feed, and used by one-shot queries through the core planner.
//!
//! ```toml
//! [indexes]
//! todos = [["owner"], ["owner", "created"]]
//! ```
//!
//! The feed updates an index once a batch is durable, so a query may briefly miss a
//! write that is merged but not yet synced; it never returns a wrong row, because the
//! planner's candidates are re-checked against the whole filter on the current record.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use weft_core::key::{CollectionName, RecordKey};
use weft_core::query::{FieldPath, Index, IndexSpec};
use weft_storage::engine::{Engine, EngineError};
use weft_storage::feed::FeedBatch;

/// Records read per page while building.
const BUILD_PAGE: usize = 1_000;

/// The indexes of every collection that declares some.
#[derive(Debug, Default)]
pub struct ServerIndexes {
    by_collection: RwLock<HashMap<CollectionName, Vec<Index>>>,
}

impl ServerIndexes {
    /// Empty indexes for the declared ones (`collection → [[field, ...], ...]`).
    pub fn new(declared: &BTreeMap<String, Vec<Vec<String>>>) -> Result<ServerIndexes, String> {
        let mut by_collection = HashMap::new();
        for (name, indexes) in declared {
            let collection = CollectionName::new(name.as_str()).map_err(|e| format!("indexes.{name}: {e}"))?;
            let mut built = Vec::new();
            for fields in indexes {
                if fields.is_empty() {
                    return Err(format!("indexes.{name}: an index needs at least one field"));
                }
                let paths = fields
                    .iter()
                    .map(|f| FieldPath::parse(f).map_err(|e| format!("indexes.{name}: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                let index_name = format!("{name}_by_{}", fields.join("_"));
                built.push(Index::new(IndexSpec { name: index_name, fields: paths }));
            }
            by_collection.insert(collection, built);
        }
        Ok(ServerIndexes { by_collection: RwLock::new(by_collection) })
    }

    /// Whether `collection` has indexes (the change feed must report it).
    pub fn is_indexed(&self, collection: &CollectionName) -> bool {
        self.by_collection.read().unwrap_or_else(|p| p.into_inner()).contains_key(collection)
    }

    /// Fills the indexes from the store (blocking; before the server is ready).
    pub fn build(&self, engine: &Engine) -> Result<u64, EngineError> {
        fill(&mut self.by_collection.write().unwrap_or_else(|p| p.into_inner()), engine)
    }

    /// Empties every index and fills it again from the store (after the change feed lost
    /// batches), under one lock: a query never sees a half-built index.
    pub fn rebuild(&self, engine: &Engine) -> Result<u64, EngineError> {
        let mut by_collection = self.by_collection.write().unwrap_or_else(|p| p.into_inner());
        for index in by_collection.values_mut().flatten() {
            *index = Index::new(index.spec().clone());
        }
        fill(&mut by_collection, engine)
    }

    /// Applies a durable batch from the change feed.
    pub fn apply(&self, batch: &FeedBatch) {
        let mut by_collection = self.by_collection.write().unwrap_or_else(|p| p.into_inner());
        for record in &batch.records {
            let Some(indexes) = by_collection.get_mut(&record.collection) else { continue };
            let before = record.before.as_ref().and_then(|state| state.document());
            let after = record.after.document();
            for index in indexes.iter_mut() {
                index.update(&record.key, before.as_ref(), after.as_ref());
            }
        }
    }

    /// Runs `f` with the indexes of `collection` (empty if none).
    pub fn with<R>(&self, collection: &CollectionName, f: impl FnOnce(&[Index]) -> R) -> R {
        let by_collection = self.by_collection.read().unwrap_or_else(|p| p.into_inner());
        f(by_collection.get(collection).map_or(&[][..], Vec::as_slice))
    }
}

/// Adds every stored record of the indexed collections to their indexes.
fn fill(by_collection: &mut HashMap<CollectionName, Vec<Index>>, engine: &Engine) -> Result<u64, EngineError> {
    let mut entries = 0;
    for (collection, indexes) in by_collection.iter_mut() {
        let mut after: Option<RecordKey> = None;
        loop {
            let page = engine.scan(collection, after.as_ref(), BUILD_PAGE)?;
            let full = page.len() == BUILD_PAGE;
            after = page.last().map(|(key, _)| key.clone());
            for (key, record) in &page {
                if let Some(document) = record.state.document() {
                    for index in indexes.iter_mut() {
                        index.update(key, None, Some(&document));
                    }
                    entries += 1;
                }
            }
            if !full {
                break;
            }
        }
    }
    Ok(entries)
}
