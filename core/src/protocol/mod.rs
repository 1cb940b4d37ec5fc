//! The sync protocol (docs/protocol.md): message types, frames, cursors and error codes.
//!
//! Transports (WebSocket, HTTP) live outside the core; they move the frames that
//! [`ClientMessage::encode`] and [`ServerMessage::encode`] produce. The wire format is
//! documented byte by byte in docs/protocol.md.

mod cursor;
mod envelope;
mod error_code;
mod message;
mod shape;

pub use cursor::{Cursor, LogId};
pub use envelope::{ENVELOPE_FRAMES_MAX, decode_envelope, encode_envelope};
pub use error_code::ErrorCode;
pub use message::{
    BatchId, ClientMessage, ERROR_MESSAGE_BYTES_MAX, PROTOCOL_VERSION, QUERY_BYTES_MAX, ServerMessage, SessionId,
    SubscriptionId, TOKEN_BYTES_MAX,
};
pub use shape::{SHAPE_CONDITIONS_MAX, Shape};
