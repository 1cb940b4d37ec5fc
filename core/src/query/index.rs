//! Secondary indexes and the planner that uses them.
//!
//! An index covers one field or several (compound); it maps each record's values of
//! those fields, in the query sort order, to its keys. The planner picks, for the
//! conjunction at the top of a filter, the index whose leading fields are fixed by the
//! most equalities (`eq`, `in`), optionally followed by one range (`lt`..`ge`,
//! `prefix`). The whole filter is still checked on each candidate and the result sorted
//! as the query says, so a plan never changes a result — only how much is read.
//! [`Plan::explain`] says what was chosen. A limited query with nothing to look up but
//! sorted by one field an index leads with walks that index in the query's order and
//! stops once the page is full.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use super::compare::total_cmp;
use super::model::{Nulls, Query, QueryResult};
use super::path::FieldPath;
use super::predicate::Predicate;
use crate::key::RecordKey;
use crate::value::{Document, Value};

/// A value in an index: missing sorts before everything (and matches nothing).
#[derive(Clone, Debug)]
pub enum IndexValue {
    /// The record has no such field.
    Missing,
    /// The field's value.
    Present(Value),
}

impl PartialEq for IndexValue {
    fn eq(&self, other: &IndexValue) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for IndexValue {}

impl PartialOrd for IndexValue {
    fn partial_cmp(&self, other: &IndexValue) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IndexValue {
    fn cmp(&self, other: &IndexValue) -> Ordering {
        match (self, other) {
            (IndexValue::Missing, IndexValue::Missing) => Ordering::Equal,
            (IndexValue::Missing, IndexValue::Present(_)) => Ordering::Less,
            (IndexValue::Present(_), IndexValue::Missing) => Ordering::Greater,
            (IndexValue::Present(a), IndexValue::Present(b)) => total_cmp(a, b),
        }
    }
}

/// An index declaration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexSpec {
    /// Its name (shown by `EXPLAIN`).
    pub name: String,
    /// The fields, most significant first.
    pub fields: Vec<FieldPath>,
}

/// One index's entries.
#[derive(Clone, Debug)]
pub struct Index {
    spec: IndexSpec,
    entries: BTreeMap<Vec<IndexValue>, BTreeSet<RecordKey>>,
    len: usize,
}

impl Index {
    /// An empty index.
    pub fn new(spec: IndexSpec) -> Index {
        Index { spec, entries: BTreeMap::new(), len: 0 }
    }

    /// Its declaration.
    pub fn spec(&self) -> &IndexSpec {
        &self.spec
    }

    fn values(&self, document: &Document) -> Vec<IndexValue> {
        self.spec
            .fields
            .iter()
            .map(|path| path.lookup(document).map_or(IndexValue::Missing, |v| IndexValue::Present(v.clone())))
            .collect()
    }

    /// Keeps the index in step with a change of record `key` from `old` to `new`
    /// (`None`: absent or deleted).
    pub fn update(&mut self, key: &RecordKey, old: Option<&Document>, new: Option<&Document>) {
        if let Some(old) = old {
            let values = self.values(old);
            if let Some(keys) = self.entries.get_mut(&values)
                && keys.remove(key)
            {
                self.len -= 1;
                if keys.is_empty() {
                    self.entries.remove(&values);
                }
            }
        }
        if let Some(new) = new
            && self.entries.entry(self.values(new)).or_default().insert(key.clone())
        {
            self.len += 1;
        }
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How a query will be answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Read every record.
    FullScan,
    /// Read the records an index finds for fixed leading values and an optional range.
    IndexLookup {
        /// Which index.
        index: usize,
        /// Its name.
        name: String,
        /// Values of the leading fields (one list per `in` alternative).
        prefixes: Vec<Vec<Value>>,
        /// A range on the next field.
        range: Option<(Bound<Value>, Bound<Value>)>,
    },
    /// Walk an index whose first field is the query's only sort key, in the query's
    /// order, and stop once `offset + limit` rows have matched the filter.
    IndexOrder {
        /// Which index.
        index: usize,
        /// Its name.
        name: String,
        /// Largest first.
        descending: bool,
    },
}

impl Plan {
    /// A one-line description, as `EXPLAIN` prints it.
    pub fn explain(&self) -> String {
        match self {
            Plan::FullScan => "full scan".to_owned(),
            Plan::IndexLookup { name, prefixes, range, .. } => {
                let fixed = prefixes.first().map_or(0, Vec::len);
                let mut text = format!("index {name}: {fixed} equality field(s)");
                if prefixes.len() > 1 {
                    text.push_str(&format!(" × {} values", prefixes.len()));
                }
                if range.is_some() {
                    text.push_str(" + range");
                }
                text
            }
            Plan::IndexOrder { name, descending, .. } => {
                format!(
                    "index {name}: walk in {} order, stop at the limit",
                    if *descending { "descending" } else { "ascending" }
                )
            }
        }
    }
}

/// Conditions of a top-level conjunction the planner can use.
fn conjuncts(filter: &Predicate) -> Vec<&Predicate> {
    match filter {
        Predicate::And(items) => items.iter().flat_map(conjuncts).collect(),
        other => vec![other],
    }
}

fn equality_values<'a>(conditions: &[&'a Predicate], path: &FieldPath) -> Option<Vec<&'a Value>> {
    conditions.iter().find_map(|c| match c {
        // Explicit nulls are indexed (as present values) and `eq null` matches exactly
        // them; 1 and 1.0 sort equal, so one lookup finds both.
        Predicate::Eq(p, v) if p == path => Some(vec![v]),
        Predicate::In(p, values) if p == path && !values.is_empty() && values.len() <= 64 => {
            Some(values.iter().collect())
        }
        _ => None,
    })
}

fn range_on(conditions: &[&Predicate], path: &FieldPath) -> Option<(Bound<Value>, Bound<Value>)> {
    let mut low = Bound::Unbounded;
    let mut high = Bound::Unbounded;
    let mut found = false;
    for condition in conditions {
        match condition {
            Predicate::Gt(p, v) if p == path => (low, found) = (Bound::Excluded(v.clone()), true),
            Predicate::Ge(p, v) if p == path => (low, found) = (Bound::Included(v.clone()), true),
            Predicate::Lt(p, v) if p == path => (high, found) = (Bound::Excluded(v.clone()), true),
            Predicate::Le(p, v) if p == path => (high, found) = (Bound::Included(v.clone()), true),
            Predicate::Prefix(p, text) if p == path => {
                low = Bound::Included(Value::String(text.clone()));
                found = true;
            }
            _ => {}
        }
    }
    found.then_some((low, high))
}

/// Picks a plan for `query` among `indexes`.
pub fn plan(query: &Query, indexes: &[Index]) -> Plan {
    let conditions = conjuncts(&query.filter);
    let mut best: Option<((usize, usize), Plan)> = None;
    for (number, index) in indexes.iter().enumerate() {
        let mut prefixes: Vec<Vec<Value>> = vec![Vec::new()];
        let mut fixed = 0;
        for path in &index.spec.fields {
            let Some(values) = equality_values(&conditions, path) else { break };
            prefixes = prefixes
                .iter()
                .flat_map(|prefix| values.iter().map(move |v| [prefix.clone(), vec![(*v).clone()]].concat()))
                .take(256)
                .collect();
            fixed += 1;
        }
        let range = index.spec.fields.get(fixed).and_then(|path| range_on(&conditions, path));
        if fixed == 0 && range.is_none() {
            continue;
        }
        // More fixed fields first, then a range.
        let score = (fixed, usize::from(range.is_some()));
        if best.as_ref().is_none_or(|(best, _)| score > *best) {
            best = Some((score, Plan::IndexLookup { index: number, name: index.spec.name.clone(), prefixes, range }));
        }
    }
    if let Some((_, plan)) = best {
        return plan;
    }
    // Nothing to look up, but a limited query sorted by one field an index leads with
    // can read the index in order and stop early.
    if let ([order], Some(_), None) = (query.order_by.as_slice(), query.limit, &query.after) {
        let default_nulls = order.nulls.is_none_or(|nulls| (nulls == Nulls::First) == order.descending);
        if default_nulls
            && let Some(number) = indexes.iter().position(|index| index.spec.fields.first() == Some(&order.path))
        {
            return Plan::IndexOrder {
                index: number,
                name: indexes[number].spec.name.clone(),
                descending: order.descending,
            };
        }
    }
    Plan::FullScan
}

/// The keys of an index in the order a one-key sort puts them: by the first field's
/// value (missing and null together, last ascending and first descending), ties by key.
fn ordered_keys(index: &Index, descending: bool) -> Vec<Vec<&RecordKey>> {
    let mut nulls: Vec<&RecordKey> = Vec::new();
    let mut groups: Vec<Vec<&RecordKey>> = Vec::new();
    let mut current: Option<&IndexValue> = None;
    for (values, keys) in &index.entries {
        let first = &values[0];
        if matches!(first, IndexValue::Missing | IndexValue::Present(Value::Null)) {
            nulls.extend(keys.iter());
            continue;
        }
        if current.is_some_and(|c| c == first) {
            if let Some(group) = groups.last_mut() {
                group.extend(keys.iter());
            }
        } else {
            groups.push(keys.iter().collect());
            current = Some(first);
        }
    }
    for group in &mut groups {
        group.sort();
    }
    nulls.sort();
    if descending {
        groups.reverse();
        groups.insert(0, nulls);
    } else {
        groups.push(nulls);
    }
    groups
}

fn in_range(value: &IndexValue, range: &(Bound<Value>, Bound<Value>)) -> bool {
    let IndexValue::Present(value) = value else { return false };
    let above = match &range.0 {
        Bound::Unbounded => true,
        Bound::Included(low) => total_cmp(value, low) != Ordering::Less,
        Bound::Excluded(low) => total_cmp(value, low) == Ordering::Greater,
    };
    let below = match &range.1 {
        Bound::Unbounded => true,
        Bound::Included(high) => total_cmp(value, high) != Ordering::Greater,
        Bound::Excluded(high) => total_cmp(value, high) == Ordering::Less,
    };
    above && below
}

/// Whether an index value lies beyond the range's upper bound (every later one does too).
fn past_range(value: &IndexValue, range: &(Bound<Value>, Bound<Value>)) -> bool {
    let IndexValue::Present(value) = value else { return false };
    match &range.1 {
        Bound::Included(high) => total_cmp(value, high) == Ordering::Greater,
        Bound::Excluded(high) => total_cmp(value, high) != Ordering::Less,
        Bound::Unbounded => false,
    }
}

/// Runs `query` with `plan`, fetching documents by key through `get`; `all` is the full
/// scan for plans that need it. The result is the same as `Query::run` over every record.
pub fn execute<'a>(
    query: &Query,
    plan: &Plan,
    indexes: &'a [Index],
    get: impl Fn(&RecordKey) -> Option<Document>,
    all: impl FnOnce() -> Vec<(&'a RecordKey, Document)>,
) -> QueryResult {
    let keys: Vec<&RecordKey> = match plan {
        Plan::FullScan => return query.run(all()),
        Plan::IndexOrder { index, descending, .. } => {
            let wanted = query.offset.saturating_add(query.limit.unwrap_or(usize::MAX));
            let mut rows: Vec<(&RecordKey, Document)> = Vec::new();
            'walk: for group in ordered_keys(&indexes[*index], *descending) {
                for key in group {
                    if let Some(document) = get(key).filter(|d| query.filter.matches(d)) {
                        rows.push((key, document));
                        if rows.len() >= wanted {
                            break 'walk;
                        }
                    }
                }
            }
            return query.run(rows);
        }
        Plan::IndexLookup { index, prefixes, range, .. } => {
            let index = &indexes[*index];
            let mut keys = Vec::new();
            for prefix in prefixes {
                let start: Vec<IndexValue> = prefix.iter().cloned().map(IndexValue::Present).collect();
                // Everything whose leading values equal the prefix (then the range, if any).
                for (values, found) in index.entries.range(start.clone()..) {
                    if values.len() < start.len() || values[..start.len()] != start[..] {
                        break;
                    }
                    if let Some(range) = range {
                        let next = &values[start.len()];
                        if !in_range(next, range) {
                            if past_range(next, range) {
                                break;
                            }
                            continue;
                        }
                    }
                    keys.extend(found.iter());
                }
            }
            keys
        }
    };
    let mut seen = BTreeSet::new();
    let records: Vec<(&RecordKey, Document)> =
        keys.into_iter().filter(|key| seen.insert(*key)).filter_map(|key| Some((key, get(key)?))).collect();
    query.run(records)
}
