//! The write-ahead log: segmented append-only files with group commit.
//!
//! [`Wal::append`] frames a payload and queues it; one writer thread takes everything
//! queued, writes it with one `write`, calls `fdatasync` once, and only then tells the
//! waiters of every record in that group that they are durable ([`Wal::wait_durable`]).
//! While it syncs, new appends queue up for the next group — that is group commit: one
//! sync (≈ 2.5 ms on this machine type) covers as many records as arrive meanwhile.
//!
//! Positions are assigned at append time, under the queue lock, together with the
//! segment-rotation decision, so a caller knows where its record lives before it is
//! written and the log order is the append order.
//!
//! A failed write or sync poisons the log: every waiter not yet covered by a successful
//! sync gets [`WalError::Failed`], and so does every later append. After an fsync error
//! the page cache state is unknown; retrying could acknowledge data that is not on disk.
//!
//! Every file operation goes through a [`Disk`] ([`WalConfig::disk`]): the real file
//! system, or the simulated disk of `crate::sim`. With [`Scheduling::Caller`] there is no
//! writer thread: the group write and its sync run in whoever waits first
//! ([`Wal::wait_durable`], [`Wal::sync_pending`]), so a simulation decides when a sync
//! happens and every run of a seed is the same.
//!
//! Layout and recovery rules: docs/storage.md.

pub mod disk;
mod record;
mod recovery;
mod segment;
mod stats;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

pub use disk::{Disk, DiskFile, RealDisk};
pub use record::PAYLOAD_BYTES_MAX;
pub use recovery::{Recovery, RepairReport, SECTOR_BYTES, TailKind, TornTail, VerifyReport, repair, verify, verify_on};
pub use segment::{FORMAT_VERSION, WalPosition};
pub use stats::{SYNC_BUCKETS_SECONDS, SyncSnapshot};

/// Why the log cannot do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Damage before the end of the log: run `weft wal repair`.
    #[error(
        "WAL corrupt at {at}: {reason} (run `weft wal repair` to keep the records before it and move the rest aside)"
    )]
    Corrupt {
        /// Where the damage starts.
        at: WalPosition,
        /// What is wrong.
        reason: String,
    },
    /// A segment is missing between two others.
    #[error("WAL segment {missing} is missing in {dir} (the next present is {next}); run `weft wal repair`")]
    MissingSegment {
        /// The directory.
        dir: PathBuf,
        /// The first missing segment number.
        missing: u64,
        /// The segment found after the gap.
        next: u64,
    },
    /// A segment header is not valid.
    #[error("bad WAL segment header in {file}: {reason}")]
    BadHeader {
        /// The segment file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A segment written by a newer format version.
    #[error("{file} uses WAL format version {version}; this build reads version {FORMAT_VERSION}")]
    FutureVersion {
        /// The segment file.
        file: PathBuf,
        /// Its version.
        version: u32,
    },
    /// A payload that is empty or larger than [`PAYLOAD_BYTES_MAX`].
    #[error("WAL payload of {len} bytes: must be 1 to {PAYLOAD_BYTES_MAX} bytes")]
    PayloadSize {
        /// The payload's length.
        len: usize,
    },
    /// An earlier write or sync failed; the log accepts nothing more.
    #[error("WAL failed earlier and is read-only until restarted: {0}")]
    Failed(String),
    /// The log was closed.
    #[error("WAL is closed")]
    Closed,
}

/// Who runs background work (the WAL's group writes, the engine's flushes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scheduling {
    /// Threads of their own: what a server runs.
    #[default]
    Background,
    /// No threads: the work runs in the calling thread when it is waited for or asked
    /// for, which makes a run reproducible (the deterministic simulation).
    Caller,
}

/// Settings of the log.
#[derive(Clone, Debug)]
pub struct WalConfig {
    /// A segment is rotated once it reaches this size.
    pub segment_bytes: u64,
    /// Most bytes written and synced as one group.
    pub group_bytes_max: usize,
    /// How long the writer waits for more records before syncing a group (0: sync as
    /// soon as anything is queued; groups still form while a sync is in progress).
    pub group_delay: Duration,
    /// Where the segment files live.
    pub disk: Arc<dyn Disk>,
    /// A writer thread, or group writes run by the caller.
    pub scheduling: Scheduling,
}

impl Default for WalConfig {
    fn default() -> WalConfig {
        WalConfig {
            segment_bytes: 64 << 20,
            group_bytes_max: 8 << 20,
            group_delay: Duration::ZERO,
            disk: Arc::new(RealDisk),
            scheduling: Scheduling::Background,
        }
    }
}

/// Copies a segment file somewhere safe (e.g. S3) before it is deleted; see
/// [`Wal::remove_segments_before`].
pub type Archiver<'a> = &'a mut dyn FnMut(&Path) -> std::io::Result<()>;

/// Proof that a record was queued: where it lives, and what to wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    seq: u64,
    /// Where the record starts.
    pub position: WalPosition,
    /// Where the next record starts.
    pub end: WalPosition,
}

struct Queued {
    seq: u64,
    position: WalPosition,
    end: WalPosition,
    framed: Vec<u8>,
}

struct State {
    queue: Vec<Queued>,
    next_seq: u64,
    durable_seq: u64,
    /// Where the durable log ends (the end of the last record synced).
    durable_end: WalPosition,
    tail: WalPosition,
    failed: Option<String>,
    closing: bool,
}

/// The open segment the group writes go to.
struct Segment {
    file: Box<dyn DiskFile>,
    number: u64,
}

struct Shared {
    dir: PathBuf,
    config: WalConfig,
    state: Mutex<State>,
    work: Condvar,
    durable: Condvar,
    stats: stats::SyncStats,
    /// Held for a whole group write (only the writer thread takes it, or, with
    /// [`Scheduling::Caller`], the caller that syncs).
    segment: Mutex<Segment>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug in this module; the state it guards is
        // plain data and stays consistent, so keep going rather than cascade the panic.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An open write-ahead log.
pub struct Wal {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.shared.dir).finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens (or creates) the log in `dir`: replays the records after `after` through
    /// `visit`, truncates a torn tail, and starts the writer at the end.
    pub fn open(
        dir: &Path,
        config: WalConfig,
        after: Option<WalPosition>,
        visit: impl FnMut(WalPosition, &[u8]),
    ) -> Result<(Wal, Recovery), WalError> {
        let disk = Arc::clone(&config.disk);
        let recovery = recovery::recover(&*disk, dir, after, visit)?;
        let path = segment::path(dir, recovery.end.segment);
        let file =
            disk.open_append(&path).map_err(|source| WalError::Io { action: "open", path: path.clone(), source })?;
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            config,
            state: Mutex::new(State {
                queue: Vec::new(),
                next_seq: 1,
                durable_seq: 0,
                durable_end: recovery.end,
                tail: recovery.end,
                failed: None,
                closing: false,
            }),
            work: Condvar::new(),
            durable: Condvar::new(),
            stats: stats::SyncStats::default(),
            segment: Mutex::new(Segment { file, number: recovery.end.segment }),
        });
        let writer = match shared.config.scheduling {
            Scheduling::Caller => None,
            Scheduling::Background => {
                let writer_shared = Arc::clone(&shared);
                let thread = std::thread::Builder::new()
                    .name("weft-wal-writer".to_owned())
                    .spawn(move || writer_loop(&writer_shared))
                    .map_err(|source| WalError::Io {
                        action: "start writer thread for",
                        path: dir.to_path_buf(),
                        source,
                    })?;
                Some(thread)
            }
        };
        Ok((Wal { shared, writer }, recovery))
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Queues a record; returns at once with its position. Call [`Wal::wait_durable`]
    /// before acknowledging anything that depends on it.
    pub fn append(&self, payload: &[u8]) -> Result<Receipt, WalError> {
        if payload.is_empty() || payload.len() > PAYLOAD_BYTES_MAX {
            return Err(WalError::PayloadSize { len: payload.len() });
        }
        let mut framed = Vec::with_capacity(record::HEADER_BYTES + payload.len());
        record::encode(payload, &mut framed);
        let mut state = self.shared.lock();
        if let Some(reason) = &state.failed {
            return Err(WalError::Failed(reason.clone()));
        }
        if state.closing {
            return Err(WalError::Closed);
        }
        let len = framed.len() as u64;
        let header = segment::HEADER_BYTES as u64;
        if state.tail.offset > header && state.tail.offset + len > self.shared.config.segment_bytes {
            state.tail = WalPosition { segment: state.tail.segment + 1, offset: header };
        }
        let position = state.tail;
        state.tail.offset += len;
        let seq = state.next_seq;
        state.next_seq += 1;
        let end = state.tail;
        state.queue.push(Queued { seq, position, end, framed });
        drop(state);
        self.shared.work.notify_one();
        Ok(Receipt { seq, position, end })
    }

    /// Waits until the record of `receipt` is on disk.
    pub fn wait_durable(&self, receipt: Receipt) -> Result<WalPosition, WalError> {
        if self.shared.config.scheduling == Scheduling::Caller {
            self.sync_pending()?;
        }
        let mut state = self.shared.lock();
        loop {
            if state.durable_seq >= receipt.seq {
                return Ok(receipt.position);
            }
            if let Some(reason) = &state.failed {
                return Err(WalError::Failed(reason.clone()));
            }
            state = self.shared.durable.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Makes everything appended so far durable. With [`Scheduling::Caller`] the group
    /// writes run here, in the calling thread, one group at a time; with
    /// [`Scheduling::Background`] this waits for the writer thread.
    pub fn sync_pending(&self) -> Result<(), WalError> {
        if self.shared.config.scheduling == Scheduling::Background {
            let last = self.shared.lock().next_seq - 1;
            let mut state = self.shared.lock();
            while state.durable_seq < last {
                if let Some(reason) = &state.failed {
                    return Err(WalError::Failed(reason.clone()));
                }
                state = self.shared.durable.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            return Ok(());
        }
        // The segment lock first: groups are taken and written in one order.
        let mut segment = self.shared.segment.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let mut state = self.shared.lock();
            if let Some(reason) = &state.failed {
                return Err(WalError::Failed(reason.clone()));
            }
            if state.queue.is_empty() {
                return Ok(());
            }
            let group = take_group(&mut state, self.shared.config.group_bytes_max);
            drop(state);
            write_and_settle(&self.shared, &mut segment, group);
        }
    }

    /// Whether a write or sync failed (the log then accepts nothing until reopened).
    pub fn failure(&self) -> Option<String> {
        self.shared.lock().failed.clone()
    }

    /// Appends a record and waits until it is durable.
    pub fn append_durable(&self, payload: &[u8]) -> Result<Receipt, WalError> {
        let receipt = self.append(payload)?;
        self.wait_durable(receipt)?;
        Ok(receipt)
    }

    /// Latency histogram of group writes (write + `fdatasync`) so far.
    pub fn sync_stats(&self) -> SyncSnapshot {
        self.shared.stats.snapshot()
    }

    /// Where the durable log ends: every record before it is on disk.
    pub fn durable_end(&self) -> WalPosition {
        self.shared.lock().durable_end
    }

    /// Where the next record will go.
    pub fn end(&self) -> WalPosition {
        self.shared.lock().tail
    }

    /// Deletes the segments that lie wholly before `position` (a checkpoint), handing
    /// each to `archive` first when given (it must copy the file elsewhere and return
    /// `Ok` before the segment is deleted). Returns the segments removed.
    pub fn remove_segments_before(
        &self,
        position: WalPosition,
        mut archive: Option<Archiver<'_>>,
    ) -> Result<Vec<u64>, WalError> {
        let disk = &*self.shared.config.disk;
        let mut removed = Vec::new();
        for number in segment::list(disk, &self.shared.dir)? {
            if number >= position.segment {
                break;
            }
            let path = segment::path(&self.shared.dir, number);
            if let Some(archive) = archive.as_mut() {
                archive(&path).map_err(|source| WalError::Io { action: "archive", path: path.clone(), source })?;
            }
            disk.remove(&path).map_err(|source| WalError::Io { action: "remove", path: path.clone(), source })?;
            removed.push(number);
        }
        if !removed.is_empty() {
            recovery::sync_dir(disk, &self.shared.dir)?;
        }
        Ok(removed)
    }

    /// Writes and syncs everything queued, then stops the writer.
    pub fn close(mut self) -> Result<(), WalError> {
        self.stop();
        match self.shared.lock().failed.clone() {
            Some(reason) => Err(WalError::Failed(reason)),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        if self.shared.config.scheduling == Scheduling::Caller {
            // Close writes what is queued, like the writer thread does on its way out; an
            // error is kept in `failed` for `close` to report.
            let _ = self.sync_pending();
        }
        self.shared.lock().closing = true;
        self.shared.work.notify_all();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop();
    }
}

fn writer_loop(shared: &Shared) {
    loop {
        let group = {
            let mut state = shared.lock();
            while state.queue.is_empty() && !state.closing {
                state = shared.work.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if state.queue.is_empty() {
                return;
            }
            if !shared.config.group_delay.is_zero() && !state.closing {
                drop(state);
                std::thread::sleep(shared.config.group_delay);
                state = shared.lock();
            }
            take_group(&mut state, shared.config.group_bytes_max)
        };
        let mut segment = shared.segment.lock().unwrap_or_else(|p| p.into_inner());
        if !write_and_settle(shared, &mut segment, group) {
            return;
        }
    }
}

/// Writes and syncs one group, then wakes its waiters; `false` once the log failed.
fn write_and_settle(shared: &Shared, segment: &mut Segment, group: Vec<Queued>) -> bool {
    let Some((last_seq, last_end)) = group.last().map(|q| (q.seq, q.end)) else { return true };
    let bytes: usize = group.iter().map(|q| q.framed.len()).sum();
    let started = std::time::Instant::now();
    let outcome = write_group(shared, segment, group);
    shared.stats.record(started.elapsed(), bytes as u64);
    let mut state = shared.lock();
    match outcome {
        Ok(()) => {
            // Groups are taken and written in append order, one at a time.
            assert!(last_seq > state.durable_seq, "WAL group {last_seq} synced after {}", state.durable_seq);
            assert!(last_end > state.durable_end, "WAL durable end moving back to {last_end}");
            state.durable_seq = last_seq;
            state.durable_end = last_end;
        }
        Err(error) => {
            state.failed = Some(error.to_string());
            state.queue.clear();
        }
    }
    let ok = state.failed.is_none();
    drop(state);
    shared.durable.notify_all();
    ok
}

fn take_group(state: &mut State, bytes_max: usize) -> Vec<Queued> {
    let mut bytes = 0;
    let mut count = 0;
    for queued in &state.queue {
        if count > 0 && bytes + queued.framed.len() > bytes_max {
            break;
        }
        bytes += queued.framed.len();
        count += 1;
    }
    state.queue.drain(..count).collect()
}

fn write_group(shared: &Shared, segment: &mut Segment, group: Vec<Queued>) -> Result<(), WalError> {
    let mut buffer: Vec<u8> = Vec::new();
    for queued in group {
        if queued.position.segment != segment.number {
            // Every segment but the last is complete on disk before the next exists.
            flush(shared, &mut *segment.file, segment.number, &mut buffer)?;
            segment.file = recovery::create_segment(&*shared.config.disk, &shared.dir, queued.position.segment)?;
            segment.number = queued.position.segment;
        }
        buffer.extend_from_slice(&queued.framed);
    }
    flush(shared, &mut *segment.file, segment.number, &mut buffer)
}

fn flush(shared: &Shared, file: &mut dyn DiskFile, segment_number: u64, buffer: &mut Vec<u8>) -> Result<(), WalError> {
    if buffer.is_empty() {
        return Ok(());
    }
    let path = segment::path(&shared.dir, segment_number);
    file.write_all(buffer).map_err(|source| WalError::Io { action: "write", path: path.clone(), source })?;
    file.sync_data().map_err(|source| WalError::Io { action: "sync", path, source })?;
    buffer.clear();
    Ok(())
}
