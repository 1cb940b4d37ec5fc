//! The merkle index of one collection: 271 partition tries over key buckets.
//!
//! A node's digest is the wrapping sum of the version hashes of the keys beneath it, so
//! it does not depend on the tree's shape or on insertion order, and an update adds the
//! version difference along one root-to-leaf path. Leaves split into 16 children when
//! they pass [`LEAF_KEYS_MAX`] keys and inner nodes collapse back into a leaf when they
//! fall to half of it, so depth follows size (≈ log16(n / 271 / 32) levels below the
//! partition).

use crate::crdt::VersionHash;
use crate::key::{KeyHash, PARTITION_COUNT, PartitionId, RecordKey};

use super::path::{BUCKET_NIBBLES, NodePath};

/// Most keys in one leaf before it splits (docs/storage.md).
pub const LEAF_KEYS_MAX: usize = 32;
/// An inner node with this many keys or fewer collapses into a leaf.
const COLLAPSE_KEYS_MAX: u32 = (LEAF_KEYS_MAX / 2) as u32;
const _: () = assert!(COLLAPSE_KEYS_MAX as usize * 2 <= LEAF_KEYS_MAX);

/// One key in a leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafEntry {
    /// The key's partition.
    pub partition: PartitionId,
    /// The key's bucket path (its hash).
    pub bucket: u64,
    /// The rest of the key's 128-bit hash.
    pub check: u64,
    /// The key itself, to answer requests by bucket.
    pub key: RecordKey,
}

/// The keys of a leaf. Identities (128-bit key hashes) and versions are kept apart from
/// the keys, so an update scans at most 32 × 32 contiguous bytes, changes the version in
/// place, and never reads a key string.
#[derive(Clone, Debug, Default)]
struct Leaf {
    slots: Vec<(u128, VersionHash)>,
    entries: Vec<LeafEntry>,
}

impl Leaf {
    fn push(&mut self, slot: (u128, VersionHash), entry: LeafEntry) {
        self.slots.push(slot);
        self.entries.push(entry);
    }

    fn append(&mut self, other: &mut Leaf) {
        self.slots.append(&mut other.slots);
        self.entries.append(&mut other.entries);
    }

    fn iter(&self) -> impl Iterator<Item = (&LeafEntry, VersionHash)> {
        self.entries.iter().zip(self.slots.iter().map(|(_, version)| *version))
    }
}

#[derive(Clone, Debug)]
enum Children {
    Leaf(Leaf),
    Inner(Box<[Node; 16]>),
}

#[derive(Clone, Debug)]
struct Node {
    digest: u128,
    count: u32,
    children: Children,
}

impl Node {
    fn empty_leaf() -> Node {
        Node { digest: 0, count: 0, children: Children::Leaf(Leaf::default()) }
    }
}

/// A digest and key count of one subtree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Wrapping sum of the version hashes beneath.
    pub digest: u128,
    /// Number of keys beneath.
    pub count: u64,
}

/// The merkle index of one collection.
#[derive(Clone, Debug)]
pub struct MerkleIndex {
    partitions: Vec<Node>,
    root: u128,
    count: u64,
}

impl Default for MerkleIndex {
    fn default() -> MerkleIndex {
        MerkleIndex::new()
    }
}

fn nibble(bucket: u64, depth: usize) -> usize {
    ((bucket >> (60 - 4 * depth)) & 0xf) as usize
}

impl MerkleIndex {
    /// An empty index.
    pub fn new() -> MerkleIndex {
        MerkleIndex { partitions: (0..PARTITION_COUNT).map(|_| Node::empty_leaf()).collect(), root: 0, count: 0 }
    }

    /// The digest of the whole collection: equal on two replicas exactly when (up to hash
    /// collisions) they hold the same states.
    pub fn root(&self) -> u128 {
        self.root
    }

    /// Number of keys indexed.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True when no key is indexed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sets the version of `key` (`None` removes it). Cost: one root-to-leaf path.
    pub fn set(&mut self, hash: KeyHash, key: &RecordKey, version: Option<VersionHash>) {
        let node = &mut self.partitions[hash.partition.index()];
        let (delta, count_delta) = set_in(node, 0, hash, key, version);
        self.root = self.root.wrapping_add(delta);
        self.count = self.count.wrapping_add_signed(count_delta as i64);
    }

    /// The leaf that holds (or would hold) `hash`.
    fn leaf(&self, hash: KeyHash) -> &Leaf {
        let mut node = &self.partitions[hash.partition.index()];
        let mut depth = 0;
        loop {
            match &node.children {
                Children::Inner(children) => {
                    node = &children[nibble(hash.bucket, depth)];
                    depth += 1;
                }
                Children::Leaf(leaf) => return leaf,
            }
        }
    }

    /// Whether a key with this hash is indexed (an exact 128-bit hash match).
    pub fn contains(&self, hash: KeyHash) -> bool {
        let id = hash.id();
        self.leaf(hash).slots.iter().any(|(candidate, _)| *candidate == id)
    }

    /// The version indexed for the key with this hash, if any.
    pub fn version(&self, hash: KeyHash) -> Option<VersionHash> {
        let id = hash.id();
        self.leaf(hash).slots.iter().find(|(candidate, _)| *candidate == id).map(|(_, version)| *version)
    }

    /// Prefetches the leaf that holds `hash`, ahead of a [`MerkleIndex::set`] (the inner
    /// nodes above it are few and usually cached; the leaf's slots are not).
    pub(crate) fn prefetch_leaf(&self, hash: KeyHash) {
        crate::prefetch::slice(&self.leaf(hash).slots);
    }

    /// Digest and key count under `path`.
    pub fn summary(&self, path: NodePath) -> Summary {
        let Some(partition) = path.partition() else {
            return Summary { digest: self.root, count: self.count };
        };
        let mut node = &self.partitions[partition.index()];
        let nibbles = path.nibbles();
        for depth in 0..nibbles {
            match &node.children {
                Children::Inner(children) => node = &children[nibble(path.prefix(), depth)],
                Children::Leaf(leaf) => {
                    let mut summary = Summary::default();
                    for (_, version) in leaf.iter().filter(|(e, _)| path.contains_bucket(e.bucket)) {
                        summary.digest = summary.digest.wrapping_add(version.0);
                        summary.count += 1;
                    }
                    return summary;
                }
            }
        }
        Summary { digest: node.digest, count: node.count as u64 }
    }

    /// Digests of the children of `path`: 271 partitions under the root, 16 buckets under
    /// any other node.
    pub fn child_digests(&self, path: NodePath) -> Vec<u128> {
        match path.children() {
            Some(children) => children.map(|child| self.summary(child).digest).collect(),
            None => Vec::new(),
        }
    }

    /// Appends every entry under `path`.
    pub fn entries_under<'a>(&'a self, path: NodePath, out: &mut Vec<(&'a LeafEntry, VersionHash)>) {
        match path.partition() {
            None => {
                for partition in &self.partitions {
                    collect(partition, out, &|_| true);
                }
            }
            Some(partition) => {
                let mut node = &self.partitions[partition.index()];
                for depth in 0..path.nibbles() {
                    match &node.children {
                        Children::Inner(children) => node = &children[nibble(path.prefix(), depth)],
                        Children::Leaf(_) => break,
                    }
                }
                collect(node, out, &|bucket| path.contains_bucket(bucket));
            }
        }
    }

    /// The entries whose hash is `(partition, bucket)` (one, barring 64-bit collisions).
    pub fn find(&self, partition: PartitionId, bucket: u64) -> Vec<(&LeafEntry, VersionHash)> {
        let mut out = Vec::new();
        self.entries_under(NodePath::key(partition, bucket), &mut out);
        out
    }
}

fn collect<'a>(node: &'a Node, out: &mut Vec<(&'a LeafEntry, VersionHash)>, keep: &dyn Fn(u64) -> bool) {
    match &node.children {
        Children::Leaf(leaf) => out.extend(leaf.iter().filter(|(e, _)| keep(e.bucket))),
        Children::Inner(children) => {
            for child in children.iter() {
                collect(child, out, keep);
            }
        }
    }
}

/// Sets `key` beneath `node` at `depth`; returns the digest and count change.
fn set_in(node: &mut Node, depth: usize, hash: KeyHash, key: &RecordKey, version: Option<VersionHash>) -> (u128, i32) {
    let bucket = hash.bucket;
    let (delta, count_delta) = match &mut node.children {
        Children::Inner(children) => set_in(&mut children[nibble(bucket, depth)], depth + 1, hash, key, version),
        Children::Leaf(leaf) => {
            let id = hash.id();
            let position = leaf.slots.iter().position(|(candidate, _)| *candidate == id);
            match (position, version) {
                (Some(index), Some(version)) => {
                    let slot = &mut leaf.slots[index].1;
                    let delta = version.0.wrapping_sub(slot.0);
                    *slot = version;
                    (delta, 0)
                }
                (Some(index), None) => {
                    leaf.entries.swap_remove(index);
                    let (_, old) = leaf.slots.swap_remove(index);
                    (0u128.wrapping_sub(old.0), -1)
                }
                (None, Some(version)) => {
                    leaf.push(
                        (id, version),
                        LeafEntry { partition: hash.partition, bucket, check: hash.check, key: key.clone() },
                    );
                    (version.0, 1)
                }
                (None, None) => (0, 0),
            }
        }
    };
    node.digest = node.digest.wrapping_add(delta);
    node.count = node.count.wrapping_add_signed(count_delta);
    reshape(node, depth);
    (delta, count_delta)
}

fn reshape(node: &mut Node, depth: usize) {
    match &mut node.children {
        Children::Leaf(leaf) if leaf.slots.len() > LEAF_KEYS_MAX && depth < BUCKET_NIBBLES => {
            let mut children: Box<[Node; 16]> = Box::new(std::array::from_fn(|_| Node::empty_leaf()));
            for (slot, entry) in leaf.slots.drain(..).zip(leaf.entries.drain(..)) {
                let child = &mut children[nibble(entry.bucket, depth)];
                child.digest = child.digest.wrapping_add(slot.1.0);
                child.count += 1;
                if let Children::Leaf(child_leaf) = &mut child.children {
                    child_leaf.push(slot, entry);
                }
            }
            for child in children.iter_mut() {
                reshape(child, depth + 1);
            }
            node.children = Children::Inner(children);
        }
        Children::Inner(_) if node.count <= COLLAPSE_KEYS_MAX => {
            let mut leaf = Leaf::default();
            drain_into(node, &mut leaf);
            node.children = Children::Leaf(leaf);
        }
        _ => {}
    }
}

fn drain_into(node: &mut Node, out: &mut Leaf) {
    match &mut node.children {
        Children::Leaf(leaf) => out.append(leaf),
        Children::Inner(children) => {
            for child in children.iter_mut() {
                drain_into(child, out);
            }
        }
    }
}
