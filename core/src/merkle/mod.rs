//! The merkle index (docs/storage.md) and the reconciliation exchange built on it.
//!
//! [`MerkleIndex`] holds, for one collection, a trie per partition over key buckets with
//! order-independent digests; [`respond`] answers reconciliation steps from it. The
//! index knows keys and version hashes only: record states come from a
//! [`RecordSource`], so the same code serves the in-memory replica and the server's store.

mod path;
mod reconcile;
mod tree;

pub use path::{BUCKET_NIBBLES, LEVEL_MAX, NodePath};
pub use reconcile::{
    ChildDigests, LeafItem, LeafList, ReconcileError, ReconcileStep, RecordSource, STEP_NODES_MAX, STEP_RECORDS_MAX,
    respond,
};
pub use tree::{LEAF_KEYS_MAX, LeafEntry, MerkleIndex, Summary};
