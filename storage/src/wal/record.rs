//! WAL record framing: `[len u32 LE][crc32c u32 LE][payload]`.
//!
//! The checksum covers the length field and the payload, so a damaged length is caught
//! like a damaged payload. A payload is never empty, so a zero length marks bytes that
//! were never written (a preallocated or zero-filled tail).

/// Bytes of a record header.
pub const HEADER_BYTES: usize = 8;
/// Largest payload of one record (a batch of changes is split above this).
pub const PAYLOAD_BYTES_MAX: usize = 64 << 20;

/// Appends one framed record to `out`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    assert!(!payload.is_empty() && payload.len() <= PAYLOAD_BYTES_MAX, "payload of {} bytes", payload.len());
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), payload);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
}

/// What is found at an offset of a segment's bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A valid record and the offset just past it.
    Record {
        /// The payload.
        payload: &'a [u8],
        /// Offset of the next record.
        next: usize,
    },
    /// The offset is exactly the end of the bytes.
    End,
    /// Only zero bytes from here to the end (never written).
    ZeroTail,
    /// The header or the payload runs past the end of the bytes.
    Incomplete,
    /// A zero length followed by non-zero bytes.
    ZeroLength,
    /// The length is larger than any record may be.
    TooLong {
        /// The length found.
        len: usize,
    },
    /// The checksum does not match; `next` is where the record claims to end.
    ChecksumMismatch {
        /// Offset just past the record, by its length field.
        next: usize,
    },
}

/// Parses the record at `offset` of `bytes`.
pub fn parse(bytes: &[u8], offset: usize) -> Parsed<'_> {
    let rest = &bytes[offset.min(bytes.len())..];
    if rest.is_empty() {
        return Parsed::End;
    }
    if rest.iter().all(|b| *b == 0) {
        return Parsed::ZeroTail;
    }
    if rest.len() < HEADER_BYTES {
        return Parsed::Incomplete;
    }
    let len_bytes: [u8; 4] = [rest[0], rest[1], rest[2], rest[3]];
    let len = u32::from_le_bytes(len_bytes) as usize;
    let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
    if len == 0 {
        return Parsed::ZeroLength;
    }
    if len > PAYLOAD_BYTES_MAX {
        return Parsed::TooLong { len };
    }
    if rest.len() < HEADER_BYTES + len {
        return Parsed::Incomplete;
    }
    let payload = &rest[HEADER_BYTES..HEADER_BYTES + len];
    let next = offset + HEADER_BYTES + len;
    if crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload) != crc {
        return Parsed::ChecksumMismatch { next };
    }
    Parsed::Record { payload, next }
}

/// The first offset after `from` (within `window` bytes) where a record with a valid
/// checksum starts, if any. Recovery uses it to tell a torn tail (nothing valid after the
/// damage) from damage in the middle of the log.
pub fn find_valid_after(bytes: &[u8], from: usize, window: usize) -> Option<usize> {
    let end = bytes.len().min(from.saturating_add(window));
    (from + 1..end.saturating_sub(HEADER_BYTES)).find(|&offset| {
        let len = u32::from_le_bytes([bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]]) as usize;
        len != 0 && len <= PAYLOAD_BYTES_MAX && offset + HEADER_BYTES + len <= bytes.len() && {
            let crc = u32::from_le_bytes([bytes[offset + 4], bytes[offset + 5], bytes[offset + 6], bytes[offset + 7]]);
            let payload = &bytes[offset + HEADER_BYTES..offset + HEADER_BYTES + len];
            crc32c::crc32c_append(crc32c::crc32c(&bytes[offset..offset + 4]), payload) == crc
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let mut bytes = Vec::new();
        encode(b"hello", &mut bytes);
        encode(b"world!", &mut bytes);
        assert_eq!(parse(&bytes, 0), Parsed::Record { payload: b"hello", next: 13 });
        assert_eq!(parse(&bytes, 13), Parsed::Record { payload: b"world!", next: 27 });
        assert_eq!(parse(&bytes, 27), Parsed::End);
        assert_eq!(parse(&bytes[..20], 13), Parsed::Incomplete);
        assert_eq!(parse(&bytes[..16], 13), Parsed::Incomplete);
        let mut flipped = bytes.clone();
        flipped[10] ^= 1;
        assert_eq!(parse(&flipped, 0), Parsed::ChecksumMismatch { next: 13 });
        let mut zeros = bytes.clone();
        zeros.extend([0u8; 100]);
        assert_eq!(parse(&zeros, 27), Parsed::ZeroTail);
    }
}
