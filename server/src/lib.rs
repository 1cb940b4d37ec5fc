//! # weft-server
//!
//! The Weft sync server and the `weft` command (docs/protocol.md, docs/server.md).
//!
//! - [`serve`]: start-up (listener first, then recovery, then ready) and graceful
//!   shutdown; [`config`]: file, env and flag settings.
//! - [`session`]: the protocol session, sans-IO — hello, authorization, catch-up, live
//!   delivery, acks in order, reconciliation, queries — over the sync operations in
//!   [`sync`].
//! - [`ws`] and [`http`]: the transports — WebSocket `/v1/ws`, `POST /v1/sync`, record
//!   reads, health and metrics — that drive sessions; [`error`]: the error they answer
//!   with.
//! - [`auth`]: JWT verification and the per-collection rules; [`limits`]: rate and
//!   connection limits; [`metrics`]: Prometheus counters.
//! - [`hub`]: subscriptions and the fan-out of the storage engine's change feed;
//!   [`indexes`]: secondary indexes kept by the same feed.
//! - [`cli`]: the operator commands (`wal`, `import`, `export`, `bench`).

pub mod accept;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod hub;
pub mod indexes;
pub mod limits;
pub mod metrics;
pub mod page_cursor;
pub mod serve;
pub mod session;
pub mod state;
pub mod sync;
pub mod ws;
