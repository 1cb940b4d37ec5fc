//! # weft-storage
//!
//! Durable storage for Weft servers: what makes "acknowledged" mean "survives `kill -9`
//! and power loss" (docs/storage.md).
//!
//! - [`wal`]: the write-ahead log — segmented files of checksummed records, group commit
//!   with `fdatasync`, recovery that truncates a torn tail and refuses mid-log damage,
//!   and repair that keeps every valid record and moves the rest aside.
//! - [`store`]: the record store behind one trait (SQLite by default, in-memory for
//!   tests), holding records, the per-partition sequence index and the checkpoint.
//! - [`engine`]: the API the server uses — apply a batch (returns once durable), read,
//!   scan, changes since a sequence number, merkle reconciliation — with checkpoints,
//!   bounded caches and recovery.
//! - [`feed`]: the change feed that tells subscribers what each batch changed.
//! - [`sim`]: a seeded random source and a disk that can lose power, for the
//!   deterministic simulation (the WAL runs on it through [`wal::Disk`]).

pub mod engine;
pub mod feed;
pub mod sim;
pub mod store;
pub mod wal;
