//! Software prefetch: asks the CPU to start loading cache lines that a coming step will
//! read, without waiting for them. Merging into a large collection is bound by memory
//! latency; issuing the loads of the next records early lets their misses overlap.
//!
//! A hint only: it never faults and changes no result, and it compiles to nothing on
//! targets without a stable prefetch instruction (wasm32).

/// Bytes per cache line on the targets we prefetch for.
const LINE_BYTES: usize = 64;
/// Most lines prefetched per call, so a huge record cannot flood the cache.
const LINES_MAX: usize = 32;

/// Prefetches the cache lines of `items` into all cache levels.
pub(crate) fn slice<T>(items: &[T]) {
    let bytes = std::mem::size_of_val(items);
    let start = items.as_ptr().cast::<u8>();
    for line in 0..bytes.div_ceil(LINE_BYTES).min(LINES_MAX) {
        line_at(start.wrapping_add(line * LINE_BYTES));
    }
}

/// Prefetches the cache lines of one value.
pub(crate) fn value<T>(item: &T) {
    slice(std::slice::from_ref(item));
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code, reason = "the only unsafe in weft-core: a prefetch hint, see SAFETY")]
fn line_at(address: *const u8) {
    use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
    // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has (it is part of the
    // x86_64 baseline). PREFETCHT0 never faults and never reads memory architecturally,
    // whatever the address, so no pointer validity is required.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(address.cast::<i8>()) };
}

#[cfg(not(target_arch = "x86_64"))]
fn line_at(_address: *const u8) {}
