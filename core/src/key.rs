//! Names and keys: validated collection names, record keys, and the key hash that places
//! a key in a partition and a merkle bucket.

use std::fmt;

use compact_str::CompactString;

/// Longest record key, in bytes (docs/semantics.md).
pub const KEY_BYTES_MAX: usize = 1024;
/// Longest collection name, in bytes.
pub const COLLECTION_NAME_BYTES_MAX: usize = 128;
/// Longest field name, in bytes.
pub const FIELD_NAME_BYTES_MAX: usize = 256;
/// Number of partitions of every collection's key space (docs/storage.md). Prime, so that
/// partition numbers spread evenly over any number of cluster nodes.
pub const PARTITION_COUNT: u16 = 271;

/// A name or key that breaks its rules.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A record key that is empty or longer than [`KEY_BYTES_MAX`].
    #[error("record key must be 1 to {KEY_BYTES_MAX} bytes, got {0} bytes")]
    KeyLength(usize),
    /// A collection name that is empty, too long, or uses characters outside
    /// `[A-Za-z0-9_.-]` (or does not start with a letter, digit or underscore).
    #[error(
        "invalid collection name {0:?}: use 1 to {COLLECTION_NAME_BYTES_MAX} characters of [A-Za-z0-9_.-], starting with a letter, digit or '_'"
    )]
    CollectionName(String),
    /// A field name that is empty or longer than [`FIELD_NAME_BYTES_MAX`].
    #[error("field name must be 1 to {FIELD_NAME_BYTES_MAX} bytes, got {0} bytes")]
    FieldName(usize),
}

/// The name of a collection.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CollectionName(CompactString);

impl CollectionName {
    /// Validates `name`.
    pub fn new(name: impl Into<CompactString>) -> Result<CollectionName, KeyError> {
        let name = name.into();
        let valid_start = name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        let valid_rest = name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid_start || !valid_rest || name.len() > COLLECTION_NAME_BYTES_MAX {
            return Err(KeyError::CollectionName(name.to_string()));
        }
        Ok(CollectionName(name))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CollectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key of a record within its collection: any UTF-8 string of 1 to 1,024 bytes.
///
/// Keys of up to 24 bytes are stored inline (no heap allocation, no pointer to chase
/// when comparing), which matters on the merge hot path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey(CompactString);

impl RecordKey {
    /// Validates `key`.
    pub fn new(key: impl Into<CompactString>) -> Result<RecordKey, KeyError> {
        let key = key.into();
        if key.is_empty() || key.len() > KEY_BYTES_MAX {
            return Err(KeyError::KeyLength(key.len()));
        }
        Ok(RecordKey(key))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's hash, which places it in a partition and a merkle bucket.
    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.0)
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for RecordKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// Checks a field name.
pub fn validate_field_name(name: &str) -> Result<(), KeyError> {
    if name.is_empty() || name.len() > FIELD_NAME_BYTES_MAX {
        return Err(KeyError::FieldName(name.len()));
    }
    Ok(())
}

/// A partition of a collection's key space, `0..PARTITION_COUNT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionId(u16);

impl PartitionId {
    /// A partition number, if it is below [`PARTITION_COUNT`].
    pub fn new(id: u16) -> Option<PartitionId> {
        (id < PARTITION_COUNT).then_some(PartitionId(id))
    }

    /// The partition number.
    pub fn get(self) -> u16 {
        self.0
    }

    /// Its position in per-partition arrays.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where a key lives: `blake3(key)`'s first 8 bytes pick the partition, the next 8 bytes
/// are the bucket path in the partition's merkle tree (4 bits per level, high bits first).
/// Together the 16 bytes identify the key (finding two keys with equal 128-bit blake3
/// prefixes takes about 2^64 work).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyHash {
    /// The key's partition.
    pub partition: PartitionId,
    /// The key's path through the partition's merkle tree.
    pub bucket: u64,
    /// The first 8 bytes of the hash (the partition is derived from them).
    pub check: u64,
}

impl KeyHash {
    /// The 128 bits that identify the key.
    pub fn id(self) -> u128 {
        ((self.check as u128) << 64) | self.bucket as u128
    }
}

impl KeyHash {
    /// Hashes a key.
    pub fn of(key: &str) -> KeyHash {
        let digest = blake3::hash(key.as_bytes());
        let bytes = digest.as_bytes();
        let mut first = [0u8; 8];
        let mut second = [0u8; 8];
        first.copy_from_slice(&bytes[..8]);
        second.copy_from_slice(&bytes[8..16]);
        let check = u64::from_le_bytes(first);
        let partition = (check % PARTITION_COUNT as u64) as u16;
        KeyHash { partition: PartitionId(partition), bucket: u64::from_be_bytes(second), check }
    }
}
