//! Hybrid logical clocks: the timestamps every write carries.
//!
//! An [`Hlc`] is `(wall_ms, counter, node)`, totally ordered by that tuple, so two writes
//! never tie unless they are the same write. [`HlcClock`] generates timestamps that are
//! strictly increasing on one replica, advances on every timestamp it observes, and
//! refuses timestamps too far ahead of its physical clock ([`ClockDriftError`]).
//!
//! The physical time comes from a [`ClockSource`]. The core does no IO, so the source is
//! supplied by the host: [`SystemClock`] on native targets, `Date.now()` in the browser,
//! [`ManualClock`] in tests. [`OffsetClock`] shifts a source by the server time received
//! at handshake, so a client whose wall clock is wrong still writes acceptable HLCs.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Identity of the replica (or server node) that wrote a change; the last HLC component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A hybrid logical clock timestamp, ordered by `(wall_ms, counter, node)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc {
    /// Physical milliseconds since the Unix epoch (as the writer's clock saw them).
    pub wall_ms: u64,
    /// Logical counter that orders events within one millisecond.
    pub counter: u32,
    /// The writer; makes timestamps of different writers distinct.
    pub node: NodeId,
}

impl Hlc {
    /// The smallest timestamp; no write carries it.
    pub const ZERO: Hlc = Hlc { wall_ms: 0, counter: 0, node: NodeId(0) };

    /// Builds a timestamp from its parts.
    pub const fn new(wall_ms: u64, counter: u32, node: NodeId) -> Hlc {
        Hlc { wall_ms, counter, node }
    }

    /// The 20-byte big-endian form used in hashes: sorts like the timestamp itself.
    pub fn to_bytes(self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..8].copy_from_slice(&self.wall_ms.to_be_bytes());
        out[8..12].copy_from_slice(&self.counter.to_be_bytes());
        out[12..].copy_from_slice(&self.node.0.to_be_bytes());
        out
    }

    /// Reads the form written by [`Hlc::to_bytes`].
    pub fn from_bytes(bytes: [u8; 20]) -> Hlc {
        let mut wall = [0u8; 8];
        let mut counter = [0u8; 4];
        let mut node = [0u8; 8];
        wall.copy_from_slice(&bytes[..8]);
        counter.copy_from_slice(&bytes[8..12]);
        node.copy_from_slice(&bytes[12..]);
        Hlc {
            wall_ms: u64::from_be_bytes(wall),
            counter: u32::from_be_bytes(counter),
            node: NodeId(u64::from_be_bytes(node)),
        }
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}@{}", self.wall_ms, self.counter, self.node)
    }
}

/// Where physical time comes from. Implemented by the host environment.
pub trait ClockSource {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The operating system's wall clock (native targets only: `SystemTime` panics on
/// `wasm32-unknown-unknown`, where the bindings supply `Date.now()` instead).
#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
impl ClockSource for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock set before 1970 reads as 0; the HLC then runs on its counter.
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}

/// A clock that only moves when told to: deterministic tests and simulations.
///
/// Clones share the same time, so a test can keep a handle and advance the clock a
/// replica owns.
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    now_ms: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock reading `now_ms`.
    pub fn new(now_ms: u64) -> ManualClock {
        ManualClock { now_ms: Arc::new(AtomicU64::new(now_ms)) }
    }

    /// Sets the time (it may go backwards: HLCs must stay monotonic anyway).
    pub fn set(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Moves the time forward by `delta_ms`.
    pub fn advance(&self, delta_ms: u64) {
        self.now_ms.fetch_add(delta_ms, Ordering::Relaxed);
    }
}

impl ClockSource for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::Relaxed)
    }
}

/// A source shifted by an offset, typically `server_time - local_time` measured at
/// handshake, so that a client with a wrong wall clock writes server-aligned HLCs.
#[derive(Clone, Debug, Default)]
pub struct OffsetClock<C> {
    inner: C,
    offset_ms: i64,
}

impl<C: ClockSource> OffsetClock<C> {
    /// Wraps `inner` with a zero offset.
    pub fn new(inner: C) -> OffsetClock<C> {
        OffsetClock { inner, offset_ms: 0 }
    }

    /// Aligns this clock with `server_time_ms`, read now from the server's hello.
    pub fn align_to(&mut self, server_time_ms: u64) {
        let local = self.inner.now_ms() as i128;
        let offset = server_time_ms as i128 - local;
        self.offset_ms = offset.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    }

    /// The current offset in milliseconds (positive: the server is ahead).
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms
    }
}

impl<C: ClockSource> ClockSource for OffsetClock<C> {
    fn now_ms(&self) -> u64 {
        let shifted = self.inner.now_ms() as i128 + self.offset_ms as i128;
        shifted.clamp(0, u64::MAX as i128) as u64
    }
}

/// Maximum drift the server accepts by default (docs/semantics.md).
pub const MAX_DRIFT_MS_DEFAULT: u64 = 60_000;

/// A timestamp was further ahead of the local physical clock than allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("clock drift: timestamp {hlc} is {drift_ms} ms ahead of this clock (maximum {max_drift_ms} ms)")]
pub struct ClockDriftError {
    /// The rejected timestamp.
    pub hlc: Hlc,
    /// How far ahead of the local physical clock it was.
    pub drift_ms: u64,
    /// The configured maximum.
    pub max_drift_ms: u64,
}

/// Generates and observes HLCs for one replica.
#[derive(Debug)]
pub struct HlcClock<C> {
    source: C,
    node: NodeId,
    last: Hlc,
    max_drift_ms: u64,
}

impl<C: ClockSource> HlcClock<C> {
    /// A clock for `node` reading physical time from `source`, with the default drift limit.
    pub fn new(node: NodeId, source: C) -> HlcClock<C> {
        HlcClock { source, node, last: Hlc::new(0, 0, node), max_drift_ms: MAX_DRIFT_MS_DEFAULT }
    }

    /// Changes the maximum accepted drift.
    pub fn with_max_drift_ms(mut self, max_drift_ms: u64) -> HlcClock<C> {
        self.max_drift_ms = max_drift_ms;
        self
    }

    /// The node this clock stamps writes with.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The greatest timestamp generated or observed so far.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// The physical clock source.
    pub fn source(&self) -> &C {
        &self.source
    }

    /// The physical clock source, mutably (to align an [`OffsetClock`]).
    pub fn source_mut(&mut self) -> &mut C {
        &mut self.source
    }

    /// A new timestamp, strictly greater than every one generated or observed before.
    pub fn now(&mut self) -> Hlc {
        let physical = self.source.now_ms();
        let next = if physical > self.last.wall_ms {
            Hlc::new(physical, 0, self.node)
        } else if self.last.counter < u32::MAX {
            Hlc::new(self.last.wall_ms, self.last.counter + 1, self.node)
        } else {
            // 4 billion events in one millisecond: borrow the next millisecond.
            Hlc::new(self.last.wall_ms.saturating_add(1), 0, self.node)
        };
        debug_assert!(next > self.last || self.last.wall_ms == u64::MAX);
        self.last = next;
        next
    }

    /// Checks `remote` against the drift limit without changing the clock.
    pub fn check_drift(&self, remote: Hlc) -> Result<(), ClockDriftError> {
        let physical = self.source.now_ms();
        let drift_ms = remote.wall_ms.saturating_sub(physical);
        if drift_ms > self.max_drift_ms {
            return Err(ClockDriftError { hlc: remote, drift_ms, max_drift_ms: self.max_drift_ms });
        }
        Ok(())
    }

    /// The receive rule: refuses `remote` if it drifted too far ahead, otherwise advances
    /// this clock so that the next timestamp is greater than `remote`.
    pub fn observe(&mut self, remote: Hlc) -> Result<(), ClockDriftError> {
        self.check_drift(remote)?;
        self.advance_to(remote);
        Ok(())
    }

    /// Advances past `remote` without a drift check (for timestamps already accepted
    /// elsewhere, e.g. from the server this replica trusts).
    pub fn advance_to(&mut self, remote: Hlc) {
        if (remote.wall_ms, remote.counter) > (self.last.wall_ms, self.last.counter) {
            self.last = Hlc::new(remote.wall_ms, remote.counter, self.node);
        }
    }
}
