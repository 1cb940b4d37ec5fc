//! Merkle reconciliation: find exactly the records two replicas disagree on.
//!
//! Both sides run the same function, [`respond`], on each step the other sends. A step
//! carries any of:
//!
//! - `compare`: "here is my digest of this node" (the first step: the root);
//! - `children`: "here are my digests of this node's children" — all differing children
//!   of a level travel in one step;
//! - `leaves`: "here is every `(bucket, version)` I hold under this node", sent instead of
//!   children once the sender holds at most [`LEAF_KEYS_MAX`] keys there;
//! - `want`: "send me the records with these key hashes";
//! - `records`: full record states, which the receiver merges.
//!
//! A differing node is answered with the responder's children or, when it holds few keys
//! there, its leaf list; a leaf list is answered with the responder's records that differ
//! and a `want` for the sender's. A step that asks nothing (only records, or nothing)
//! ends the exchange. For two replicas of 1M keys the exchange takes 7 messages.
//!
//! Steps are bounded ([`STEP_NODES_MAX`], [`STEP_RECORDS_MAX`]); what does not fit is
//! left for a later exchange, flagged by `truncated`, and the initiator starts over once
//! the current exchange ends.
//!
//! ```
//! use weft_core::merkle::{MerkleIndex, ReconcileStep, RecordSource, respond};
//! # use weft_core::change::Change; use weft_core::key::RecordKey;
//! # struct Nothing; impl RecordSource for Nothing {
//! #     fn record(&self, _: &RecordKey) -> Option<Change> { None } }
//! let (a, b) = (MerkleIndex::new(), MerkleIndex::new());
//! let mut step = ReconcileStep::start(&a);
//! let mut turn = 0;
//! while !step.asks_nothing() {
//!     let (index, source) = if turn % 2 == 0 { (&b, &Nothing) } else { (&a, &Nothing) };
//!     // The receiver first merges `step.records`, then answers:
//!     step = respond(index, &step, source).unwrap();
//!     turn += 1;
//! }
//! ```

use std::collections::BTreeMap;

use crate::change::Change;
use crate::codec::{DecodeError, Reader, Writer};
use crate::key::{PartitionId, RecordKey};

use super::path::{LEVEL_MAX, NodePath};
use super::tree::{LEAF_KEYS_MAX, MerkleIndex};

/// Where a reconciliation step gets the full state of a record it must send.
pub trait RecordSource {
    /// The record's complete state as a change (its `hlc` the latest inside), or `None`
    /// if the record is unknown.
    fn record(&self, key: &RecordKey) -> Option<Change>;
}

/// My digests of the children of `parent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildDigests {
    /// The node whose children these are.
    pub parent: NodePath,
    /// One 64-bit digest per child, in child order.
    pub digests: Vec<u64>,
}

/// One key in a leaf list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafItem {
    /// The key's partition.
    pub partition: PartitionId,
    /// The key's bucket.
    pub bucket: u64,
    /// 64-bit digest of the record's version hash.
    pub version: u64,
}

/// Every key I hold under `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafList {
    /// The node listed.
    pub path: NodePath,
    /// Its keys.
    pub items: Vec<LeafItem>,
}

/// One message of a reconciliation exchange.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileStep {
    /// Nodes to compare: my digest of each.
    pub compare: Vec<(NodePath, u64)>,
    /// Children digests of nodes found to differ.
    pub children: Vec<ChildDigests>,
    /// Key lists of small differing nodes.
    pub leaves: Vec<LeafList>,
    /// Key hashes whose records I want.
    pub want: Vec<(PartitionId, u64)>,
    /// Records the receiver lacks or holds in another version.
    pub records: Vec<Change>,
    /// Some differences were left out to keep steps small (see [`STEP_NODES_MAX`],
    /// [`STEP_RECORDS_MAX`]); carried to the end of the exchange, after which the
    /// initiator starts a new one. Each exchange resolves some differences, so repeated
    /// exchanges converge.
    pub truncated: bool,
}

/// Most node descriptions (children lists plus leaf lists) in one step: keeps a step far
/// below the frame limit (a leaf list is at most 32 × 18 bytes, a children list 271 × 8).
pub const STEP_NODES_MAX: usize = 2_000;
/// Most records in one step.
pub const STEP_RECORDS_MAX: usize = 1_000;
const _: () = assert!(STEP_NODES_MAX * 32 <= crate::codec::BATCH_LEN_MAX_DEFAULT * 10);
const _: () = assert!(STEP_RECORDS_MAX <= crate::codec::BATCH_LEN_MAX_DEFAULT);

/// A peer's step that cannot be answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// A children list whose length is not the node's child count.
    #[error("children of {path:?}: expected {expected} digests, got {got}")]
    ChildCount {
        /// The node.
        path: NodePath,
        /// Its child count.
        expected: usize,
        /// Digests received.
        got: usize,
    },
    /// A record whose timestamp is too far ahead of this replica's clock.
    #[error("record refused: {0}")]
    ClockDrift(crate::hlc::ClockDriftError),
    /// A leaf item outside the node it was listed under.
    #[error("leaf list of {path:?} holds a key from another node")]
    ForeignLeafItem {
        /// The node.
        path: NodePath,
    },
}

impl ReconcileStep {
    /// The initiator's first step: the collection root.
    pub fn start(index: &MerkleIndex) -> ReconcileStep {
        ReconcileStep { compare: vec![(NodePath::ROOT, index.root() as u64)], ..ReconcileStep::default() }
    }

    /// True when the step asks nothing of the receiver (it may still carry records):
    /// the exchange ends once the receiver has merged them.
    pub fn asks_nothing(&self) -> bool {
        self.compare.is_empty() && self.children.is_empty() && self.leaves.is_empty() && self.want.is_empty()
    }

    /// Appends the wire form (docs/protocol.md, "Reconcile").
    pub fn encode(&self, writer: &mut Writer) {
        writer.array_len(6);
        writer.array_len(self.compare.len());
        for (path, digest) in &self.compare {
            writer.array_len(4);
            encode_path(*path, writer);
            writer.uint(*digest);
        }
        writer.array_len(self.children.len());
        for children in &self.children {
            writer.array_len(4);
            encode_path(children.parent, writer);
            let bytes: Vec<u8> = children.digests.iter().flat_map(|d| d.to_be_bytes()).collect();
            writer.bin(&bytes);
        }
        writer.array_len(self.leaves.len());
        for leaf in &self.leaves {
            writer.array_len(4);
            encode_path(leaf.path, writer);
            let at_root = leaf.path.level() == 0;
            let mut bytes = Vec::with_capacity(leaf.items.len() * 18);
            for item in &leaf.items {
                if at_root {
                    bytes.extend_from_slice(&item.partition.get().to_be_bytes());
                }
                bytes.extend_from_slice(&item.bucket.to_be_bytes());
                bytes.extend_from_slice(&item.version.to_be_bytes());
            }
            writer.bin(&bytes);
        }
        let mut want = Vec::with_capacity(self.want.len() * 10);
        for (partition, bucket) in &self.want {
            want.extend_from_slice(&partition.get().to_be_bytes());
            want.extend_from_slice(&bucket.to_be_bytes());
        }
        writer.bin(&want);
        writer.array_len(self.records.len());
        for record in &self.records {
            record.encode(writer);
        }
        writer.bool(self.truncated);
    }

    /// Reads the wire form.
    pub fn decode(reader: &mut Reader<'_>) -> Result<ReconcileStep, DecodeError> {
        let batch_max = reader.limits().batch_len_max;
        let len = reader.record(5, "reconcile step")?;
        let mut step = ReconcileStep::default();
        let n_compare = reader.array_max(batch_max, "compare")?;
        for _ in 0..n_compare {
            let entry_len = reader.record(4, "compare entry")?;
            let path = decode_path(reader)?;
            let digest = reader.u64("digest")?;
            reader.skip_extra(entry_len - 4)?;
            step.compare.push((path, digest));
        }
        reader.leave();
        let n_children = reader.array_max(batch_max, "children")?;
        for _ in 0..n_children {
            let entry_len = reader.record(4, "children entry")?;
            let parent = decode_path(reader)?;
            let at = reader.position();
            let bytes = reader.bin("child digests")?;
            if bytes.len() != parent.child_count() * 8 {
                return Err(DecodeError::Invalid {
                    at,
                    what: "child digests",
                    reason: format!("expected {} digests, got {} bytes", parent.child_count(), bytes.len()),
                });
            }
            let digests = bytes.chunks_exact(8).map(|c| u64::from_be_bytes(to_array(c))).collect();
            reader.skip_extra(entry_len - 4)?;
            step.children.push(ChildDigests { parent, digests });
        }
        reader.leave();
        let n_leaves = reader.array_max(batch_max, "leaves")?;
        for _ in 0..n_leaves {
            let entry_len = reader.record(4, "leaf list")?;
            let path = decode_path(reader)?;
            let at = reader.position();
            let bytes = reader.bin("leaf items")?;
            let item_bytes = if path.level() == 0 { 18 } else { 16 };
            if bytes.len() % item_bytes != 0 {
                return Err(DecodeError::Invalid {
                    at,
                    what: "leaf items",
                    reason: format!("length {} is not a multiple of {item_bytes}", bytes.len()),
                });
            }
            let mut items = Vec::with_capacity(bytes.len() / item_bytes);
            for chunk in bytes.chunks_exact(item_bytes) {
                let (partition, rest) = match path.partition() {
                    Some(partition) => (partition, chunk),
                    None => {
                        let number = u16::from_be_bytes(to_array(&chunk[..2]));
                        let partition = PartitionId::new(number).ok_or_else(|| DecodeError::Invalid {
                            at,
                            what: "leaf items",
                            reason: format!("partition {number} out of range"),
                        })?;
                        (partition, &chunk[2..])
                    }
                };
                let bucket = u64::from_be_bytes(to_array(&rest[..8]));
                let version = u64::from_be_bytes(to_array(&rest[8..16]));
                items.push(LeafItem { partition, bucket, version });
            }
            reader.skip_extra(entry_len - 4)?;
            step.leaves.push(LeafList { path, items });
        }
        reader.leave();
        let at = reader.position();
        let want = reader.bin("want")?;
        if want.len() % 10 != 0 {
            return Err(DecodeError::Invalid {
                at,
                what: "want",
                reason: format!("length {} is not a multiple of 10", want.len()),
            });
        }
        for chunk in want.chunks_exact(10) {
            let number = u16::from_be_bytes(to_array(&chunk[..2]));
            let partition = PartitionId::new(number).ok_or_else(|| DecodeError::Invalid {
                at,
                what: "want",
                reason: format!("partition {number} out of range"),
            })?;
            step.want.push((partition, u64::from_be_bytes(to_array(&chunk[2..]))));
        }
        let n_records = reader.array_max(batch_max, "records")?;
        for _ in 0..n_records {
            step.records.push(Change::decode(reader)?);
        }
        reader.leave();
        let mut used = 5;
        if len > 5 {
            step.truncated = reader.bool("truncated")?;
            used = 6;
        }
        reader.skip_extra(len - used)?;
        Ok(step)
    }
}

fn to_array<const N: usize>(slice: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(slice);
    out
}

fn encode_path(path: NodePath, writer: &mut Writer) {
    writer.uint(path.level() as u64);
    writer.uint(path.partition_number() as u64);
    writer.uint(path.prefix());
}

fn decode_path(reader: &mut Reader<'_>) -> Result<NodePath, DecodeError> {
    let at = reader.position();
    let level = reader.u8("path level")?;
    let partition = reader.u16("path partition")?;
    let prefix = reader.u64("path prefix")?;
    NodePath::new(level, partition, prefix).ok_or_else(|| DecodeError::Invalid {
        at,
        what: "merkle path",
        reason: format!("inconsistent path (level {level}, partition {partition}, prefix {prefix:#x})"),
    })
}

/// Answers a peer's step from this replica's `index` and records. The caller merges
/// `incoming.records` first (so answers reflect them) and must not answer a step that
/// [asks nothing](ReconcileStep::asks_nothing).
pub fn respond(
    index: &MerkleIndex,
    incoming: &ReconcileStep,
    source: &impl RecordSource,
) -> Result<ReconcileStep, ReconcileError> {
    let mut out = ReconcileStep { truncated: incoming.truncated, ..ReconcileStep::default() };
    for (path, digest) in &incoming.compare {
        if index.summary(*path).digest as u64 != *digest {
            expand(index, *path, &mut out);
        }
    }
    for children in &incoming.children {
        let Some(paths) = children.parent.children() else {
            return Err(ReconcileError::ChildCount { path: children.parent, expected: 0, got: children.digests.len() });
        };
        if children.digests.len() != children.parent.child_count() {
            return Err(ReconcileError::ChildCount {
                path: children.parent,
                expected: children.parent.child_count(),
                got: children.digests.len(),
            });
        }
        for (path, digest) in paths.zip(&children.digests) {
            if index.summary(path).digest as u64 != *digest {
                expand(index, path, &mut out);
            }
        }
    }
    let mut send: Vec<RecordKey> = Vec::new();
    for leaf in &incoming.leaves {
        compare_leaf(index, leaf, &mut send, &mut out.want)?;
    }
    for (partition, bucket) in &incoming.want {
        send.extend(index.find(*partition, *bucket).into_iter().map(|(entry, _)| entry.key.clone()));
    }
    send.sort();
    send.dedup();
    if send.len() > STEP_RECORDS_MAX {
        send.truncate(STEP_RECORDS_MAX);
        out.truncated = true;
    }
    out.records = send.iter().filter_map(|key| source.record(key)).collect();
    Ok(out)
}

/// Describes a node that differs: its children, or its keys when there are few.
fn expand(index: &MerkleIndex, path: NodePath, out: &mut ReconcileStep) {
    if out.children.len() + out.leaves.len() >= STEP_NODES_MAX {
        out.truncated = true;
        return;
    }
    let summary = index.summary(path);
    if summary.count <= LEAF_KEYS_MAX as u64 || path.level() >= LEVEL_MAX {
        let mut entries = Vec::new();
        index.entries_under(path, &mut entries);
        let items = entries
            .iter()
            .map(|(entry, version)| LeafItem {
                partition: entry.partition,
                bucket: entry.bucket,
                version: version.digest(),
            })
            .collect();
        out.leaves.push(LeafList { path, items });
    } else {
        let digests = index.child_digests(path).into_iter().map(|d| d as u64).collect();
        out.children.push(ChildDigests { parent: path, digests });
    }
}

/// Compares a peer's leaf list with my keys under the same node.
fn compare_leaf(
    index: &MerkleIndex,
    leaf: &LeafList,
    send: &mut Vec<RecordKey>,
    want: &mut Vec<(PartitionId, u64)>,
) -> Result<(), ReconcileError> {
    // Keyed by (partition, bucket); versions summed so that a (vanishingly rare) 64-bit
    // bucket collision still compares correctly.
    let mut theirs: BTreeMap<(PartitionId, u64), u64> = BTreeMap::new();
    for item in &leaf.items {
        let inside =
            leaf.path.partition().is_none_or(|p| p == item.partition) && leaf.path.contains_bucket(item.bucket);
        if !inside {
            return Err(ReconcileError::ForeignLeafItem { path: leaf.path });
        }
        let slot = theirs.entry((item.partition, item.bucket)).or_default();
        *slot = slot.wrapping_add(item.version);
    }
    let mut entries = Vec::new();
    index.entries_under(leaf.path, &mut entries);
    let mut mine: BTreeMap<(PartitionId, u64), (u64, Vec<&RecordKey>)> = BTreeMap::new();
    for (entry, version) in &entries {
        let slot = mine.entry((entry.partition, entry.bucket)).or_default();
        slot.0 = slot.0.wrapping_add(version.digest());
        slot.1.push(&entry.key);
    }
    for (hash, (version, keys)) in &mine {
        if theirs.get(hash) != Some(version) {
            send.extend(keys.iter().map(|key| (*key).clone()));
        }
    }
    for (hash, version) in &theirs {
        if mine.get(hash).map(|(v, _)| v) != Some(version) {
            want.push(*hash);
        }
    }
    Ok(())
}
