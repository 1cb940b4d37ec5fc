//! Durable append throughput and latency of the WAL (group commit), by batch size and
//! number of concurrent writers. Each append is one batch of B changes of ~100 bytes
//! (the size of a typical encoded change); a writer waits until its batch is durable
//! before sending the next, like a server acknowledging a client.
//!
//! Run: `cargo bench -p weft-storage --bench wal` (the WAL lives under `$WEFT_BENCH_DIR`,
//! default the system temp directory — use a directory on the disk you want to measure).
//! `-- --quick` runs 1 s per cell instead of 3 s.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: bad setup should stop it")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_storage::wal::{Wal, WalConfig};

const CHANGE_BYTES: usize = 100;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1e3
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let seconds = if quick { 1 } else { 3 };
    let base = std::env::var_os("WEFT_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(std::env::temp_dir);
    println!("| writers | changes per batch | durable changes/s | batches/s | p50 ack ms | p99 ack ms |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for writers in [1usize, 8, 64] {
        for batch in [1usize, 16, 256, 4096] {
            let dir = tempfile::tempdir_in(&base).unwrap();
            let (wal, _) = Wal::open(dir.path(), WalConfig::default(), None, |_, _| {}).unwrap();
            let wal = Arc::new(wal);
            let payload = Arc::new(vec![0x5au8; batch * CHANGE_BYTES]);
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let threads: Vec<_> = (0..writers)
                .map(|_| {
                    let (wal, payload) = (Arc::clone(&wal), Arc::clone(&payload));
                    std::thread::spawn(move || {
                        let mut latencies = Vec::new();
                        while Instant::now() < deadline {
                            let started = Instant::now();
                            wal.append_durable(&payload).unwrap();
                            latencies.push(started.elapsed());
                        }
                        latencies
                    })
                })
                .collect();
            let started = Instant::now();
            let mut latencies: Vec<Duration> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
            let elapsed = started.elapsed().as_secs_f64();
            latencies.sort_unstable();
            let batches = latencies.len() as f64 / elapsed;
            println!(
                "| {writers} | {batch} | {:.0} | {:.0} | {:.2} | {:.2} |",
                batches * batch as f64,
                batches,
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.99)
            );
            Arc::try_unwrap(wal).unwrap().close().unwrap();
        }
    }
}
