//! Timeouts (RFC 4787 §4.3) of mappings and permissions, and the Linux
//! conntrack entries that unsolicited packets leave (DESIGN §3).

use std::cmp::Reverse;
use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::{Nat, NatDecision, Unsolicited};

/// The instant something last refreshed at `t` expires, saturating.
pub(super) fn after(t: Duration, timeout: Duration) -> Duration {
    t.checked_add(timeout).unwrap_or(Duration::MAX)
}

impl Nat {
    /// Removes every mapping, permission and tracked entry idle past the
    /// timeout at `now`, logging each expired mapping. Every other method
    /// calls this first; the engine may call it to get exact counts.
    pub fn expire(&mut self, now: Duration, log: &mut Vec<NatDecision>) {
        if now < self.next_expiry {
            return;
        }
        while let Some(Reverse((deadline, key))) = self.mapping_deadlines.peek().cloned() {
            if deadline > now {
                break;
            }
            self.mapping_deadlines.pop();
            let Some(mapping) = self.mappings.get(&key) else { continue };
            let actual = after(mapping.last_refresh, self.spec.timeout);
            if actual > now {
                self.mapping_deadlines.push(Reverse((actual, key)));
                continue;
            }
            let external = mapping.external;
            self.mappings.remove(&key);
            self.by_external.remove(&external);
            self.note(log, |nat| NatDecision::MappingExpired {
                nat,
                internal: key.internal,
                external: SocketAddr::V4(external),
                timeout: self.spec.timeout,
            });
        }
        while let Some(Reverse((deadline, tuple))) = self.tracked_deadlines.peek().cloned() {
            if deadline > now {
                break;
            }
            self.tracked_deadlines.pop();
            let Some(&last_seen) = self.tracked.get(&tuple) else { continue };
            let actual = after(last_seen, self.spec.timeout);
            if actual > now {
                self.tracked_deadlines.push(Reverse((actual, tuple)));
            } else {
                self.tracked.remove(&tuple);
            }
        }
        let earliest = |heap: Option<Duration>| heap.unwrap_or(Duration::MAX);
        self.next_expiry = earliest(self.mapping_deadlines.peek().map(|Reverse((at, _))| *at))
            .min(earliest(self.tracked_deadlines.peek().map(|Reverse((at, _))| *at)));
    }

    /// With [`Unsolicited::Track`] (Linux conntrack), leaves an entry for an
    /// unsolicited packet's `(remote, our external endpoint)` tuple, which
    /// swallows the tuple's later packets until it times out.
    pub(super) fn track_unsolicited(
        &mut self,
        now: Duration,
        tuple: (SocketAddr, SocketAddrV4),
        log: &mut Vec<NatDecision>,
    ) {
        if self.spec.unsolicited != Unsolicited::Track {
            return;
        }
        self.tracked.insert(tuple, now);
        let deadline = after(now, self.spec.timeout);
        self.tracked_deadlines.push(Reverse((deadline, tuple)));
        self.next_expiry = self.next_expiry.min(deadline);
        self.note(log, |nat| NatDecision::TrackedUnsolicited { nat, src: tuple.0, dst: tuple.1.into(), created: true });
    }
}
