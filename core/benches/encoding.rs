//! MessagePack encode and decode speed of a push frame holding 1,000 typical changes
//! (an `update` of a string, a bool and an int field).
//!
//! Run: `cargo bench -p weft-core --bench encoding`

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and benchmarks fail loudly on bad setup")]
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weft_core::codec::DecodeLimits;
use weft_core::key::CollectionName;
use weft_core::protocol::{BatchId, ClientMessage};

#[path = "common/workload.rs"]
mod workload;

fn encoding(c: &mut Criterion) {
    let collection = CollectionName::new("todos").unwrap();
    let message = ClientMessage::Push { batch_id: BatchId(1), changes: workload::app_changes(1_000, &collection) };
    let frame = message.encode();
    let limits = DecodeLimits::default();
    println!("push frame of 1,000 changes: {} bytes ({:.1} bytes per change)", frame.len(), frame.len() as f64 / 1e3);

    let mut group = c.benchmark_group("push_frame_1000_changes");
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("encode", |b| b.iter(|| message.encode()));
    group.bench_function("decode", |b| b.iter(|| ClientMessage::decode(&frame, &limits).unwrap()));
    group.finish();
}

criterion_group!(benches, encoding);
criterion_main!(benches);
