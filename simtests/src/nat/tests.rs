//! The NAT device's RFC 4787 behaviours, given/when/then; Linux conntrack's
//! in `linux`.

use bytes::Bytes;
use punchline_core::nat::MappingBehavior;

use super::*;

const SERVER: &str = "203.0.113.10:3478";
const ALT: &str = "203.0.113.11:3479";
const PEER: &str = "198.51.100.2:4000";
const HOST: &str = "10.0.0.2:4000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn pkt(src: &str, dst: &str) -> Packet {
    Packet::udp(addr(src), addr(dst), 64, Bytes::from_static(b"x"))
}

fn nat(preset: Preset) -> Nat {
    nat_with(preset.spec("home-b", vec!["198.51.100.6".parse().unwrap()]))
}

fn nat_with(spec: NatSpec) -> Nat {
    Nat::new(spec, Rng::new(7))
}

/// Sends `src -> dst` out and returns the external source it left from.
fn send(n: &mut Nat, now: Duration, src: &str, dst: &str) -> Option<SocketAddr> {
    n.outbound(now, pkt(src, dst), &mut Vec::new()).map(|p| p.src)
}

/// Delivers `src -> dst` from outside and returns the inside destination.
fn recv(n: &mut Nat, now: Duration, src: &str, dst: &str) -> Option<SocketAddr> {
    n.inbound(now, pkt(src, dst), &mut Vec::new()).map(|p| p.dst)
}

fn lines(log: &[NatDecision]) -> Vec<String> {
    log.iter().map(ToString::to_string).collect()
}

#[test]
fn full_cone_maps_preserving_the_port_and_accepts_anyone() {
    // Given a full-cone NAT,
    let mut n = nat(Preset::FullCone);
    let mut log = Vec::new();
    // when a host sends to the server,
    let out = n.outbound(secs(1), pkt(HOST, SERVER), &mut log).unwrap();
    // then the port is preserved, the TTL decremented, and the trace says so;
    assert_eq!((out.src, out.dst, out.ttl), (addr("198.51.100.6:4000"), addr(SERVER), 63));
    assert_eq!(
        lines(&log),
        [
            "nat home-b: map 10.0.0.2:4000 -> 198.51.100.6:4000 (for 203.0.113.10:3478)",
            "nat home-b: out 10.0.0.2:4000 -> 203.0.113.10:3478 as 198.51.100.6:4000",
        ]
    );
    // and a stranger reaches the host through the mapping (RFC 4787 §5 EIF).
    log.clear();
    let back = n.inbound(secs(2), pkt(PEER, "198.51.100.6:4000"), &mut log).unwrap();
    assert_eq!((back.src, back.dst), (addr(PEER), addr(HOST)));
    assert_eq!(lines(&log), ["nat home-b: in 198.51.100.2:4000 -> 198.51.100.6:4000 to 10.0.0.2:4000"]);
}

#[test]
fn restricted_cone_filters_by_address_and_port_restricted_by_endpoint() {
    // Given both cones with a mapping toward the server,
    let mut restricted = nat(Preset::RestrictedCone);
    let mut port_restricted = nat(Preset::PortRestrictedCone);
    for n in [&mut restricted, &mut port_restricted] {
        send(n, secs(0), HOST, SERVER);
    }
    // when the server answers from its other port and a stranger writes,
    // then the restricted cone accepts the same IP on any port,
    assert_eq!(recv(&mut restricted, secs(1), "203.0.113.10:9999", "198.51.100.6:4000"), Some(addr(HOST)));
    assert_eq!(recv(&mut restricted, secs(1), PEER, "198.51.100.6:4000"), None);
    // and the port-restricted cone only the exact endpoint it sent to.
    assert_eq!(recv(&mut port_restricted, secs(1), "203.0.113.10:9999", "198.51.100.6:4000"), None);
    assert_eq!(recv(&mut port_restricted, secs(1), SERVER, "198.51.100.6:4000"), Some(addr(HOST)));
    let mut log = Vec::new();
    port_restricted.inbound(secs(1), pkt(PEER, "198.51.100.6:4000"), &mut log);
    assert_eq!(
        lines(&log),
        ["nat home-b: filter 198.51.100.2:4000 -> 198.51.100.6:4000 \
          (address-and-port-dependent filtering: not sent there)"]
    );
    assert_eq!(port_restricted.tracked_count(), 0, "a textbook NAT leaves nothing behind");
}

#[test]
fn endpoint_independent_mapping_reuses_one_port_for_every_destination() {
    let mut n = nat(Preset::PortRestrictedCone);
    assert_eq!(send(&mut n, secs(0), HOST, SERVER), Some(addr("198.51.100.6:4000")));
    assert_eq!(send(&mut n, secs(0), HOST, ALT), Some(addr("198.51.100.6:4000")));
    assert_eq!(send(&mut n, secs(0), HOST, PEER), Some(addr("198.51.100.6:4000")));
    assert_eq!(n.mapping_count(), 1);
}

#[test]
fn address_dependent_mapping_changes_port_only_for_a_new_address() {
    // Given a NAT whose mapping depends on the destination address,
    let mut spec = Preset::FullCone.spec("ad", vec!["198.51.100.6".parse().unwrap()]);
    spec.mapping = MappingBehavior::AddressDependent;
    let mut n = nat_with(spec);
    // when a host sends to two ports of the server and then to a peer,
    let first = send(&mut n, secs(0), HOST, SERVER).unwrap();
    let same_ip = send(&mut n, secs(0), HOST, "203.0.113.10:9999").unwrap();
    let other_ip = send(&mut n, secs(0), HOST, PEER).unwrap();
    // then the server's IP shares one mapping and the peer gets another.
    assert_eq!(first, addr("198.51.100.6:4000"));
    assert_eq!(same_ip, first);
    assert_ne!(other_ip.port(), 4000);
    assert_eq!(n.mapping_count(), 2);
}

#[test]
fn symmetric_sequential_allocates_consecutive_ports_per_destination() {
    // Given a sequential symmetric NAT,
    let mut n = nat(Preset::SymmetricSequential);
    // when a host sends to three destinations (and again to the first),
    let a = send(&mut n, secs(0), HOST, SERVER).unwrap().port();
    let b = send(&mut n, secs(0), HOST, ALT).unwrap().port();
    let c = send(&mut n, secs(0), HOST, PEER).unwrap().port();
    let a_again = send(&mut n, secs(1), HOST, SERVER).unwrap().port();
    // then each destination gets the next port, and the first keeps its own.
    assert_eq!((b, c, a_again), (a + 1, a + 2, a));
    assert!((1024..=65535).contains(&a));
}

#[test]
fn sequential_allocation_wraps_within_the_range_and_skips_ports_in_use() {
    // Given ports 5000..=5002 with a delta of 2 and a start at 5000,
    let mut spec = Preset::SymmetricSequential.spec("seq", vec!["198.51.100.6".parse().unwrap()]);
    spec.port_range = (5000, 5002);
    spec.ports = PortPolicy::Sequential { delta: 2 };
    let mut n = nat_with(spec);
    let first = send(&mut n, secs(0), HOST, "203.0.113.1:1").unwrap().port();
    // when three more destinations are mapped,
    let next: Vec<u16> =
        (2..=4).map(|i| send(&mut n, secs(0), HOST, &format!("203.0.113.{i}:1")).map_or(0, |a| a.port())).collect();
    // then the ports step by 2 modulo the range, and the fourth finds none.
    let expected = |k: u16| 5000 + (first - 5000 + 2 * k) % 3;
    assert_eq!(next, [expected(1), expected(2), 0]);
    let mut log = Vec::new();
    n.outbound(secs(0), pkt(HOST, "203.0.113.9:1"), &mut log);
    assert_eq!(lines(&log), ["nat seq: drop 10.0.0.2:4000 -> 203.0.113.9:1 (no free external port)"]);
}

#[test]
fn symmetric_random_ports_are_unpredictable_but_deterministic_per_seed() {
    let ports = |seed: u64| {
        let mut n = Nat::new(Preset::SymmetricRandom.spec("r", vec!["198.51.100.6".parse().unwrap()]), Rng::new(seed));
        (1..=5).map(|i| send(&mut n, secs(0), HOST, &format!("203.0.113.{i}:1")).unwrap().port()).collect::<Vec<_>>()
    };
    assert_eq!(ports(1), ports(1));
    assert_ne!(ports(1), ports(2));
    let p = ports(1);
    assert!(p.windows(2).all(|w| w[1] != w[0].wrapping_add(1)), "not sequential: {p:?}");
}

#[test]
fn preservation_falls_back_to_a_random_port_when_taken() {
    // Given two hosts using the same local port behind one cone,
    let mut n = nat(Preset::PortRestrictedCone);
    let first = send(&mut n, secs(0), HOST, SERVER).unwrap();
    // when the second host sends,
    let second = send(&mut n, secs(0), "10.0.0.3:4000", SERVER).unwrap();
    // then it gets another port, in range.
    assert_eq!(first.port(), 4000);
    assert_ne!(second.port(), 4000);
    assert!(second.port() >= 1024);
}

#[test]
fn a_host_always_gets_the_same_public_ip_from_the_pool() {
    // Given a NAT with two public IPs (RFC 4787 REQ-2, paired),
    let ips = vec!["198.51.100.6".parse().unwrap(), "198.51.100.7".parse().unwrap()];
    let mut n = nat_with(Preset::SymmetricRandom.spec("pool", ips));
    // when two hosts send to several destinations,
    let a: Vec<IpAddr> =
        (1..=4).map(|i| send(&mut n, secs(0), HOST, &format!("203.0.113.{i}:1")).unwrap().ip()).collect();
    let b = send(&mut n, secs(0), "10.0.0.3:4000", SERVER).unwrap().ip();
    // then the first host always uses the first IP, the second the next one.
    assert_eq!(a, vec![IpAddr::from([198, 51, 100, 6]); 4]);
    assert_eq!(b, IpAddr::from([198, 51, 100, 7]));
}

#[test]
fn mappings_expire_without_outbound_traffic_and_inbound_does_not_refresh_by_default() {
    // Given a full cone (120 s) mapping created at t=0,
    let mut n = nat(Preset::FullCone);
    send(&mut n, secs(0), HOST, SERVER);
    // when only inbound traffic flows,
    assert_eq!(recv(&mut n, secs(100), SERVER, "198.51.100.6:4000"), Some(addr(HOST)));
    // then the mapping still dies 120 s after the last outbound packet.
    let mut log = Vec::new();
    assert_eq!(n.inbound(secs(120), pkt(SERVER, "198.51.100.6:4000"), &mut log), None);
    assert_eq!(
        lines(&log),
        [
            "nat home-b: expire 10.0.0.2:4000 -> 198.51.100.6:4000 (idle 2m)",
            "nat home-b: drop 203.0.113.10:3478 -> 198.51.100.6:4000 (no mapping)",
        ]
    );
    assert_eq!(n.mapping_count(), 0);
}

#[test]
fn a_nat_not_recording_decisions_treats_packets_the_same_and_logs_nothing() {
    // Given two linux NATs, one told not to record its decisions,
    let mut recording = nat(Preset::Linux);
    let mut silent = nat(Preset::Linux);
    silent.record_decisions(false);
    let (mut logged, mut unlogged) = (Vec::new(), Vec::new());
    for (n, log) in [(&mut recording, &mut logged), (&mut silent, &mut unlogged)] {
        // when each maps, translates, filters, tracks and expires alike,
        let out = n.outbound(secs(0), pkt(HOST, SERVER), log).map(|p| p.src);
        let back = n.inbound(secs(1), pkt(SERVER, "198.51.100.6:4000"), log).map(|p| p.dst);
        let stray = n.inbound(secs(2), pkt(PEER, "198.51.100.6:4000"), log).map(|p| p.dst);
        n.expire(secs(500), log);
        // then both give each packet the same fate,
        assert_eq!((out, back, stray), (Some(addr("198.51.100.6:4000")), Some(addr(HOST)), None));
        assert_eq!((n.mapping_count(), n.tracked_count()), (0, 0));
    }
    // and only the recording one wrote them down.
    assert!(lines(&logged).iter().any(|l| l.contains("expire")), "{logged:?}");
    assert!(unlogged.is_empty(), "{unlogged:?}");
}

#[test]
fn outbound_traffic_refreshes_and_inbound_does_when_configured() {
    // Given two NATs, one of which lets inbound traffic refresh,
    let mut plain = nat(Preset::FullCone);
    let mut spec = Preset::FullCone.spec("home-b", vec!["198.51.100.6".parse().unwrap()]);
    spec.inbound_refreshes = true;
    let mut refreshing = nat_with(spec);
    for n in [&mut plain, &mut refreshing] {
        send(n, secs(0), HOST, SERVER);
        // when the host sends again at 100 s and hears back at 200 s,
        send(n, secs(100), HOST, SERVER);
        recv(n, secs(200), SERVER, "198.51.100.6:4000");
    }
    // then at 250 s only the inbound-refreshed mapping is alive.
    assert_eq!(recv(&mut plain, secs(250), SERVER, "198.51.100.6:4000"), None);
    assert_eq!(recv(&mut refreshing, secs(250), SERVER, "198.51.100.6:4000"), Some(addr(HOST)));
}

#[test]
fn a_permission_expires_on_its_own_while_keepalives_hold_the_mapping() {
    // Given a port-restricted cone that sent once to a peer at t=0 and
    // keeps a keepalive toward the server,
    let mut n = nat(Preset::PortRestrictedCone);
    send(&mut n, secs(0), HOST, PEER);
    for t in (0..=200).step_by(25) {
        send(&mut n, secs(t), HOST, SERVER);
    }
    // when the peer writes after 120 s of silence toward it,
    // then it is filtered although the mapping lives.
    assert_eq!(recv(&mut n, secs(119), PEER, "198.51.100.6:4000"), Some(addr(HOST)));
    assert_eq!(recv(&mut n, secs(200), PEER, "198.51.100.6:4000"), None);
    assert_eq!(recv(&mut n, secs(200), SERVER, "198.51.100.6:4000"), Some(addr(HOST)));
}

#[test]
fn a_packet_whose_ttl_reaches_zero_dies_before_translation() {
    // Given a cone NAT,
    let mut n = nat(Preset::PortRestrictedCone);
    let mut log = Vec::new();
    // when a TTL-1 packet leaves the host,
    let dying = Packet { ttl: 1, ..pkt(HOST, PEER) };
    assert_eq!(n.outbound(secs(0), dying, &mut log), None);
    // then it is dropped here and leaves no mapping;
    assert_eq!(lines(&log), ["nat home-b: ttl expired 10.0.0.2:4000 -> 198.51.100.2:4000 (outbound)"]);
    assert_eq!(n.mapping_count(), 0);
    // and a TTL-2 opener crosses with TTL 1 left, opening the mapping.
    let opener = n.outbound(secs(0), Packet { ttl: 2, ..pkt(HOST, PEER) }, &mut log).unwrap();
    assert_eq!(opener.ttl, 1);
    assert_eq!(n.mapping_count(), 1);
    // A TTL-0 packet (hostile or broken) is dropped too, without panic.
    assert_eq!(n.inbound(secs(0), Packet { ttl: 0, ..pkt(PEER, "198.51.100.6:4000") }, &mut log), None);
}

#[test]
fn udp_blocked_drops_everything_both_ways() {
    let mut n = nat(Preset::UdpBlocked);
    let mut log = Vec::new();
    assert_eq!(n.outbound(secs(0), pkt(HOST, SERVER), &mut log), None);
    assert_eq!(n.inbound(secs(0), pkt(SERVER, "198.51.100.6:4000"), &mut log), None);
    assert_eq!(
        lines(&log),
        [
            "nat home-b: drop 10.0.0.2:4000 -> 203.0.113.10:3478 (UDP blocked, outbound)",
            "nat home-b: drop 203.0.113.10:3478 -> 198.51.100.6:4000 (UDP blocked, inbound)",
        ]
    );
}

#[test]
fn hairpinning_translates_the_source_and_applies_filtering() {
    // Given two hosts behind a port-restricted cone, each mapped,
    let mut n = nat(Preset::PortRestrictedCone);
    send(&mut n, secs(0), HOST, SERVER);
    send(&mut n, secs(0), "10.0.0.3:5000", SERVER);
    // when the first writes to the second's public endpoint before the
    // second has written to it,
    let mut log = Vec::new();
    assert_eq!(n.hairpin(secs(1), pkt(HOST, "198.51.100.6:5000"), &mut log), None);
    // then filtering drops it; once the second has written back, it passes
    // with the external source (RFC 4787 REQ-9).
    assert_eq!(
        n.hairpin(secs(1), pkt("10.0.0.3:5000", "198.51.100.6:4000"), &mut log).map(|p| (p.src, p.dst)),
        Some((addr("198.51.100.6:5000"), addr(HOST)))
    );
    log.clear();
    let through = n.hairpin(secs(2), pkt(HOST, "198.51.100.6:5000"), &mut log).unwrap();
    assert_eq!((through.src, through.dst), (addr("198.51.100.6:4000"), addr("10.0.0.3:5000")));
    assert_eq!(
        lines(&log),
        ["nat home-b: hairpin 10.0.0.2:4000 -> 198.51.100.6:5000 as 198.51.100.6:4000 to 10.0.0.3:5000"]
    );
}

#[test]
fn without_hairpinning_a_packet_to_our_own_address_is_dropped() {
    let mut n = nat(Preset::Linux);
    let mut log = Vec::new();
    assert_eq!(n.hairpin(secs(0), pkt(HOST, "198.51.100.6:5000"), &mut log), None);
    assert_eq!(lines(&log), ["nat home-b: drop 10.0.0.2:4000 -> 198.51.100.6:5000 (no hairpinning)"]);
}

#[test]
fn reboot_flushes_mappings_and_tracked_state() {
    // Given a linux NAT with a mapping and a tracked entry,
    let mut n = nat(Preset::Linux);
    send(&mut n, secs(0), HOST, SERVER);
    recv(&mut n, secs(0), PEER, "198.51.100.6:4000");
    // when it reboots,
    n.reboot();
    // then the server's packets are unsolicited and the next outbound
    // packet creates a fresh mapping.
    assert_eq!((n.mapping_count(), n.tracked_count()), (0, 0));
    let mut log = Vec::new();
    n.outbound(secs(1), pkt(HOST, SERVER), &mut log);
    assert_eq!(lines(&log)[0], "nat home-b: map 10.0.0.2:4000 -> 198.51.100.6:4000 (for 203.0.113.10:3478)");
}

#[test]
fn the_open_preset_routes_without_translation() {
    // Given an open router for the public host 198.51.100.9,
    let mut n = nat_with(Preset::Open.spec("lan", vec!["198.51.100.9".parse().unwrap()]));
    let mut log = Vec::new();
    // when its host talks to the server and a stranger answers,
    let out = n.outbound(secs(0), pkt("198.51.100.9:4000", SERVER), &mut log).unwrap();
    let back = n.inbound(secs(0), pkt(PEER, "198.51.100.9:4000"), &mut log).unwrap();
    // then nothing is rewritten and no state is kept.
    assert_eq!((out.src, out.ttl, back.dst), (addr("198.51.100.9:4000"), 63, addr("198.51.100.9:4000")));
    assert_eq!(n.mapping_count(), 0);
    assert_eq!(
        lines(&log),
        [
            "nat lan: route 198.51.100.9:4000 -> 203.0.113.10:3478 (outbound, no translation)",
            "nat lan: route 198.51.100.2:4000 -> 198.51.100.9:4000 (inbound, no translation)",
        ]
    );
}

#[test]
fn broken_specs_and_foreign_packets_drop_without_panicking() {
    // Given a NAT without public IPs and one with an empty port range,
    let mut no_ips = nat_with(Preset::FullCone.spec("empty", vec![]));
    let mut spec = Preset::FullCone.spec("inverted", vec!["198.51.100.6".parse().unwrap()]);
    spec.port_range = (6000, 5000);
    let mut inverted = nat_with(spec);
    // when hosts send and strangers write to addresses that are not ours,
    // then everything is dropped.
    assert_eq!(send(&mut no_ips, secs(0), HOST, SERVER), None);
    assert_eq!(send(&mut inverted, secs(0), HOST, SERVER), None);
    assert_eq!(recv(&mut inverted, secs(0), PEER, "192.0.2.1:1"), None);
    assert_eq!(recv(&mut inverted, secs(0), PEER, "[2001:db8::1]:1"), None);
}

#[test]
fn presets_round_trip_through_their_names() {
    for p in Preset::ALL {
        assert_eq!(p.name().parse::<Preset>(), Ok(p));
    }
    assert_eq!(
        "cone".parse::<Preset>().unwrap_err().to_string(),
        "unknown preset \"cone\"; expected one of open, full-cone, restricted-cone, \
         port-restricted-cone, symmetric-sequential, symmetric-random, linux, linux-random, udp-blocked"
    );
    assert_eq!(Preset::MATRIX, Preset::ALL, "the matrix crosses every preset, udp-blocked included");
}

mod linux;
mod tcp;
