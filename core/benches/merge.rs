//! Merge throughput: 1M remote LWW field writes (100k keys, 10 fields, conflicting HLCs)
//! applied to a weft replica, and the same op stream applied to a yrs map of maps and an
//! automerge map of maps in the same run.
//!
//! Run: `cargo bench -p weft-core --bench merge`
//!
//! Fairness notes: weft applies *remote* changes (drift check, clock receive rule, merge,
//! version hash, merkle update). yrs and automerge apply the same writes as *local* edits
//! (no decoding or integration of remote updates, nested-map handles cached), in
//! transactions of 1,000 writes — cheaper than their remote path, so the ratios reported
//! understate weft's advantage rather than overstate it.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and benchmarks fail loudly on bad setup")]
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ObjId, ObjType, ROOT};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use weft_core::change::Change;
use weft_core::hlc::{ManualClock, NodeId};
use weft_core::key::CollectionName;
use weft_core::replica::Replica;
use yrs::{Doc, Map, MapPrelim, MapRef, Transact};

#[path = "common/workload.rs"]
mod workload;

const N_OPS: usize = 1_000_000;
const N_KEYS: usize = 100_000;
const N_FIELDS: usize = 10;
const TXN_OPS: usize = 1_000;
/// Changes per pushed or pulled frame, as they arrive over the wire.
const BATCH: usize = 1_000;
/// automerge takes about a minute per 1M writes here, so it runs the first 100k writes of
/// the same stream (criterion needs 10 samples); per-write cost is what is compared.
const AUTOMERGE_OPS: usize = 100_000;

fn merge(c: &mut Criterion) {
    let collection = CollectionName::new("items").unwrap();
    let writes = workload::field_writes(N_OPS, N_KEYS, N_FIELDS);
    let changes = workload::to_changes(&writes, &collection);
    let keys: Vec<String> = (0..N_KEYS).map(workload::key_name).collect();
    let fields: Vec<String> = (0..N_FIELDS).map(workload::field_name).collect();
    let latest = writes.iter().map(|w| w.hlc.wall_ms).max().unwrap_or(workload::T0);

    let mut group = c.benchmark_group("merge_1M_lww_changes");
    group.throughput(Throughput::Elements(N_OPS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.warm_up_time(Duration::from_secs(1));

    // Changes arrive in frames of BATCH and are applied right after decoding, while
    // their memory is still in cache: each batch is cloned (untimed) just before it is
    // applied (timed), instead of building all 1M changes up front.
    let batches: Vec<&[Change]> = changes.chunks(BATCH).collect();
    let run_weft = |batches: &[&[Change]], iterations: u64, batched: bool| {
        let mut total = Duration::ZERO;
        for _ in 0..iterations {
            let mut replica = Replica::new(NodeId(999), ManualClock::new(latest));
            for batch in batches {
                let batch = batch.to_vec();
                let started = Instant::now();
                if batched {
                    replica.apply_remote_batch(batch).unwrap();
                } else {
                    for change in batch {
                        replica.apply_remote(change).unwrap();
                    }
                }
                total += started.elapsed();
            }
            black_box(&replica);
        }
        total
    };
    group.bench_function("weft_batches_of_1000", |b| b.iter_custom(|iterations| run_weft(&batches, iterations, true)));
    group.bench_function("weft_one_by_one", |b| b.iter_custom(|iterations| run_weft(&batches, iterations, false)));
    group.finish();

    // The same stream over 1,000 keys: the records stay in cache, which shows the cost of
    // the merge itself, apart from memory latency.
    let mut group = c.benchmark_group("merge_1M_lww_changes_1k_keys");
    group.throughput(Throughput::Elements(N_OPS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.warm_up_time(Duration::from_secs(1));
    let small = workload::to_changes(&workload::field_writes(N_OPS, 1_000, N_FIELDS), &collection);
    let small_batches: Vec<&[Change]> = small.chunks(BATCH).collect();
    group.bench_function("weft_batches_of_1000", |b| {
        b.iter_custom(|iterations| run_weft(&small_batches, iterations, true))
    });
    group.finish();

    let mut group = c.benchmark_group("merge_1M_lww_changes");
    group.throughput(Throughput::Elements(N_OPS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.warm_up_time(Duration::from_secs(1));

    group.bench_function("yrs", |b| {
        b.iter_batched(
            Doc::new,
            |doc| {
                let root = doc.get_or_insert_map("items");
                let mut nested: Vec<Option<MapRef>> = vec![None; N_KEYS];
                for chunk in writes.chunks(TXN_OPS) {
                    let mut txn = doc.transact_mut();
                    for w in chunk {
                        let map = nested[w.key]
                            .get_or_insert_with(|| root.insert(&mut txn, keys[w.key].as_str(), MapPrelim::default()));
                        map.insert(&mut txn, fields[w.field].as_str(), w.value);
                    }
                }
                doc
            },
            BatchSize::PerIteration,
        )
    });

    group.finish();

    let mut group = c.benchmark_group("merge_100k_lww_changes");
    group.throughput(Throughput::Elements(AUTOMERGE_OPS as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.warm_up_time(Duration::from_secs(1));
    let writes = &writes[..AUTOMERGE_OPS];
    group.bench_function("automerge", |b| {
        b.iter_batched(
            AutoCommit::new,
            |mut doc| {
                let mut nested: Vec<Option<ObjId>> = vec![None; N_KEYS];
                for chunk in writes.chunks(TXN_OPS) {
                    for w in chunk {
                        let object = match &nested[w.key] {
                            Some(object) => object.clone(),
                            None => {
                                let object = doc.put_object(ROOT, keys[w.key].as_str(), ObjType::Map).unwrap();
                                nested[w.key] = Some(object.clone());
                                object
                            }
                        };
                        doc.put(&object, fields[w.field].as_str(), w.value).unwrap();
                    }
                    doc.commit();
                }
                doc
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, merge);
criterion_main!(benches);
