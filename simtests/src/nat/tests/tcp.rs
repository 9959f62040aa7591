//! TCP through the NAT (RFC 5382): mappings per connection made by a SYN,
//! their own timeouts, a firewall that lets TCP pass, a reboot that kills.

use super::*;

const TCP_HOST: &str = "10.0.0.2:49152";
const TCP_EXTERNAL: &str = "198.51.100.6:49152";

fn seg(src: &str, dst: &str, flags: TcpFlags) -> Packet {
    Packet { proto: Proto::Tcp(flags), ..pkt(src, dst) }
}

const SYN: TcpFlags = TcpFlags::SYN;
const ACK: TcpFlags = TcpFlags::ACK;

fn syn_ack() -> TcpFlags {
    TcpFlags::SYN.with(TcpFlags::ACK)
}

/// Opens a connection from `TCP_HOST` to the server through `n` at `at`:
/// the SYN out, the SYN-ACK back. Returns the external endpoint.
fn open(n: &mut Nat, at: Duration) -> SocketAddr {
    let out = n.outbound(at, seg(TCP_HOST, SERVER, SYN), &mut Vec::new()).expect("a SYN makes a mapping");
    n.inbound(at, seg(SERVER, &out.src.to_string(), syn_ack()), &mut Vec::new()).expect("the SYN-ACK passes");
    out.src
}

#[test]
fn a_syn_makes_a_mapping_of_its_own_and_the_answer_comes_back_through_it() {
    // Given a port-restricted cone,
    let mut n = nat(Preset::PortRestrictedCone);
    let mut log = Vec::new();
    // when a host opens a connection to the server,
    let out = n.outbound(secs(1), seg(TCP_HOST, SERVER, SYN), &mut log).unwrap();
    let back = n.inbound(secs(1), seg(SERVER, TCP_EXTERNAL, syn_ack()), &mut log).unwrap();
    // then its port is kept, the answer reaches the host, the trace names
    // each step as TCP, and the UDP mapping table is untouched.
    assert_eq!((out.src, out.ttl, back.dst), (addr(TCP_EXTERNAL), 63, addr(TCP_HOST)));
    assert_eq!(
        lines(&log),
        [
            "nat home-b: map tcp 10.0.0.2:49152 -> 198.51.100.6:49152 (for 203.0.113.10:3478)",
            "nat home-b: out tcp 10.0.0.2:49152 -> 203.0.113.10:3478 as 198.51.100.6:49152 [SYN]",
            "nat home-b: in tcp 203.0.113.10:3478 -> 198.51.100.6:49152 to 10.0.0.2:49152 [SYN-ACK]",
        ]
    );
    assert_eq!((n.tcp_mapping_count(), n.mapping_count()), (1, 0));
}

#[test]
fn only_a_syn_makes_a_mapping_and_only_its_remote_gets_in() {
    let mut n = nat(Preset::FullCone);
    let mut log = Vec::new();
    // Given no mapping, a mid-stream segment out is dropped (strict state),
    assert_eq!(n.outbound(secs(0), seg(TCP_HOST, SERVER, ACK), &mut log), None);
    // and so is a segment in.
    assert_eq!(n.inbound(secs(0), seg(SERVER, TCP_EXTERNAL, ACK), &mut log), None);
    assert_eq!(
        lines(&log),
        [
            "nat home-b: drop tcp 10.0.0.2:49152 -> 203.0.113.10:3478 [ACK] (no mapping, and not a SYN)",
            "nat home-b: drop tcp 203.0.113.10:3478 -> 198.51.100.6:49152 [ACK] (no mapping)",
        ]
    );
    // Once a connection is open, even a full cone lets only its remote in.
    open(&mut n, secs(1));
    assert!(n.inbound(secs(2), seg(SERVER, TCP_EXTERNAL, ACK), &mut Vec::new()).is_some());
    assert_eq!(n.inbound(secs(2), seg(PEER, TCP_EXTERNAL, SYN), &mut Vec::new()), None, "an unsolicited SYN");
}

#[test]
fn two_connections_from_one_port_number_get_their_own_external_ports() {
    // Given two hosts using the same local port toward the server,
    let mut n = nat(Preset::SymmetricRandom);
    let first = n.outbound(secs(0), seg(TCP_HOST, SERVER, SYN), &mut Vec::new()).unwrap();
    let second = n.outbound(secs(0), seg("10.0.0.3:49152", SERVER, SYN), &mut Vec::new()).unwrap();
    // then the first keeps its port, the second takes the next free one,
    // and each answer reaches its own host.
    assert_eq!((first.src, second.src), (addr(TCP_EXTERNAL), addr("198.51.100.6:49153")));
    let back = n.inbound(secs(0), seg(SERVER, "198.51.100.6:49153", syn_ack()), &mut Vec::new()).unwrap();
    assert_eq!(back.dst, addr("10.0.0.3:49152"));
}

#[test]
fn an_established_mapping_lives_two_hours_four_minutes_idle_a_half_open_one_four_minutes() {
    // Given an established connection through an RFC 5382 NAT,
    let mut n = nat(Preset::PortRestrictedCone);
    open(&mut n, secs(0));
    let idle = RFC5382_MIN_ESTABLISHED;
    assert_eq!(idle, secs(7440));
    // when it is idle for just under 2 h 4 min, it still passes,
    assert!(n.outbound(idle - secs(1), seg(TCP_HOST, SERVER, ACK), &mut Vec::new()).is_some());
    // and idle for 2 h 4 min from that segment, it is gone.
    let mut log = Vec::new();
    let late = idle - secs(1) + idle;
    assert_eq!(n.outbound(late, seg(TCP_HOST, SERVER, ACK), &mut log), None);
    assert_eq!(
        lines(&log)[0],
        "nat home-b: tcp mapping 10.0.0.2:49152 -> 198.51.100.6:49152 for 203.0.113.10:3478 expired (7440s idle)"
    );
    // Given a SYN nobody answered, its mapping lives 4 minutes.
    let mut m = nat(Preset::PortRestrictedCone);
    m.outbound(secs(0), seg(TCP_HOST, SERVER, SYN), &mut Vec::new()).unwrap();
    assert!(m.inbound(secs(239), seg(SERVER, TCP_EXTERNAL, syn_ack()), &mut Vec::new()).is_some());
    let mut m = nat(Preset::PortRestrictedCone);
    m.outbound(secs(0), seg(TCP_HOST, SERVER, SYN), &mut Vec::new()).unwrap();
    assert_eq!(m.inbound(TCP_TRANSITORY_TIMEOUT, seg(SERVER, TCP_EXTERNAL, syn_ack()), &mut Vec::new()), None);
    // The Linux presets keep an established connection five days.
    assert_eq!(Preset::Linux.spec("l", vec![]).tcp_timeout, LINUX_TCP_ESTABLISHED_TIMEOUT);
}

#[test]
fn a_fin_makes_the_mapping_transitory_again() {
    let mut n = nat(Preset::PortRestrictedCone);
    open(&mut n, secs(0));
    n.outbound(secs(10), seg(TCP_HOST, SERVER, TcpFlags::FIN.with(ACK)), &mut Vec::new()).unwrap();
    assert!(n.inbound(secs(10) + secs(239), seg(SERVER, TCP_EXTERNAL, ACK), &mut Vec::new()).is_some());
    assert_eq!(n.inbound(secs(249) + secs(240), seg(SERVER, TCP_EXTERNAL, ACK), &mut Vec::new()), None);
}

#[test]
fn udp_blocked_lets_tcp_through_and_drops_udp_both_ways() {
    // Given the UDP firewall,
    let mut n = nat(Preset::UdpBlocked);
    // then a connection opens through it,
    assert_eq!(open(&mut n, secs(0)), addr(TCP_EXTERNAL));
    // while UDP dies both ways.
    assert_eq!(n.outbound(secs(1), pkt(HOST, SERVER), &mut Vec::new()), None);
    // A NAT told to block UDP at run time does the same, and stops when told.
    let mut m = nat(Preset::PortRestrictedCone);
    m.set_blocks_udp(true);
    assert_eq!(m.outbound(secs(0), pkt(HOST, SERVER), &mut Vec::new()), None);
    assert_eq!(open(&mut m, secs(0)), addr(TCP_EXTERNAL));
    m.set_blocks_udp(false);
    assert!(m.outbound(secs(1), pkt(HOST, SERVER), &mut Vec::new()).is_some());
}

#[test]
fn a_reboot_flushes_tcp_mappings_and_the_connection_is_dead_both_ways() {
    // Given an open connection,
    let mut n = nat(Preset::PortRestrictedCone);
    open(&mut n, secs(0));
    // when the NAT reboots,
    n.reboot();
    // then the connection's segments are dropped both ways (no SYN, no
    // new mapping),
    assert_eq!(n.tcp_mapping_count(), 0);
    assert_eq!(n.outbound(secs(1), seg(TCP_HOST, SERVER, TcpFlags::PSH.with(ACK)), &mut Vec::new()), None);
    assert_eq!(n.inbound(secs(1), seg(SERVER, TCP_EXTERNAL, ACK), &mut Vec::new()), None);
    // and a new connection opens as before.
    assert_eq!(open(&mut n, secs(2)), addr(TCP_EXTERNAL));
}

#[test]
fn the_open_router_passes_tcp_unchanged_and_a_nat_does_not_hairpin_it() {
    let mut open_router = nat_with(Preset::Open.spec("o", vec!["198.51.100.6".parse().unwrap()]));
    let mut log = Vec::new();
    let out = open_router.outbound(secs(0), seg("198.51.100.6:49152", SERVER, SYN), &mut log).unwrap();
    assert_eq!(out.src, addr("198.51.100.6:49152"));
    assert_eq!(
        lines(&log),
        ["nat o: pass tcp 198.51.100.6:49152 -> 203.0.113.10:3478 [SYN] (outbound, no translation)"]
    );
    let mut n = nat(Preset::FullCone);
    let mut log = Vec::new();
    assert_eq!(n.hairpin(secs(0), seg(TCP_HOST, "198.51.100.6:4000", SYN), &mut log), None);
    assert_eq!(
        lines(&log),
        ["nat home-b: drop tcp 10.0.0.2:49152 -> 198.51.100.6:4000 (to our own address: no TCP hairpinning)"]
    );
}
