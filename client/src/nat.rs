//! Naming a measured NAT: RFC 4787 terms and the simulator's nearest preset.

use punchline_core::nat::{FilteringBehavior, MappingBehavior, NatProfile, PortAllocation};

/// The port allocation's name, as scenario files spell it (`ports = ...`).
pub fn ports_name(p: PortAllocation) -> &'static str {
    match p {
        PortAllocation::Preserving => "preserve",
        PortAllocation::Sequential { .. } => "sequential",
        PortAllocation::Random => "random",
    }
}

/// The simulator preset (DESIGN §4) nearest to a measured profile, or `None`
/// when the mapping was not measured (no alternate server address).
///
/// The rule:
/// - no NAT (reflexive address = host address) → `open`;
/// - endpoint-independent mapping → by filtering: `full-cone`,
///   `restricted-cone`, `port-restricted-cone`. `linux` behaves as
///   `port-restricted-cone` in everything a client can measure (it differs in
///   timeout and conntrack tracking), so it is never the answer;
/// - address(-and-port)-dependent mapping → `symmetric-random` when ports are
///   random, else `symmetric-sequential` (`linux-random` measures the same as
///   `symmetric-random`).
pub fn nearest_preset(profile: &NatProfile) -> Option<&'static str> {
    if profile.public {
        return Some("open");
    }
    match profile.mapping? {
        MappingBehavior::EndpointIndependent => Some(match profile.filtering {
            Some(FilteringBehavior::EndpointIndependent) => "full-cone",
            Some(FilteringBehavior::AddressDependent) => "restricted-cone",
            Some(FilteringBehavior::AddressAndPortDependent) | None => "port-restricted-cone",
        }),
        MappingBehavior::AddressDependent | MappingBehavior::AddressAndPortDependent => Some(match profile.ports {
            Some(PortAllocation::Random) => "symmetric-random",
            _ => "symmetric-sequential",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(m: MappingBehavior, f: FilteringBehavior, p: PortAllocation) -> NatProfile {
        NatProfile { mapping: Some(m), filtering: Some(f), ports: Some(p), public: false }
    }

    #[test]
    fn presets_follow_the_measurements() {
        use FilteringBehavior as F;
        use MappingBehavior as M;
        use PortAllocation as P;
        assert_eq!(nearest_preset(&NatProfile::public()), Some("open"));
        assert_eq!(
            nearest_preset(&profile(M::EndpointIndependent, F::EndpointIndependent, P::Preserving)),
            Some("full-cone")
        );
        assert_eq!(
            nearest_preset(&profile(M::EndpointIndependent, F::AddressDependent, P::Preserving)),
            Some("restricted-cone")
        );
        assert_eq!(
            nearest_preset(&profile(M::EndpointIndependent, F::AddressAndPortDependent, P::Preserving)),
            Some("port-restricted-cone")
        );
        assert_eq!(
            nearest_preset(&profile(
                M::AddressAndPortDependent,
                F::AddressAndPortDependent,
                P::Sequential { delta: 1 }
            )),
            Some("symmetric-sequential")
        );
        assert_eq!(
            nearest_preset(&profile(M::AddressDependent, F::AddressAndPortDependent, P::Random)),
            Some("symmetric-random")
        );
        assert_eq!(nearest_preset(&NatProfile::default()), None);
    }
}
