//! CRDT state and merge: LWW fields, PN-counter fields, observed-remove sets, tombstones,
//! and the incrementally maintained version hash that feeds the merkle index.
//!
//! See docs/semantics.md for the rules with examples.

mod counter;
mod field_map;
pub mod ops;
mod record;
mod size;
mod version;

pub use counter::{CounterBase, CounterState, NodeTotal};
pub use field_map::{FieldMap, FieldName};
pub use record::{FieldState, MemberState, Pruned, RecordState, Register, encoding_of};
pub use size::{RECORD_BYTES_MAX_DEFAULT, RECORD_ENTRIES_MAX_DEFAULT, RecordLimits, RecordSize, value_bytes};
pub use version::VersionHash;
pub(crate) use version::Versioner;
