//! Merkle index: update cost per change (criterion), and a reconciliation report for two
//! replicas of 1M keys differing in d ∈ {1, 10, 100, 1,000, 10,000} keys: messages,
//! round trips, and bytes exchanged beyond the differing records themselves.
//!
//! Run: `cargo bench -p weft-core --bench merkle` (the report prints first; set
//! `WEFT_MERKLE_KEYS` to change the store size, e.g. to check that overhead does not grow
//! with it).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and benchmarks fail loudly on bad setup")]
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

use std::time::Instant;

use criterion::{Criterion, Throughput};
use weft_core::change::Change;
use weft_core::codec::Writer;
use weft_core::crdt::{VersionHash, ops};
use weft_core::hlc::{Hlc, NodeId};
use weft_core::key::{CollectionName, KeyHash, RecordKey};
use weft_core::merkle::{MerkleIndex, ReconcileStep, respond};
use weft_core::protocol::{ClientMessage, ServerMessage, SessionId};
use weft_core::replica::Collection;
use weft_core::value::{Document, Value};

#[path = "common/workload.rs"]
mod workload;

fn store(n_keys: usize, collection: &CollectionName) -> Collection {
    let mut store = Collection::new(collection.clone());
    let hlc = Hlc::new(workload::T0, 0, NodeId(1));
    for i in 0..n_keys {
        let document = Document::from([
            ("title".to_string(), Value::from(format!("item {i}"))),
            ("n".to_string(), Value::Int(i as i64)),
        ]);
        store.apply(RecordKey::new(workload::key_name(i)).unwrap(), ops::put(None, document, hlc));
    }
    store
}

/// Makes `d` keys differ: a third updated on A, a third updated on B, a third new on B.
fn diverge(a: &mut Collection, b: &mut Collection, n_keys: usize, d: usize) {
    let mut rng = workload::Rng::new(d as u64);
    for j in 0..d {
        let hlc = Hlc::new(workload::T0 + 1 + j as u64, 0, NodeId(2));
        let document = Document::from([("n".to_string(), Value::Int(-(j as i64)))]);
        match j % 3 {
            0 => a.apply(
                RecordKey::new(workload::key_name(rng.below(n_keys as u64) as usize)).unwrap(),
                ops::update(None, document, hlc),
            ),
            1 => b.apply(
                RecordKey::new(workload::key_name(rng.below(n_keys as u64) as usize)).unwrap(),
                ops::update(None, document, hlc),
            ),
            _ => b.apply(RecordKey::new(format!("new-{j}")).unwrap(), ops::put(None, document, hlc)),
        };
    }
}

struct Exchange {
    exchanges: usize,
    messages: usize,
    total_bytes: usize,
    record_bytes: usize,
    records: usize,
}

fn record_bytes(records: &[Change]) -> usize {
    records
        .iter()
        .map(|r| {
            let mut writer = Writer::new();
            r.encode(&mut writer);
            writer.len()
        })
        .sum()
}

/// A starts; steps alternate; each step is measured as the protocol frame carrying it.
/// Exchanges repeat while steps were truncated (bounded step sizes).
fn reconcile(a: &mut Collection, b: &mut Collection, collection: &CollectionName) -> Exchange {
    let mut exchange = Exchange { messages: 0, total_bytes: 0, record_bytes: 0, records: 0, exchanges: 0 };
    loop {
        exchange.exchanges += 1;
        let mut step = ReconcileStep::start(a.merkle());
        let mut from_a = true;
        let mut truncated = false;
        loop {
            let frame = if from_a {
                ClientMessage::Reconcile {
                    session_id: SessionId(1),
                    collection: collection.clone(),
                    step: step.clone(),
                }
                .encode()
            } else {
                ServerMessage::Reconcile {
                    session_id: SessionId(1),
                    collection: collection.clone(),
                    step: step.clone(),
                }
                .encode()
            };
            exchange.messages += 1;
            exchange.total_bytes += frame.len();
            exchange.record_bytes += record_bytes(&step.records);
            exchange.records += step.records.len();
            truncated |= step.truncated;
            let receiver = if from_a { &mut *b } else { &mut *a };
            let asks_nothing = step.asks_nothing();
            for record in std::mem::take(&mut step.records) {
                receiver.apply(record.key, record.state);
            }
            if asks_nothing {
                break;
            }
            step = respond(receiver.merkle(), &step, &*receiver).unwrap();
            from_a = !from_a;
        }
        if !truncated {
            return exchange;
        }
    }
}

fn reconciliation_report() {
    let n_keys: usize = std::env::var("WEFT_MERKLE_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let collection = CollectionName::new("items").unwrap();
    let started = Instant::now();
    let base = store(n_keys, &collection);
    println!("built a store of {n_keys} keys in {:.1} s", started.elapsed().as_secs_f64());
    println!();
    println!(
        "| d (differing keys) | exchanges | messages | round trips | records sent | record bytes | overhead bytes | overhead KiB | time ms |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for d in [1usize, 10, 100, 1_000, 10_000] {
        let mut a = base.clone();
        let mut b = base.clone();
        diverge(&mut a, &mut b, n_keys, d);
        let started = Instant::now();
        let exchange = reconcile(&mut a, &mut b, &collection);
        let elapsed = started.elapsed();
        assert_eq!(a.merkle().root(), b.merkle().root(), "replicas did not converge");
        let overhead = exchange.total_bytes - exchange.record_bytes;
        println!(
            "| {d} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
            exchange.exchanges,
            exchange.messages,
            exchange.messages.div_ceil(2),
            exchange.records,
            exchange.record_bytes,
            overhead,
            overhead as f64 / 1024.0,
            elapsed.as_secs_f64() * 1e3,
        );
    }
    println!();
}

fn merkle_update(c: &mut Criterion) {
    const N: usize = 1_000_000;
    let mut index = MerkleIndex::new();
    let keys: Vec<(KeyHash, RecordKey)> = (0..N)
        .map(|i| {
            let key = RecordKey::new(workload::key_name(i)).unwrap();
            (key.hash(), key)
        })
        .collect();
    for (i, (hash, key)) in keys.iter().enumerate() {
        index.set(*hash, key, Some(VersionHash(i as u128 * 0x9e37_79b9_7f4a_7c15)));
    }
    let mut rng = workload::Rng::new(3);
    let mut group = c.benchmark_group("merkle");
    group.throughput(Throughput::Elements(1));
    group.bench_function("update_one_key_of_1M", |b| {
        b.iter(|| {
            let (hash, key) = &keys[rng.below(N as u64) as usize];
            index.set(*hash, key, Some(VersionHash(rng.next() as u128)));
        })
    });
    group.bench_function("key_hash_blake3", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % N;
            keys[i].1.hash()
        })
    });
    group.finish();
}

fn main() {
    reconciliation_report();
    let mut criterion = Criterion::default().configure_from_args();
    merkle_update(&mut criterion);
    criterion.final_summary();
}
