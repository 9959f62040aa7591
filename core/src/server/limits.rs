//! Per-source limits: a token bucket per source IP address for requests, and
//! one per session for relayed bytes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A token bucket: `capacity` tokens, refilled at `rate` per second.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    pub(crate) fn full(capacity: f64, now: Instant) -> Self {
        Bucket { tokens: capacity, updated: now }
    }

    /// Takes `cost` tokens if there are enough.
    pub(crate) fn take(&mut self, now: Instant, capacity: f64, rate: f64, cost: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        self.updated = now;
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    fn idle_since(&self) -> Instant {
        self.updated
    }
}

/// Request buckets per source address, bounded in number.
#[derive(Debug)]
pub(crate) struct SourceLimits {
    buckets: BTreeMap<IpAddr, Bucket>,
    capacity: f64,
    rate: f64,
    max_sources: usize,
}

impl SourceLimits {
    pub(crate) fn new(capacity: u32, rate: u32, max_sources: usize) -> Self {
        SourceLimits { buckets: BTreeMap::new(), capacity: capacity as f64, rate: rate as f64, max_sources }
    }

    /// True when a request from `ip` is allowed now.
    pub(crate) fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        let (capacity, rate) = (self.capacity, self.rate);
        // One descent for a known source, the server's every request.
        if let Some(bucket) = self.buckets.get_mut(&ip) {
            return bucket.take(now, capacity, rate, 1.0);
        }
        if self.buckets.len() >= self.max_sources {
            self.forget_idle(now, Duration::ZERO);
            if self.buckets.len() >= self.max_sources {
                return false;
            }
        }
        self.buckets.entry(ip).or_insert_with(|| Bucket::full(capacity, now)).take(now, capacity, rate, 1.0)
    }

    /// Forgets sources whose bucket has refilled and that were idle for
    /// `idle`: they would start full anyway.
    pub(crate) fn forget_idle(&mut self, now: Instant, idle: Duration) {
        // A zero rate never refills: such buckets are never "full again".
        let refill = Duration::try_from_secs_f64(self.capacity / self.rate).unwrap_or(Duration::MAX);
        self.buckets.retain(|_, b| now.saturating_duration_since(b.idle_since()) < refill.max(idle));
    }
}
