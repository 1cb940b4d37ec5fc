//! The query model: operator semantics across types, ordering with nulls, keyset and
//! offset pagination agreeing with the full result, projections, and the JSON form.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use weft_core::hlc::{ManualClock, NodeId};
use weft_core::key::{CollectionName, RecordKey};
use weft_core::query::{FieldPath, Nulls, OrderBy, Predicate, Query, cmp_rows};
use weft_core::replica::Replica;
use weft_core::value::{Document, Value};

fn todos() -> CollectionName {
    CollectionName::new("todos").unwrap()
}

fn p(text: &str) -> FieldPath {
    FieldPath::parse(text).unwrap()
}

fn value_strategy() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        any::<bool>().prop_map(|b| Some(Value::Bool(b))),
        (-5i64..5).prop_map(|i| Some(Value::Int(i))),
        (-5i64..5).prop_map(|i| Some(Value::Float(i as f64 / 2.0))),
        "[a-c]{0,2}".prop_map(|s| Some(Value::String(s))),
    ]
}

fn documents() -> impl Strategy<Value = Vec<(String, Document)>> {
    prop::collection::vec((value_strategy(), value_strategy()), 0..40).prop_map(|rows| {
        rows.into_iter()
            .enumerate()
            .map(|(i, (a, b))| {
                let mut document = Document::new();
                if let Some(a) = a {
                    document.insert("a".into(), a);
                }
                if let Some(b) = b {
                    document.insert("b".into(), b);
                }
                (format!("k{i:02}"), document)
            })
            .collect()
    })
}

fn predicate_strategy() -> impl Strategy<Value = Predicate> {
    let leaf = (prop_oneof![Just("a"), Just("b")], value_strategy(), 0u8..9).prop_map(|(field, value, op)| {
        let path = FieldPath::field(field);
        let value = value.unwrap_or(Value::Null);
        match op {
            0 => Predicate::Eq(path, value),
            1 => Predicate::Ne(path, value),
            2 => Predicate::Lt(path, value),
            3 => Predicate::Le(path, value),
            4 => Predicate::Gt(path, value),
            5 => Predicate::Ge(path, value),
            6 => Predicate::In(path, vec![value, Value::Int(1)]),
            7 => Predicate::Exists(path),
            _ => Predicate::Prefix(path, "a".into()),
        }
    });
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Predicate::And),
            prop::collection::vec(inner.clone(), 0..3).prop_map(Predicate::Or),
            inner.prop_map(|p| Predicate::Not(Box::new(p))),
        ]
    })
}

fn order_strategy() -> impl Strategy<Value = Vec<OrderBy>> {
    prop::collection::vec(
        (
            prop_oneof![Just("a"), Just("b")],
            any::<bool>(),
            prop_oneof![Just(None), Just(Some(Nulls::First)), Just(Some(Nulls::Last))],
        )
            .prop_map(|(field, descending, nulls)| OrderBy {
                path: FieldPath::field(field),
                descending,
                nulls,
            }),
        0..3,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn pages_by_keyset_and_by_offset_rebuild_the_full_ordered_result(
        rows in documents(),
        filter in predicate_strategy(),
        order_by in order_strategy(),
        page in 1usize..7,
    ) {
        let keys: Vec<RecordKey> = rows.iter().map(|(k, _)| RecordKey::new(k.as_str()).unwrap()).collect();
        let source = || keys.iter().zip(rows.iter().map(|(_, d)| d.clone()));
        let mut query = Query { filter: filter.clone(), order_by: order_by.clone(), ..Query::all(todos()) };
        let full = query.run(source()).rows;

        // Exactly the matching rows, each once, in order.
        let expected = rows.iter().filter(|(_, d)| filter.matches(d)).count();
        prop_assert_eq!(full.len(), expected);
        for pair in full.windows(2) {
            let ordering = cmp_rows(&order_by, (&pair[0].key, &pair[0].document), (&pair[1].key, &pair[1].document));
            prop_assert_eq!(ordering, std::cmp::Ordering::Less);
        }

        query.limit = Some(page);
        let mut by_keyset = Vec::new();
        loop {
            let result = query.run(source());
            by_keyset.extend(result.rows);
            match result.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        prop_assert_eq!(&by_keyset, &full);

        query.after = None;
        let mut by_offset = Vec::new();
        for offset in (0..=full.len()).step_by(page) {
            query.offset = offset;
            by_offset.extend(query.run(source()).rows);
        }
        prop_assert_eq!(&by_offset, &full);
    }
}

#[test]
fn nulls_and_missing_sort_last_ascending_first_descending_unless_told() {
    let rows = [("k1", Some(Value::Int(2))), ("k2", None), ("k3", Some(Value::Null)), ("k4", Some(Value::Int(1)))];
    let keys: Vec<RecordKey> = rows.iter().map(|(k, _)| RecordKey::new(*k).unwrap()).collect();
    let documents: Vec<Document> = rows
        .iter()
        .map(|(_, v)| v.clone().map(|v| Document::from([("n".to_string(), v)])).unwrap_or_default())
        .collect();
    let order = |order: OrderBy| {
        let query = Query { order_by: vec![order], ..Query::all(todos()) };
        query
            .run(keys.iter().zip(documents.iter().cloned()))
            .rows
            .into_iter()
            .map(|r| r.key.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(order(OrderBy::asc(p("n"))), ["k4", "k1", "k2", "k3"]);
    assert_eq!(order(OrderBy::desc(p("n"))), ["k2", "k3", "k1", "k4"]);
    assert_eq!(order(OrderBy { path: p("n"), descending: false, nulls: Some(Nulls::First) }), ["k2", "k3", "k4", "k1"]);
}

#[test]
fn queries_run_on_a_replica_see_only_visible_records_and_project_nested_fields() {
    let mut replica = Replica::new(NodeId(1), ManualClock::new(1_700_000_000_000));
    for (id, title, city, done) in
        [("t1", "milk", "Lyon", false), ("t2", "eggs", "Paris", true), ("t3", "tea", "Lyon", false)]
    {
        let address = Value::Object(Document::from([("city".to_string(), Value::from(city))]));
        let document = Document::from([
            ("title".to_string(), Value::from(title)),
            ("done".to_string(), Value::Bool(done)),
            ("address".to_string(), address),
        ]);
        replica.put(&todos(), &RecordKey::new(id).unwrap(), document).unwrap();
    }
    replica.delete(&todos(), &RecordKey::new("t3").unwrap());
    let query = Query::from_json(&serde_json::json!({
        "collection": "todos",
        "where": {"eq": {"address.city": "Lyon"}},
        "select": ["title", "address.city"],
    }))
    .unwrap();
    let rows = query.run_on(replica.collection(&todos()).unwrap()).rows;
    assert_eq!(rows.len(), 1, "t3 is deleted");
    assert_eq!(rows[0].key.as_str(), "t1");
    let expected = Document::from([
        ("title".to_string(), Value::from("milk")),
        ("address".to_string(), Value::Object(Document::from([("city".to_string(), Value::from("Lyon"))]))),
    ]);
    assert_eq!(rows[0].document, expected);
}

#[test]
fn the_json_form_reads_every_operator_and_names_what_is_wrong() {
    let query = Query::from_json(&serde_json::json!({
        "collection": "todos",
        "where": {"and": [
            {"eq": {"done": false}}, {"ne": {"owner": "x"}}, {"lt": {"n": 1}}, {"le": {"n": 2}},
            {"gt": {"n": 0}}, {"ge": {"n": 0}}, {"in": {"tag": ["a", "b"]}}, {"prefix": {"title": "bu"}},
            {"contains": {"tags": "x"}}, {"exists": "note"}, {"not": {"or": [{"eq": {"a.b": 1}}]}}
        ]},
        "order_by": ["-created", {"field": "title", "nulls": "first"}],
        "limit": 20, "offset": 5,
        "after": {"values": [10, "t"], "key": "k9"},
        "select": ["title"]
    }))
    .unwrap();
    let Predicate::And(items) = &query.filter else { panic!("{:?}", query.filter) };
    assert_eq!(items.len(), 11);
    assert_eq!(items[10], Predicate::Not(Box::new(Predicate::Or(vec![Predicate::Eq(p("a.b"), Value::Int(1))]))));
    assert_eq!(query.order_by[0], OrderBy::desc(p("created")));
    assert_eq!(query.order_by[1].nulls, Some(Nulls::First));
    assert_eq!((query.limit, query.offset), (Some(20), 5));
    assert_eq!(query.after.as_ref().unwrap().key.as_str(), "k9");

    let refused = [
        (serde_json::json!({"where": {}}), "query collection: missing"),
        (serde_json::json!({"collection": "todos", "where": {"between": {"n": 1}}}), "unknown operator \"between\""),
        (serde_json::json!({"collection": "todos", "where": {"and": [{"eq": {"a": 1, "b": 2}}]}}), "where.and[0].eq"),
        (serde_json::json!({"collection": "todos", "where": {"eq": {"a..b": 1}}}), "empty segment"),
        (serde_json::json!({"collection": "todos", "limit": -1}), "query limit"),
        (serde_json::json!({"collection": "todos", "order_by": [{"field": "a", "nulls": "middle"}]}), "order_by[0]"),
        (serde_json::json!({"collection": "todos", "sort": "a"}), "query sort: unknown key"),
    ];
    for (json, expected) in refused {
        let message = Query::from_json(&json).unwrap_err().to_string();
        assert!(message.contains(expected), "{json}: {message}");
    }
    let mut deep = serde_json::json!({"exists": "a"});
    for _ in 0..40 {
        deep = serde_json::json!({"not": deep});
    }
    let message = Query::from_json(&serde_json::json!({"collection": "todos", "where": deep})).unwrap_err().to_string();
    assert!(message.contains("nested deeper"), "{message}");
}

proptest! {
    /// `run_on` ranks sorted pages on the sort fields alone and builds only the page's
    /// documents: it must agree with the reference evaluation row for row.
    #[test]
    fn sorted_pages_on_a_replica_agree_with_the_reference(
        docs in documents(),
        descending in any::<bool>(),
        nulls in prop_oneof![Just(None), Just(Some(Nulls::First)), Just(Some(Nulls::Last))],
        limit in 0usize..12,
        offset in 0usize..4,
        project in any::<bool>(),
    ) {
        let mut replica = Replica::new(NodeId(1), ManualClock::new(1_700_000_000_000));
        for (key, document) in &docs {
            replica.put(&todos(), &RecordKey::new(key).unwrap(), document.clone()).unwrap();
        }
        let Some(collection) = replica.collection(&todos()) else { return Ok(()) };
        let mut query = Query::all(todos());
        query.order_by = vec![OrderBy { path: p("a"), descending, nulls }, OrderBy::asc(p("b"))];
        query.limit = Some(limit);
        query.offset = offset;
        query.select = project.then(|| vec![p("b")]);
        let documents: Vec<(RecordKey, Document)> =
            docs.iter().map(|(k, d)| (RecordKey::new(k).unwrap(), d.clone())).collect();
        let expected = query.run(documents.iter().map(|(k, d)| (k, d.clone())));
        let actual = query.run_on(collection);
        prop_assert_eq!(actual.rows, expected.rows);
        prop_assert_eq!(actual.next, expected.next);
    }
}
