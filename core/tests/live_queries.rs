//! Live queries against re-running the query: after every change of a random stream, the
//! events turn the caller's previous list into exactly the result of running the query
//! from scratch — with filters, several sort keys, offsets and limits (rows pushed out of
//! the top N and the next ones entering).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use weft_core::key::{CollectionName, RecordKey};
use weft_core::query::{FieldPath, LiveEvent, LiveQuery, Nulls, OrderBy, Predicate, Query, Row};
use weft_core::value::{Document, Value};

fn value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        (-4i64..4).prop_map(|i| Some(Value::Int(i))),
        "[a-c]{0,1}".prop_map(|s| Some(Value::String(s))),
    ]
}

fn document() -> impl Strategy<Value = Option<Document>> {
    prop_oneof![
        1 => Just(None),
        5 => (value(), value()).prop_map(|(a, b)| {
            let mut document = Document::new();
            if let Some(a) = a { document.insert("a".into(), a); }
            if let Some(b) = b { document.insert("b".into(), b); }
            Some(document)
        }),
    ]
}

fn query() -> impl Strategy<Value = Query> {
    let filter = prop_oneof![
        Just(Predicate::True),
        (-2i64..3).prop_map(|n| Predicate::Ge(FieldPath::field("a"), Value::Int(n))),
        Just(Predicate::Exists(FieldPath::field("b"))),
        Just(Predicate::Not(Box::new(Predicate::Eq(FieldPath::field("b"), Value::from("a"))))),
    ];
    let order = prop::collection::vec(
        (prop_oneof![Just("a"), Just("b")], any::<bool>(), prop_oneof![Just(None), Just(Some(Nulls::First))])
            .prop_map(|(f, descending, nulls)| OrderBy { path: FieldPath::field(f), descending, nulls }),
        0..3,
    );
    (filter, order, prop_oneof![Just(None), (0usize..6).prop_map(Some)], 0usize..4, any::<bool>()).prop_map(
        |(filter, order_by, limit, offset, project)| Query {
            filter,
            order_by,
            limit,
            offset,
            select: project.then(|| vec![FieldPath::field("a")]),
            ..Query::all(CollectionName::new("c").unwrap())
        },
    )
}

fn apply(list: &mut Vec<Row>, events: &[LiveEvent]) {
    for event in events {
        match event {
            LiveEvent::Added { row, index } => list.insert(*index, row.clone()),
            LiveEvent::Changed { row, old_index, new_index } => {
                list.remove(*old_index);
                list.insert(*new_index, row.clone());
            }
            LiveEvent::Removed { key, old_index } => {
                let removed = list.remove(*old_index);
                assert_eq!(&removed.key, key, "removed the wrong row");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, .. ProptestConfig::default() })]

    #[test]
    fn events_keep_the_callers_list_equal_to_rerunning_the_query(
        query in query(),
        initial in prop::collection::vec(document(), 0..12),
        changes in prop::collection::vec((0usize..16, document()), 1..40),
    ) {
        let key = |i: usize| RecordKey::new(format!("k{i:02}")).unwrap();
        let mut records: BTreeMap<RecordKey, Document> = BTreeMap::new();
        for (i, document) in initial.into_iter().enumerate() {
            if let Some(document) = document {
                records.insert(key(i), document);
            }
        }
        let rerun = |records: &BTreeMap<RecordKey, Document>| {
            query.run(records.iter().map(|(k, d)| (k, d.clone()))).rows
        };
        let (mut live, mut list) = LiveQuery::new(query.clone(), records.iter().map(|(k, d)| (k, d.clone())));
        prop_assert_eq!(&list, &rerun(&records));
        for (i, document) in changes {
            match &document {
                Some(document) => records.insert(key(i), document.clone()),
                None => records.remove(&key(i)),
            };
            let events = live.apply(&key(i), document.as_ref());
            prop_assert!(events.len() <= 3, "{} events for one change", events.len());
            apply(&mut list, &events);
            let expected = rerun(&records);
            prop_assert_eq!(&list, &expected, "after change to k{:02}: {:?}", i, events);
            prop_assert_eq!(&live.rows(), &expected);
        }
    }
}

#[test]
fn a_row_leaving_the_top_n_lets_the_next_one_in() {
    let doc = |n: i64| Document::from([("n".to_string(), Value::Int(n))]);
    let keys: Vec<RecordKey> = (0..5).map(|i| RecordKey::new(format!("k{i}")).unwrap()).collect();
    let query = Query {
        order_by: vec![OrderBy::desc(FieldPath::field("n"))],
        limit: Some(3),
        ..Query::all(CollectionName::new("scores").unwrap())
    };
    let (mut live, rows) = LiveQuery::new(query, keys.iter().zip((0..5).map(doc)));
    assert_eq!(rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(), ["k4", "k3", "k2"]);
    // k4 drops to the bottom: it leaves, k1 enters at the end.
    let events = live.apply(&keys[4], Some(&doc(-1)));
    assert_eq!(
        events,
        vec![
            LiveEvent::Removed { key: keys[4].clone(), old_index: 0 },
            LiveEvent::Added { row: Row { key: keys[1].clone(), document: doc(1) }, index: 2 },
        ]
    );
    // k1 rises to the top: one change event.
    let events = live.apply(&keys[1], Some(&doc(10)));
    assert_eq!(
        events,
        vec![LiveEvent::Changed { row: Row { key: keys[1].clone(), document: doc(10) }, old_index: 2, new_index: 0 }]
    );
}

mod aggregates {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use weft_core::key::{CollectionName, RecordKey};
    use weft_core::query::{
        Aggregate, AggregateEvent, AggregateFn, AggregateQuery, FieldPath, LiveAggregate, Predicate,
    };
    use weft_core::value::{Document, Value};

    fn document() -> impl Strategy<Value = Option<Document>> {
        let price = prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            (-5i64..20).prop_map(|n| Some(Value::Int(n))),
            Just(Some(Value::from("x")))
        ];
        prop_oneof![
            1 => Just(None),
            4 => (prop::option::of(0i64..3), price).prop_map(|(owner, price)| {
                let mut d = Document::new();
                if let Some(owner) = owner { d.insert("owner".into(), Value::Int(owner)); }
                if let Some(price) = price { d.insert("price".into(), price); }
                Some(d)
            }),
        ]
    }

    fn query(grouped: bool, filtered: bool) -> AggregateQuery {
        let p = |f: &str| FieldPath::field(f);
        let aggregate = |function, name: &str| Aggregate { function, name: name.into() };
        AggregateQuery {
            collection: CollectionName::new("orders").unwrap(),
            filter: if filtered { Predicate::Ne(p("owner"), Value::Int(2)) } else { Predicate::True },
            group_by: if grouped { vec![p("owner")] } else { Vec::new() },
            aggregates: vec![
                aggregate(AggregateFn::Count, "count"),
                aggregate(AggregateFn::CountField(p("price")), "priced"),
                aggregate(AggregateFn::Sum(p("price")), "sum"),
                aggregate(AggregateFn::Min(p("price")), "min"),
                aggregate(AggregateFn::Max(p("price")), "max"),
                aggregate(AggregateFn::Avg(p("price")), "avg"),
            ],
            order_by: Vec::new(),
            limit: None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

        #[test]
        fn live_aggregates_equal_recomputing_after_every_change(
            grouped in any::<bool>(),
            filtered in any::<bool>(),
            changes in prop::collection::vec((0usize..12, document()), 1..60),
        ) {
            let query = query(grouped, filtered);
            let key = |i: usize| RecordKey::new(format!("k{i:02}")).unwrap();
            let mut records: BTreeMap<RecordKey, Document> = BTreeMap::new();
            let mut live = LiveAggregate::new(query.clone(), std::iter::empty());
            // The caller's view, kept by applying events: group fields → row.
            let group_of = |row: &Document| row.get("owner").cloned().unwrap_or(Value::Null);
            let mut view: BTreeMap<String, Document> =
                live.rows().into_iter().map(|row| (format!("{:?}", group_of(&row)), row)).collect();
            for (i, document) in changes {
                match &document {
                    Some(d) => records.insert(key(i), d.clone()),
                    None => records.remove(&key(i)),
                };
                for event in live.apply(&key(i), document.as_ref()) {
                    match event {
                        AggregateEvent::Added(row) | AggregateEvent::Changed(row) => {
                            view.insert(format!("{:?}", group_of(&row)), row);
                        }
                        AggregateEvent::Removed(fields) => {
                            let group = format!("{:?}", group_of(&fields));
                            prop_assert!(view.remove(&group).is_some(), "removed a group not shown: {}", group);
                        }
                    }
                }
                let expected = query.run(records.iter().map(|(k, d)| (k, d.clone())));
                prop_assert_eq!(&live.rows(), &expected);
                let expected_view: BTreeMap<String, Document> =
                    expected.iter().map(|row| (format!("{:?}", group_of(row)), row.clone())).collect();
                prop_assert_eq!(&view, &expected_view);
            }
        }
    }
}

mod on_a_replica {
    use proptest::prelude::*;
    use weft_core::hlc::{ManualClock, NodeId};
    use weft_core::key::{CollectionName, RecordKey};
    use weft_core::query::{FieldPath, OrderBy, Predicate, Query, Row};
    use weft_core::replica::{LiveQueryId, Replica};
    use weft_core::value::{Document, Value};

    #[derive(Clone, Debug)]
    enum Op {
        LocalPut(usize, i64),
        LocalDelete(usize),
        RemotePut(usize, i64),
        RemoteBatch(Vec<(usize, i64)>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0usize..10, -3i64..6).prop_map(|(i, n)| Op::LocalPut(i, n)),
            (0usize..10).prop_map(Op::LocalDelete),
            (0usize..10, -3i64..6).prop_map(|(i, n)| Op::RemotePut(i, n)),
            prop::collection::vec((0usize..10, -3i64..6), 1..4).prop_map(Op::RemoteBatch),
        ]
    }

    fn apply(list: &mut Vec<Row>, event: &weft_core::query::LiveEvent) {
        use weft_core::query::LiveEvent;
        match event {
            LiveEvent::Added { row, index } => list.insert(*index, row.clone()),
            LiveEvent::Changed { row, old_index, new_index } => {
                list.remove(*old_index);
                list.insert(*new_index, row.clone());
            }
            LiveEvent::Removed { old_index, .. } => {
                list.remove(*old_index);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

        #[test]
        fn local_writes_and_synced_changes_both_drive_live_queries(ops in prop::collection::vec(op(), 1..40)) {
            let todos = CollectionName::new("todos").unwrap();
            let clock = ManualClock::new(1_700_000_000_000);
            let mut replica = Replica::new(NodeId(1), clock.clone());
            let mut peer = Replica::new(NodeId(2), clock.clone());
            let key = |i: usize| RecordKey::new(format!("k{i}")).unwrap();
            let doc = |n: i64| Document::from([("n".to_string(), Value::Int(n))]);
            let queries = [
                Query { filter: Predicate::Ge(FieldPath::field("n"), Value::Int(0)), order_by: vec![OrderBy::desc(FieldPath::field("n"))], limit: Some(3), ..Query::all(todos.clone()) },
                Query::all(todos.clone()),
            ];
            let mut watched: Vec<(LiveQueryId, Vec<Row>, Query)> = queries
                .iter()
                .map(|q| {
                    let (id, rows) = replica.watch(q.clone());
                    (id, rows, q.clone())
                })
                .collect();
            for op in ops {
                clock.advance(1);
                match op {
                    Op::LocalPut(i, n) => { replica.put(&todos, &key(i), doc(n)).unwrap(); }
                    Op::LocalDelete(i) => { replica.delete(&todos, &key(i)); }
                    Op::RemotePut(i, n) => {
                        peer.put(&todos, &key(i), doc(n)).unwrap();
                        let change = peer.outbox().unacknowledged().last().cloned().unwrap();
                        replica.apply_remote(change).unwrap();
                    }
                    Op::RemoteBatch(writes) => {
                        let before = peer.outbox().len();
                        for (i, n) in writes {
                            peer.put(&todos, &key(i), doc(n)).unwrap();
                        }
                        let batch: Vec<_> = peer.outbox().unacknowledged().skip(before).cloned().collect();
                        replica.apply_remote_batch(batch).unwrap();
                    }
                }
                for (id, event) in replica.take_live_events() {
                    let (_, list, _) = watched.iter_mut().find(|(w, _, _)| *w == id).unwrap();
                    apply(list, &event);
                }
                for (id, list, query) in &watched {
                    let expected = query.run_on(replica.collection(&todos).unwrap()).rows;
                    prop_assert_eq!(list, &expected);
                    prop_assert_eq!(&replica.live_rows(*id).unwrap(), &expected);
                }
            }
        }
    }
}
