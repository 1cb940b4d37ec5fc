//! Model-based test of the storage engine: random sequences of writes (every change
//! kind, changes re-sent as a reconnecting client does, changes stamped in the past),
//! flushes — including flushes held half way while writes go on — single-collection
//! flushes, checkpoints, clean restarts and crashes, on a real WAL and a real SQLite
//! store with tiny caches. After every step the engine must agree with a reference
//! model — a plain map of record states merged with the CRDT rules — record by record,
//! version by version and by merkle root; sequence numbers must be those of a compacted
//! log (a changed record gets a sequence number above every earlier one of its
//! partition, an unchanged one keeps its own); and after a restart the server clock
//! the engine reports must be past every timestamp it accepted.
//!
//! A failing case shrinks to a short sequence and is printed; `WEFT_MODEL_CASES` sets
//! how many sequences run (default 2,000, what CI runs).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly on bad setup")]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use weft_core::change::Change;
use weft_core::crdt::{RecordLimits, RecordState, ops};
use weft_core::hlc::{Hlc, NodeId};
use weft_core::key::{CollectionName, PARTITION_COUNT, PartitionId, RecordKey};
use weft_core::merkle::MerkleIndex;
use weft_core::value::{Document, Value};
use weft_storage::engine::{Appended, Engine, EngineConfig, EngineError};
use weft_storage::store::SqliteStore;

const T0: u64 = 1_700_000_000_000;
const COLLECTIONS: [&str; 2] = ["todos", "notes"];
const KEYS: u8 = 12;
const FIELDS: [&str; 3] = ["a", "b", "c"];

#[derive(Clone, Copy, Debug)]
enum Kind {
    Put,
    Update,
    Delete,
    Increment,
    SetAdd,
    SetRemove,
}

#[derive(Clone, Debug)]
struct Spec {
    collection: u8,
    key: u8,
    kind: Kind,
    field: u8,
    value: i8,
    /// The writer (HLC node).
    node: u8,
    /// Stamped this many ms before the writer's clock (a late offline edit).
    late_ms: u8,
}

#[derive(Clone, Debug)]
enum Op {
    /// A batch of new changes.
    Write(Vec<Spec>),
    /// A batch re-sending earlier changes (indexes into the history, modulo its length):
    /// what a client does after a reconnect.
    Resend(Vec<usize>),
    /// A flush takes the dirty map and stops before writing it; writes go on.
    BeginFlush,
    /// The flush begun last writes what it took.
    EndFlush,
    Flush,
    FlushCollection(u8),
    Checkpoint,
    Restart,
    Crash,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        2 => Just(Kind::Put),
        4 => Just(Kind::Update),
        1 => Just(Kind::Delete),
        2 => Just(Kind::Increment),
        3 => Just(Kind::SetAdd),
        2 => Just(Kind::SetRemove),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0..COLLECTIONS.len() as u8,
        0..KEYS,
        kind(),
        0..FIELDS.len() as u8,
        any::<i8>(),
        1..4u8,
        prop_oneof![
            4 => Just(0u8),
            1 => 1..50u8
        ],
    )
        .prop_map(|(collection, key, kind, field, value, node, late_ms)| Spec {
            collection,
            key,
            kind,
            field,
            value,
            node,
            late_ms,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => prop::collection::vec(spec(), 1..5).prop_map(Op::Write),
        6 => prop::collection::vec(any::<usize>(), 1..5).prop_map(Op::Resend),
        3 => Just(Op::BeginFlush),
        2 => Just(Op::EndFlush),
        2 => Just(Op::Flush),
        1 => (0..COLLECTIONS.len() as u8).prop_map(Op::FlushCollection),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Restart),
        1 => Just(Op::Crash),
    ]
}

#[derive(Clone, Debug)]
struct Settings {
    cache_records: usize,
    /// The engine's record entry limit: small, so batches that would pass it (and are
    /// refused whole) are common.
    entries_max: usize,
}

fn settings() -> impl Strategy<Value = Settings> {
    let entries_max =
        prop_oneof![2 => 3..8usize, 2 => 8..40usize, 1 => Just(weft_core::crdt::RECORD_ENTRIES_MAX_DEFAULT)];
    (1..6usize, entries_max).prop_map(|(cache_records, entries_max)| Settings { cache_records, entries_max })
}

type Id = (CollectionName, RecordKey);

/// The reference: record states merged with the CRDT rules, nothing else.
#[derive(Default)]
struct Model {
    records: BTreeMap<Id, RecordState>,
}

impl Model {
    /// Merges a change; returns whether the record changed.
    fn apply(&mut self, change: &Change) -> bool {
        let hash = change.key.hash();
        let state = self.records.entry((change.collection.clone(), change.key.clone())).or_default();
        let version = state.version(hash);
        state.join(hash, version, change.state.clone()).is_some()
    }
}

fn id(spec: &Spec) -> Id {
    (
        CollectionName::new(COLLECTIONS[spec.collection as usize]).unwrap(),
        RecordKey::new(format!("k{:02}", spec.key)).unwrap(),
    )
}

/// Everything one case checks against: the model and what was seen so far.
struct Harness {
    model: Model,
    /// Every change sent so far, for re-sends.
    history: Vec<Change>,
    /// Per writer, its clock in ms after T0.
    clocks: HashMap<u8, u64>,
    /// The sequence number each record had when last checked.
    seqs: HashMap<Id, u64>,
    /// Highest sequence number seen per (collection, partition).
    partition_seqs: HashMap<(CollectionName, PartitionId), u64>,
    /// The greatest HLC accepted.
    max_hlc: Option<Hlc>,
    /// The engine's record limits.
    limits: RecordLimits,
}

fn open(dir: &Path, config: &EngineConfig) -> Engine {
    let store = SqliteStore::open(&dir.join("store.sqlite")).unwrap();
    Engine::open(&dir.join("wal"), Box::new(store), config.clone()).unwrap().0
}

impl Harness {
    fn change(&mut self, spec: &Spec) -> Option<Change> {
        let (collection, key) = id(spec);
        let clock = self.clocks.entry(spec.node).or_insert(0);
        *clock += 1;
        let ms = T0 + 100 + *clock - u64::from(spec.late_ms).min(*clock);
        let node = NodeId(u64::from(spec.node));
        let hlc = Hlc::new(ms, 0, node);
        // What the writer observed: the latest state (a client that is up to date).
        let current = self.model.records.get(&(collection.clone(), key.clone()));
        let field = FIELDS[spec.field as usize];
        let value = Value::Int(i64::from(spec.value));
        let state = match spec.kind {
            Kind::Put => ops::put(current, Document::from([(field.to_owned(), value)]), hlc),
            Kind::Update => ops::update(current, Document::from([(field.to_owned(), value)]), hlc),
            Kind::Delete => ops::delete(current, hlc),
            Kind::Increment => ops::increment(current, "n", i64::from(spec.value), node, hlc),
            // Unique elements, so each add is a new member somebody could lose.
            Kind::SetAdd => ops::set_add(Value::from(format!("e{}", self.history.len())), hlc),
            Kind::SetRemove => {
                let state = current?;
                let member = state.members.values().find(|m| m.live_tags(state.deleted).next().is_some())?;
                ops::set_remove(current, &member.value.clone())?
            }
        };
        // A change's timestamp is at least every one inside it (servers refuse others);
        // a remove carries the tags it observed.
        let hlc = hlc.max(state.max_hlc().unwrap_or(hlc));
        let change = Change { collection, key, hlc, state };
        self.history.push(change.clone());
        Some(change)
    }

    /// Sends a batch: through `apply` normally; through `append` while a flush is held,
    /// with the wait for durability after the flush finishes.
    fn send(&mut self, engine: &Engine, changes: Vec<Change>, held: Option<&mut Vec<Appended>>) {
        if changes.is_empty() {
            return;
        }
        // The reference decides first: a batch that would make a record pass the limits
        // is refused whole, and then nothing of it may show.
        let mut after = Model { records: self.model.records.clone() };
        for change in &changes {
            after.apply(change);
        }
        let refused = changes.iter().any(|change| {
            let state = &after.records[&(change.collection.clone(), change.key.clone())];
            self.limits.exceeded_by(state.size()).is_some()
        });
        let outcome = match held {
            Some(held) => engine.append(changes.clone(), 0).map(|appended| held.push(appended)),
            None => engine.apply(changes.clone()).map(drop),
        };
        match outcome {
            Ok(()) => {
                assert!(!refused, "a batch past the record limits was accepted");
                self.model = after;
                for change in &changes {
                    self.max_hlc = self.max_hlc.max(Some(change.hlc));
                }
            }
            Err(EngineError::RecordTooLarge { .. }) => assert!(refused, "a batch within the record limits was refused"),
            Err(error) => panic!("{error}"),
        }
    }

    fn resend(&mut self, engine: &Engine, indexes: &[usize], held: Option<&mut Vec<Appended>>) {
        if self.history.is_empty() {
            return;
        }
        let changes = indexes.iter().map(|index| self.history[index % self.history.len()].clone()).collect();
        self.send(engine, changes, held);
    }

    fn write(&mut self, engine: &Engine, specs: &[Spec], held: Option<&mut Vec<Appended>>) {
        let changes = specs.iter().filter_map(|spec| self.change(spec)).collect();
        self.send(engine, changes, held);
    }

    /// The engine agrees with the model: every record's state and version, the merkle
    /// roots, and sequence numbers as a compacted log assigns them.
    fn check(&mut self, engine: &Engine, step: usize) {
        let mut roots: BTreeMap<CollectionName, MerkleIndex> = BTreeMap::new();
        for ((collection, key), state) in &self.model.records {
            let hash = key.hash();
            let stored = engine.read_stored(collection, key).unwrap();
            let Some(stored) = stored else {
                assert!(state.is_empty(), "step {step}: {collection}/{key} missing, model has {state:?}");
                continue;
            };
            assert_eq!(&stored.state, state, "step {step}: {collection}/{key} differs from the model");
            assert_eq!(stored.version, state.version(hash), "step {step}: {collection}/{key} version");
            roots.entry(collection.clone()).or_default().set(hash, key, Some(stored.version));
            let id = (collection.clone(), key.clone());
            let partition = (collection.clone(), hash.partition);
            let previous = self.seqs.get(&id).copied();
            if previous != Some(stored.seq) {
                let highest = self.partition_seqs.get(&partition).copied().unwrap_or(0);
                assert!(
                    stored.seq > highest,
                    "step {step}: {collection}/{key} changed (seq {previous:?} -> {}) but not above its \
                     partition's highest seq {highest}",
                    stored.seq
                );
            }
            self.seqs.insert(id, stored.seq);
        }
        for ((collection, key), seq) in &self.seqs {
            let highest = self.partition_seqs.entry((collection.clone(), key.hash().partition)).or_insert(0);
            *highest = (*highest).max(*seq);
        }
        for name in COLLECTIONS {
            let collection = CollectionName::new(name).unwrap();
            let expected = roots.get(&collection).map_or(0, MerkleIndex::root);
            assert_eq!(engine.merkle_root(&collection), expected, "step {step}: merkle root of {name}");
        }
    }

    /// The compacted log read from the store holds every record once, at its latest seq.
    fn check_log(&self, engine: &Engine, step: usize) {
        for name in COLLECTIONS {
            let collection = CollectionName::new(name).unwrap();
            engine.flush_collection(&collection).unwrap();
            let mut seen = BTreeMap::new();
            for partition in 0..PARTITION_COUNT {
                let partition = PartitionId::new(partition).unwrap();
                for (key, record) in engine.changes_since_flushed(&collection, partition, 0, usize::MAX).unwrap() {
                    assert!(seen.insert(key.clone(), record).is_none(), "step {step}: {name}/{key} twice in the log");
                }
            }
            let expected: Vec<&RecordKey> = self
                .model
                .records
                .iter()
                .filter(|((c, _), state)| *c == collection && !state.is_empty())
                .map(|((_, k), _)| k)
                .collect();
            assert_eq!(seen.keys().collect::<Vec<_>>(), expected, "step {step}: keys in the {name} log");
            for (key, record) in &seen {
                let model = self.model.records.get(&(collection.clone(), key.clone()));
                assert_eq!(Some(&record.state), model, "step {step}: {name}/{key} in the log");
                assert_eq!(Some(&record.seq), self.seqs.get(&(collection.clone(), key.clone())), "{name}/{key} seq");
            }
        }
    }

    fn check_clock(&self, engine: &Engine, step: usize) {
        assert!(
            engine.max_hlc() >= self.max_hlc,
            "step {step}: the engine's clock {:?} is behind a timestamp it accepted, {:?}",
            engine.max_hlc(),
            self.max_hlc
        );
    }
}

/// Ops that need the flush lock (or a new engine): a held flush ends before them.
fn needs_flush_lock(op: &Op) -> bool {
    matches!(op, Op::Flush | Op::FlushCollection(_) | Op::Checkpoint | Op::Restart | Op::Crash | Op::EndFlush)
}

fn run(settings: &Settings, ops: &[Op]) {
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        cache_records: settings.cache_records,
        // Flushes happen where the test says, nowhere else: a case runs the same way
        // every time.
        flush_records: 1 << 20,
        flush_interval: Duration::from_secs(3600),
        record_limits: RecordLimits { entries_max: settings.entries_max, ..RecordLimits::default() },
        ..EngineConfig::default()
    };
    let mut harness = Harness {
        model: Model::default(),
        history: Vec::new(),
        clocks: HashMap::new(),
        seqs: HashMap::new(),
        partition_seqs: HashMap::new(),
        max_hlc: None,
        limits: config.record_limits,
    };
    let mut engine = open(dir.path(), &config);
    let mut step = 0;
    while step < ops.len() {
        match &ops[step] {
            Op::Write(specs) => harness.write(&engine, specs, None),
            Op::Resend(indexes) => harness.resend(&engine, indexes, None),
            Op::BeginFlush => {
                let flush = engine.begin_flush();
                let mut held = Vec::new();
                harness.check(&engine, step);
                while step + 1 < ops.len() && !needs_flush_lock(&ops[step + 1]) {
                    step += 1;
                    match &ops[step] {
                        Op::Write(specs) => harness.write(&engine, specs, Some(&mut held)),
                        Op::Resend(indexes) => harness.resend(&engine, indexes, Some(&mut held)),
                        _ => {}
                    }
                    harness.check(&engine, step);
                }
                flush.finish().unwrap();
                for appended in held {
                    engine.wait(appended).unwrap();
                }
                if step + 1 < ops.len() && matches!(ops[step + 1], Op::EndFlush) {
                    step += 1;
                }
            }
            Op::EndFlush => {}
            Op::Flush => drop(engine.flush().unwrap()),
            Op::FlushCollection(collection) => {
                let collection = CollectionName::new(COLLECTIONS[*collection as usize]).unwrap();
                engine.flush_collection(&collection).unwrap();
            }
            Op::Checkpoint => {
                engine.checkpoint(None).unwrap();
                harness.check_log(&engine, step);
            }
            Op::Restart => {
                engine.close().unwrap();
                engine = open(dir.path(), &config);
                harness.check_clock(&engine, step);
                harness.check_log(&engine, step);
            }
            Op::Crash => {
                // Dropped without flushing: the store is behind, the WAL has everything
                // acknowledged.
                drop(engine);
                engine = open(dir.path(), &config);
                harness.check_clock(&engine, step);
            }
        }
        harness.check(&engine, step);
        step += 1;
    }
    engine.close().unwrap();
    let engine = open(dir.path(), &config);
    harness.check(&engine, ops.len());
    harness.check_log(&engine, ops.len());
    harness.check_clock(&engine, ops.len());
    engine.close().unwrap();
}

fn model_cases() -> u32 {
    std::env::var("WEFT_MODEL_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(2000)
}

proptest! {
    // `WEFT_MODEL_CASES` runs more (or fewer) cases than CI's 2,000.
    #![proptest_config(ProptestConfig { cases: model_cases(), failure_persistence: None, ..ProptestConfig::default() })]

    /// Single writer, deterministic: every interleaving of writes, re-sends, held and
    /// whole flushes, checkpoints, restarts and crashes keeps every acknowledged change.
    #[test]
    fn the_engine_agrees_with_the_model_after_every_step(
        settings in settings(),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(&settings, &ops);
    }
}

/// Concurrent writers against the real background flusher, with tiny caches and flush
/// sizes: the workload that lost acknowledged set adds (a third of the changes add a new
/// element to one of a few set records, a fifth re-send the writer's own earlier
/// changes, the rest update one of many records). Merge is order-independent, so
/// whatever the interleaving, the engine must end equal to the model, and again after a
/// restart.
#[test]
fn concurrent_writers_with_re_sends_and_tiny_caches_lose_nothing() {
    use std::sync::Arc;

    use proptest::test_runner::{RngAlgorithm, TestRng};
    const WRITERS: u64 = 4;
    const BATCHES: u64 = 150;
    for (round, (cache_records, flush_records)) in [(20, 50), (100, 50), (5, 7), (1, 3)].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let config = EngineConfig {
            cache_records,
            flush_records,
            flush_interval: Duration::from_millis(10),
            ..EngineConfig::default()
        };
        let engine = Arc::new(open(dir.path(), &config));
        let threads: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let engine = Arc::clone(&engine);
                std::thread::spawn(move || {
                    let mut seed = [0u8; 32];
                    seed[0] = writer as u8;
                    seed[1] = round as u8;
                    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
                    let mut sent: Vec<Change> = Vec::new();
                    let mut all = Vec::new();
                    for batch in 0..BATCHES {
                        let len = 1 + rng.random_range(0..4usize);
                        let changes: Vec<Change> = (0..len)
                            .map(|i| {
                                let hlc = Hlc::new(T0 + batch, i as u32, NodeId(writer + 1));
                                let roll = rng.random_range(0..10u32);
                                if roll < 2 && !sent.is_empty() {
                                    return sent[rng.random_range(0..sent.len())].clone();
                                }
                                let change = if roll < 5 {
                                    let key = RecordKey::new(format!("set{:02}", rng.random_range(0..20u32))).unwrap();
                                    let element = Value::from(format!("w{writer}-b{batch}-{i}"));
                                    Change {
                                        collection: CollectionName::new("todos").unwrap(),
                                        key,
                                        hlc,
                                        state: ops::set_add(element, hlc),
                                    }
                                } else {
                                    let key = RecordKey::new(format!("rec{:03}", rng.random_range(0..300u32))).unwrap();
                                    let field = format!("f{}", rng.random_range(0..4u32));
                                    let document = Document::from([(field, Value::Int(batch as i64))]);
                                    Change {
                                        collection: CollectionName::new("todos").unwrap(),
                                        key,
                                        hlc,
                                        state: ops::update(None, document, hlc),
                                    }
                                };
                                sent.push(change.clone());
                                change
                            })
                            .collect();
                        engine.apply(changes.clone()).unwrap();
                        all.extend(changes);
                    }
                    all
                })
            })
            .collect();
        let mut model = Model::default();
        for thread in threads {
            for change in thread.join().unwrap() {
                model.apply(&change);
            }
        }
        let engine = Arc::into_inner(engine).unwrap();
        let compare = |engine: &Engine, when: &str| {
            for ((collection, key), state) in &model.records {
                let stored = engine.read(collection, key).unwrap();
                assert_eq!(stored.as_ref(), Some(state), "round {round} {when}: {collection}/{key}");
            }
        };
        compare(&engine, "after the last ack");
        engine.close().unwrap();
        let engine = open(dir.path(), &config);
        compare(&engine, "after a restart");
        engine.close().unwrap();
    }
}
