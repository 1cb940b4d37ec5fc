//! Grouped aggregates kept up to date change by change: each change takes its record's
//! old contribution out of its group and puts the new one in — the aggregates are
//! updated, never recomputed over the group.
//!
//! `COUNT`, `SUM` and `AVG` keep running totals; `MIN` and `MAX` keep a count of every
//! value in the group (ordered), so removing the current minimum finds the next one in
//! O(log n). Float sums are updated by adding and subtracting, so after many changes
//! they can differ from a fresh sum in the last bits.

use std::collections::{BTreeMap, HashMap};

use super::aggregate::{AggregateFn, AggregateQuery, GroupValue};
use crate::key::RecordKey;
use crate::value::{Document, Value};

/// What changed in the grouped result.
#[derive(Clone, Debug, PartialEq)]
pub enum AggregateEvent {
    /// A group appeared; its row.
    Added(Document),
    /// A group's aggregates changed; its new row.
    Changed(Document),
    /// A group has no rows left; its group fields.
    Removed(Document),
}

#[derive(Clone, Debug, Default)]
struct Running {
    count: u64,
    int_sum: i128,
    float_sum: f64,
    numbers: u64,
    any_float_count: u64,
    values: BTreeMap<GroupValue, u64>,
}

impl Running {
    fn change(&mut self, function: &AggregateFn, document: &Document, sign: i64) {
        let path = match function {
            AggregateFn::Count => {
                self.count = self.count.saturating_add_signed(sign);
                return;
            }
            AggregateFn::CountField(p)
            | AggregateFn::Sum(p)
            | AggregateFn::Min(p)
            | AggregateFn::Max(p)
            | AggregateFn::Avg(p) => p,
        };
        let Some(value) = path.lookup(document).filter(|v| !matches!(v, Value::Null)) else { return };
        self.count = self.count.saturating_add_signed(sign);
        match value {
            Value::Int(n) => {
                self.int_sum += i128::from(*n) * i128::from(sign);
                self.numbers = self.numbers.saturating_add_signed(sign);
            }
            Value::Float(x) => {
                self.float_sum += x * sign as f64;
                self.numbers = self.numbers.saturating_add_signed(sign);
                self.any_float_count = self.any_float_count.saturating_add_signed(sign);
            }
            _ => {}
        }
        if matches!(function, AggregateFn::Min(_) | AggregateFn::Max(_)) {
            let slot = self.values.entry(GroupValue(value.clone())).or_insert(0);
            *slot = slot.saturating_add_signed(sign);
            if *slot == 0 {
                self.values.remove(&GroupValue(value.clone()));
            }
        }
    }

    fn value(&self, function: &AggregateFn) -> Value {
        let total = || self.float_sum + self.int_sum as f64;
        match function {
            AggregateFn::Count | AggregateFn::CountField(_) => Value::Int(self.count as i64),
            AggregateFn::Sum(_) | AggregateFn::Avg(_) if self.numbers == 0 => Value::Null,
            AggregateFn::Sum(_) if self.any_float_count > 0 => Value::Float(total()),
            AggregateFn::Sum(_) => i64::try_from(self.int_sum).map_or(Value::Float(self.int_sum as f64), Value::Int),
            AggregateFn::Avg(_) => Value::Float(total() / self.numbers as f64),
            AggregateFn::Min(_) => self.values.keys().next().map_or(Value::Null, |v| v.0.clone()),
            AggregateFn::Max(_) => self.values.keys().next_back().map_or(Value::Null, |v| v.0.clone()),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Group {
    rows: u64,
    running: Vec<Running>,
}

/// A grouped aggregate query maintained incrementally.
#[derive(Clone, Debug)]
pub struct LiveAggregate {
    query: AggregateQuery,
    groups: BTreeMap<Vec<GroupValue>, Group>,
    members: HashMap<RecordKey, (Vec<GroupValue>, Document)>,
}

impl LiveAggregate {
    /// Starts over the current records.
    pub fn new<'a>(
        query: AggregateQuery,
        records: impl IntoIterator<Item = (&'a RecordKey, Document)>,
    ) -> LiveAggregate {
        let mut live = LiveAggregate { query, groups: BTreeMap::new(), members: HashMap::new() };
        for (key, document) in records {
            let _ = live.apply(key, Some(&document));
        }
        live
    }

    fn group_key(&self, document: &Document) -> Vec<GroupValue> {
        self.query.group_by.iter().map(|p| GroupValue(p.lookup(document).cloned().unwrap_or(Value::Null))).collect()
    }

    fn row(&self, key: &[GroupValue]) -> Document {
        let mut row = Document::new();
        for (path, value) in self.query.group_by.iter().zip(key) {
            row.insert(path.to_string(), value.0.clone());
        }
        // A group with no rows (only the single group of an ungrouped query) reads as
        // empty aggregates: count 0, the others null.
        let empty = vec![Running::default(); self.query.aggregates.len()];
        let running = self.groups.get(key).map_or(&empty, |group| &group.running);
        for (aggregate, running) in self.query.aggregates.iter().zip(running) {
            row.insert(aggregate.name.clone(), running.value(&aggregate.function));
        }
        row
    }

    fn contribute(&mut self, key: &[GroupValue], document: &Document, sign: i64) {
        let aggregates = self.query.aggregates.len();
        let group = self
            .groups
            .entry(key.to_vec())
            .or_insert_with(|| Group { rows: 0, running: vec![Running::default(); aggregates] });
        group.rows = group.rows.saturating_add_signed(sign);
        for (running, aggregate) in group.running.iter_mut().zip(&self.query.aggregates) {
            running.change(&aggregate.function, document, sign);
        }
    }

    /// Takes in a change to record `key` (its new visible document, or `None` if deleted).
    pub fn apply(&mut self, key: &RecordKey, document: Option<&Document>) -> Vec<AggregateEvent> {
        let mut events = Vec::new();
        let mut touched: Vec<(Vec<GroupValue>, bool)> = Vec::new();
        if let Some((group_key, old)) = self.members.remove(key) {
            self.contribute(&group_key, &old, -1);
            touched.push((group_key, true));
        }
        if let Some(document) = document.filter(|d| self.query.filter.matches(d)) {
            let group_key = self.group_key(document);
            let existed =
                self.groups.get(&group_key).is_some_and(|g| g.rows > 0) || touched.iter().any(|(k, _)| *k == group_key);
            self.contribute(&group_key, document, 1);
            self.members.insert(key.clone(), (group_key.clone(), document.clone()));
            match touched.iter_mut().find(|(k, _)| *k == group_key) {
                Some(_) => {}
                None => touched.push((group_key, existed)),
            }
        }
        for (group_key, existed) in touched {
            let rows = self.groups.get(&group_key).map_or(0, |g| g.rows);
            // Without GROUP BY there is always exactly one row, even over no records.
            if rows == 0 && !self.query.group_by.is_empty() {
                let row = self.row(&group_key);
                self.groups.remove(&group_key);
                let fields = row
                    .into_iter()
                    .filter(|(name, _)| self.query.group_by.iter().any(|p| p.to_string() == *name))
                    .collect();
                events.push(AggregateEvent::Removed(fields));
            } else if existed || self.query.group_by.is_empty() {
                events.push(AggregateEvent::Changed(self.row(&group_key)));
            } else {
                events.push(AggregateEvent::Added(self.row(&group_key)));
            }
        }
        events
    }

    /// The current rows, in group order (the query's `ORDER BY` and `LIMIT` are applied
    /// by the caller when re-rendering: ordering aggregates is not maintained).
    pub fn rows(&self) -> Vec<Document> {
        if self.query.group_by.is_empty() && self.groups.is_empty() {
            return vec![self.row(&[])];
        }
        self.groups.keys().map(|key| self.row(key)).collect()
    }
}
