//! # weft-storage
//!
//! Durable storage for Weft servers: what makes "acknowledged" mean "survives `kill -9`
//! and power loss" (DESIGN §3, §5).
//!
//! - [`wal`]: the write-ahead log — segmented files of checksummed records, group commit
//!   with `fdatasync`, recovery that truncates a torn tail and refuses mid-log damage,
//!   and repair that keeps every valid record and moves the rest aside.
//!
//! The record store (SQLite and in-memory), checkpoints and the storage engine API are
//! the next parts of this crate (see docs/storage.md).

pub mod engine;
pub mod store;
pub mod wal;
