//! Storage engine benchmarks on the SQLite store.
//!
//! Run: `cargo bench -p weft-storage --bench engine` — durable apply throughput and ack
//! latency by batch size (1, 16, 256, 4096 changes) and concurrent writers (1, 8, 64),
//! then recovery: open a store of `WEFT_BENCH_RECORDS` records (default 1M) with about
//! 100 MB of WAL to replay. `-- --quick` runs 1 s per cell and 100k records;
//! `-- --recovery-only` skips the throughput table, `-- --throughput-only` the recovery.
//! Files go under `$WEFT_BENCH_DIR` (default: the system temp directory).
//! `WEFT_BENCH_FLUSH_RECORDS` and `WEFT_BENCH_CACHE_RECORDS` override the engine's
//! `flush_records` and `cache_records`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: bad setup should stop it")]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use weft_core::change::Change;
use weft_core::crdt::ops;
use weft_core::hlc::{Hlc, NodeId};
use weft_core::key::{CollectionName, RecordKey};
use weft_core::value::{Document, Value};
use weft_storage::engine::{Engine, EngineConfig};
use weft_storage::store::SqliteStore;

// The allocator the `weft` server binary uses, so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const T0: u64 = 1_700_000_000_000;

/// Appends `value` in decimal, zero-padded to `width` digits. The load generator runs on
/// the same two cores as the engine: `format!` here cost ~5 % of the CPU of a run, far more
/// than decoding the same strings from a frame costs the server.
fn push_decimal(out: &mut String, mut value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    while value > 0 || at == digits.len() {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    let start = at.min(digits.len().saturating_sub(width));
    out.extend(digits[start..].iter().map(|&d| d as char));
}

/// Change `id`; its key is `id` itself when `key_space` is 0 (all distinct), else a hash
/// of `id` modulo `key_space`.
fn change(id: u64, key_space: u64) -> Change {
    let hlc = Hlc::new(T0 + id / 1000, (id % 1000) as u32, NodeId(1 + id % 64));
    let mut title = String::with_capacity(32);
    title.push_str("buy milk and eggs #");
    push_decimal(&mut title, id, 1);
    let document = Document::from([
        ("title".to_string(), Value::from(title)),
        ("done".to_string(), Value::Bool(id % 2 == 0)),
        ("priority".to_string(), Value::Int((id % 5) as i64)),
    ]);
    let mut key = String::with_capacity(16);
    key.push_str("todo-");
    push_decimal(
        &mut key,
        if key_space == 0 { id } else { (id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 7) % key_space },
        8,
    );
    Change {
        collection: CollectionName::new("todos").unwrap(),
        key: RecordKey::new(key).unwrap(),
        hlc,
        state: ops::update(None, document, hlc),
    }
}

fn open(dir: &Path) -> Engine {
    let store = SqliteStore::open(&dir.join("store.sqlite")).unwrap();
    let mut config = EngineConfig::default();
    if let Some(records) = std::env::var("WEFT_BENCH_FLUSH_RECORDS").ok().and_then(|v| v.parse().ok()) {
        config.flush_records = records;
    }
    if let Some(records) = std::env::var("WEFT_BENCH_CACHE_RECORDS").ok().and_then(|v| v.parse().ok()) {
        config.cache_records = records;
    }
    Engine::open(&dir.join("wal"), Box::new(store), config).unwrap().0
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted.get(((sorted.len().max(1) - 1) as f64 * p).round() as usize).map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn throughput(base: &Path, seconds: u64) {
    println!("| writers | changes per batch | durable changes/s | p50 ack ms | p99 ack ms |");
    println!("|---:|---:|---:|---:|---:|");
    let only: Option<(usize, usize)> = std::env::var("WEFT_BENCH_CELL")
        .ok()
        .and_then(|v| v.split_once('x').and_then(|(w, b)| Some((w.parse().ok()?, b.parse().ok()?))));
    for writers in [1usize, 8, 64] {
        for batch in [1usize, 16, 256, 4096] {
            if only.is_some_and(|cell| cell != (writers, batch)) {
                continue;
            }
            let dir = tempfile::tempdir_in(base).unwrap();
            let engine = Arc::new(open(dir.path()));
            let ids = Arc::new(AtomicU64::new(0));
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let started = Instant::now();
            let threads: Vec<_> = (0..writers)
                .map(|_| {
                    let (engine, ids) = (Arc::clone(&engine), Arc::clone(&ids));
                    std::thread::spawn(move || {
                        let mut latencies = Vec::new();
                        while Instant::now() < deadline {
                            let first = ids.fetch_add(batch as u64, Ordering::Relaxed);
                            let changes: Vec<Change> =
                                (first..first + batch as u64).map(|id| change(id, 1_000_000)).collect();
                            let sent = Instant::now();
                            engine.apply(changes).unwrap();
                            latencies.push(sent.elapsed());
                        }
                        latencies
                    })
                })
                .collect();
            let mut latencies: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
            let elapsed = started.elapsed().as_secs_f64();
            latencies.sort_unstable();
            let changes = latencies.len() as f64 * batch as f64;
            println!(
                "| {writers} | {batch} | {:.0} | {:.2} | {:.2} |",
                changes / elapsed,
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.99)
            );
            Arc::try_unwrap(engine).unwrap().close().unwrap();
        }
    }
}

fn recovery(base: &Path, records: u64) {
    let dir = tempfile::tempdir_in(base).unwrap();
    let started = Instant::now();
    {
        let engine = open(dir.path());
        for first in (0..records).step_by(4096) {
            engine.apply((first..(first + 4096).min(records)).map(|id| change(id, 0)).collect()).unwrap();
        }
        engine.checkpoint(None).unwrap();
        engine.close().unwrap();
        // Then about 100 MB of WAL that the store has not seen: an engine that never
        // flushes, stopped without closing.
        let store = SqliteStore::open(&dir.path().join("store.sqlite")).unwrap();
        let config = EngineConfig {
            flush_records: usize::MAX,
            flush_interval: Duration::from_secs(24 * 3600),
            ..EngineConfig::default()
        };
        let engine = Engine::open(&dir.path().join("wal"), Box::new(store), config).unwrap().0;
        let mut id = records;
        let wal_target = 100 << 20;
        let mut written = 0u64;
        while written < wal_target {
            let changes: Vec<Change> = (id..id + 4096).map(|i| change(i, records)).collect();
            written += changes.iter().map(|c| c.key.as_str().len() as u64 + 90).sum::<u64>();
            id += 4096;
            engine.apply(changes).unwrap();
        }
        std::mem::forget(engine); // like a crash: no final flush
    }
    let wal_bytes: u64 =
        std::fs::read_dir(dir.path().join("wal")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    println!(
        "built {records} records + {:.0} MB of WAL in {:.1} s",
        wal_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let store = SqliteStore::open(&dir.path().join("store.sqlite")).unwrap();
    let (engine, report) = Engine::open(&dir.path().join("wal"), Box::new(store), EngineConfig::default()).unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "open: {:.2} s — rebuilt the merkle index from {} stored records, replayed {} WAL records ({:.0} MB): {:.0} MB/s, {:.0} changes/s",
        elapsed,
        report.stored_records,
        report.wal.records,
        report.wal.payload_bytes as f64 / 1e6,
        report.wal.payload_bytes as f64 / 1e6 / elapsed,
        report.wal.records as f64 * 4096.0 / elapsed,
    );
    engine.close().unwrap();
    // Again, with nothing left to replay: the cost of rebuilding the merkle index alone.
    let started = Instant::now();
    let store = SqliteStore::open(&dir.path().join("store.sqlite")).unwrap();
    let (engine, report) = Engine::open(&dir.path().join("wal"), Box::new(store), EngineConfig::default()).unwrap();
    println!(
        "reopen with nothing to replay: {:.2} s (merkle index rebuilt from {} stored versions)",
        started.elapsed().as_secs_f64(),
        report.stored_records
    );
    engine.close().unwrap();
}

fn main() {
    for (value, width) in [(0, 8), (7, 8), (12_345_678, 8), (123_456_789, 8), (0, 1), (42, 1), (u64::MAX, 1)] {
        let mut out = String::new();
        push_decimal(&mut out, value, width);
        assert_eq!(out, format!("{value:0width$}"), "the generator's keys must match format!");
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let base = std::env::var_os("WEFT_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    if !std::env::args().any(|a| a == "--recovery-only") {
        let seconds = std::env::var("WEFT_BENCH_SECONDS").ok().and_then(|v| v.parse().ok());
        throughput(&base, seconds.unwrap_or(if quick { 1 } else { 3 }));
    }
    if std::env::args().any(|a| a == "--throughput-only") {
        return;
    }
    let records = std::env::var("WEFT_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(if quick {
        100_000
    } else {
        1_000_000
    });
    recovery(&base, records);
}
