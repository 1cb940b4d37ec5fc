//! Live queries on a replica: the replica feeds every change — local writes and synced
//! ones alike — to the live queries of its collection, and queues their events for the
//! application to take.

use std::collections::BTreeMap;

use super::Collection;
use crate::key::{CollectionName, RecordKey};
use crate::query::{LiveEvent, LiveQuery, Query, Row};

/// Identifies a live query of a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LiveQueryId(pub u32);

/// The live queries of one replica and their pending events.
#[derive(Clone, Debug, Default)]
pub(super) struct LiveQueries {
    queries: BTreeMap<LiveQueryId, LiveQuery>,
    by_collection: BTreeMap<CollectionName, Vec<LiveQueryId>>,
    events: Vec<(LiveQueryId, LiveEvent)>,
    next: u32,
}

impl LiveQueries {
    pub(super) fn start(&mut self, query: Query, collection: Option<&Collection>) -> (LiveQueryId, Vec<Row>) {
        self.next += 1;
        let id = LiveQueryId(self.next);
        let records =
            collection.into_iter().flat_map(|c| c.iter()).filter_map(|(key, state)| Some((key, state.document()?)));
        let (live, rows) = LiveQuery::new(query, records);
        self.by_collection.entry(live.query().collection.clone()).or_default().push(id);
        self.queries.insert(id, live);
        (id, rows)
    }

    pub(super) fn stop(&mut self, id: LiveQueryId) -> bool {
        let Some(live) = self.queries.remove(&id) else { return false };
        if let Some(ids) = self.by_collection.get_mut(&live.query().collection) {
            ids.retain(|other| *other != id);
        }
        self.events.retain(|(other, _)| *other != id);
        true
    }

    /// Feeds the current state of `keys` in `collection` to its live queries.
    pub(super) fn notify<'a>(&mut self, collection: &Collection, keys: impl IntoIterator<Item = &'a RecordKey>) {
        let Some(ids) = self.by_collection.get(collection.name()).filter(|ids| !ids.is_empty()) else { return };
        for key in keys {
            let document = collection.document(key.as_str());
            for id in ids {
                if let Some(live) = self.queries.get_mut(id) {
                    self.events.extend(live.apply(key, document.as_ref()).into_iter().map(|event| (*id, event)));
                }
            }
        }
    }

    pub(super) fn take(&mut self) -> Vec<(LiveQueryId, LiveEvent)> {
        std::mem::take(&mut self.events)
    }

    pub(super) fn rows(&self, id: LiveQueryId) -> Option<Vec<Row>> {
        self.queries.get(&id).map(LiveQuery::rows)
    }
}
