//! Prometheus metrics served at `/metrics`: connections, operations, acks, bytes, errors
//! by code, and the WAL's sync latency histogram.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use weft_core::protocol::ErrorCode;
use weft_storage::wal::{SYNC_BUCKETS_SECONDS, SyncSnapshot};

/// Label of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The protocol error code number.
    pub code: u16,
}

/// Label of per-transport counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    /// `ws` or `http`.
    pub transport: &'static str,
}

/// Every metric the server keeps.
pub struct Metrics {
    registry: Registry,
    /// Open WebSocket connections.
    pub connections: Gauge,
    /// WebSocket connections accepted since start.
    pub connections_total: Counter,
    /// Bytes of encoded frames queued for WebSocket clients, all connections together.
    pub outbound_queued_bytes: Gauge,
    /// Resident memory of the process, read from `/proc/self/statm` at each scrape.
    pub resident_bytes: Gauge,
    /// HTTP connections closed at accept because `limits.http_connections_max` were open.
    pub connections_refused: Counter,
    /// Changes accepted (durable), by transport.
    pub ops: Family<TransportLabels, Counter>,
    /// Batches acknowledged, by transport.
    pub acks: Family<TransportLabels, Counter>,
    /// Bytes received in frames and bodies.
    pub bytes_received: Counter,
    /// Bytes sent in frames and bodies.
    pub bytes_sent: Counter,
    /// Errors sent to clients, by code.
    pub errors: Family<ErrorLabels, Counter>,
    /// Active subscriptions.
    pub subscriptions: Gauge,
    /// Changes pushed live to subscribers.
    pub live_changes: Counter,
    /// Time from receiving a batch to acknowledging it, in seconds.
    pub ack_latency: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("weft");
        let metrics = Metrics {
            connections: Gauge::default(),
            connections_total: Counter::default(),
            connections_refused: Counter::default(),
            resident_bytes: Gauge::default(),
            outbound_queued_bytes: Gauge::default(),
            ops: Family::default(),
            acks: Family::default(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            errors: Family::default(),
            subscriptions: Gauge::default(),
            live_changes: Counter::default(),
            ack_latency: Histogram::new(SYNC_BUCKETS_SECONDS.iter().copied()),
            registry: Registry::default(),
        };
        registry.register("connections", "Open WebSocket connections", metrics.connections.clone());
        registry.register("connections_accepted", "WebSocket connections accepted", metrics.connections_total.clone());
        registry.register(
            "connections_refused",
            "HTTP connections closed at accept (limits.http_connections_max)",
            metrics.connections_refused.clone(),
        );
        registry.register("ops", "Changes made durable", metrics.ops.clone());
        registry.register(
            "outbound_queued_bytes",
            "Encoded frames queued for WebSocket clients (bounded per connection by limits.outbound_queue_bytes)",
            metrics.outbound_queued_bytes.clone(),
        );
        registry.register(
            "process_resident_bytes",
            "Resident memory of the server process (Linux)",
            metrics.resident_bytes.clone(),
        );
        registry.register("acks", "Batches acknowledged", metrics.acks.clone());
        registry.register("received_bytes", "Bytes received", metrics.bytes_received.clone());
        registry.register("sent_bytes", "Bytes sent", metrics.bytes_sent.clone());
        registry.register("errors", "Errors sent to clients, by code", metrics.errors.clone());
        registry.register("subscriptions", "Active subscriptions", metrics.subscriptions.clone());
        registry.register("live_changes", "Changes pushed live to subscribers", metrics.live_changes.clone());
        registry.register("ack_latency_seconds", "Batch receipt to durable ack", metrics.ack_latency.clone());
        Metrics { registry, ..metrics }
    }
}

impl Metrics {
    /// Counts an error sent to a client.
    pub fn error(&self, code: ErrorCode) {
        self.errors.get_or_create(&ErrorLabels { code: code.as_u16() }).inc();
    }

    /// The text exposition, with the WAL sync histogram from `wal`.
    pub fn render(&self, wal: &SyncSnapshot) -> String {
        if let Some(bytes) = resident_bytes() {
            self.resident_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode_registry(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out.push_str("# HELP weft_wal_sync_seconds WAL group write + fdatasync latency.\n");
        out.push_str("# TYPE weft_wal_sync_seconds histogram\n");
        for (bound, count) in SYNC_BUCKETS_SECONDS.iter().zip(&wal.buckets) {
            out.push_str(&format!("weft_wal_sync_seconds_bucket{{le=\"{bound}\"}} {count}\n"));
        }
        out.push_str(&format!("weft_wal_sync_seconds_bucket{{le=\"+Inf\"}} {}\n", wal.count));
        out.push_str(&format!("weft_wal_sync_seconds_sum {}\n", wal.sum_seconds));
        out.push_str(&format!("weft_wal_sync_seconds_count {}\n", wal.count));
        out.push_str(
            "# HELP weft_wal_written_bytes Bytes written to the WAL.\n# TYPE weft_wal_written_bytes counter\n",
        );
        out.push_str(&format!("weft_wal_written_bytes_total {}\n", wal.bytes));
        out.push_str("# EOF\n");
        out
    }
}

/// The process's resident memory (Linux: `/proc/self/statm`, pages × 4 KiB); `None`
/// elsewhere.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
