//! Addresses of merkle nodes, independent of either replica's tree shape.
//!
//! Level 0 is the collection root, level 1 a partition, level `1 + n` the bucket prefix
//! of `n` nibbles (4 bits each, high bits of the key's bucket first) within a partition.

use crate::key::{PARTITION_COUNT, PartitionId};

/// Nibbles in a 64-bit bucket: the deepest a trie can go below a partition.
pub const BUCKET_NIBBLES: usize = 16;
/// The deepest level a path can name.
pub const LEVEL_MAX: u8 = 1 + BUCKET_NIBBLES as u8;

/// A node of the merkle index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodePath {
    level: u8,
    partition: u16,
    prefix: u64,
}

impl NodePath {
    /// The collection root.
    pub const ROOT: NodePath = NodePath { level: 0, partition: 0, prefix: 0 };

    /// A path from its wire parts, if they are consistent: level at most [`LEVEL_MAX`],
    /// a valid partition below the root, no prefix bits beyond the level.
    pub fn new(level: u8, partition: u16, prefix: u64) -> Option<NodePath> {
        if level > LEVEL_MAX {
            return None;
        }
        if level == 0 {
            return (partition == 0 && prefix == 0).then_some(NodePath::ROOT);
        }
        PartitionId::new(partition)?;
        let nibbles = (level - 1) as usize;
        if prefix & !prefix_mask(nibbles) != 0 {
            return None;
        }
        Some(NodePath { level, partition, prefix })
    }

    /// The node of a whole partition.
    pub fn partition_root(partition: PartitionId) -> NodePath {
        NodePath { level: 1, partition: partition.get(), prefix: 0 }
    }

    /// The deepest node containing one bucket.
    pub fn key(partition: PartitionId, bucket: u64) -> NodePath {
        NodePath { level: LEVEL_MAX, partition: partition.get(), prefix: bucket }
    }

    /// The level (0 = root).
    pub fn level(self) -> u8 {
        self.level
    }

    /// The partition, or `None` for the root.
    pub fn partition(self) -> Option<PartitionId> {
        if self.level == 0 { None } else { PartitionId::new(self.partition) }
    }

    /// The partition number on the wire (0 for the root).
    pub fn partition_number(self) -> u16 {
        self.partition
    }

    /// Bucket prefix bits, aligned high.
    pub fn prefix(self) -> u64 {
        self.prefix
    }

    /// Nibbles of bucket prefix below the partition.
    pub fn nibbles(self) -> usize {
        self.level.saturating_sub(1) as usize
    }

    /// Whether a key with `bucket` in this path's partition lies beneath this path.
    pub fn contains_bucket(self, bucket: u64) -> bool {
        bucket & prefix_mask(self.nibbles()) == self.prefix
    }

    /// Child paths: the 271 partitions under the root, 16 buckets under others, none at
    /// the deepest level.
    pub fn children(self) -> Option<Box<dyn Iterator<Item = NodePath>>> {
        if self.level == 0 {
            return Some(Box::new((0..PARTITION_COUNT).map(|p| NodePath { level: 1, partition: p, prefix: 0 })));
        }
        if self.level >= LEVEL_MAX {
            return None;
        }
        let shift = 60 - 4 * self.nibbles();
        Some(Box::new((0..16u64).map(move |n| NodePath {
            level: self.level + 1,
            partition: self.partition,
            prefix: self.prefix | (n << shift),
        })))
    }

    /// Number of children ([`NodePath::children`]).
    pub fn child_count(self) -> usize {
        match self.level {
            0 => PARTITION_COUNT as usize,
            LEVEL_MAX => 0,
            _ => 16,
        }
    }
}

fn prefix_mask(nibbles: usize) -> u64 {
    if nibbles == 0 { 0 } else { u64::MAX << (64 - 4 * nibbles.min(BUCKET_NIBBLES)) }
}
