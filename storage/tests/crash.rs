//! Crash test: a child process applies batches in a loop and appends each batch id to a
//! side file only after the engine acknowledged it; the parent `kill -9`s the child at
//! random moments, reopens the same directory, and checks that every acknowledged batch
//! is present and that the merkle root equals one recomputed from the store. The child
//! then continues on the recovered directory, so recoveries stack up.
//!
//! Each batch puts a record of its own, overwrites one of a few hot records, adds an
//! element of its own to one of a few sets and re-sends the set add of an earlier batch
//! (what a reconnecting client does). It runs twice: with a tiny cache and tiny flushes
//! (a working set far larger than the cache, the condition that once lost acknowledged
//! set adds) and with the default settings.
//!
//! `WEFT_CRASH_CYCLES` sets the number of kill/restart cycles (default 20);
//! `WEFT_CRASH_SEED` replays a run (the seed is printed).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly on bad setup")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use weft_core::change::Change;
use weft_core::crdt::ops;
use weft_core::hlc::{Hlc, NodeId};
use weft_core::key::{CollectionName, RecordKey};
use weft_core::merkle::MerkleIndex;
use weft_core::value::{Document, Value};
use weft_storage::engine::{Engine, EngineConfig};
use weft_storage::store::{RecordStore, SqliteStore};
use weft_storage::wal::WalConfig;

const CHILD_DIR_ENV: &str = "WEFT_CRASH_CHILD_DIR";
const CHILD_SETTINGS_ENV: &str = "WEFT_CRASH_CHILD_SETTINGS";
const T0: u64 = 1_700_000_000_000;

fn collection() -> CollectionName {
    CollectionName::new("crash").unwrap()
}

fn config(settings: &str) -> EngineConfig {
    match settings {
        // Small segments, frequent flushes and a tiny cache: every recovery path gets used.
        "small" => EngineConfig {
            wal: WalConfig { segment_bytes: 32 * 1024, ..WalConfig::default() },
            flush_records: 8,
            cache_records: 4,
            flush_interval: Duration::from_millis(20),
            ..EngineConfig::default()
        },
        _ => EngineConfig::default(),
    }
}

fn open(dir: &Path, settings: &str) -> (Engine, weft_storage::engine::OpenReport) {
    let store = SqliteStore::open(&dir.join("store.sqlite")).unwrap();
    Engine::open(&dir.join("wal"), Box::new(store), config(settings)).unwrap()
}

const SETS: u64 = 5;

/// The set batch `id` adds to: one of `SETS`, a fresh group of them every 2,000 batches,
/// so no set grows past the engine's record limits however long the test runs.
fn set_key(id: u64) -> RecordKey {
    RecordKey::new(format!("set-{}-{}", id / 2_000, id % SETS)).unwrap()
}

fn set_add(id: u64) -> Change {
    let hlc = Hlc::new(T0 + id, 1, NodeId(1));
    Change { collection: collection(), key: set_key(id), hlc, state: ops::set_add(Value::Int(id as i64), hlc) }
}

fn batch(id: u64) -> Vec<Change> {
    let hlc = Hlc::new(T0 + id, 0, NodeId(1));
    let put = |key: String, value: i64| Change {
        collection: collection(),
        key: RecordKey::new(key).unwrap(),
        hlc,
        state: ops::put(None, Document::from([("id".to_string(), Value::Int(value))]), hlc),
    };
    let mut changes = vec![put(format!("batch-{id}"), id as i64), put(format!("hot-{}", id % 37), id as i64)];
    changes.push(set_add(id));
    if id > 0 {
        // A re-send of an earlier batch's change: merging it again changes nothing.
        changes.push(set_add(id / 2));
    }
    changes
}

fn acknowledged(dir: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(dir.join("acked.txt")).unwrap_or_default();
    // A line is complete only with its newline: a kill can cut the last one short.
    text.split_inclusive('\n').filter_map(|line| line.strip_suffix('\n')).map(|id| id.parse().unwrap()).collect()
}

/// The child: applies batches until killed.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return; // Run normally, this test does nothing; the crash test starts it as a child.
    };
    let dir = PathBuf::from(dir);
    let settings = std::env::var(CHILD_SETTINGS_ENV).unwrap_or_default();
    let (engine, _) = open(&dir, &settings);
    let mut next = acknowledged(&dir).last().map_or(0, |id| id + 1);
    // A kill may have cut the previous child's last line short: cut the file back to its
    // last newline (one syscall), so this child's first line does not glue onto it.
    let side_path = dir.join("acked.txt");
    let text = std::fs::read_to_string(&side_path).unwrap_or_default();
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    let mut side = std::fs::OpenOptions::new().create(true).append(true).open(&side_path).unwrap();
    side.set_len(complete as u64).unwrap();
    loop {
        engine.apply(batch(next)).unwrap();
        // Only after the acknowledgement; one write call per line.
        side.write_all(format!("{next}\n").as_bytes()).unwrap();
        if next % 100 == 99 {
            engine.checkpoint(None).unwrap();
        }
        next += 1;
    }
}

fn root_from_store(dir: &Path) -> u128 {
    let store = SqliteStore::open(&dir.join("store.sqlite")).unwrap();
    let mut index = MerkleIndex::new();
    let mut after: Option<RecordKey> = None;
    loop {
        let page = store.scan(&collection(), after.as_ref(), 1000).unwrap();
        let Some((last, _)) = page.last() else { break };
        let last = last.clone();
        for (key, record) in page {
            index.set(key.hash(), &key, Some(record.state.version(key.hash())));
        }
        after = Some(last);
    }
    index.root()
}

#[test]
fn acknowledged_batches_survive_kill_9_with_a_tiny_cache_and_re_sends() {
    crash_cycles("small");
}

#[test]
fn acknowledged_batches_survive_kill_9_with_default_settings() {
    crash_cycles("default");
}

fn crash_cycles(settings: &str) {
    let cycles: usize = std::env::var("WEFT_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let seed: u64 = std::env::var("WEFT_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    println!("crash test: {cycles} cycles, WEFT_CRASH_SEED={seed}");
    let mut rng = seed | 1;
    let mut next_delay = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        Duration::from_millis(40 + rng % 400)
    };
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut torn_tails = 0;
    for cycle in 0..cycles {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_SETTINGS_ENV, settings)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(next_delay());
        // A child that stopped on its own (a refused write, a panic) would make every
        // later cycle check nothing.
        assert!(
            child.try_wait().unwrap().is_none(),
            "{settings}, cycle {cycle} (seed {seed}): the child exited by itself"
        );
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let acked = acknowledged(dir.path());
        let (engine, report) = open(dir.path(), settings);
        torn_tails += usize::from(report.wal.torn_tail.is_some());
        for id in &acked {
            let key = RecordKey::new(format!("batch-{id}")).unwrap();
            let state = engine.read(&collection(), &key).unwrap();
            let value = state.and_then(|s| s.field("id"));
            assert_eq!(
                value,
                Some(Value::Int(*id as i64)),
                "{settings}, cycle {cycle} (seed {seed}): acknowledged batch {id} lost"
            );
        }
        let mut sets = std::collections::HashMap::new();
        for id in &acked {
            let set = sets.entry(set_key(*id)).or_insert_with(|| engine.read(&collection(), &set_key(*id)).unwrap());
            let present = set.as_ref().is_some_and(|state| {
                state
                    .members
                    .values()
                    .any(|m| m.value == Value::Int(*id as i64) && m.live_tags(state.deleted).count() > 0)
            });
            assert!(present, "{settings}, cycle {cycle} (seed {seed}): acknowledged set add of batch {id} lost");
        }
        let root = engine.merkle_root(&collection());
        engine.close().unwrap();
        assert_eq!(
            root,
            root_from_store(dir.path()),
            "{settings}, cycle {cycle} (seed {seed}): merkle root differs from the store's"
        );
    }
    let acked = acknowledged(dir.path());
    assert!(acked.len() >= cycles, "the child made too little progress: {} batches in {cycles} cycles", acked.len());
    println!(
        "crash test: {} acknowledged batches survived {cycles} kills ({torn_tails} torn tails truncated)",
        acked.len()
    );
}
