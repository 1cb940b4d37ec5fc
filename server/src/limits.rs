//! Per-client limits that need state: the ops/s token bucket of a connection and the
//! count of connections per IP address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// A token bucket: `rate` tokens per second, holding at most `burst`. Time is passed in
/// (milliseconds of the server clock), so a simulated clock drives it too.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last_ms: u64,
}

impl RateLimiter {
    /// A full bucket at `now_ms`.
    pub fn new(rate: u32, burst: u32, now_ms: u64) -> RateLimiter {
        let burst = f64::from(burst.max(rate).max(1));
        RateLimiter { rate: f64::from(rate.max(1)), burst, tokens: burst, last_ms: now_ms }
    }

    /// Takes `n` tokens at `now_ms` if there are enough; otherwise takes none and returns
    /// false. A clock that steps back refills nothing.
    pub fn try_take(&mut self, n: usize, now_ms: u64) -> bool {
        let elapsed_s = now_ms.saturating_sub(self.last_ms) as f64 / 1_000.0;
        self.tokens = (self.tokens + elapsed_s * self.rate).min(self.burst);
        self.last_ms = self.last_ms.max(now_ms);
        let n = n as f64;
        if n <= self.tokens {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// Counts open connections per IP address.
#[derive(Debug, Default)]
pub struct ConnectionCounter {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// Holds one connection slot; releases it when dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    counter: Arc<ConnectionCounter>,
    ip: IpAddr,
}

impl ConnectionCounter {
    /// Takes a slot for `ip` unless it already has `max` connections.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot { counter: Arc::clone(self), ip })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.counter.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_refuses_beyond_its_burst() {
        let mut limiter = RateLimiter::new(10, 20, 1_000);
        assert!(limiter.try_take(20, 1_000));
        assert!(!limiter.try_take(5, 1_000));
        assert!(limiter.try_take(5, 1_500), "half a second refills five");
    }

    #[test]
    fn connection_slots_are_released_on_drop() {
        let counter = Arc::new(ConnectionCounter::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let first = counter.acquire(ip, 1).unwrap();
        assert!(counter.acquire(ip, 1).is_none());
        drop(first);
        assert!(counter.acquire(ip, 1).is_some());
    }
}
