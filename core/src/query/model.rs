//! The query model — collection, filter, order, limit/offset, keyset cursor, projection
//! — and its evaluation over any source of documents (a full scan; indexes come later).

use std::cmp::Ordering;

use super::compare::total_cmp;
use super::path::FieldPath;
use super::predicate::Predicate;
use crate::key::{CollectionName, RecordKey};
use crate::replica::Collection;
use crate::value::{Document, Value};

/// Where missing and null values sort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nulls {
    /// Before every value.
    First,
    /// After every value.
    Last,
}

/// One sort key.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderBy {
    /// The field.
    pub path: FieldPath,
    /// Largest first.
    pub descending: bool,
    /// Where missing and null go; by default as if larger than every value (last
    /// ascending, first descending), as in PostgreSQL.
    pub nulls: Option<Nulls>,
}

impl OrderBy {
    /// Ascending on `path`.
    pub fn asc(path: FieldPath) -> OrderBy {
        OrderBy { path, descending: false, nulls: None }
    }

    /// Descending on `path`.
    pub fn desc(path: FieldPath) -> OrderBy {
        OrderBy { path, descending: true, nulls: None }
    }

    fn nulls(&self) -> Nulls {
        self.nulls.unwrap_or(if self.descending { Nulls::First } else { Nulls::Last })
    }
}

/// Where the previous page ended: its last row's sort values and key. The next page
/// starts strictly after it, so rows inserted or removed meanwhile never shift pages.
#[derive(Clone, Debug, PartialEq)]
pub struct Keyset {
    /// The last row's value for each sort key (`Null` for missing).
    pub values: Vec<Value>,
    /// The last row's key (the final tie-breaker).
    pub key: RecordKey,
}

/// A query over one collection.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// The collection.
    pub collection: CollectionName,
    /// Which records.
    pub filter: Predicate,
    /// Sort keys; rows with equal keys are ordered by record key.
    pub order_by: Vec<OrderBy>,
    /// Most rows returned.
    pub limit: Option<usize>,
    /// Rows skipped first (after the keyset cursor, if any).
    pub offset: usize,
    /// Start after this row.
    pub after: Option<Keyset>,
    /// Fields returned (all when `None`).
    pub select: Option<Vec<FieldPath>>,
}

impl Query {
    /// Every record of `collection`, in key order.
    pub fn all(collection: CollectionName) -> Query {
        Query {
            collection,
            filter: Predicate::True,
            order_by: Vec::new(),
            limit: None,
            offset: 0,
            after: None,
            select: None,
        }
    }
}

/// One result row.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The record key.
    pub key: RecordKey,
    /// Its fields (projected when the query selects fields).
    pub document: Document,
}

/// A page of results.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    /// The rows, in order.
    pub rows: Vec<Row>,
    /// Where the next page starts, when the limit cut the result short.
    pub next: Option<Keyset>,
}

pub(crate) fn sort_value<'a>(document: &'a Document, order: &OrderBy) -> Option<&'a Value> {
    order.path.lookup(document).filter(|value| !matches!(value, Value::Null))
}

pub(crate) fn cmp_sort_values(a: Option<&Value>, b: Option<&Value>, order: &OrderBy) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => {
            if order.nulls() == Nulls::First {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        (Some(_), None) => {
            if order.nulls() == Nulls::First {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        (Some(x), Some(y)) => {
            let ordering = total_cmp(x, y);
            if order.descending { ordering.reverse() } else { ordering }
        }
    }
}

/// The order of two rows under `order_by`, then by key.
pub fn cmp_rows(order_by: &[OrderBy], a: (&RecordKey, &Document), b: (&RecordKey, &Document)) -> Ordering {
    for order in order_by {
        let ordering = cmp_sort_values(sort_value(a.1, order), sort_value(b.1, order), order);
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    a.0.cmp(b.0)
}

fn after_keyset(order_by: &[OrderBy], key: &RecordKey, document: &Document, keyset: &Keyset) -> bool {
    for (index, order) in order_by.iter().enumerate() {
        let theirs = keyset.values.get(index).filter(|v| !matches!(v, Value::Null));
        let ordering = cmp_sort_values(sort_value(document, order), theirs, order);
        if ordering != Ordering::Equal {
            return ordering == Ordering::Greater;
        }
    }
    key > &keyset.key
}

fn keyset_of(order_by: &[OrderBy], key: &RecordKey, document: &Document) -> Keyset {
    Keyset {
        values: order_by.iter().map(|order| sort_value(document, order).cloned().unwrap_or(Value::Null)).collect(),
        key: key.clone(),
    }
}

pub(crate) fn project(select: Option<&[FieldPath]>, document: Document) -> Document {
    match select {
        None => document,
        Some(paths) => {
            let mut out = Document::new();
            for path in paths {
                path.copy(&document, &mut out);
            }
            out
        }
    }
}

impl Query {
    /// Runs the query over `records` (visible documents with their keys) by scanning
    /// them all: the reference evaluation the index-planned path must agree with.
    pub fn run<'a>(&self, records: impl IntoIterator<Item = (&'a RecordKey, Document)>) -> QueryResult {
        let mut rows: Vec<(&RecordKey, Document)> = records
            .into_iter()
            .filter(|(key, document)| {
                self.filter.matches(document)
                    && self.after.as_ref().is_none_or(|after| after_keyset(&self.order_by, key, document, after))
            })
            .collect();
        let wanted = self.limit.map(|limit| self.offset.saturating_add(limit));
        let compare =
            |a: &(&RecordKey, Document), b: &(&RecordKey, Document)| cmp_rows(&self.order_by, (a.0, &a.1), (b.0, &b.1));
        // Only the first `offset + limit` rows need sorting.
        if let Some(wanted) = wanted.filter(|wanted| *wanted < rows.len()) {
            if wanted == 0 {
                rows.clear();
            } else {
                rows.select_nth_unstable_by(wanted - 1, compare);
                rows.truncate(wanted);
            }
        }
        rows.sort_unstable_by(compare);
        let page: Vec<(&RecordKey, Document)> =
            rows.into_iter().skip(self.offset).take(self.limit.unwrap_or(usize::MAX)).collect();
        // A full page may have a successor; the cursor lets the caller ask.
        let next = match (self.limit, page.last()) {
            (Some(limit), Some((key, document))) if page.len() == limit => {
                Some(keyset_of(&self.order_by, key, document))
            }
            _ => None,
        };
        let rows = page
            .into_iter()
            .map(|(key, document)| Row { key: key.clone(), document: project(self.select.as_deref(), document) })
            .collect();
        QueryResult { rows, next }
    }

    /// Runs the query over a replica's collection. The filter reads each record's state
    /// in place; documents are built only for the records that match.
    pub fn run_on(&self, collection: &Collection) -> QueryResult {
        let matching = collection.iter().filter(|(_, state)| state.is_visible() && self.filter.matches_in(*state));
        if self.limit.is_none() || self.order_by.is_empty() {
            return self.run(matching.filter_map(|(key, state)| Some((key, state.document()?))));
        }
        // A sorted page: rank every match on its sort fields alone, then build whole
        // documents only for the rows of the page (most of the cost of a top-N query
        // over a big collection was building documents that were then dropped).
        let sort_fields: Vec<&str> =
            self.order_by.iter().filter_map(|key| key.path.segments().first().map(String::as_str)).collect();
        let ranked = matching.map(|(key, state)| {
            let mut fields = Document::new();
            for name in &sort_fields {
                if let Some(value) = state.field(name) {
                    fields.insert((*name).to_owned(), value);
                }
            }
            (key, fields)
        });
        let ranking = Query { select: None, ..self.clone() };
        let QueryResult { rows, next } = ranking.run(ranked);
        let rows = rows
            .into_iter()
            .filter_map(|row| {
                let document = collection.state(row.key.as_str())?.document()?;
                Some(Row { key: row.key, document: project(self.select.as_deref(), document) })
            })
            .collect();
        QueryResult { rows, next }
    }
}
