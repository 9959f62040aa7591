//! Mappings (RFC 4787 §4.1) and the filtering of inbound packets through
//! them (RFC 4787 §5).

use std::cmp::Reverse;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use punchline_core::nat::{FilteringBehavior, MappingBehavior};

use super::timeouts::after;
use super::{Nat, NatDecision};
use crate::fast_map::FastMap;

/// What a mapping is keyed by: the internal endpoint, plus the destination
/// parts its mapping behaviour depends on (RFC 4787 §4.1). A per-destination
/// mapping made by a [`NatDecision::PortCollision`] carries both parts
/// whatever the behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct MappingKey {
    pub(super) internal: SocketAddr,
    dest_ip: Option<IpAddr>,
    dest_port: Option<u16>,
}

#[derive(Clone, Debug)]
pub(super) struct Mapping {
    pub(super) external: SocketAddrV4,
    pub(super) last_refresh: Duration,
    /// Permissions for filtering: when the mapping last sent to each remote.
    sent_to: Permissions,
}

/// When a mapping last sent to each remote endpoint, or to each remote
/// address (the latest over its ports): whichever the device's filtering
/// (RFC 4787 §5) reads, so a check is one lookup. Endpoint-independent
/// filtering reads neither and records nothing.
#[derive(Clone, Debug, Default)]
struct Permissions {
    endpoints: FastMap<SocketAddr, Duration>,
    addresses: FastMap<IpAddr, Duration>,
}

impl Permissions {
    fn record(&mut self, filtering: FilteringBehavior, remote: SocketAddr, now: Duration) {
        match filtering {
            FilteringBehavior::EndpointIndependent => {}
            FilteringBehavior::AddressDependent => {
                self.addresses.insert(remote.ip(), now);
            }
            FilteringBehavior::AddressAndPortDependent => {
                self.endpoints.insert(remote, now);
            }
        }
    }

    /// Last packet sent to `remote`.
    fn endpoint(&self, remote: SocketAddr) -> Option<Duration> {
        self.endpoints.get(&remote).copied()
    }

    /// Last packet sent to any port of `ip`.
    fn address(&self, ip: IpAddr) -> Option<Duration> {
        self.addresses.get(&ip).copied()
    }
}

impl Nat {
    /// Finds or creates the mapping for `internal -> remote`, refreshes it,
    /// and returns its external endpoint.
    pub(super) fn translate_source(
        &mut self,
        now: Duration,
        internal: SocketAddr,
        remote: SocketAddr,
        log: &mut Vec<NatDecision>,
    ) -> Option<SocketAddr> {
        let exact = MappingKey { internal, dest_ip: Some(remote.ip()), dest_port: Some(remote.port()) };
        let key = if self.mappings.contains_key(&exact) { exact } else { self.behaviour_key(internal, remote) };
        let existing = self.mappings.get(&key).map(|m| m.external);
        // The external endpoint this flow would leave from: the mapping's, or
        // for a new mapping the preserved port.
        let wanted = existing.or_else(|| self.preserved_candidate(internal));
        let key = match wanted {
            Some(blocked) if self.tracked.contains_key(&(remote, blocked)) => {
                // Linux conntrack: the reply tuple of the unsolicited entry
                // already owns `blocked -> remote`, so this flow must leave
                // from another port. An endpoint that already has a mapping
                // keeps it for other destinations; one without becomes known
                // by the new port, which its later flows reuse (the kernel's
                // `find_appropriate_src`, measured by the kernel lab).
                let external = self.allocate(internal, remote, log)?;
                let target = if existing.is_some() { exact } else { key };
                if let Some(old) = self.mappings.remove(&target) {
                    self.by_external.remove(&old.external);
                }
                self.insert_mapping(now, target, external);
                self.note(log, |nat| NatDecision::PortCollision {
                    nat,
                    internal,
                    remote,
                    blocked: SocketAddr::V4(blocked),
                    external: SocketAddr::V4(external),
                });
                target
            }
            _ if existing.is_some() => key,
            _ => {
                self.run_background(now, log);
                let external = self.allocate(internal, remote, log)?;
                self.insert_mapping(now, key, external);
                self.note(log, |nat| NatDecision::MappingCreated {
                    nat,
                    internal,
                    external: SocketAddr::V4(external),
                    remote,
                });
                key
            }
        };
        // Invariant: `key` was found or inserted just above.
        let mapping = self.mappings.get_mut(&key).expect("mapping present");
        // RFC 4787 REQ-6: outbound traffic refreshes the mapping.
        mapping.last_refresh = now;
        mapping.sent_to.record(self.spec.filtering, remote, now);
        Some(SocketAddr::V4(mapping.external))
    }

    /// Applies filtering for `remote -> external` and returns the internal
    /// endpoint, or records why the packet was dropped.
    pub(super) fn translate_destination(
        &mut self,
        now: Duration,
        remote: SocketAddr,
        external: SocketAddr,
        log: &mut Vec<NatDecision>,
    ) -> Option<SocketAddr> {
        let external = match external {
            SocketAddr::V4(v4) if self.owns(*v4.ip()) => v4,
            _ => {
                self.note(log, |nat| NatDecision::NoMapping { nat, src: remote, dst: external });
                return None;
            }
        };
        let tuple = (remote, external);
        if let Some(last_seen) = self.tracked.get_mut(&tuple) {
            // The entry's reply direction is the router itself; refreshed
            // while the remote keeps sending.
            *last_seen = now;
            self.note(log, |nat| NatDecision::TrackedUnsolicited {
                nat,
                src: remote,
                dst: external.into(),
                created: false,
            });
            return None;
        }
        let timeout = self.spec.timeout;
        let filtering = self.spec.filtering;
        let Some(key) = self.by_external.get(&external).copied() else {
            self.note(log, |nat| NatDecision::NoMapping { nat, src: remote, dst: external.into() });
            self.track_unsolicited(now, tuple, log);
            return None;
        };
        // Invariant: `by_external` and `mappings` are updated together.
        let mapping = self.mappings.get_mut(&key).expect("indexed mapping present");
        let live = |sent: Duration| now < after(sent, timeout);
        let permitted = match filtering {
            FilteringBehavior::EndpointIndependent => true,
            // A permission is live while its latest packet is, so the
            // address's latest packet over all its ports decides.
            FilteringBehavior::AddressDependent => mapping.sent_to.address(remote.ip()).is_some_and(live),
            FilteringBehavior::AddressAndPortDependent => mapping.sent_to.endpoint(remote).is_some_and(live),
        };
        if !permitted {
            self.note(log, |nat| NatDecision::Filtered { nat, src: remote, dst: external.into(), filtering });
            self.track_unsolicited(now, tuple, log);
            return None;
        }
        if self.spec.inbound_refreshes {
            mapping.last_refresh = now;
            mapping.sent_to.record(filtering, remote, now);
        }
        Some(key.internal)
    }

    fn behaviour_key(&self, internal: SocketAddr, remote: SocketAddr) -> MappingKey {
        let (dest_ip, dest_port) = match self.spec.mapping {
            MappingBehavior::EndpointIndependent => (None, None),
            MappingBehavior::AddressDependent => (Some(remote.ip()), None),
            MappingBehavior::AddressAndPortDependent => (Some(remote.ip()), Some(remote.port())),
        };
        MappingKey { internal, dest_ip, dest_port }
    }

    fn insert_mapping(&mut self, now: Duration, key: MappingKey, external: SocketAddrV4) {
        self.mappings.insert(key, Mapping { external, last_refresh: now, sent_to: Permissions::default() });
        self.by_external.insert(external, key);
        let deadline = after(now, self.spec.timeout);
        self.mapping_deadlines.push(Reverse((deadline, key)));
        self.next_expiry = self.next_expiry.min(deadline);
    }
}
