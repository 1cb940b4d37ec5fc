//! # weft-client
//!
//! A native client for Weft servers: the `weft-core` [`Replica`](weft_core::replica::Replica)
//! behind a WebSocket transport that connects, reconnects with backoff, pushes the
//! outbox and applies what the server sends ([`Client`]); a raw protocol connection for
//! tools and load generators ([`raw`]); and the stateless HTTP endpoints ([`http`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), weft_client::ClientError> {
//! use weft_client::{Client, ClientConfig};
//! use weft_core::key::{CollectionName, RecordKey};
//! use weft_core::value::{Document, Value};
//!
//! let client = Client::connect(ClientConfig::new("ws://127.0.0.1:7070")).await?;
//! let todos = CollectionName::new("todos").unwrap();
//! client.subscribe(&todos, None);
//! client.put(&todos, &RecordKey::new("t1").unwrap(), Document::from([("title".into(), Value::from("milk"))]))?;
//! client.synced().await?; // the server has it durably
//! # Ok(()) }
//! ```

mod client;
pub mod http;
pub mod raw;

pub use client::{Client, ClientConfig, Status, random_replica_id};

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The WebSocket could not be opened or broke.
    #[error("connection to {url}: {reason}")]
    Connect {
        /// The server URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server refused the connection for good (bad token, protocol version).
    #[error("server refused the connection: {code:?}: {message}")]
    Refused {
        /// Its error code.
        code: weft_core::protocol::ErrorCode,
        /// Its explanation.
        message: String,
    },
    /// The server sent something this client cannot accept.
    #[error("protocol: {0}")]
    Protocol(String),
    /// A local write was invalid.
    #[error(transparent)]
    Write(#[from] weft_core::replica::WriteError),
    /// An HTTP request failed (status 0: no response, e.g. the server is not running).
    #[error("{}{message}", if *status == 0 { String::new() } else { format!("HTTP {status}: ") })]
    Http {
        /// Status code (0 when no response arrived).
        status: u16,
        /// The server's error message or the transport error.
        message: String,
    },
    /// The client was closed.
    #[error("client closed")]
    Closed,
}
