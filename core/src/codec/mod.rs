//! MessagePack encoding of values, changes and protocol messages.
//!
//! Weft writes a canonical subset of MessagePack (shortest integers, float64 only, sorted
//! map keys) with its own small writer and a bounded reader: the wire format is part of
//! the product, and hostile bytes must never panic or allocate without bound.

mod reader;
mod writer;

pub use reader::{Kind, Reader};
pub use writer::Writer;

/// Limits applied while decoding bytes from a peer or a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest frame accepted, in bytes.
    pub frame_bytes_max: usize,
    /// Deepest nesting of arrays and maps (messages use about 8 levels themselves).
    pub depth_max: usize,
    /// Most changes in one batch, and most entries in any other list of a message.
    pub batch_len_max: usize,
    /// Longest string or byte string, in bytes.
    pub string_bytes_max: usize,
}

/// Default frame limit: 4 MiB.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 4 << 20;
/// Default nesting limit: enough for messages (≈ 8 levels) plus 32 levels of user values.
pub const DEPTH_MAX_DEFAULT: usize = 40;
/// Default batch limit.
pub const BATCH_LEN_MAX_DEFAULT: usize = 10_000;
/// Default string limit: 1 MiB.
pub const STRING_BYTES_MAX_DEFAULT: usize = 1 << 20;

const _: () = assert!(STRING_BYTES_MAX_DEFAULT <= FRAME_BYTES_MAX_DEFAULT);
const _: () = assert!(BATCH_LEN_MAX_DEFAULT <= FRAME_BYTES_MAX_DEFAULT / 16);

impl Default for DecodeLimits {
    fn default() -> DecodeLimits {
        DecodeLimits {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            depth_max: DEPTH_MAX_DEFAULT,
            batch_len_max: BATCH_LEN_MAX_DEFAULT,
            string_bytes_max: STRING_BYTES_MAX_DEFAULT,
        }
    }
}

/// Why bytes could not be decoded. `at` is the byte offset in the frame; `what` names the
/// element being read, e.g. `"change key"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame ended in the middle of a value.
    #[error("truncated frame: {what} at byte {at} runs past the end")]
    Truncated {
        /// Byte offset.
        at: usize,
        /// Element being read.
        what: &'static str,
    },
    /// The frame is larger than the frame limit.
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Size of the frame.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Arrays and maps are nested deeper than the limit.
    #[error("{what} at byte {at} is nested deeper than the limit of {max} levels")]
    TooDeep {
        /// Byte offset.
        at: usize,
        /// Element being read.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// A list is longer than the batch limit.
    #[error("{what} at byte {at} has {len} entries, more than the limit of {max}")]
    BatchTooLarge {
        /// Byte offset.
        at: usize,
        /// Element being read.
        what: &'static str,
        /// Entries announced.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A string or byte string is longer than allowed for its element.
    #[error("{what} at byte {at} is {len} bytes long, more than the limit of {max}")]
    TooLong {
        /// Byte offset.
        at: usize,
        /// Element being read.
        what: &'static str,
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value of another MessagePack type than expected.
    #[error("{what} at byte {at}: expected {expected}, found marker 0x{found:02x}")]
    UnexpectedType {
        /// Byte offset.
        at: usize,
        /// Element being read.
        what: &'static str,
        /// Expected type.
        expected: &'static str,
        /// The marker byte found.
        found: u8,
    },
    /// An integer does not fit the element's range.
    #[error("{what} at byte {at}: integer out of range")]
    IntegerOutOfRange {
        /// Byte offset.
        at: usize,
        /// Element being read.
        what: &'static str,
    },
    /// A string is not valid UTF-8.
    #[error("{what} at byte {at}: invalid UTF-8")]
    InvalidUtf8 {
        /// Byte offset.
        at: usize,
        /// Element being read.
        what: &'static str,
    },
    /// Well-formed MessagePack that breaks a rule of the element (duplicate map key, key
    /// too long, a timestamp later than its change, ...).
    #[error("{what} at byte {at}: {reason}")]
    Invalid {
        /// Byte offset.
        at: usize,
        /// Element being read.
        what: &'static str,
        /// The rule broken.
        reason: String,
    },
    /// A message type this protocol version does not know.
    #[error("unknown message type {tag}")]
    UnknownMessageType {
        /// The type tag found.
        tag: u64,
    },
    /// Bytes left over after the message.
    #[error("{count} trailing bytes after the message at byte {at}")]
    TrailingBytes {
        /// Byte offset.
        at: usize,
        /// Number of bytes left.
        count: usize,
    },
}
