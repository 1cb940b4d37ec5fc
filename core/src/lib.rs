//! # weft-core
//!
//! The pure-logic heart of Weft, a local-first sync database: the data model, hybrid
//! logical clocks, CRDT merge, the merkle index, the sync protocol and the client replica.
//! It does no IO — no files, sockets, threads or system clock calls on `wasm32` — so the
//! same code runs in the server, in browsers (WASM) and on phones (FFI).
//!
//! | module | owns |
//! |---|---|
//! | [`value`] | JSON-like values and their canonical MessagePack form |
//! | [`hlc`] | hybrid logical clocks, drift checks, clock sources |
//! | [`key`] | collection names, record keys, partitions, key hashes |
//! | [`crdt`] | record state, merge (LWW fields, counters, OR-sets), pruning, version hashes |
//! | [`change`] | the unit of replication and its wire form |
//! | [`merkle`] | the merkle index and the reconciliation exchange |
//! | [`protocol`] | sync messages, cursors, error codes, frame limits |
//! | [`codec`] | the bounded MessagePack reader and canonical writer |
//! | [`replica`] | the sans-IO client replica: local writes, outbox, sync |
//! | [`query`] | the query model, comparison rules, predicates, evaluation |
//!
//! The merge rules are described with examples in `docs/semantics.md`, the wire format in
//! `docs/protocol.md`.

pub mod change;
pub mod codec;
pub mod crdt;
pub mod hlc;
pub mod key;
pub mod merkle;
mod prefetch;
pub mod protocol;
pub mod query;
pub mod replica;
pub mod value;
