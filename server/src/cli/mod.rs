//! The operator commands besides `serve`: WAL verification and repair, JSON-lines
//! import and export, and the load generator.

pub mod bench;
pub mod sql;
pub mod transfer;
pub mod wal;
