//! Live queries: a query's result kept up to date change by change, reported as events
//! that turn the previous result into the new one — `Added(row, index)`,
//! `Changed(row, old_index, new_index)`, `Removed(key, old_index)` — applied in order to
//! the caller's list.
//!
//! Every matching record is kept in sort order (not only the visible window), so when a
//! row leaves the top N the next one enters. The order is held in chunks of at most
//! [`CHUNK_ROWS`] rows: finding a row's position is a binary search over chunks and
//! within one, plus a sum of chunk lengths — the work per change does not grow with the
//! size of the result beyond that, and never with the size of the collection.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::model::{OrderBy, Query, Row, cmp_sort_values, project, sort_value};
use crate::key::RecordKey;
use crate::value::{Document, Value};

/// Rows per chunk of the ordered set.
pub const CHUNK_ROWS: usize = 128;

/// One step from the previous result to the next.
#[derive(Clone, Debug, PartialEq)]
pub enum LiveEvent {
    /// Insert `row` at `index`.
    Added {
        /// The row (projected).
        row: Row,
        /// Where it goes.
        index: usize,
    },
    /// The row at `old_index` changed and moves to `new_index` (remove, then insert).
    Changed {
        /// The row's new content (projected).
        row: Row,
        /// Where it was.
        old_index: usize,
        /// Where it goes.
        new_index: usize,
    },
    /// Remove the row at `old_index`.
    Removed {
        /// Its key.
        key: RecordKey,
        /// Where it was.
        old_index: usize,
    },
}

#[derive(Clone, Debug)]
struct Entry {
    sort: Vec<Option<Value>>,
    key: RecordKey,
    document: Document,
}

fn cmp_entry(order_by: &[OrderBy], a: (&[Option<Value>], &RecordKey), b: (&[Option<Value>], &RecordKey)) -> Ordering {
    for (index, order) in order_by.iter().enumerate() {
        let ordering = cmp_sort_values(a.0[index].as_ref(), b.0[index].as_ref(), order);
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    a.1.cmp(b.1)
}

/// Every matching row, in order, in chunks.
#[derive(Clone, Debug, Default)]
struct Ordered {
    chunks: Vec<Vec<Entry>>,
    len: usize,
}

impl Ordered {
    /// (chunk, position in chunk, rank) of the first entry not less than the probe. The
    /// rank is exact below `cap` and `cap` otherwise: callers only need to know whether a
    /// row is inside the window, and summing chunk lengths stops there.
    fn locate(
        &self,
        order_by: &[OrderBy],
        sort: &[Option<Value>],
        key: &RecordKey,
        cap: usize,
    ) -> (usize, usize, usize) {
        let below = |entry: &Entry| cmp_entry(order_by, (&entry.sort, &entry.key), (sort, key)) == Ordering::Less;
        let chunk = self.chunks.partition_point(|chunk| chunk.last().is_some_and(&below));
        if chunk == self.chunks.len() {
            return (chunk, 0, self.len.min(cap));
        }
        let position = self.chunks[chunk].partition_point(&below);
        let mut before = 0usize;
        for previous in &self.chunks[..chunk] {
            before += previous.len();
            if before >= cap {
                return (chunk, position, cap);
            }
        }
        (chunk, position, (before + position).min(cap))
    }

    fn insert(&mut self, order_by: &[OrderBy], entry: Entry, cap: usize) -> usize {
        let (mut chunk, position, rank) = self.locate(order_by, &entry.sort, &entry.key, cap);
        if self.chunks.is_empty() {
            self.chunks.push(Vec::with_capacity(CHUNK_ROWS));
        }
        let mut position = position;
        if chunk == self.chunks.len() {
            chunk -= 1;
            position = self.chunks[chunk].len();
        }
        self.chunks[chunk].insert(position, entry);
        if self.chunks[chunk].len() > CHUNK_ROWS {
            let tail = self.chunks[chunk].split_off(CHUNK_ROWS / 2);
            self.chunks.insert(chunk + 1, tail);
        }
        self.len += 1;
        rank
    }

    fn remove(
        &mut self,
        order_by: &[OrderBy],
        sort: &[Option<Value>],
        key: &RecordKey,
        cap: usize,
    ) -> Option<(usize, Entry)> {
        let (chunk, position, rank) = self.locate(order_by, sort, key, cap);
        let found = self.chunks.get(chunk).and_then(|c| c.get(position)).is_some_and(|e| &e.key == key);
        if !found {
            return None;
        }
        let entry = self.chunks[chunk].remove(position);
        if self.chunks[chunk].is_empty() {
            self.chunks.remove(chunk);
        }
        self.len -= 1;
        Some((rank, entry))
    }

    fn get(&self, mut rank: usize) -> Option<&Entry> {
        for chunk in &self.chunks {
            if rank < chunk.len() {
                return chunk.get(rank);
            }
            rank -= chunk.len();
        }
        None
    }

    fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.chunks.iter().flatten()
    }
}

/// A query whose result is maintained incrementally.
#[derive(Clone, Debug)]
pub struct LiveQuery {
    query: Query,
    rows: Ordered,
    sort_of: HashMap<RecordKey, Vec<Option<Value>>>,
}

impl LiveQuery {
    /// Starts a live query over the current records; returns it with the initial result.
    /// The keyset cursor of `query` is ignored (a live query is a window by offset/limit).
    pub fn new<'a>(
        query: Query,
        records: impl IntoIterator<Item = (&'a RecordKey, Document)>,
    ) -> (LiveQuery, Vec<Row>) {
        let mut live = LiveQuery { query, rows: Ordered::default(), sort_of: HashMap::new() };
        let mut entries: Vec<Entry> = records
            .into_iter()
            .filter(|(_, document)| live.query.filter.matches(document))
            .map(|(key, document)| live.entry(key.clone(), document))
            .collect();
        let order_by = live.query.order_by.clone();
        entries.sort_by(|a, b| cmp_entry(&order_by, (&a.sort, &a.key), (&b.sort, &b.key)));
        for entry in &entries {
            live.sort_of.insert(entry.key.clone(), entry.sort.clone());
        }
        live.rows.len = entries.len();
        live.rows.chunks = entries.chunks(CHUNK_ROWS / 2).map(<[Entry]>::to_vec).collect();
        let rows = live.rows();
        (live, rows)
    }

    fn entry(&self, key: RecordKey, document: Document) -> Entry {
        let sort = self.query.order_by.iter().map(|order| sort_value(&document, order).cloned()).collect();
        Entry { sort, key, document }
    }

    fn row(&self, entry: &Entry) -> Row {
        Row { key: entry.key.clone(), document: project(self.query.select.as_deref(), entry.document.clone()) }
    }

    fn window(&self) -> (usize, usize) {
        (self.query.offset, self.query.limit.unwrap_or(usize::MAX))
    }

    /// The current result.
    pub fn rows(&self) -> Vec<Row> {
        let (offset, limit) = self.window();
        self.rows.iter().skip(offset).take(limit).map(|entry| self.row(entry)).collect()
    }

    /// The query.
    pub fn query(&self) -> &Query {
        &self.query
    }

    /// Takes in a change to record `key`: its new visible document, or `None` if it was
    /// deleted. Returns the events that turn the previous result into the new one.
    pub fn apply(&mut self, key: &RecordKey, document: Option<&Document>) -> Vec<LiveEvent> {
        // Borrowed apart: the rows change while the sort keys are read.
        let order_by = std::mem::take(&mut self.query.order_by);
        let events = self.apply_ordered(&order_by, key, document);
        self.query.order_by = order_by;
        events
    }

    fn apply_ordered(&mut self, order_by: &[OrderBy], key: &RecordKey, document: Option<&Document>) -> Vec<LiveEvent> {
        let (offset, limit) = self.window();
        let end = offset.saturating_add(limit);
        let mut events = Vec::new();
        if let Some(sort) = self.sort_of.remove(key)
            && let Some((rank, entry)) = self.rows.remove(order_by, &sort, key, end)
            && rank < end
            && limit > 0
        {
            // The row itself left the window, or (before it) everything shifted down.
            let (leaving_key, old_index) = if rank >= offset {
                (entry.key.clone(), rank - offset)
            } else {
                match self.rows.get(offset.saturating_sub(1)) {
                    // The row that was first in the window now sits just before it.
                    Some(first) if self.rows.len >= offset => (first.key.clone(), 0),
                    _ => (entry.key.clone(), usize::MAX),
                }
            };
            if old_index != usize::MAX {
                events.push(LiveEvent::Removed { key: leaving_key, old_index });
                if let Some(entering) = self.rows.get(end - 1).filter(|_| end != usize::MAX) {
                    events.push(LiveEvent::Added { row: self.row(entering), index: limit - 1 });
                }
            }
        }
        if let Some(document) = document.filter(|d| self.query.filter.matches(d)) {
            let sort: Vec<Option<Value>> = order_by.iter().map(|order| sort_value(document, order).cloned()).collect();
            self.sort_of.insert(key.clone(), sort.clone());
            let rank = self.rows.insert(order_by, Entry { sort, key: key.clone(), document: document.clone() }, end);
            if rank < end && limit > 0 {
                // Pushed out at the end of a full window.
                if end != usize::MAX
                    && let Some(pushed) = self.rows.get(end)
                {
                    events.push(LiveEvent::Removed { key: pushed.key.clone(), old_index: limit - 1 });
                }
                let (entering_rank, index) = if rank >= offset { (rank, rank - offset) } else { (offset, 0) };
                if let Some(entering) = self.rows.get(entering_rank) {
                    events.push(LiveEvent::Added { row: self.row(entering), index });
                }
            }
        }
        simplify(events)
    }
}

/// Cancels an add immediately removed at the same place, and turns the removal and
/// re-insertion of one row into a change.
fn simplify(mut events: Vec<LiveEvent>) -> Vec<LiveEvent> {
    let mut i = 0;
    while i + 1 < events.len() {
        if let (LiveEvent::Added { row, index }, LiveEvent::Removed { key, old_index }) = (&events[i], &events[i + 1])
            && row.key == *key
            && index == old_index
        {
            events.drain(i..i + 2);
            i = i.saturating_sub(1);
            continue;
        }
        i += 1;
    }
    if let [LiveEvent::Removed { key, old_index }, LiveEvent::Added { row, index }] = events.as_slice()
        && *key == row.key
    {
        return vec![LiveEvent::Changed { row: row.clone(), old_index: *old_index, new_index: *index }];
    }
    events
}
