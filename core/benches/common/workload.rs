//! Deterministic workloads shared by the benchmarks.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests and benchmarks fail loudly on bad setup")]
#![allow(dead_code, reason = "each bench uses a different subset")]

use weft_core::change::Change;
use weft_core::crdt::ops;
use weft_core::hlc::{Hlc, NodeId};
use weft_core::key::{CollectionName, RecordKey};
use weft_core::value::{Document, Value};

/// Start of every workload's timestamps.
pub const T0: u64 = 1_700_000_000_000;

/// A tiny deterministic generator (xorshift64*), so every run sees the same stream.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One field write: the same op applied to every CRDT under comparison.
#[derive(Clone, Debug)]
pub struct FieldWrite {
    pub key: usize,
    pub field: usize,
    pub value: i64,
    pub hlc: Hlc,
}

pub fn key_name(key: usize) -> String {
    format!("rec-{key:06}")
}

pub fn field_name(field: usize) -> String {
    format!("field{field}")
}

/// `n_ops` single-field updates over `n_keys` records of `n_fields` fields, written by 8
/// nodes whose timestamps interleave within a 2-second window: about half of the writes
/// lose to a newer one already applied (conflicting HLCs).
pub fn field_writes(n_ops: usize, n_keys: usize, n_fields: usize) -> Vec<FieldWrite> {
    let mut rng = Rng::new(42);
    (0..n_ops)
        .map(|i| {
            let wall_ms = T0 + (i as u64 / 500) + rng.below(2_000);
            FieldWrite {
                key: rng.below(n_keys as u64) as usize,
                field: rng.below(n_fields as u64) as usize,
                value: rng.next() as i64 >> 8,
                hlc: Hlc::new(wall_ms, rng.below(4) as u32, NodeId(1 + rng.below(8))),
            }
        })
        .collect()
}

/// The writes as weft changes (each an `update` of one field).
pub fn to_changes(writes: &[FieldWrite], collection: &CollectionName) -> Vec<Change> {
    let keys: Vec<RecordKey> =
        (0..=writes.iter().map(|w| w.key).max().unwrap_or(0)).map(|k| RecordKey::new(key_name(k)).unwrap()).collect();
    let fields: Vec<String> = (0..16).map(field_name).collect();
    writes
        .iter()
        .map(|w| {
            let document = Document::from([(fields[w.field].clone(), Value::Int(w.value))]);
            Change {
                collection: collection.clone(),
                key: keys[w.key].clone(),
                hlc: w.hlc,
                state: ops::update(None, document, w.hlc),
            }
        })
        .collect()
}

/// A typical app record write: `update` of three fields (string, bool, int).
pub fn app_changes(n: usize, collection: &CollectionName) -> Vec<Change> {
    let mut rng = Rng::new(7);
    (0..n)
        .map(|i| {
            let hlc = Hlc::new(T0 + i as u64, 0, NodeId(1 + rng.below(1_000)));
            let document = Document::from([
                ("title".to_string(), Value::from(format!("buy milk and eggs #{}", rng.below(10_000)))),
                ("done".to_string(), Value::Bool(rng.below(2) == 0)),
                ("priority".to_string(), Value::Int(rng.below(5) as i64)),
            ]);
            Change {
                collection: collection.clone(),
                key: RecordKey::new(format!("todo-{:08}", rng.below(1_000_000))).unwrap(),
                hlc,
                state: ops::update(None, document, hlc),
            }
        })
        .collect()
}
