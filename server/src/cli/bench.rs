//! `weft bench write|sync`: the load generator. It speaks the protocol over real
//! WebSockets to a running server and prints one JSON object.
//!
//! - `write`: N connections each keep K batches of B changes in flight for S seconds;
//!   reports acknowledged (durable) changes per second and batch ack latency
//!   percentiles.
//! - `sync`: fills a fresh collection with R records, then times an empty client
//!   catching it up (subscribe without cursor, apply everything into a replica) and
//!   counts the bytes received against the records' encoded size.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use weft_client::ClientError;
use weft_core::change::Change;
use weft_core::codec::Writer;
use weft_core::crdt::ops;
use weft_core::hlc::{HlcClock, NodeId, SystemClock};
use weft_core::key::{CollectionName, RecordKey};
use weft_core::protocol::{BatchId, ClientMessage, ServerMessage, SubscriptionId};
use weft_core::replica::Replica;
use weft_core::value::{Document, Value};

/// Settings of `weft bench write`.
#[derive(Clone, Debug)]
pub struct WriteBench {
    /// Server URL.
    pub url: String,
    /// Token, if auth is on.
    pub token: Option<String>,
    /// Concurrent connections.
    pub connections: usize,
    /// Changes per batch.
    pub batch: usize,
    /// Batches in flight per connection.
    pub inflight: usize,
    /// How long to run.
    pub duration: Duration,
    /// Distinct keys written (random picks: a mix of inserts and updates).
    pub keys: u64,
    /// Collection written.
    pub collection: String,
}

/// What a write run measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct WriteReport {
    /// Durably acknowledged changes per second.
    pub acked_ops_per_sec: f64,
    /// Acknowledged batches per second.
    pub acked_batches_per_sec: f64,
    /// Median batch ack latency (send to ack), ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Worst, ms.
    pub max_ms: f64,
    /// Batches refused or connections lost.
    pub errors: u64,
    /// Changes acknowledged.
    pub acked_ops: u64,
    /// Seconds measured.
    pub seconds: f64,
    /// Settings.
    pub connections: usize,
    /// Settings.
    pub batch: usize,
    /// Settings.
    pub inflight: usize,
}

fn document(i: u64) -> Document {
    Document::from([
        ("title".to_owned(), Value::from(format!("benchmark item {i}"))),
        ("done".to_owned(), Value::from(i % 3 == 0)),
        ("n".to_owned(), Value::from(i as i64)),
    ])
}

/// A cheap per-connection pseudo-random sequence (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs the write benchmark.
pub async fn write(settings: WriteBench) -> Result<WriteReport, ClientError> {
    let collection = CollectionName::new(settings.collection.clone())
        .map_err(|e| ClientError::Protocol(format!("collection: {e}")))?;
    let started = Instant::now();
    let deadline = started + settings.duration;
    let mut tasks = Vec::new();
    for connection in 0..settings.connections {
        let settings = settings.clone();
        let collection = collection.clone();
        tasks.push(tokio::spawn(async move { write_connection(connection, settings, collection, deadline).await }));
    }
    let mut latencies = Vec::new();
    let mut report = WriteReport {
        connections: settings.connections,
        batch: settings.batch,
        inflight: settings.inflight,
        ..WriteReport::default()
    };
    for task in tasks {
        match task.await {
            Ok(Ok((acked, errors, mut lat))) => {
                report.acked_ops += acked;
                report.errors += errors;
                latencies.append(&mut lat);
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "bench connection failed");
                report.errors += 1;
            }
            Err(_) => report.errors += 1,
        }
    }
    let seconds = started.elapsed().as_secs_f64().max(settings.duration.as_secs_f64());
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)]
    };
    report.seconds = seconds;
    report.acked_ops_per_sec = report.acked_ops as f64 / seconds;
    report.acked_batches_per_sec = latencies.len() as f64 / seconds;
    report.p50_ms = percentile(0.50);
    report.p99_ms = percentile(0.99);
    report.max_ms = latencies.last().copied().unwrap_or(0.0);
    Ok(report)
}

async fn write_connection(
    connection: usize,
    settings: WriteBench,
    collection: CollectionName,
    deadline: Instant,
) -> Result<(u64, u64, Vec<f64>), ClientError> {
    let node = NodeId(0x5eed_0000 + connection as u64);
    let (mut sender, mut receiver, _) = weft_client::raw::connect(&settings.url, node, settings.token.clone()).await?;
    let permits = Arc::new(Semaphore::new(settings.inflight.max(1)));
    let sent_at: Arc<std::sync::Mutex<HashMap<u64, (Instant, usize)>>> = Arc::default();
    let reader = {
        let permits = Arc::clone(&permits);
        let sent_at = Arc::clone(&sent_at);
        tokio::spawn(async move {
            let (mut acked, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
            while let Ok(Some(message)) = receiver.recv().await {
                let (batch_id, ok) = match message {
                    ServerMessage::Ack { batch_id } => (batch_id, true),
                    ServerMessage::Error { batch_id: Some(batch_id), .. } => (batch_id, false),
                    ServerMessage::Error { .. } => {
                        errors += 1;
                        continue;
                    }
                    _ => continue,
                };
                let entry = sent_at.lock().unwrap_or_else(|p| p.into_inner()).remove(&batch_id.0);
                if let Some((at, size)) = entry {
                    if ok {
                        acked += size as u64;
                        latencies.push(at.elapsed().as_secs_f64() * 1e3);
                    } else {
                        errors += 1;
                    }
                }
                permits.add_permits(1);
            }
            (acked, errors, latencies)
        })
    };
    let mut clock = HlcClock::new(node, SystemClock);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (connection as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut batch_id = 0u64;
    while Instant::now() < deadline {
        let Ok(permit) = tokio::time::timeout_at(deadline.into(), permits.acquire()).await else { break };
        let Ok(permit) = permit else { break };
        permit.forget();
        let changes: Vec<Change> = (0..settings.batch)
            .map(|_| {
                let i = rng.next() % settings.keys.max(1);
                let hlc = clock.now();
                let key = RecordKey::new(format!("k{i:08}")).unwrap_or_else(|_| unreachable!("valid key"));
                Change { collection: collection.clone(), key, hlc, state: ops::put(None, document(i), hlc) }
            })
            .collect();
        batch_id += 1;
        sent_at.lock().unwrap_or_else(|p| p.into_inner()).insert(batch_id, (Instant::now(), changes.len()));
        sender.send(&ClientMessage::Push { batch_id: BatchId(batch_id), changes }).await?;
    }
    // Let the batches in flight finish (they count if acked within a grace period).
    let _ = tokio::time::timeout(Duration::from_secs(5), permits.acquire_many(settings.inflight.max(1) as u32)).await;
    sender.close().await;
    let (acked, errors, latencies) = reader.await.map_err(|e| ClientError::Protocol(e.to_string()))?;
    Ok((acked, errors, latencies))
}

/// What a sync run measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SyncReport {
    /// Records caught up.
    pub records: u64,
    /// Seconds from connecting to having applied the last record.
    pub seconds: f64,
    /// Records per second.
    pub records_per_sec: f64,
    /// WebSocket payload bytes received, plus 14 bytes of framing per frame.
    pub wire_bytes: u64,
    /// Sum of the records' encoded sizes (each as one change: key, timestamp, state).
    pub encoded_bytes: u64,
    /// `wire_bytes / encoded_bytes`.
    pub overhead_ratio: f64,
    /// Seconds spent filling the collection (not part of the measurement).
    pub fill_seconds: f64,
}

/// Runs the sync benchmark.
pub async fn sync(url: &str, token: Option<String>, records: u64) -> Result<SyncReport, ClientError> {
    let suffix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let collection = CollectionName::new(format!("bench_sync_{records}_{suffix}"))
        .map_err(|e| ClientError::Protocol(format!("collection: {e}")))?;
    let fill_started = Instant::now();
    {
        let node = NodeId(0x5111);
        let (mut sender, mut receiver, _) = weft_client::raw::connect(url, node, token.clone()).await?;
        let mut clock = HlcClock::new(node, SystemClock);
        let mut next = 0u64;
        let mut batch_id = 0u64;
        let mut in_flight = 0usize;
        while next < records || in_flight > 0 {
            while next < records && in_flight < 8 {
                let end = (next + 1000).min(records);
                let changes: Vec<Change> = (next..end)
                    .map(|i| {
                        let hlc = clock.now();
                        let key = RecordKey::new(format!("r{i:09}")).unwrap_or_else(|_| unreachable!("valid key"));
                        Change { collection: collection.clone(), key, hlc, state: ops::put(None, document(i), hlc) }
                    })
                    .collect();
                batch_id += 1;
                sender.send(&ClientMessage::Push { batch_id: BatchId(batch_id), changes }).await?;
                next = end;
                in_flight += 1;
            }
            match receiver.recv().await? {
                Some(ServerMessage::Ack { .. }) => in_flight -= 1,
                Some(ServerMessage::Error { message, .. }) => return Err(ClientError::Protocol(message)),
                Some(_) => {}
                None => return Err(ClientError::Protocol("connection closed while filling".into())),
            }
        }
        sender.close().await;
    }
    let fill_seconds = fill_started.elapsed().as_secs_f64();

    let started = Instant::now();
    let node = NodeId(0x5112);
    let (mut sender, mut receiver, _) = weft_client::raw::connect(url, node, token).await?;
    let mut replica = Replica::new(node, SystemClock);
    replica.subscribe(&collection);
    sender
        .send(&ClientMessage::Subscribe {
            subscription_id: SubscriptionId(1),
            collection: collection.clone(),
            cursor: None,
            shape: None,
        })
        .await?;
    let (mut wire, mut encoded, mut received) = (0u64, 0u64, 0u64);
    loop {
        let Some((message, size)) = receiver.recv_frame().await? else {
            return Err(ClientError::Protocol("connection closed during catch-up".into()));
        };
        wire += size as u64 + 14;
        if let ServerMessage::Changes { changes, caught_up, .. } = message {
            let mut writer = Writer::new();
            for change in &changes {
                change.encode(&mut writer);
            }
            encoded += writer.len() as u64;
            received += changes.len() as u64;
            replica.apply_remote_batch(changes).map_err(|(_, e)| ClientError::Protocol(e.to_string()))?;
            if caught_up {
                break;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    sender.close().await;
    let visible = replica.collection(&collection).map_or(0, |c| c.len() as u64);
    if visible != records || received != records {
        return Err(ClientError::Protocol(format!(
            "caught up {received} records ({visible} in the replica), expected {records}"
        )));
    }
    Ok(SyncReport {
        records,
        seconds,
        records_per_sec: records as f64 / seconds,
        wire_bytes: wire,
        encoded_bytes: encoded,
        overhead_ratio: wire as f64 / encoded.max(1) as f64,
        fill_seconds,
    })
}

/// What a live-push run measured.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LiveReport {
    /// Changes written.
    pub changes: u64,
    /// Subscribers.
    pub subscribers: usize,
    /// Deliveries measured (changes × subscribers).
    pub deliveries: u64,
    /// Median time from the writer sending a change to a subscriber receiving it, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Worst, ms.
    pub max_ms: f64,
}

/// Live push latency: `subscribers` clients subscribe to a fresh collection; one writer
/// sends `changes` single-change batches, one every `interval`; each subscriber notes when
/// each change arrives. The figure is send → receive, so it includes the server making
/// the change durable (the server pushes only durable changes) — an upper bound on
/// commit → receive.
pub async fn live(
    url: &str,
    token: Option<String>,
    subscribers: usize,
    changes: u64,
    interval: Duration,
) -> Result<LiveReport, ClientError> {
    let suffix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let collection = CollectionName::new(format!("bench_live_{suffix}"))
        .map_err(|e| ClientError::Protocol(format!("collection: {e}")))?;
    let started = Instant::now();
    let mut readers = Vec::new();
    for s in 0..subscribers {
        let (mut sender, mut receiver, _) =
            weft_client::raw::connect(url, NodeId(0x6000 + s as u64), token.clone()).await?;
        subscribe_caught_up(&mut sender, &mut receiver, &collection).await?;
        readers.push(tokio::spawn(async move {
            let _keep_open = sender;
            let mut arrivals: Vec<(u64, Instant)> = Vec::new();
            while (arrivals.len() as u64) < changes {
                match receiver.recv().await {
                    Ok(Some(ServerMessage::Changes { changes: batch, .. })) => {
                        let now = Instant::now();
                        for change in batch {
                            if let Some(n) = change.key.as_str().strip_prefix('c').and_then(|n| n.parse().ok()) {
                                arrivals.push((n, now));
                            }
                        }
                    }
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
            arrivals
        }));
    }
    let node = NodeId(0x6fff);
    let (mut sender, mut receiver, _) = weft_client::raw::connect(url, node, token).await?;
    let acks = tokio::spawn(async move { while let Ok(Some(_)) = receiver.recv().await {} });
    let mut clock = HlcClock::new(node, SystemClock);
    let mut sent_at = Vec::with_capacity(changes as usize);
    let mut tick = tokio::time::interval(interval);
    for n in 0..changes {
        tick.tick().await;
        let hlc = clock.now();
        let key = RecordKey::new(format!("c{n}")).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let change = Change { collection: collection.clone(), key, hlc, state: ops::put(None, document(n), hlc) };
        sent_at.push(started.elapsed());
        sender.send(&ClientMessage::Push { batch_id: BatchId(n + 1), changes: vec![change] }).await?;
    }
    let mut latencies = Vec::new();
    for reader in readers {
        let arrivals = tokio::time::timeout(Duration::from_secs(30), reader)
            .await
            .map_err(|_| ClientError::Protocol("subscribers did not receive every change".into()))?
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        for (n, at) in arrivals {
            if let Some(sent) = sent_at.get(n as usize) {
                latencies.push((at.duration_since(started).saturating_sub(*sent)).as_secs_f64() * 1e3);
            }
        }
    }
    sender.close().await;
    acks.abort();
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Ok(LiveReport {
        changes,
        subscribers,
        deliveries: latencies.len() as u64,
        p50_ms: percentile(0.5),
        p99_ms: percentile(0.99),
        max_ms: latencies.last().copied().unwrap_or(0.0),
    })
}

/// Subscribes to `collection` (no cursor) and waits until its catch-up is complete.
async fn subscribe_caught_up(
    sender: &mut weft_client::raw::RawSender,
    receiver: &mut weft_client::raw::RawReceiver,
    collection: &CollectionName,
) -> Result<(), ClientError> {
    let message = ClientMessage::Subscribe {
        subscription_id: SubscriptionId(1),
        collection: collection.clone(),
        cursor: None,
        shape: None,
    };
    sender.send(&message).await?;
    loop {
        match receiver.recv().await? {
            Some(ServerMessage::Changes { caught_up: true, .. }) => return Ok(()),
            Some(_) => {}
            None => return Err(ClientError::Protocol("closed while subscribing".into())),
        }
    }
}

/// What `weft bench idle` measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct IdleReport {
    /// Connections held open.
    pub connections: usize,
    /// Whether each had a subscription.
    pub subscribed: bool,
    /// Server resident memory before connecting, bytes.
    pub server_rss_before: u64,
    /// Server resident memory with every connection open and idle, bytes.
    pub server_rss_after: u64,
    /// The difference per connection, bytes.
    pub bytes_per_connection: f64,
}

/// The server's `weft_process_resident_bytes` from `/metrics`.
async fn server_rss(url: &str) -> Result<u64, ClientError> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .map_err(|e| ClientError::Protocol(format!("/metrics: {e}")))?
        .text()
        .await
        .map_err(|e| ClientError::Protocol(format!("/metrics: {e}")))?;
    text.lines()
        .find_map(|line| line.strip_prefix("weft_process_resident_bytes "))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| ClientError::Protocol("/metrics has no weft_process_resident_bytes (Linux only)".into()))
}

/// Memory per idle connection: opens `connections` WebSockets (hello done, optionally one
/// subscription each, caught up), waits for the server to settle, and reads the server's
/// resident memory before and after from its `/metrics`.
pub async fn idle(
    url: &str,
    token: Option<String>,
    connections: usize,
    subscribe: bool,
) -> Result<IdleReport, ClientError> {
    let collection = CollectionName::new("bench_idle").map_err(|e| ClientError::Protocol(e.to_string()))?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server_rss(url).await?;
    let progress = indicatif::ProgressBar::new(connections as u64);
    let mut open = Vec::with_capacity(connections);
    for n in 0..connections {
        let (mut sender, mut receiver, _) =
            weft_client::raw::connect(url, NodeId(0x7000 + n as u64), token.clone()).await?;
        if subscribe {
            subscribe_caught_up(&mut sender, &mut receiver, &collection).await?;
        }
        open.push((sender, receiver));
        progress.inc(1);
    }
    progress.finish_and_clear();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server_rss(url).await?;
    for (mut sender, _) in open {
        sender.close().await;
    }
    Ok(IdleReport {
        connections,
        subscribed: subscribe,
        server_rss_before: before,
        server_rss_after: after,
        bytes_per_connection: after.saturating_sub(before) as f64 / connections.max(1) as f64,
    })
}
