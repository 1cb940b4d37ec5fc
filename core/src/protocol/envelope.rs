//! The HTTP envelope: `POST /v1/sync` carries several protocol frames in one body, as a
//! MessagePack array of byte strings, each one frame. Requests hold client messages and
//! responses server messages, exactly as on a WebSocket.

use crate::codec::{DecodeError, DecodeLimits, Reader, Writer};

/// Most frames in one envelope.
pub const ENVELOPE_FRAMES_MAX: usize = 256;

/// Wraps frames into one body.
pub fn encode_envelope(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut writer = Writer::with_capacity(frames.iter().map(|f| f.len() + 5).sum::<usize>() + 5);
    writer.array_len(frames.len());
    for frame in frames {
        writer.bin(frame);
    }
    writer.into_bytes()
}

/// Splits a body into its frames (each still to be decoded as a message). The body as a
/// whole must fit `limits.frame_bytes_max`.
pub fn decode_envelope<'a>(body: &'a [u8], limits: &'a DecodeLimits) -> Result<Vec<&'a [u8]>, DecodeError> {
    let mut reader = Reader::new(body, limits)?;
    let count = reader.array_max(ENVELOPE_FRAMES_MAX, "envelope frames")?;
    let mut frames = Vec::with_capacity(count);
    for _ in 0..count {
        frames.push(reader.bin_max(limits.frame_bytes_max, "envelope frame")?);
    }
    reader.leave();
    reader.finish()?;
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let frames = vec![vec![0x91, 0x06], vec![], vec![1, 2, 3]];
        let body = encode_envelope(&frames);
        let limits = DecodeLimits::default();
        let decoded: Vec<Vec<u8>> = decode_envelope(&body, &limits).unwrap().into_iter().map(<[u8]>::to_vec).collect();
        assert_eq!(decoded, frames);
        assert!(decode_envelope(&body[..body.len() - 1], &limits).is_err());
        assert!(decode_envelope(b"\xc1", &limits).is_err());
    }
}
