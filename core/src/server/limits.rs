//! Per-source limits: a token bucket per source (IPv4 address or IPv6 /64)
//! for requests, and one per session for relayed bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::timer::Moment;

/// A token bucket: `capacity` tokens, refilled at `rate` per second.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket<T = Instant> {
    tokens: f64,
    updated: T,
}

impl<T: Moment> Bucket<T> {
    pub(crate) fn full(capacity: f64, now: T) -> Self {
        Bucket { tokens: capacity, updated: now }
    }

    /// Takes `cost` tokens if there are enough.
    pub(crate) fn take(&mut self, now: T, capacity: f64, rate: f64, cost: f64) -> bool {
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

    fn idle_since(&self) -> T {
        self.updated
    }
}

/// Request buckets per source, bounded in number.
///
/// A source is an IPv4 address or an IPv6 /64: one subscriber's prefix
/// (RFC 6177), whose 2^64 addresses are one attacker's for the asking. When
/// the table is full, the source idle the longest is forgotten to make room
/// (its next request starts with a full bucket, as it would after a minute
/// of silence anyway): a flood of new sources can never lock newcomers out.
#[derive(Debug)]
pub(crate) struct SourceLimits<T = Instant> {
    buckets: BTreeMap<IpAddr, Bucket<T>>,
    /// The same sources by when their bucket was last used, oldest first.
    by_age: BTreeSet<(T, IpAddr)>,
    capacity: f64,
    rate: f64,
    max_sources: usize,
}

impl<T: Moment> SourceLimits<T> {
    pub(crate) fn new(capacity: u32, rate: u32, max_sources: usize) -> Self {
        SourceLimits {
            buckets: BTreeMap::new(),
            by_age: BTreeSet::new(),
            capacity: capacity as f64,
            rate: rate as f64,
            max_sources: max_sources.max(1),
        }
    }

    /// True when a request from `ip` is allowed now.
    pub(crate) fn allow(&mut self, now: T, ip: IpAddr) -> bool {
        let (capacity, rate) = (self.capacity, self.rate);
        let source = source_of(ip);
        if let Some(bucket) = self.buckets.get_mut(&source) {
            self.by_age.remove(&(bucket.idle_since(), source));
            let allowed = bucket.take(now, capacity, rate, 1.0);
            self.by_age.insert((bucket.idle_since(), source));
            return allowed;
        }
        while self.buckets.len() >= self.max_sources {
            let Some((_, oldest)) = self.by_age.pop_first() else { break };
            self.buckets.remove(&oldest);
        }
        let mut bucket = Bucket::full(capacity, now);
        let allowed = bucket.take(now, capacity, rate, 1.0);
        self.buckets.insert(source, bucket);
        self.by_age.insert((bucket.idle_since(), source));
        allowed
    }

    /// Forgets sources whose bucket has refilled and that were idle for
    /// `idle`: they would start full anyway.
    pub(crate) fn forget_idle(&mut self, now: T, idle: Duration) {
        // A zero rate never refills: such buckets are never "full again".
        let refill = Duration::try_from_secs_f64(self.capacity / self.rate).unwrap_or(Duration::MAX);
        let keep = refill.max(idle);
        while let Some(&(since, source)) = self.by_age.first() {
            if now.saturating_duration_since(since) < keep {
                break;
            }
            self.by_age.pop_first();
            self.buckets.remove(&source);
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        debug_assert_eq!(self.buckets.len(), self.by_age.len());
        self.buckets.len()
    }
}

/// The source a request is counted against: an IPv4 address (an
/// IPv4-mapped IPv6 one included) or an IPv6 /64.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn every_address_of_one_ipv6_slash_64_shares_one_bucket() {
        // Given a burst of 2 and no refill,
        let now = Duration::ZERO;
        let mut limits: SourceLimits<Duration> = SourceLimits::new(2, 0, 100);
        // when two addresses of one /64 ask, then a third,
        assert!(limits.allow(now, ip("2001:db8:1:2::1")));
        assert!(limits.allow(now, ip("2001:db8:1:2:ffff::9")));
        // then the prefix's bucket is empty, while the next /64 has its own.
        assert!(!limits.allow(now, ip("2001:db8:1:2:abcd::3")));
        assert!(limits.allow(now, ip("2001:db8:1:3::1")));
        // An IPv4-mapped address counts as its IPv4 address.
        assert!(limits.allow(now, ip("192.0.2.1")));
        assert!(limits.allow(now, ip("::ffff:192.0.2.1")));
        assert!(!limits.allow(now, ip("192.0.2.1")));
    }

    #[test]
    fn a_full_table_forgets_the_longest_idle_source_and_admits_the_newcomer() {
        // Given a table of three sources, the first idle the longest,
        let t0 = Duration::ZERO;
        let mut limits: SourceLimits<Duration> = SourceLimits::new(1, 0, 3);
        let later = |ms| t0 + Duration::from_millis(ms);
        assert!(limits.allow(later(0), ip("198.51.100.1")));
        assert!(limits.allow(later(1), ip("198.51.100.2")));
        assert!(limits.allow(later(2), ip("198.51.100.3")));
        assert!(!limits.allow(later(3), ip("198.51.100.2")), "its one token is spent");
        // when a fourth source asks,
        assert!(limits.allow(later(4), ip("198.51.100.4")), "a newcomer is never refused for room");
        // then the table holds three, and the longest idle one was forgotten
        // (it starts afresh), while the others kept their empty buckets.
        assert_eq!(limits.tracked(), 3);
        assert!(!limits.allow(later(5), ip("198.51.100.2")));
        assert!(!limits.allow(later(6), ip("198.51.100.3")));
    }

    #[test]
    fn idle_sources_whose_buckets_refilled_are_forgotten() {
        let t0 = Duration::ZERO;
        let mut limits: SourceLimits<Duration> = SourceLimits::new(4, 4, 10);
        assert!(limits.allow(t0, ip("198.51.100.1")));
        assert!(limits.allow(t0 + Duration::from_secs(5), ip("198.51.100.2")));
        limits.forget_idle(t0 + Duration::from_secs(6), Duration::from_secs(2));
        assert_eq!(limits.tracked(), 1, "only the source seen 1 s ago is kept");
    }
}
