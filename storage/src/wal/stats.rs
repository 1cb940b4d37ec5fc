//! Latency of WAL group writes (write + `fdatasync`), kept as a cumulative histogram in
//! atomics so the writer thread never blocks on whoever reads it (the metrics endpoint).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the histogram buckets, in seconds (the last bucket is +Inf).
pub const SYNC_BUCKETS_SECONDS: [f64; 12] =
    [0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

#[derive(Debug, Default)]
pub(crate) struct SyncStats {
    buckets: [AtomicU64; SYNC_BUCKETS_SECONDS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
    bytes: AtomicU64,
}

/// A copy of the histogram.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncSnapshot {
    /// Cumulative count per bound of [`SYNC_BUCKETS_SECONDS`].
    pub buckets: Vec<u64>,
    /// Group writes so far.
    pub count: u64,
    /// Total time spent, in seconds.
    pub sum_seconds: f64,
    /// Bytes written.
    pub bytes: u64,
}

impl SyncStats {
    pub(crate) fn record(&self, took: Duration, bytes: u64) {
        let seconds = took.as_secs_f64();
        for (bound, bucket) in SYNC_BUCKETS_SECONDS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(took.as_nanos().min(u64::MAX as u128) as u64, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> SyncSnapshot {
        SyncSnapshot {
            buckets: self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect(),
            count: self.count.load(Ordering::Relaxed),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}
