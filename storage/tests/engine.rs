//! The storage engine on real files and a real SQLite database: apply, read, scan,
//! changes since a sequence number, replay after an unclean stop (same sequence numbers,
//! same merkle root), a cache smaller than the data set, a corrupt checkpoint row,
//! checkpoints removing WAL segments, and merkle reconciliation with a client replica.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly on bad setup")]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use weft_core::change::Change;
use weft_core::crdt::ops;
use weft_core::hlc::{Hlc, ManualClock, NodeId};
use weft_core::key::{CollectionName, PartitionId, RecordKey};
use weft_core::merkle::{MerkleIndex, ReconcileStep};
use weft_core::replica::Replica;
use weft_core::value::{Document, Value};
use weft_storage::engine::{Engine, EngineConfig};
use weft_storage::store::{MemoryStore, RecordStore, SqliteStore};
use weft_storage::wal::WalConfig;

const T0: u64 = 1_700_000_000_000;

fn todos() -> CollectionName {
    CollectionName::new("todos").unwrap()
}

fn put(key: &str, n: i64, ms: u64) -> Change {
    let hlc = Hlc::new(T0 + ms, 0, NodeId(1));
    let document = Document::from([("n".to_string(), Value::Int(n))]);
    Change { collection: todos(), key: RecordKey::new(key).unwrap(), hlc, state: ops::put(None, document, hlc) }
}

fn sqlite(dir: &Path) -> Box<dyn RecordStore> {
    Box::new(SqliteStore::open(&dir.join("store.sqlite")).unwrap())
}

fn open(dir: &Path, config: EngineConfig) -> (Engine, weft_storage::engine::OpenReport) {
    Engine::open(&dir.join("wal"), sqlite(dir), config).unwrap()
}

fn value_of(engine: &Engine, key: &str) -> Option<Value> {
    engine.read(&todos(), &RecordKey::new(key).unwrap()).unwrap().and_then(|s| s.field("n"))
}

/// The merkle root recomputed from what the store holds, record by record.
fn root_from_store(dir: &Path) -> u128 {
    let store = SqliteStore::open(&dir.join("store.sqlite")).unwrap();
    let mut index = MerkleIndex::new();
    let mut after: Option<RecordKey> = None;
    loop {
        let page = store.scan(&todos(), after.as_ref(), 500).unwrap();
        let Some((last, _)) = page.last() else { break };
        let last = last.clone();
        for (key, record) in page {
            let hash = key.hash();
            assert_eq!(record.state.version(hash), record.version, "stored version of {key} is stale");
            index.set(hash, &key, Some(record.version));
        }
        after = Some(last);
    }
    index.root()
}

#[test]
fn apply_read_scan_and_changes_since_on_both_backends() {
    for backend in ["memory", "sqlite"] {
        let dir = tempfile::tempdir().unwrap();
        let store: Box<dyn RecordStore> = match backend {
            "memory" => Box::new(MemoryStore::new()),
            _ => sqlite(dir.path()),
        };
        let (engine, _) = Engine::open(&dir.path().join("wal"), store, EngineConfig::default()).unwrap();
        let applied = engine.apply((0..50).map(|i| put(&format!("k{i:02}"), i, 1)).collect()).unwrap();
        assert_eq!(applied.len(), 50);
        // Re-applying the same changes changes nothing and assigns no sequence numbers.
        assert!(engine.apply((0..50).map(|i| put(&format!("k{i:02}"), i, 1)).collect()).unwrap().is_empty());
        assert_eq!(value_of(&engine, "k07"), Some(Value::Int(7)), "{backend}");

        let page = engine.scan(&todos(), None, 10).unwrap();
        assert_eq!(page.len(), 10);
        let next = engine.scan(&todos(), Some(&page[9].0), 100).unwrap();
        assert_eq!(next.len(), 40, "{backend}");
        assert!(page.iter().chain(&next).map(|(k, _)| k.as_str()).is_sorted());

        // Every key appears exactly once in the compacted logs, at its latest seq.
        let update = put("k07", 700, 2);
        let partition = update.key.hash().partition;
        let applied = engine.apply(vec![update]).unwrap();
        let mut seen = BTreeMap::new();
        for p in 0..weft_core::key::PARTITION_COUNT {
            for (key, record) in engine.changes_since(&todos(), PartitionId::new(p).unwrap(), 0, 1000).unwrap() {
                assert!(seen.insert(key.to_string(), (p, record.seq)).is_none(), "{key} listed twice");
            }
        }
        assert_eq!(seen.len(), 50);
        assert_eq!(seen["k07"], (partition.get(), applied[0].seq));
        let since = engine.changes_since(&todos(), partition, applied[0].seq - 1, 10).unwrap();
        let since: Vec<(u64, RecordKey)> = since.into_iter().map(|(key, record)| (record.seq, key)).collect();
        assert_eq!(since, vec![(applied[0].seq, RecordKey::new("k07").unwrap())]);
        engine.close().unwrap();
    }
}

#[test]
fn an_unclean_stop_loses_nothing_and_replay_gives_the_same_seqs_and_root() {
    let dir = tempfile::tempdir().unwrap();
    // No timed background flush: the test decides what is flushed.
    let config =
        EngineConfig { flush_records: 40, flush_interval: Duration::from_secs(3600), ..EngineConfig::default() };
    let (engine, _) = open(dir.path(), config.clone());
    let mut seqs = BTreeMap::new();
    for batch in 0..30 {
        let changes: Vec<Change> =
            (0..7).map(|i| put(&format!("k{}", (batch * 7 + i) % 90), batch, batch as u64)).collect();
        let keys: Vec<String> = changes.iter().map(|c| c.key.to_string()).collect();
        for applied in engine.apply(changes).unwrap() {
            seqs.insert(keys[applied.index].clone(), applied.seq);
        }
    }
    // A last batch after a flush: it lives only in the WAL when the engine stops.
    engine.flush().unwrap();
    for applied in engine.apply(vec![put("k5", 99, 99), put("late", 1, 99)]).unwrap() {
        seqs.insert(["k5", "late"][applied.index].to_string(), applied.seq);
    }
    let root = engine.merkle_root(&todos());
    drop(engine); // no close: the last records are only in the WAL

    let (engine, report) = open(dir.path(), config);
    assert!(report.wal.records > 0, "something had to be replayed: {report:?}");
    assert_eq!(engine.merkle_root(&todos()), root);
    for (key, seq) in &seqs {
        let record = engine.read_stored(&todos(), &RecordKey::new(key.clone()).unwrap()).unwrap().unwrap();
        assert_eq!(record.seq, *seq, "{key}: replay assigned another sequence number");
    }
    engine.close().unwrap();
    assert_eq!(root_from_store(dir.path()), root);
}

#[test]
fn a_cache_smaller_than_the_data_set_still_serves_everything() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig { flush_records: 50, cache_records: 10, ..EngineConfig::default() };
    let (engine, _) = open(dir.path(), config.clone());
    for batch in 0..40 {
        engine.apply((0..50).map(|i| put(&format!("k{:04}", batch * 50 + i), batch * 50 + i, 1)).collect()).unwrap();
    }
    for i in (0..2000).step_by(7) {
        assert_eq!(value_of(&engine, &format!("k{i:04}")), Some(Value::Int(i)));
    }
    // Updates of records that were evicted from the cache merge with the stored state.
    let update = Change {
        collection: todos(),
        key: RecordKey::new("k0003").unwrap(),
        hlc: Hlc::new(T0 + 5, 0, NodeId(2)),
        state: ops::update(
            None,
            Document::from([("extra".to_string(), Value::Bool(true))]),
            Hlc::new(T0 + 5, 0, NodeId(2)),
        ),
    };
    engine.apply(vec![update]).unwrap();
    let state = engine.read(&todos(), &RecordKey::new("k0003").unwrap()).unwrap().unwrap();
    assert_eq!(state.field("n"), Some(Value::Int(3)));
    assert_eq!(state.field("extra"), Some(Value::Bool(true)));
    assert_eq!(engine.scan(&todos(), None, 10_000).unwrap().len(), 2000);
    engine.close().unwrap();
}

#[test]
fn a_corrupt_checkpoint_row_falls_back_to_replaying_the_whole_wal() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig { flush_records: 10, ..EngineConfig::default() };
    let (engine, _) = open(dir.path(), config.clone());
    for i in 0..100 {
        engine.apply(vec![put(&format!("k{i}"), i, 1)]).unwrap();
    }
    let root = engine.merkle_root(&todos());
    engine.close().unwrap();
    SqliteStore::open(&dir.path().join("store.sqlite")).unwrap().write_raw_checkpoint(b"garbage").unwrap();

    let (engine, report) = open(dir.path(), config);
    assert!(report.checkpoint_corrupt.as_deref().is_some_and(|r| r.contains("20")), "{report:?}");
    assert_eq!(report.wal.records, 100, "the whole WAL is replayed");
    assert_eq!(engine.merkle_root(&todos()), root);
    assert!((0..100).all(|i| value_of(&engine, &format!("k{i}")) == Some(Value::Int(i))));
    engine.close().unwrap();
}

#[test]
fn checkpoints_remove_old_segments_and_recovery_starts_after_them() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        wal: WalConfig { segment_bytes: 4096, ..WalConfig::default() },
        flush_records: 1_000_000,
        flush_interval: Duration::from_secs(3600),
        ..EngineConfig::default()
    };
    let (engine, _) = open(dir.path(), config.clone());
    for i in 0..300 {
        engine.apply(vec![put(&format!("k{i}"), i, 1)]).unwrap();
    }
    let segments_before = std::fs::read_dir(dir.path().join("wal")).unwrap().count();
    let mut archived = 0;
    let mut archive = |_: &Path| -> std::io::Result<()> {
        archived += 1;
        Ok(())
    };
    let checkpoint = engine.checkpoint(Some(&mut archive)).unwrap().unwrap();
    let segments_after = std::fs::read_dir(dir.path().join("wal")).unwrap().count();
    assert!(segments_after < segments_before, "{segments_before} → {segments_after}");
    assert_eq!(archived, segments_before - segments_after);
    for i in 300..310 {
        engine.apply(vec![put(&format!("k{i}"), i, 1)]).unwrap();
    }
    drop(engine);
    let (engine, report) = open(dir.path(), config);
    assert_eq!(report.checkpoint, Some(checkpoint));
    assert_eq!(report.wal.records, 10);
    assert!((0..310).all(|i| value_of(&engine, &format!("k{i}")) == Some(Value::Int(i))));
    engine.close().unwrap();
}

#[test]
fn merkle_reconciliation_between_a_replica_and_the_engine_converges() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path(), EngineConfig::default());
    engine.apply((0..200).map(|i| put(&format!("k{i}"), i, 1)).collect()).unwrap();
    let mut phone = Replica::new(NodeId(9), ManualClock::new(T0 + 1_000));
    let shared: Vec<Change> = (0..190).map(|i| put(&format!("k{i}"), i, 1)).collect();
    phone.apply_remote_batch(shared).unwrap();
    phone
        .update(&todos(), &RecordKey::new("k3").unwrap(), Document::from([("n".to_string(), Value::Int(-3))]))
        .unwrap();
    phone.put(&todos(), &RecordKey::new("phone-only").unwrap(), Document::new()).unwrap();

    let mut step = match phone.start_reconcile(&todos()) {
        weft_core::protocol::ClientMessage::Reconcile { step, .. } => step,
        other => panic!("{other:?}"),
    };
    for _ in 0..20 {
        // Server side: merge the records, then answer.
        engine.apply(step.records.clone()).unwrap();
        if step.asks_nothing() {
            break;
        }
        let reply: ReconcileStep = engine.reconcile(&todos(), &step).unwrap();
        match phone.reconcile_step(&todos(), reply).unwrap() {
            Some(next) => step = next,
            None => break,
        }
    }
    assert_eq!(engine.merkle_root(&todos()), phone.collection(&todos()).unwrap().merkle().root());
    assert_eq!(value_of(&engine, "k3"), Some(Value::Int(-3)));
    assert_eq!(phone.get(&todos(), "k199").and_then(|d| d.get("n").cloned()), Some(Value::Int(199)));
    engine.close().unwrap();
}

#[test]
fn a_checkpoint_beyond_the_end_of_the_wal_is_pulled_back() {
    // The store saw a WAL tail that a power loss then took from the WAL: new records are
    // written below the stored checkpoint and must still be replayed.
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig { flush_interval: Duration::from_secs(3600), ..EngineConfig::default() };
    let (engine, _) = open(dir.path(), config.clone());
    engine.apply(vec![put("a", 1, 1)]).unwrap();
    engine.close().unwrap();
    let mut store = SqliteStore::open(&dir.path().join("store.sqlite")).unwrap();
    let mut beyond = [0u8; 20];
    beyond[..8].copy_from_slice(&7u64.to_le_bytes());
    beyond[8..16].copy_from_slice(&1_000u64.to_le_bytes());
    let crc = crc32c::crc32c(&beyond[..16]);
    beyond[16..].copy_from_slice(&crc.to_le_bytes());
    store.write_raw_checkpoint(&beyond).unwrap();
    drop(store);

    let (engine, _) = open(dir.path(), config.clone());
    engine.apply(vec![put("b", 2, 2)]).unwrap();
    drop(engine); // unflushed: "b" lives only in the WAL
    let (engine, _) = open(dir.path(), config);
    assert_eq!(value_of(&engine, "b"), Some(Value::Int(2)), "a record below the stale checkpoint was skipped");
    engine.close().unwrap();
}

#[test]
fn flushing_one_collection_writes_its_records_but_not_the_checkpoint_and_replay_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        EngineConfig { flush_records: 1_000_000, flush_interval: Duration::from_secs(3600), ..EngineConfig::default() };
    let notes = CollectionName::new("notes").unwrap();
    {
        let (engine, _) = open(dir.path(), config.clone());
        let checkpoint_before = SqliteStore::open(&dir.path().join("store.sqlite")).unwrap().checkpoint().unwrap();
        let mut note = put("n1", 1, 1);
        note.collection = notes.clone();
        engine.apply(vec![put("a", 1, 2), note]).unwrap();
        engine.flush_collection(&todos()).unwrap();
        let store = SqliteStore::open(&dir.path().join("store.sqlite")).unwrap();
        assert!(store.read(&todos(), &RecordKey::new("a").unwrap()).unwrap().is_some(), "todos flushed");
        assert!(store.read(&notes, &RecordKey::new("n1").unwrap()).unwrap().is_none(), "notes still dirty");
        assert_eq!(store.checkpoint().unwrap(), checkpoint_before, "checkpoint unchanged");
        // Dropped without a flush: like a crash after the partial flush.
    }
    let (engine, report) = open(dir.path(), config);
    assert!(report.wal.records >= 1, "replayed from the older checkpoint");
    assert_eq!(value_of(&engine, "a"), Some(Value::Int(1)));
    assert!(engine.read(&notes, &RecordKey::new("n1").unwrap()).unwrap().is_some());
    assert_eq!(engine.merkle_root(&todos()), root_from_store(dir.path()));
}

/// Writers read records that miss the cache before taking the engine lock; a flush
/// that commits in between must not let a stale copy overwrite newer fields. Four
/// threads write distinct fields of the same 40 keys with a tiny cache and frequent
/// flushes: every field must survive.
#[test]
fn concurrent_writers_missing_the_cache_lose_no_field_across_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig { flush_records: 20, cache_records: 4, ..EngineConfig::default() };
    let (engine, _) = open(dir.path(), config);
    let engine = std::sync::Arc::new(engine);
    const WRITERS: u64 = 4;
    const ROUNDS: u64 = 40;
    // Batches big enough that the engine reads their misses ahead of its lock.
    const BATCH: u64 = 64;
    const KEYS: u64 = 300;
    let threads: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let engine = std::sync::Arc::clone(&engine);
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    let batch = (0..BATCH)
                        .map(|i| {
                            let key =
                                RecordKey::new(format!("k{:03}", (round * BATCH + i + writer * 13) % KEYS)).unwrap();
                            let hlc = Hlc::new(T0 + round, i as u32, NodeId(writer + 1));
                            let field = format!("w{writer}_r{round}_{i}");
                            let state = ops::update(None, Document::from([(field, Value::Int(1))]), hlc);
                            Change { collection: todos(), key, hlc, state }
                        })
                        .collect();
                    engine.apply(batch).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    for writer in 0..WRITERS {
        for round in 0..ROUNDS {
            for i in 0..BATCH {
                let key = RecordKey::new(format!("k{:03}", (round * BATCH + i + writer * 13) % KEYS)).unwrap();
                let state = engine.read(&todos(), &key).unwrap().unwrap();
                let field = format!("w{writer}_r{round}_{i}");
                assert_eq!(state.field(&field), Some(Value::Int(1)), "{key}: {field} lost");
            }
        }
    }
    let engine = std::sync::Arc::into_inner(engine).unwrap();
    engine.close().unwrap();
    assert_eq!(root_from_store(dir.path()), {
        let (reopened, _) = open(dir.path(), EngineConfig::default());
        let root = reopened.merkle_root(&todos());
        reopened.close().unwrap();
        root
    });
}

/// A batch that would grow a record past the record limits is refused whole, leaves no
/// trace (nothing logged: a restart replays none of it), and concurrent writers growing
/// one record cannot together pass the limit.
#[test]
fn batches_that_would_grow_a_record_past_its_limits_are_refused_whole_and_not_logged() {
    use weft_core::crdt::RecordLimits;
    use weft_storage::engine::EngineError;
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        record_limits: RecordLimits { entries_max: 100, bytes_max: 1 << 20 },
        ..EngineConfig::default()
    };
    let (engine, _) = open(dir.path(), config.clone());
    let fields = |writer: u64, from: u64, count: u64, ms: u64| {
        let hlc = Hlc::new(T0 + ms, 0, NodeId(writer));
        let document: Document = (from..from + count).map(|i| (format!("w{writer}f{i}"), Value::Int(1))).collect();
        Change {
            collection: todos(),
            key: RecordKey::new("grow").unwrap(),
            hlc,
            state: ops::update(None, document, hlc),
        }
    };
    engine.apply(vec![fields(1, 0, 60, 1)]).unwrap();
    // 60 + 30 fits; the batch's second change would reach 120: the whole batch is refused.
    let refused = engine.apply(vec![put("other", 1, 2), fields(1, 60, 30, 3), fields(1, 90, 30, 4)]).unwrap_err();
    assert!(matches!(&refused, EngineError::RecordTooLarge { index: 2, key, .. } if key == "grow"), "{refused}");
    assert_eq!(value_of(&engine, "other"), None, "no change of a refused batch is merged");
    engine.close().unwrap();
    let (engine, report) = open(dir.path(), config.clone());
    assert_eq!(value_of(&engine, "other"), None, "nor logged");
    assert_eq!(engine.read(&todos(), &RecordKey::new("grow").unwrap()).unwrap().unwrap().fields.len(), 60);
    drop(report);
    // Four writers each adding 10 fields at a time, racing for the last 40 entries.
    let engine = std::sync::Arc::new(engine);
    let threads: Vec<_> = (0..4u64)
        .map(|writer| {
            let engine = std::sync::Arc::clone(&engine);
            std::thread::spawn(move || {
                let mut accepted = 0;
                for round in 0..10 {
                    if engine.apply(vec![fields(writer + 2, round * 10, 10, 10 + round)]).is_ok() {
                        accepted += 10;
                    }
                }
                accepted
            })
        })
        .collect();
    let accepted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let state = engine.read(&todos(), &RecordKey::new("grow").unwrap()).unwrap().unwrap();
    assert_eq!(state.fields.len() as u64, 60 + accepted);
    assert!(state.fields.len() <= 100, "{} fields past a limit of 100", state.fields.len());
}

#[test]
fn a_full_feed_queue_drops_batches_and_counts_them_without_blocking_writers() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path(), EngineConfig::default());
    let feed = engine.set_feed(std::sync::Arc::new(|_: &CollectionName| true), 2);
    for i in 0..5 {
        engine.apply(vec![put(&format!("k{i}"), i, i as u64)]).unwrap();
    }
    assert_eq!(feed.take_lost(), 3, "the three batches past the bound are counted");
    assert_eq!(feed.take_lost(), 0, "taken once");
    let queued: Vec<_> = feed.receiver.try_iter().collect();
    assert_eq!(queued.len(), 2);
    assert_eq!(queued[0].records[0].key.as_str(), "k0", "the queue keeps the oldest, in WAL order");
}
