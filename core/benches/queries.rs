//! Query evaluation: a full-scan filter of 1M records, a point lookup and index-planned
//! equality and range queries over the same records, and the cost of keeping live
//! queries up to date — one change applied to an affected ordered, limited live query
//! over 100k records, and one change offered to 1,000 live queries of which one is
//! affected.
//!
//! Run: `cargo bench -p weft-core --bench queries` (`WEFT_SCAN_RECORDS` changes the 1M).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and benchmarks fail loudly on bad setup")]
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use weft_core::crdt::ops;
use weft_core::hlc::{Hlc, NodeId};
use weft_core::key::{CollectionName, RecordKey};
use weft_core::query::{FieldPath, Index, IndexSpec, LiveQuery, OrderBy, Predicate, Query, execute, plan};
use weft_core::replica::Collection;
use weft_core::value::{Document, Value};

fn document(i: u64) -> Document {
    Document::from([
        ("owner".to_string(), Value::Int((i % 1_000) as i64)),
        ("n".to_string(), Value::Int(((i * 7_919) % 100_003) as i64)),
        ("done".to_string(), Value::Bool(i % 3 == 0)),
        ("title".to_string(), Value::String(format!("task number {i}"))),
    ])
}

fn records(count: u64) -> Vec<(RecordKey, Document)> {
    (0..count).map(|i| (RecordKey::new(format!("r{i:08}")).unwrap(), document(i))).collect()
}

fn collection() -> CollectionName {
    CollectionName::new("tasks").unwrap()
}

fn full_scan(c: &mut Criterion) {
    let count = std::env::var("WEFT_SCAN_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let data = records(count);
    let query = Query {
        filter: Predicate::And(vec![
            Predicate::Eq(FieldPath::field("done"), Value::Bool(false)),
            Predicate::Lt(FieldPath::field("n"), Value::Int(1_000)),
        ]),
        ..Query::all(collection())
    };
    let matches = data.iter().filter(|(_, d)| query.filter.matches(d)).count();
    println!("full scan over {count} records, {matches} match");
    let mut group = c.benchmark_group("query");
    group.sample_size(10);
    group.bench_function(format!("full_scan_filter_{count}_documents"), |b| {
        b.iter(|| data.iter().filter(|(_, document)| query.filter.matches(document)).count())
    });
    // The same records as a replica holds them (CRDT states), filtered in place.
    let mut replica_collection = Collection::new(collection());
    for (i, (key, document)) in data.iter().enumerate() {
        let hlc = Hlc::new(1_700_000_000_000 + i as u64, 0, NodeId(1));
        replica_collection.apply(key.clone(), ops::put(None, document.clone(), hlc));
    }
    let states =
        replica_collection.iter().filter(|(_, state)| state.is_visible() && query.filter.matches_in(*state)).count();
    assert_eq!(states, matches);
    group.bench_function(format!("full_scan_filter_{count}_record_states"), |b| {
        b.iter(|| {
            replica_collection.iter().filter(|(_, state)| state.is_visible() && query.filter.matches_in(*state)).count()
        })
    });

    // Point lookups and index-planned queries over the same records.
    let by_key: std::collections::HashMap<RecordKey, Document> = data.iter().cloned().collect();
    let mut indexes = vec![
        Index::new(IndexSpec { name: "by_owner".into(), fields: vec![FieldPath::field("owner")] }),
        Index::new(IndexSpec { name: "by_n".into(), fields: vec![FieldPath::field("n")] }),
    ];
    for (key, document) in &data {
        for index in &mut indexes {
            index.update(key, None, Some(document));
        }
    }
    let keys: Vec<&RecordKey> = data.iter().map(|(k, _)| k).step_by(9_973).collect();
    let mut next = 0;
    group.sample_size(50);
    group.bench_function("point_lookup", |b| {
        b.iter(|| {
            next = (next + 1) % keys.len();
            by_key.get(keys[next]).map(|d| d.len())
        })
    });
    let equality =
        Query { filter: Predicate::Eq(FieldPath::field("owner"), Value::Int(7)), ..Query::all(collection()) };
    let range = Query {
        filter: Predicate::And(vec![
            Predicate::Ge(FieldPath::field("n"), Value::Int(1_000)),
            Predicate::Lt(FieldPath::field("n"), Value::Int(1_100)),
        ]),
        ..Query::all(collection())
    };
    for (name, query) in [("indexed_equality_1000_rows", &equality), ("indexed_range_1000_rows", &range)] {
        let chosen = plan(query, &indexes);
        let rows = execute(query, &chosen, &indexes, |k| by_key.get(k).cloned(), Vec::new).rows.len();
        println!("{name}: {} → {rows} rows", chosen.explain());
        group.bench_function(name, |b| {
            b.iter(|| execute(query, &chosen, &indexes, |k| by_key.get(k).cloned(), Vec::new).rows.len())
        });
    }
    group.finish();
}

fn live(c: &mut Criterion) {
    let data = records(100_000);
    let top =
        Query { order_by: vec![OrderBy::desc(FieldPath::field("n"))], limit: Some(20), ..Query::all(collection()) };
    let (live, _) = LiveQuery::new(top, data.iter().map(|(k, d)| (k, d.clone())));
    let mut group = c.benchmark_group("live_query");
    // The changes are made before timing: the figure is the live query's work alone.
    let changes: Vec<(&RecordKey, Document)> =
        (1..=1_000u64).map(|i| (&data[(i * 48_271 % 100_000) as usize].0, document(i * 31))).collect();
    group.bench_function("one_change_ordered_limit_20_over_100k", |b| {
        b.iter_batched_ref(
            || live.clone(),
            |live| {
                for (key, document) in &changes {
                    let _ = live.apply(key, Some(document));
                }
            },
            BatchSize::LargeInput,
        )
    });

    // 1,000 live queries, one per owner; each change matches one of them.
    let mut queries: Vec<LiveQuery> = (0..1_000)
        .map(|owner| {
            let query = Query {
                filter: Predicate::Eq(FieldPath::field("owner"), Value::Int(owner)),
                order_by: vec![OrderBy::desc(FieldPath::field("n"))],
                limit: Some(20),
                ..Query::all(collection())
            };
            LiveQuery::new(query, data.iter().map(|(k, d)| (k, d.clone()))).0
        })
        .collect();
    let mut j = 0u64;
    group.bench_function("one_change_offered_to_1000_queries", |b| {
        b.iter(|| {
            j += 1;
            let (key, old) = &data[(j * 48_271 % 100_000) as usize];
            let mut new = old.clone();
            new.insert("n".to_string(), Value::Int((j % 100_003) as i64));
            for query in &mut queries {
                // A change can only affect queries whose filter matches the old or the
                // new document (the dispatcher's test).
                if query.query().filter.matches(old) || query.query().filter.matches(&new) {
                    let _ = query.apply(key, Some(&new));
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, full_scan, live);
criterion_main!(benches);
