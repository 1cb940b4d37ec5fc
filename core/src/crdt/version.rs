//! Record version hashes, maintained incrementally.
//!
//! A record's version hash is the wrapping sum of one 128-bit hash per state component:
//! its presence and delete timestamps, each field register's `(name, hlc)`, each counter
//! node total, each counter base, each set tag. A merge that changes one component
//! subtracts the old component's hash and adds the new one, so the cost of keeping the
//! hash current is proportional to what a change touched, not to the record's size.
//!
//! Every component hash is seeded with the key's bucket, so the version hash of a record
//! also identifies its key, and the merkle index can sum version hashes directly.
//!
//! Values are deliberately not hashed: an HLC identifies one write, so equal timestamps
//! mean equal values, except when a buggy or hostile writer reuses a timestamp for two
//! values (see docs/semantics.md, "Ties").

use xxhash_rust::xxh3::{xxh3_64, xxh3_128_with_seed};

use crate::hlc::{Hlc, NodeId};
use crate::key::KeyHash;

/// Which part of a record a component hash covers.
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
pub(crate) enum Component {
    Presence = 1,
    Deleted = 2,
    Register = 3,
    CounterTotal = 4,
    CounterBase = 5,
    MemberAdd = 6,
    MemberRemove = 7,
}

/// A record's version hash: equal states of one key have equal versions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VersionHash(pub u128);

impl VersionHash {
    /// The 64-bit digest sent on the wire in merkle leaf lists.
    pub fn digest(self) -> u64 {
        self.0 as u64
    }
}

/// Accumulates a record's version hash while its state changes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Versioner {
    seed: u64,
    version: u128,
}

impl Versioner {
    pub(crate) fn new(key_hash: KeyHash, version: VersionHash) -> Versioner {
        let seed = key_hash.bucket ^ ((key_hash.partition.get() as u64) << 48).rotate_left(7);
        Versioner { seed, version: version.0 }
    }

    pub(crate) fn version(&self) -> VersionHash {
        VersionHash(self.version)
    }

    pub(crate) fn add(&mut self, hash: u128) {
        self.version = self.version.wrapping_add(hash);
    }

    pub(crate) fn remove(&mut self, hash: u128) {
        self.version = self.version.wrapping_sub(hash);
    }

    /// The hash of one component. `name` is the field name or element encoding (empty
    /// for record-level components); `extra` carries counter totals.
    pub(crate) fn component(&self, kind: Component, name: &[u8], hlc: Hlc, extra: [u64; 3]) -> u128 {
        let mut buf = [0u8; 1 + 8 + 20 + 24];
        buf[0] = kind as u8;
        buf[1..9].copy_from_slice(&xxh3_64(name).to_le_bytes());
        buf[9..29].copy_from_slice(&hlc.to_bytes());
        for (slot, value) in buf[29..].chunks_exact_mut(8).zip(extra) {
            slot.copy_from_slice(&value.to_le_bytes());
        }
        xxh3_128_with_seed(&buf, self.seed)
    }

    pub(crate) fn simple(&self, kind: Component, name: &[u8], hlc: Hlc) -> u128 {
        self.component(kind, name, hlc, [0; 3])
    }

    pub(crate) fn counter_total(&self, name: &[u8], node: NodeId, increments: u64, decrements: u64, hlc: Hlc) -> u128 {
        self.component(Component::CounterTotal, name, hlc, [node.0, increments, decrements])
    }
}
