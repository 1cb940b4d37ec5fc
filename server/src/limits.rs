//! Per-client limits that need state: the ops/s token bucket of a connection and the
//! count of connections per IP address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> RateLimiter {
        let burst = f64::from(burst.max(rate).max(1));
        RateLimiter { rate: f64::from(rate.max(1)), burst, tokens: burst, last: Instant::now() }
    }

    /// Takes `n` tokens if there are enough; otherwise takes none and returns false.
    pub fn try_take(&mut self, n: usize) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
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
        let mut limiter = RateLimiter::new(10, 20);
        assert!(limiter.try_take(20));
        assert!(!limiter.try_take(5));
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
