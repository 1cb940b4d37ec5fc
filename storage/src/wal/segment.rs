//! WAL segment files: names, headers, listing.
//!
//! A segment is `<number>.wal` (20 decimal digits, numbers consecutive from 1) and starts
//! with a 24-byte header: magic `WEFTWAL1`, format version (u32 LE), segment number
//! (u64 LE), crc32c of the preceding 20 bytes (u32 LE). Records follow.

use std::path::{Path, PathBuf};

use super::WalError;
use super::disk::Disk;

/// Bytes of a segment header.
pub const HEADER_BYTES: usize = 24;
const MAGIC: &[u8; 8] = b"WEFTWAL1";
/// The segment format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// A position in the log: a segment and a byte offset in it. Ordered like the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct WalPosition {
    /// Segment number (from 1).
    pub segment: u64,
    /// Byte offset within the segment (at least [`HEADER_BYTES`] for a record).
    pub offset: u64,
}

impl std::fmt::Display for WalPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "segment {} offset {}", self.segment, self.offset)
    }
}

/// The file name of segment `number`.
pub fn file_name(number: u64) -> String {
    format!("{number:020}.wal")
}

/// The path of segment `number` in `dir`.
pub fn path(dir: &Path, number: u64) -> PathBuf {
    dir.join(file_name(number))
}

/// The header of segment `number`.
pub fn header(number: u64) -> [u8; HEADER_BYTES] {
    let mut out = [0u8; HEADER_BYTES];
    out[..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[12..20].copy_from_slice(&number.to_le_bytes());
    let crc = crc32c::crc32c(&out[..20]);
    out[20..].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Checks the header of segment `number` read from `bytes`.
pub fn check_header(bytes: &[u8], number: u64, file: &Path) -> Result<(), WalError> {
    let bad = |reason: String| WalError::BadHeader { file: file.to_path_buf(), reason };
    if bytes.len() < HEADER_BYTES {
        return Err(bad(format!("{} bytes, shorter than the {HEADER_BYTES}-byte header", bytes.len())));
    }
    if &bytes[..8] != MAGIC {
        return Err(bad("not a Weft WAL segment (bad magic)".to_owned()));
    }
    let crc = u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    if crc32c::crc32c(&bytes[..20]) != crc {
        return Err(bad("header checksum mismatch".to_owned()));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != FORMAT_VERSION {
        return Err(WalError::FutureVersion { file: file.to_path_buf(), version });
    }
    let mut found = [0u8; 8];
    found.copy_from_slice(&bytes[12..20]);
    let found = u64::from_le_bytes(found);
    if found != number {
        return Err(bad(format!("header says segment {found}, file name says {number}")));
    }
    Ok(())
}

/// The segment numbers in `dir`, ascending (gaps allowed).
pub fn numbers(disk: &dyn Disk, dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut numbers = Vec::new();
    let names = disk.list(dir).map_err(|source| WalError::Io { action: "list", path: dir.to_path_buf(), source })?;
    for name in names {
        if let Some(stem) = name.strip_suffix(".wal")
            && stem.len() == 20
            && let Ok(number) = stem.parse::<u64>()
        {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// The segment numbers in `dir`, ascending; fails if one is missing in the middle.
pub fn list(disk: &dyn Disk, dir: &Path) -> Result<Vec<u64>, WalError> {
    let numbers = numbers(disk, dir)?;
    for pair in numbers.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(WalError::MissingSegment { dir: dir.to_path_buf(), missing: pair[0] + 1, next: pair[1] });
        }
    }
    Ok(numbers)
}
