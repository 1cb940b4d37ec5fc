//! Predicates: the `where` of a query and of a subscription shape.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::compare::{equals, range_cmp};
use super::path::FieldPath;
use crate::crdt::RecordState;
use crate::value::{Document, Value};

/// A condition on one record.
#[derive(Clone, Debug, PartialEq)]
pub enum Predicate {
    /// Every record.
    True,
    /// Field equals value (numbers numerically).
    Eq(FieldPath, Value),
    /// Field exists and does not equal value.
    Ne(FieldPath, Value),
    /// Field is less than value (same kind only).
    Lt(FieldPath, Value),
    /// Less than or equal.
    Le(FieldPath, Value),
    /// Greater than.
    Gt(FieldPath, Value),
    /// Greater than or equal.
    Ge(FieldPath, Value),
    /// Field equals one of the values.
    In(FieldPath, Vec<Value>),
    /// String field starts with the text.
    Prefix(FieldPath, String),
    /// Array field has an element equal to the value, or string field contains the text.
    Contains(FieldPath, Value),
    /// Field is present (null counts as present).
    Exists(FieldPath),
    /// All hold.
    And(Vec<Predicate>),
    /// At least one holds.
    Or(Vec<Predicate>),
    /// Does not hold.
    Not(Box<Predicate>),
}

/// Reads a field's value for a predicate.
pub trait FieldLookup {
    /// The value at `path`, if present.
    fn field(&self, path: &FieldPath) -> Option<Cow<'_, Value>>;
}

impl FieldLookup for Document {
    fn field(&self, path: &FieldPath) -> Option<Cow<'_, Value>> {
        path.lookup(self).map(Cow::Borrowed)
    }
}

/// A record's state read directly: no document is built, stored values are borrowed.
impl FieldLookup for RecordState {
    fn field(&self, path: &FieldPath) -> Option<Cow<'_, Value>> {
        let (first, rest) = path.segments().split_first()?;
        let top = self.field_cow(first)?;
        if rest.is_empty() {
            return Some(top);
        }
        let mut value: &Value = top.as_ref();
        for segment in rest {
            match value {
                Value::Object(fields) => value = fields.get(segment)?,
                _ => return None,
            }
        }
        Some(Cow::Owned(value.clone()))
    }
}

fn range(source: &impl FieldLookup, path: &FieldPath, value: &Value, accept: impl Fn(Ordering) -> bool) -> bool {
    source.field(path).and_then(|field| range_cmp(&field, value)).is_some_and(accept)
}

impl Predicate {
    /// Whether `document` satisfies the predicate.
    pub fn matches(&self, document: &Document) -> bool {
        self.matches_in(document)
    }

    /// Whether the fields `source` gives satisfy the predicate (a document, or a record
    /// state read in place).
    pub fn matches_in(&self, source: &impl FieldLookup) -> bool {
        match self {
            Predicate::True => true,
            Predicate::Eq(path, value) => source.field(path).is_some_and(|field| equals(&field, value)),
            Predicate::Ne(path, value) => {
                source.field(path).is_some_and(|field| !matches!(*field, Value::Null) && !equals(&field, value))
            }
            Predicate::Lt(path, value) => range(source, path, value, Ordering::is_lt),
            Predicate::Le(path, value) => range(source, path, value, Ordering::is_le),
            Predicate::Gt(path, value) => range(source, path, value, Ordering::is_gt),
            Predicate::Ge(path, value) => range(source, path, value, Ordering::is_ge),
            Predicate::In(path, values) => {
                source.field(path).is_some_and(|field| values.iter().any(|value| equals(&field, value)))
            }
            Predicate::Prefix(path, prefix) => {
                matches!(source.field(path).as_deref(), Some(Value::String(text)) if text.starts_with(prefix.as_str()))
            }
            Predicate::Contains(path, value) => match (source.field(path).as_deref(), value) {
                (Some(Value::Array(items)), _) => items.iter().any(|item| equals(item, value)),
                (Some(Value::String(text)), Value::String(needle)) => text.contains(needle.as_str()),
                _ => false,
            },
            Predicate::Exists(path) => source.field(path).is_some(),
            Predicate::And(all) => all.iter().all(|p| p.matches_in(source)),
            Predicate::Or(any) => any.iter().any(|p| p.matches_in(source)),
            Predicate::Not(inner) => !inner.matches_in(source),
        }
    }

    /// The number of nodes and the depth of the tree, walked with an explicit stack (so
    /// it is safe on any tree, however deep).
    pub fn extent(&self) -> (usize, usize) {
        let mut nodes = 0;
        let mut deepest = 0;
        let mut stack = vec![(self, 1usize)];
        while let Some((predicate, depth)) = stack.pop() {
            nodes += 1;
            deepest = deepest.max(depth);
            match predicate {
                Predicate::And(items) | Predicate::Or(items) => {
                    stack.extend(items.iter().map(|item| (item, depth + 1)))
                }
                Predicate::Not(inner) => stack.push((inner, depth + 1)),
                _ => {}
            }
        }
        (nodes, deepest)
    }

    /// Number of nodes (bounded by the JSON reader and the SQL translation).
    pub fn size(&self) -> usize {
        match self {
            Predicate::And(items) | Predicate::Or(items) => 1 + items.iter().map(Predicate::size).sum::<usize>(),
            Predicate::Not(inner) => 1 + inner.size(),
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Document {
        let mut address = Document::new();
        address.insert("city".into(), Value::from("Lyon"));
        Document::from([
            ("title".into(), Value::from("buy milk")),
            ("priority".into(), Value::Int(3)),
            ("score".into(), Value::Float(2.5)),
            ("done".into(), Value::Bool(false)),
            ("note".into(), Value::Null),
            ("tags".into(), Value::Array(vec![Value::from("home"), Value::Int(1)])),
            ("address".into(), Value::Object(address)),
        ])
    }

    fn p(name: &str) -> FieldPath {
        FieldPath::parse(name).unwrap()
    }

    #[test]
    fn each_operator_over_present_missing_and_null_fields() {
        let d = doc();
        let cases: Vec<(Predicate, bool)> = vec![
            (Predicate::Eq(p("priority"), Value::Float(3.0)), true),
            (Predicate::Eq(p("missing"), Value::Null), false),
            (Predicate::Eq(p("note"), Value::Null), true),
            (Predicate::Ne(p("priority"), Value::Int(4)), true),
            (Predicate::Ne(p("missing"), Value::Int(4)), false),
            (Predicate::Ne(p("note"), Value::Int(4)), false),
            (Predicate::Lt(p("priority"), Value::Int(4)), true),
            (Predicate::Lt(p("priority"), Value::from("4")), false),
            (Predicate::Ge(p("priority"), Value::from("4")), false),
            (Predicate::Le(p("score"), Value::Float(2.5)), true),
            (Predicate::Gt(p("title"), Value::from("a")), true),
            (Predicate::Gt(p("missing"), Value::Int(0)), false),
            (Predicate::In(p("priority"), vec![Value::Int(1), Value::Int(3)]), true),
            (Predicate::Prefix(p("title"), "buy".into()), true),
            (Predicate::Prefix(p("priority"), "3".into()), false),
            (Predicate::Contains(p("tags"), Value::Float(1.0)), true),
            (Predicate::Contains(p("title"), Value::from("milk")), true),
            (Predicate::Exists(p("note")), true),
            (Predicate::Exists(p("missing")), false),
            (Predicate::Eq(p("address.city"), Value::from("Lyon")), true),
            (Predicate::Exists(p("title.length")), false),
            (Predicate::Not(Box::new(Predicate::Eq(p("missing"), Value::Int(1)))), true),
            (Predicate::And(vec![Predicate::True, Predicate::Eq(p("done"), Value::Bool(false))]), true),
            (Predicate::Or(vec![Predicate::Exists(p("missing")), Predicate::Exists(p("title"))]), true),
            (Predicate::And(vec![]), true),
            (Predicate::Or(vec![]), false),
        ];
        for (predicate, expected) in cases {
            assert_eq!(predicate.matches(&d), expected, "{predicate:?}");
        }
    }
}
