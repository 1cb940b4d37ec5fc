//! Reading the log back: replay, torn-tail truncation, corruption detection, repair.
//!
//! Rules (docs/storage.md, "Recovery"):
//!
//! - Segments before the last were synced in full before the next was created, so any
//!   damage in them is corruption: an error naming segment and offset.
//! - In the last segment, bytes after the last sync may be torn. A damaged record is a
//!   torn tail when nothing valid follows it: its header or payload runs past the end,
//!   the rest is zeros (a preallocated or zero-filled tail), or the record after it is
//!   not valid either. The tail is truncated and reported (segment, offset, bytes).
//! - A damaged record followed by a valid one is corruption, not a torn write: an error.
//!   [`repair`] then keeps every valid record before it and moves the rest aside.

use std::path::{Path, PathBuf};

use super::WalError;
use super::disk::{Disk, DiskFile, RealDisk};
use super::record::{self, Parsed};
use super::segment::{self, WalPosition};

/// Damage found at the end of the log and truncated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Where the valid log ends (the file was truncated here).
    pub at: WalPosition,
    /// Bytes removed.
    pub bytes: u64,
    /// What was found there.
    pub kind: TailKind,
}

/// What a torn tail looked like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TailKind {
    /// A header or payload cut short by the end of the file.
    Incomplete,
    /// Zero bytes (never written, or preallocated).
    Zeros,
    /// A record whose checksum fails, with nothing valid after it.
    Checksum,
    /// A length field that cannot be right (zero or too large), nothing valid after it.
    BadLength,
    /// A damaged record in a run of zeroed sectors with valid records after it: the
    /// last group write, whose sectors reached the disk out of order before its sync
    /// (the bytes after the hole are kept in `damaged/`).
    LostSectors,
}

/// What recovery found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// Where the next record goes.
    pub end: WalPosition,
    /// Records visited (those after the requested start).
    pub records: u64,
    /// Payload bytes visited.
    pub payload_bytes: u64,
    /// Damage truncated at the end, if any.
    pub torn_tail: Option<TornTail>,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> WalError + 'a {
    move |source| WalError::Io { action, path: path.to_path_buf(), source }
}

/// How far past a damaged record recovery looks for valid records: more than one group
/// write (`WalConfig::group_bytes_max` defaults to 8 MiB) plus a maximal record.
const TORN_WINDOW_BYTES: usize = 80 << 20;

/// Where scanning one segment stopped.
enum SegmentEnd {
    /// The segment ended cleanly at this offset.
    Clean(u64),
    /// Damage at `offset` that counts as a torn tail if this is the last segment.
    Tail { offset: u64, kind: TailKind },
    /// Damage at `offset` with a valid record after it.
    Corrupt { offset: u64, reason: String },
}

fn scan_segment(bytes: &[u8], mut visit: impl FnMut(u64, &[u8])) -> SegmentEnd {
    let mut offset = segment::HEADER_BYTES;
    loop {
        let (kind, next) = match record::parse(bytes, offset) {
            Parsed::Record { payload, next } => {
                visit(offset as u64, payload);
                offset = next;
                continue;
            }
            Parsed::End => return SegmentEnd::Clean(offset as u64),
            Parsed::ZeroTail => return SegmentEnd::Tail { offset: offset as u64, kind: TailKind::Zeros },
            Parsed::Incomplete => (TailKind::Incomplete, None),
            Parsed::ZeroLength | Parsed::TooLong { .. } => (TailKind::BadLength, None),
            Parsed::ChecksumMismatch { next } => (TailKind::Checksum, Some(next)),
        };
        // A damaged record: corruption if a valid record follows it, else a torn tail.
        // The record its length points to is checked first; then any valid record in the
        // window one group write can tear (a damaged length hides where the next starts).
        let follows = next
            .filter(|&next| matches!(record::parse(bytes, next), Parsed::Record { .. }))
            .or_else(|| record::find_valid_after(bytes, offset, TORN_WINDOW_BYTES));
        if let Some(valid) = follows {
            if zeroed_sector_between(bytes, offset, valid) {
                return SegmentEnd::Tail { offset: offset as u64, kind: TailKind::LostSectors };
            }
            return SegmentEnd::Corrupt {
                offset: offset as u64,
                reason: format!("damaged record ({kind:?}) followed by valid records"),
            };
        }
        return SegmentEnd::Tail { offset: offset as u64, kind };
    }
}

/// Bytes per sector: the unit a disk writes whole (or not at all) on power loss.
pub const SECTOR_BYTES: usize = 512;

/// Whether a sector overlapping `from..to` is all zeros (from `from` on). Space appended to a file
/// but not yet written back reads as zeros after a power loss, so a zeroed sector inside
/// the damage, with valid records after it, is a group write that reached the disk in
/// part — never acknowledged, because the next group is written only after this one's
/// sync. Flipped bits or garbage in synced data do not look like this, and stay
/// corruption.
fn zeroed_sector_between(bytes: &[u8], from: usize, to: usize) -> bool {
    let first = from / SECTOR_BYTES * SECTOR_BYTES;
    // The sector holding `from` counts from `from` on: its bytes before belong to synced
    // records, and a lost rewrite of it leaves them followed by zeros.
    (first..to.min(bytes.len()))
        .step_by(SECTOR_BYTES)
        .any(|start| bytes[start.max(from)..(start + SECTOR_BYTES).min(bytes.len())].iter().all(|&b| b == 0))
}

/// What the end of one segment means for the log.
enum Judged {
    /// Clean up to here.
    Clean(WalPosition),
    /// A torn tail of the last segment: truncate it.
    Torn(TornTail),
}

/// The rules of recovery and verification alike: damage at the end of the last segment is
/// a torn tail; anywhere else it is corruption, named by segment and offset.
fn judge(end: SegmentEnd, number: u64, last: u64, len: usize) -> Result<Judged, WalError> {
    match end {
        SegmentEnd::Clean(offset) => Ok(Judged::Clean(WalPosition { segment: number, offset })),
        SegmentEnd::Tail { offset, kind } if number == last => {
            let at = WalPosition { segment: number, offset };
            Ok(Judged::Torn(TornTail { at, bytes: len as u64 - offset, kind }))
        }
        SegmentEnd::Tail { offset, kind } => Err(WalError::Corrupt {
            at: WalPosition { segment: number, offset },
            reason: format!("{kind:?} damage in segment {number}, which is not the last"),
        }),
        SegmentEnd::Corrupt { offset, reason } => {
            Err(WalError::Corrupt { at: WalPosition { segment: number, offset }, reason })
        }
    }
}

fn read_segment(disk: &dyn Disk, dir: &Path, number: u64) -> Result<(PathBuf, Vec<u8>), WalError> {
    let path = segment::path(dir, number);
    let bytes = disk.read(&path).map_err(io("read", &path))?;
    segment::check_header(&bytes, number, &path)?;
    Ok((path, bytes))
}

/// The damage of a last segment shorter than its header: the whole file, from offset 0
/// of its own number (opening and `verify` describe it the same way).
fn incomplete_header(segment: u64, bytes: u64) -> TornTail {
    TornTail { at: WalPosition { segment, offset: 0 }, bytes, kind: TailKind::Incomplete }
}

/// Replays the log in `dir`: calls `visit` for every record after `after` (all records
/// when `None`), truncates a torn tail, and returns where the next record goes. An
/// empty directory gets its first segment.
pub fn recover(
    disk: &dyn Disk,
    dir: &Path,
    after: Option<WalPosition>,
    mut visit: impl FnMut(WalPosition, &[u8]),
) -> Result<Recovery, WalError> {
    disk.create_dir_all(dir).map_err(io("create", dir))?;
    let mut numbers = segment::list(disk, dir)?;
    let mut torn_header: Option<TornTail> = None; // the segment moved aside
    if let Some(&last) = numbers.last() {
        // A crash while a segment was being created leaves it shorter than its header: it
        // cannot hold a record, so it is moved aside and the log ends in the previous one.
        let path = segment::path(dir, last);
        let len = disk.len(&path).map_err(io("inspect", &path))?;
        if len < segment::HEADER_BYTES as u64 {
            let damaged = dir.join("damaged");
            disk.create_dir_all(&damaged).map_err(io("create", &damaged))?;
            let aside = damaged.join(format!("{}.incomplete-header", segment::file_name(last)));
            disk.rename(&path, &aside).map_err(io("move aside", &path))?;
            sync_dir(disk, &damaged)?;
            sync_dir(disk, dir)?;
            numbers.pop();
            torn_header = Some(incomplete_header(last, len));
            if numbers.is_empty() {
                create_segment(disk, dir, last)?;
                numbers.push(last);
            }
        }
    }
    let Some(&last) = numbers.last() else {
        create_segment(disk, dir, 1)?;
        return Ok(Recovery {
            end: WalPosition { segment: 1, offset: segment::HEADER_BYTES as u64 },
            records: 0,
            payload_bytes: 0,
            torn_tail: None,
        });
    };
    let mut recovery = Recovery { end: WalPosition::default(), records: 0, payload_bytes: 0, torn_tail: None };
    for &number in &numbers {
        if after.is_some_and(|a| number < a.segment) {
            continue;
        }
        let (path, bytes) = read_segment(disk, dir, number)?;
        let end = scan_segment(&bytes, |offset, payload| {
            let at = WalPosition { segment: number, offset };
            if after.is_none_or(|a| at > a) {
                recovery.records += 1;
                recovery.payload_bytes += payload.len() as u64;
                visit(at, payload);
            }
        });
        match judge(end, number, last, bytes.len())? {
            Judged::Clean(end) => recovery.end = end,
            Judged::Torn(torn) => {
                if torn.kind == TailKind::LostSectors {
                    // Valid records follow the hole: never acknowledged (a later group is
                    // written only after the sync of the one before), but kept aside, not
                    // deleted, in case the disk lost synced data.
                    keep_aside(disk, dir, number, torn.at.offset, &bytes[torn.at.offset as usize..])?;
                }
                disk.truncate(&path, torn.at.offset).map_err(io("truncate", &path))?;
                recovery.end = torn.at;
                recovery.torn_tail = Some(torn);
            }
        }
    }
    if recovery.end.segment == 0 {
        // Every segment lies before `after`: the log ends where the last one does.
        let (_, bytes) = read_segment(disk, dir, last)?;
        let end = match scan_segment(&bytes, |_, _| {}) {
            SegmentEnd::Clean(offset) => offset,
            SegmentEnd::Tail { offset, .. } | SegmentEnd::Corrupt { offset, .. } => offset,
        };
        recovery.end = WalPosition { segment: last, offset: end };
    }
    if recovery.torn_tail.is_none() {
        recovery.torn_tail = torn_header;
    }
    // Records replayed from the page cache after a process crash may not be on disk yet;
    // sync the last segment before anything (a checkpoint) is built on them.
    let last_path = segment::path(dir, recovery.end.segment);
    disk.sync_file(&last_path).map_err(io("sync", &last_path))?;
    // And its name: a start that failed after creating a segment (its sync failed) left a
    // file whose directory entry a power loss would take, with every record acknowledged
    // into it since (found by the simulated disk, tests/power_loss.rs seed 487).
    sync_dir(disk, dir)?;
    Ok(recovery)
}

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files.
    pub segments: u64,
    /// Valid records.
    pub records: u64,
    /// Their payload bytes.
    pub payload_bytes: u64,
    /// Where the valid log ends.
    pub end: WalPosition,
    /// Damage at the very end that opening would truncate (not an error).
    pub torn_tail: Option<TornTail>,
}

/// Checks every segment in `dir` without changing anything: the same rules as opening
/// (a torn tail is reported, damage before the tail or a missing segment is an error
/// naming segment and offset).
pub fn verify(dir: &Path) -> Result<VerifyReport, WalError> {
    verify_on(&RealDisk, dir)
}

/// [`verify`] on any [`Disk`].
pub fn verify_on(disk: &dyn Disk, dir: &Path) -> Result<VerifyReport, WalError> {
    let numbers = segment::list(disk, dir)?;
    let mut report = VerifyReport {
        segments: numbers.len() as u64,
        records: 0,
        payload_bytes: 0,
        end: WalPosition::default(),
        torn_tail: None,
    };
    let Some(&last) = numbers.last() else { return Ok(report) };
    for &number in &numbers {
        let path = segment::path(dir, number);
        let len = disk.len(&path).map_err(io("inspect", &path))?;
        if number == last && len < segment::HEADER_BYTES as u64 {
            report.torn_tail = Some(incomplete_header(number, len));
            continue;
        }
        let (_, bytes) = read_segment(disk, dir, number)?;
        let end = scan_segment(&bytes, |_, payload| {
            report.records += 1;
            report.payload_bytes += payload.len() as u64;
        });
        match judge(end, number, last, bytes.len())? {
            Judged::Clean(end) => report.end = end,
            Judged::Torn(torn) => {
                report.end = torn.at;
                report.torn_tail = Some(torn);
            }
        }
    }
    Ok(report)
}

/// Creates segment `number` with its header, synced, and syncs the directory entry.
pub(crate) fn create_segment(disk: &dyn Disk, dir: &Path, number: u64) -> Result<Box<dyn DiskFile>, WalError> {
    let path = segment::path(dir, number);
    let mut file = disk.create_new(&path).map_err(io("create", &path))?;
    file.write_all(&segment::header(number)).map_err(io("write", &path))?;
    file.sync_data().map_err(io("sync", &path))?;
    sync_dir(disk, dir)?;
    Ok(file)
}

pub(crate) fn sync_dir(disk: &dyn Disk, dir: &Path) -> Result<(), WalError> {
    disk.sync_dir(dir).map_err(io("sync directory", dir))
}

/// Keeps the bytes of segment `number` from `offset` on in `damaged/` before recovery
/// cuts them off.
fn keep_aside(disk: &dyn Disk, dir: &Path, number: u64, offset: u64, bytes: &[u8]) -> Result<(), WalError> {
    let damaged = dir.join("damaged");
    disk.create_dir_all(&damaged).map_err(io("create", &damaged))?;
    let aside = damaged.join(format!("{}.torn-from-{offset}", segment::file_name(number)));
    // A second crash before the truncation leaves the copy in place: keep the first.
    if disk.len(&aside).is_err() {
        disk.write_new(&aside, bytes).map_err(io("write", &aside))?;
        sync_dir(disk, &damaged)?;
    }
    Ok(())
}

/// What [`repair`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Where the valid log now ends (`None`: nothing needed repair).
    pub truncated_at: Option<WalPosition>,
    /// Files written or moved into the `damaged/` directory.
    pub moved_aside: Vec<PathBuf>,
}

/// Makes a log with mid-log damage usable again: keeps every valid record before the
/// first damage (or the first missing segment) and moves everything after it into
/// `dir/damaged/`, where nothing is ever deleted.
pub fn repair(dir: &Path) -> Result<RepairReport, WalError> {
    let disk = &RealDisk;
    let damaged = dir.join("damaged");
    let mut report = RepairReport::default();
    let numbers = segment::numbers(disk, dir)?;
    let mut move_rest_from: Option<usize> = None;
    let mut last_end: Option<WalPosition> = None;
    for (index, &number) in numbers.iter().enumerate() {
        if index > 0 && number != numbers[index - 1] + 1 {
            report.truncated_at = last_end;
            move_rest_from = Some(index);
            break;
        }
        let (path, bytes) = match read_segment(disk, dir, number) {
            Ok(found) => found,
            Err(WalError::Io { .. }) | Err(WalError::BadHeader { .. }) if index > 0 => {
                report.truncated_at = last_end;
                move_rest_from = Some(index);
                break;
            }
            Err(error) => return Err(error),
        };
        let cut = match scan_segment(&bytes, |_, _| {}) {
            SegmentEnd::Clean(offset) => {
                last_end = Some(WalPosition { segment: number, offset });
                None
            }
            // A torn tail is not mid-log damage: recovery truncates it.
            SegmentEnd::Tail { .. } if index + 1 == numbers.len() => None,
            SegmentEnd::Tail { offset, .. } | SegmentEnd::Corrupt { offset, .. } => Some(offset),
        };
        if let Some(offset) = cut {
            disk.create_dir_all(&damaged).map_err(io("create", &damaged))?;
            let aside = damaged.join(format!("{}.from-{offset}", segment::file_name(number)));
            std::fs::write(&aside, &bytes[offset as usize..]).map_err(io("write", &aside))?;
            disk.sync_file(&aside).map_err(io("sync", &aside))?;
            report.moved_aside.push(aside);
            disk.truncate(&path, offset).map_err(io("truncate", &path))?;
            report.truncated_at = Some(WalPosition { segment: number, offset });
            move_rest_from = Some(index + 1);
            break;
        }
    }
    if let Some(from) = move_rest_from {
        disk.create_dir_all(&damaged).map_err(io("create", &damaged))?;
        for &number in &numbers[from..] {
            let source = segment::path(dir, number);
            let target = damaged.join(segment::file_name(number));
            disk.rename(&source, &target).map_err(io("move aside", &source))?;
            report.moved_aside.push(target);
        }
        sync_dir(disk, &damaged)?;
        sync_dir(disk, dir)?;
    }
    Ok(report)
}
