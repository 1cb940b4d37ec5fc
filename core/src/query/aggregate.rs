//! Grouped aggregates: `COUNT`, `SUM`, `MIN`, `MAX`, `AVG` per group of equal
//! `GROUP BY` values.
//!
//! `COUNT(*)` counts rows; `COUNT(f)` rows where `f` is present and not null. `SUM` and
//! `AVG` take numbers only (other values are skipped); a sum of integers stays an
//! integer while it fits. `MIN`/`MAX` use the cross-type sort order of [`super::compare`]
//! over non-null values. An aggregate over no values is null (`COUNT` is 0).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::compare::total_cmp;
use super::model::{OrderBy, cmp_rows};
use super::path::FieldPath;
use super::predicate::Predicate;
use crate::key::{CollectionName, RecordKey};
use crate::value::{Document, Value};

/// One aggregate function.
#[derive(Clone, Debug, PartialEq)]
pub enum AggregateFn {
    /// `COUNT(*)`.
    Count,
    /// `COUNT(field)`.
    CountField(FieldPath),
    /// `SUM(field)`.
    Sum(FieldPath),
    /// `MIN(field)`.
    Min(FieldPath),
    /// `MAX(field)`.
    Max(FieldPath),
    /// `AVG(field)`.
    Avg(FieldPath),
}

/// An aggregate and the name of its output field.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate {
    /// The function.
    pub function: AggregateFn,
    /// Output field name (`count`, `sum_price`, or an `AS` alias).
    pub name: String,
}

/// A grouped aggregate query.
#[derive(Clone, Debug, PartialEq)]
pub struct AggregateQuery {
    /// The collection.
    pub collection: CollectionName,
    /// Which records.
    pub filter: Predicate,
    /// Group keys (none: one group over every matching record).
    pub group_by: Vec<FieldPath>,
    /// The aggregates.
    pub aggregates: Vec<Aggregate>,
    /// Order of the output rows, over their fields (default: by group key).
    pub order_by: Vec<OrderBy>,
    /// Most output rows.
    pub limit: Option<usize>,
}

/// A value ordered by the query sort order, for group keys.
#[derive(Clone, Debug)]
pub(crate) struct GroupValue(pub(crate) Value);

impl PartialEq for GroupValue {
    fn eq(&self, other: &GroupValue) -> bool {
        total_cmp(&self.0, &other.0) == Ordering::Equal
    }
}

impl Eq for GroupValue {}

impl PartialOrd for GroupValue {
    fn partial_cmp(&self, other: &GroupValue) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for GroupValue {
    fn cmp(&self, other: &GroupValue) -> Ordering {
        total_cmp(&self.0, &other.0)
    }
}

/// Running state of one aggregate.
#[derive(Clone, Debug, Default)]
pub struct Accumulator {
    count: u64,
    int_sum: i128,
    float_sum: f64,
    any_float: bool,
    numbers: u64,
    min: Option<Value>,
    max: Option<Value>,
}

impl Accumulator {
    /// Adds one row.
    pub fn add(&mut self, function: &AggregateFn, document: &Document) {
        let path = match function {
            AggregateFn::Count => {
                self.count += 1;
                return;
            }
            AggregateFn::CountField(path)
            | AggregateFn::Sum(path)
            | AggregateFn::Min(path)
            | AggregateFn::Max(path)
            | AggregateFn::Avg(path) => path,
        };
        let Some(value) = path.lookup(document).filter(|v| !matches!(v, Value::Null)) else { return };
        self.count += 1;
        match value {
            Value::Int(n) => {
                self.int_sum += i128::from(*n);
                self.numbers += 1;
            }
            Value::Float(x) => {
                self.float_sum += x;
                self.any_float = true;
                self.numbers += 1;
            }
            _ => {}
        }
        if self.min.as_ref().is_none_or(|min| total_cmp(value, min) == Ordering::Less) {
            self.min = Some(value.clone());
        }
        if self.max.as_ref().is_none_or(|max| total_cmp(value, max) == Ordering::Greater) {
            self.max = Some(value.clone());
        }
    }

    /// The aggregate's value now.
    pub fn value(&self, function: &AggregateFn) -> Value {
        let sum = || {
            if self.any_float {
                Value::Float(self.float_sum + self.int_sum as f64)
            } else {
                i64::try_from(self.int_sum).map_or(Value::Float(self.int_sum as f64), Value::Int)
            }
        };
        match function {
            AggregateFn::Count | AggregateFn::CountField(_) => Value::Int(self.count as i64),
            AggregateFn::Sum(_) if self.numbers == 0 => Value::Null,
            AggregateFn::Sum(_) => sum(),
            AggregateFn::Avg(_) if self.numbers == 0 => Value::Null,
            AggregateFn::Avg(_) => Value::Float((self.float_sum + self.int_sum as f64) / self.numbers as f64),
            AggregateFn::Min(_) => self.min.clone().unwrap_or(Value::Null),
            AggregateFn::Max(_) => self.max.clone().unwrap_or(Value::Null),
        }
    }
}

impl AggregateQuery {
    /// Runs the query over `records` by scanning them all; one output row per group.
    pub fn run<'a>(&self, records: impl IntoIterator<Item = (&'a RecordKey, Document)>) -> Vec<Document> {
        let mut groups: BTreeMap<Vec<GroupValue>, Vec<Accumulator>> = BTreeMap::new();
        if self.group_by.is_empty() {
            groups.insert(Vec::new(), vec![Accumulator::default(); self.aggregates.len()]);
        }
        for (_, document) in records {
            if !self.filter.matches(&document) {
                continue;
            }
            let key: Vec<GroupValue> = self
                .group_by
                .iter()
                .map(|path| GroupValue(path.lookup(&document).cloned().unwrap_or(Value::Null)))
                .collect();
            let accumulators = groups.entry(key).or_insert_with(|| vec![Accumulator::default(); self.aggregates.len()]);
            for (accumulator, aggregate) in accumulators.iter_mut().zip(&self.aggregates) {
                accumulator.add(&aggregate.function, &document);
            }
        }
        let mut rows: Vec<Document> = groups
            .into_iter()
            .map(|(key, accumulators)| {
                let mut row = Document::new();
                for (path, value) in self.group_by.iter().zip(key) {
                    row.insert(path.to_string(), value.0);
                }
                for (aggregate, accumulator) in self.aggregates.iter().zip(&accumulators) {
                    row.insert(aggregate.name.clone(), accumulator.value(&aggregate.function));
                }
                row
            })
            .collect();
        if !self.order_by.is_empty() {
            // Output rows have no record key: order by position for ties (stable sort).
            let tie = RecordKey::new("0").unwrap_or_else(|_| unreachable!("valid key"));
            rows.sort_by(|a, b| cmp_rows(&self.order_by, (&tie, a), (&tie, b)));
        }
        if let Some(limit) = self.limit {
            rows.truncate(limit);
        }
        rows
    }
}
