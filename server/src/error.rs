//! The error every protocol operation refuses with: a stable protocol code and a reason
//! naming what was wrong. Its own module so that the shared state, the sync operations,
//! the session and the transports can all name it without importing each other.

use weft_core::protocol::{BatchId, ErrorCode, ServerMessage};

/// An operation refused, with its protocol error code and a reason naming what was
/// wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OpError {
    /// Stable code.
    pub code: ErrorCode,
    /// Human-readable reason.
    pub message: String,
    /// Index of the offending change in its batch, if one.
    pub op_index: Option<u32>,
}

impl OpError {
    /// An error not tied to one change.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> OpError {
        OpError { code, message: message.into(), op_index: None }
    }

    /// An error about change `index` of a batch.
    pub fn at(code: ErrorCode, index: usize, message: impl Into<String>) -> OpError {
        OpError { code, message: format!("change {index}: {}", message.into()), op_index: Some(index as u32) }
    }

    /// The error frame for it.
    pub fn to_message(&self, batch_id: Option<BatchId>, fatal: bool) -> ServerMessage {
        let mut message = self.message.clone();
        if message.len() > weft_core::protocol::ERROR_MESSAGE_BYTES_MAX {
            let mut end = weft_core::protocol::ERROR_MESSAGE_BYTES_MAX;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        ServerMessage::Error { code: self.code, message, batch_id, op_index: self.op_index, fatal }
    }
}

impl From<weft_storage::engine::EngineError> for OpError {
    fn from(error: weft_storage::engine::EngineError) -> OpError {
        if let weft_storage::engine::EngineError::RecordTooLarge { index, .. } = &error {
            return OpError::at(ErrorCode::RecordTooLarge, *index, error.to_string());
        }
        tracing::error!(%error, "storage engine error");
        OpError::new(ErrorCode::Internal, format!("storage failed: {error}"))
    }
}
