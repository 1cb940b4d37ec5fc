//! The differential test of the queries issue: random data, random indexes and thousands
//! of random queries, answered by the index-planned path, the full scan, and a naive
//! reference evaluator written independently here — all three must agree. Index
//! maintenance is exercised by random updates and deletes between queries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cmp::Ordering;
use std::collections::BTreeMap;

use proptest::prelude::*;
use weft_core::key::{CollectionName, RecordKey};
use weft_core::query::{FieldPath, Index, IndexSpec, OrderBy, Plan, Predicate, Query, execute, plan};
use weft_core::value::{Document, Value};

// ----- the naive reference: ints, strings and nulls only ---------------------------------

fn same_kind(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::String(x), Value::String(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        _ => None,
    }
}

fn reference_matches(p: &Predicate, d: &Document) -> bool {
    let get = |path: &FieldPath| d.get(&path.to_string());
    let cmp =
        |path: &FieldPath, v: &Value, ok: fn(Ordering) -> bool| get(path).and_then(|f| same_kind(f, v)).is_some_and(ok);
    match p {
        Predicate::True => true,
        Predicate::Eq(path, v) => get(path) == Some(v),
        Predicate::Ne(path, v) => get(path).is_some_and(|f| *f != Value::Null && f != v),
        Predicate::Lt(path, v) => cmp(path, v, |o| o == Ordering::Less),
        Predicate::Le(path, v) => cmp(path, v, |o| o != Ordering::Greater),
        Predicate::Gt(path, v) => cmp(path, v, |o| o == Ordering::Greater),
        Predicate::Ge(path, v) => cmp(path, v, |o| o != Ordering::Less),
        Predicate::In(path, vs) => get(path).is_some_and(|f| vs.contains(f)),
        Predicate::Prefix(path, t) => matches!(get(path), Some(Value::String(s)) if s.starts_with(t.as_str())),
        Predicate::Exists(path) => get(path).is_some(),
        Predicate::And(items) => items.iter().all(|i| reference_matches(i, d)),
        Predicate::Or(items) => items.iter().any(|i| reference_matches(i, d)),
        Predicate::Not(inner) => !reference_matches(inner, d),
        Predicate::Contains(..) => unreachable!("not generated"),
    }
}

/// By one field — ascending: ints, strings, then missing and null; descending: missing
/// and null, strings, ints — then by key.
fn reference_order(field: &str, descending: bool, a: (&String, &Document), b: (&String, &Document)) -> Ordering {
    let rank = |v: Option<&Value>| match v {
        Some(Value::Int(n)) => (0, Some(Value::Int(*n))),
        Some(Value::String(s)) => (1, Some(Value::String(s.clone()))),
        _ => (2, None),
    };
    let (ra, va) = rank(a.1.get(field));
    let (rb, vb) = rank(b.1.get(field));
    let by_value = ra.cmp(&rb).then_with(|| match (va, vb) {
        (Some(x), Some(y)) => same_kind(&x, &y).unwrap_or(Ordering::Equal),
        _ => Ordering::Equal,
    });
    (if descending { by_value.reverse() } else { by_value }).then_with(|| a.0.cmp(b.0))
}

// ----- generators ----------------------------------------------------------------------

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![Just(Value::Null), (0i64..6).prop_map(Value::Int), "[ab]{1,2}".prop_map(Value::String)]
}

fn document() -> impl Strategy<Value = Document> {
    (prop::option::of(value()), prop::option::of(value())).prop_map(|(a, b)| {
        let mut d = Document::new();
        if let Some(a) = a {
            d.insert("a".into(), a);
        }
        if let Some(b) = b {
            d.insert("b".into(), b);
        }
        d
    })
}

fn condition() -> impl Strategy<Value = Predicate> {
    (prop_oneof![Just("a"), Just("b")], value(), 0u8..8).prop_map(|(f, v, op)| {
        let p = FieldPath::field(f);
        match op {
            0 | 1 => Predicate::Eq(p, v),
            2 => Predicate::In(p, vec![v, Value::Int(3)]),
            3 => Predicate::Gt(p, v),
            4 => Predicate::Le(p, v),
            5 => Predicate::Prefix(p, "a".into()),
            6 => Predicate::Ne(p, v),
            _ => Predicate::Not(Box::new(Predicate::Exists(p))),
        }
    })
}

fn filter() -> impl Strategy<Value = Predicate> {
    prop_oneof![
        3 => prop::collection::vec(condition(), 1..4).prop_map(Predicate::And),
        1 => prop::collection::vec(condition(), 1..3).prop_map(Predicate::Or),
        1 => condition(),
    ]
}

fn indexes() -> Vec<IndexSpec> {
    let spec = |name: &str, fields: &[&str]| IndexSpec {
        name: name.into(),
        fields: fields.iter().map(|f| FieldPath::field(f)).collect(),
    };
    vec![spec("by_a", &["a"]), spec("by_b", &["b"]), spec("by_a_b", &["a", "b"]), spec("by_b_a", &["b", "a"])]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn planned_full_scan_and_reference_agree(
        initial in prop::collection::vec(document(), 0..40),
        rounds in prop::collection::vec((prop::collection::vec((0usize..50, prop::option::of(document())), 0..6), filter(), 0u8..3, prop::option::of(1usize..8)), 1..12),
        chosen in prop::collection::vec(any::<bool>(), 4),
    ) {
        let key = |i: usize| RecordKey::new(format!("k{i:02}")).unwrap();
        let mut records: BTreeMap<RecordKey, Document> = BTreeMap::new();
        let mut indexes: Vec<Index> = indexes().into_iter().zip(&chosen).filter(|(_, c)| **c).map(|(s, _)| Index::new(s)).collect();
        for (i, d) in initial.into_iter().enumerate() {
            for index in &mut indexes {
                index.update(&key(i), None, Some(&d));
            }
            records.insert(key(i), d);
        }
        for (changes, filter, sorted, limit) in rounds {
            for (i, new) in changes {
                let old = records.get(&key(i)).cloned();
                for index in &mut indexes {
                    index.update(&key(i), old.as_ref(), new.as_ref());
                }
                match new {
                    Some(d) => records.insert(key(i), d),
                    None => records.remove(&key(i)),
                };
            }
            let query = Query {
                filter: filter.clone(),
                order_by: match sorted {
                    0 => Vec::new(),
                    1 => vec![OrderBy::asc(FieldPath::field("a"))],
                    _ => vec![OrderBy::desc(FieldPath::field("a"))],
                },
                limit,
                ..Query::all(CollectionName::new("c").unwrap())
            };
            let scanned = query.run(records.iter().map(|(k, d)| (k, d.clone()))).rows;
            let chosen_plan = plan(&query, &indexes);
            let planned = execute(&query, &chosen_plan, &indexes, |k| records.get(k).cloned(), || {
                records.iter().map(|(k, d)| (k, d.clone())).collect()
            })
            .rows;
            prop_assert_eq!(&planned, &scanned, "plan {}", chosen_plan.explain());

            let mut reference: Vec<(String, Document)> = records
                .iter()
                .filter(|(_, d)| reference_matches(&filter, d))
                .map(|(k, d)| (k.to_string(), d.clone()))
                .collect();
            if sorted > 0 {
                reference.sort_by(|x, y| reference_order("a", sorted == 2, (&x.0, &x.1), (&y.0, &y.1)));
            }
            reference.truncate(limit.unwrap_or(usize::MAX));
            let got: Vec<(String, Document)> = scanned.iter().map(|r| (r.key.to_string(), r.document.clone())).collect();
            prop_assert_eq!(got, reference);
        }
    }
}

#[test]
fn the_planner_prefers_more_equality_fields_then_a_range_and_explains_itself() {
    let indexes: Vec<Index> = indexes().into_iter().map(Index::new).collect();
    let query = |filter: Predicate| Query { filter, ..Query::all(CollectionName::new("c").unwrap()) };
    let a = || FieldPath::field("a");
    let b = || FieldPath::field("b");
    let both = query(Predicate::And(vec![Predicate::Eq(a(), Value::Int(1)), Predicate::Eq(b(), Value::Int(2))]));
    assert_eq!(plan(&both, &indexes).explain(), "index by_a_b: 2 equality field(s)");
    let range = query(Predicate::And(vec![Predicate::Eq(b(), Value::Int(1)), Predicate::Gt(a(), Value::Int(2))]));
    assert_eq!(plan(&range, &indexes).explain(), "index by_b_a: 1 equality field(s) + range");
    let choices = query(Predicate::In(a(), vec![Value::Int(1), Value::Int(2)]));
    assert_eq!(plan(&choices, &indexes).explain(), "index by_a: 1 equality field(s) × 2 values");
    let unusable = query(Predicate::Or(vec![Predicate::Eq(a(), Value::Int(1)), Predicate::Eq(b(), Value::Int(1))]));
    assert_eq!(plan(&unusable, &indexes), Plan::FullScan);
    assert_eq!(plan(&both, &[]).explain(), "full scan");
    let top = Query { order_by: vec![OrderBy::desc(a())], limit: Some(10), ..query(unusable.filter.clone()) };
    assert_eq!(plan(&top, &indexes).explain(), "index by_a: walk in descending order, stop at the limit");
}
