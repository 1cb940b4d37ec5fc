//! How record states, versions and checkpoints are stored as bytes.
//!
//! A state is `[hlc, state]` in the protocol's MessagePack form (docs/protocol.md), so the
//! store and the wire share one encoding. Decoding uses limits sized for the store (a
//! record may hold more set members than one protocol message may carry).

use weft_core::change::{decode_hlc, decode_state, encode_hlc, encode_state};
use weft_core::codec::{DecodeError, DecodeLimits, Reader, Writer};
use weft_core::crdt::{RecordState, VersionHash};
use weft_core::hlc::Hlc;

use crate::wal::WalPosition;

fn limits() -> DecodeLimits {
    DecodeLimits {
        frame_bytes_max: usize::MAX,
        depth_max: weft_core::codec::DEPTH_MAX_DEFAULT,
        batch_len_max: u32::MAX as usize,
        string_bytes_max: usize::MAX,
    }
}

/// Encodes a record state into `writer`, after what it already holds: a flush reuses one
/// writer for all its records instead of allocating (and growing) a buffer per record.
pub fn encode_record_into(state: &RecordState, writer: &mut Writer) {
    let hlc = state.max_hlc().unwrap_or(Hlc::ZERO);
    writer.array_len(2);
    encode_hlc(hlc, writer);
    encode_state(state, hlc, writer);
}

/// Decodes a record state written by [`encode_record_into`].
pub fn decode_record(bytes: &[u8]) -> Result<RecordState, DecodeError> {
    let limits = limits();
    let mut reader = Reader::new(bytes, &limits)?;
    let len = reader.record(2, "stored record")?;
    let hlc = decode_hlc(&mut reader, "stored record hlc")?;
    let state = decode_state(&mut reader, hlc)?;
    reader.skip_extra(len - 2)?;
    reader.finish()?;
    Ok(state)
}

/// A version hash as 16 big-endian bytes.
pub fn encode_version(version: VersionHash) -> [u8; 16] {
    version.0.to_be_bytes()
}

/// Reads a version hash; `None` if the length is wrong.
pub fn decode_version(bytes: &[u8]) -> Option<VersionHash> {
    let array: [u8; 16] = bytes.try_into().ok()?;
    Some(VersionHash(u128::from_be_bytes(array)))
}

/// A checkpoint: segment u64 LE, offset u64 LE, crc32c of both u32 LE.
pub fn encode_checkpoint(position: WalPosition) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[..8].copy_from_slice(&position.segment.to_le_bytes());
    out[8..16].copy_from_slice(&position.offset.to_le_bytes());
    let crc = crc32c::crc32c(&out[..16]);
    out[16..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Reads a checkpoint, checking its length and checksum.
pub fn decode_checkpoint(bytes: &[u8]) -> Result<WalPosition, String> {
    if bytes.len() != 20 {
        return Err(format!("{} bytes, expected 20", bytes.len()));
    }
    let crc = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    if crc32c::crc32c(&bytes[..16]) != crc {
        return Err("checksum mismatch".to_owned());
    }
    let mut segment = [0u8; 8];
    let mut offset = [0u8; 8];
    segment.copy_from_slice(&bytes[..8]);
    offset.copy_from_slice(&bytes[8..16]);
    Ok(WalPosition { segment: u64::from_le_bytes(segment), offset: u64::from_le_bytes(offset) })
}

/// The store's clock (the greatest HLC merged): the HLC's 20 bytes, crc32c u32 LE.
pub fn encode_clock(hlc: Hlc) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..20].copy_from_slice(&hlc.to_bytes());
    let crc = crc32c::crc32c(&out[..20]);
    out[20..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Reads the store's clock, checking its length and checksum.
pub fn decode_clock(bytes: &[u8]) -> Result<Hlc, String> {
    let Ok(bytes) = <[u8; 24]>::try_from(bytes) else {
        return Err(format!("{} bytes, expected 24", bytes.len()));
    };
    let crc = u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    if crc32c::crc32c(&bytes[..20]) != crc {
        return Err("checksum mismatch".to_owned());
    }
    let mut hlc = [0u8; 20];
    hlc.copy_from_slice(&bytes[..20]);
    Ok(Hlc::from_bytes(hlc))
}

/// The HLC a stored state starts with (its greatest), without decoding the state.
pub fn decode_record_hlc(bytes: &[u8]) -> Result<Hlc, DecodeError> {
    let limits = limits();
    let mut reader = Reader::new(bytes, &limits)?;
    reader.record(2, "stored record")?;
    decode_hlc(&mut reader, "stored record hlc")
}
