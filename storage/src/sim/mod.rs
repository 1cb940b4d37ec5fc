//! Building blocks of deterministic simulation: a seeded random source whose sequence
//! never changes between versions ([`SimRng`]), and a disk that can lose power
//! ([`SimDisk`]). With `Scheduling::Caller` the engine starts no threads, so one seed
//! replays one run exactly (the server's `tests/simulation.rs` drives it).

mod disk;

pub use disk::{DiskFaults, DiskStats, SimDisk};

/// A small seeded generator (SplitMix64). Its own code rather than a library's, on
/// purpose: a failing seed must replay the same run in every later version, and general
/// purpose generators do not promise a stable sequence across releases.
#[derive(Clone, Debug)]
pub struct SimRng {
    state: u64,
}

impl SimRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> SimRng {
        SimRng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        self.below(1000) < u64::from(per_mille)
    }

    /// A generator for a part of the simulation, independent of how much the parent
    /// draws later.
    pub fn fork(&mut self) -> SimRng {
        SimRng::new(self.next_u64())
    }
}
