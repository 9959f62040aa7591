//! Linux conntrack: what unsolicited packets leave behind, and how it moves
//! later mappings (DESIGN §3).

use super::*;

#[test]
fn linux_unsolicited_probe_poisons_the_five_tuple_as_in_design_section_3() {
    // Given B's linux NAT with B logged in (mapping 4000 toward the server),
    let mut n = nat(Preset::Linux);
    send(&mut n, secs(0), HOST, SERVER);
    // when A's probe arrives before B has sent anything to A,
    let mut log = Vec::new();
    assert_eq!(n.inbound(secs(1), pkt(PEER, "198.51.100.6:4000"), &mut log), None);
    // and A retries,
    assert_eq!(n.inbound(secs(2), pkt(PEER, "198.51.100.6:4000"), &mut log), None);
    // and B then sends to A,
    let b_to_a = n.outbound(secs(3), pkt(HOST, PEER), &mut log).unwrap();
    // then the probe was filtered and tracked, the retry swallowed, and B's
    // packet leaves from another port (as 28330 in DESIGN §3);
    let moved = b_to_a.src;
    assert_ne!(moved.port(), 4000);
    assert_eq!(
        lines(&log),
        [
            "nat home-b: filter 198.51.100.2:4000 -> 198.51.100.6:4000 (address-and-port-dependent filtering: not sent there)".to_owned(),
            "nat home-b: track 198.51.100.2:4000 -> 198.51.100.6:4000 (unsolicited; conntrack now holds this 5-tuple)".to_owned(),
            "nat home-b: drop 198.51.100.2:4000 -> 198.51.100.6:4000 (held by a tracked unsolicited entry)".to_owned(),
            format!("nat home-b: 198.51.100.6:4000 -> 198.51.100.2:4000 is held by a tracked entry; map 10.0.0.2:4000 -> {moved} for 198.51.100.2:4000 only"),
            format!("nat home-b: out 10.0.0.2:4000 -> 198.51.100.2:4000 as {moved}"),
        ]
    );
    // the server still sees port 4000, and A's retries stay swallowed;
    assert_eq!(send(&mut n, secs(4), HOST, SERVER), Some(addr("198.51.100.6:4000")));
    assert_eq!(send(&mut n, secs(4), HOST, PEER), Some(moved));
    assert_eq!(recv(&mut n, secs(5), PEER, "198.51.100.6:4000"), None);
    // while A's packets to the new port get through.
    assert_eq!(recv(&mut n, secs(5), PEER, &moved.to_string()), Some(addr(HOST)));
}

#[test]
fn linux_tracked_entry_blocks_the_preserved_port_of_a_new_mapping_for_that_peer_only() {
    // Given a linux NAT whose host has sent nothing yet, hit by A's probe,
    let mut n = nat(Preset::Linux);
    let mut log = Vec::new();
    n.inbound(secs(0), pkt(PEER, "198.51.100.6:4000"), &mut log);
    assert_eq!(
        lines(&log),
        [
            "nat home-b: drop 198.51.100.2:4000 -> 198.51.100.6:4000 (no mapping)",
            "nat home-b: track 198.51.100.2:4000 -> 198.51.100.6:4000 (unsolicited; conntrack now holds this 5-tuple)",
        ]
    );
    // when the host then sends to A and to the server,
    let to_a = send(&mut n, secs(1), HOST, PEER).unwrap();
    let to_server = send(&mut n, secs(1), HOST, SERVER).unwrap();
    // then A's flow leaves from another port, and, as the kernel lab
    // measured, the host's later flows reuse that port (conntrack looks
    // up the source's existing mapping first).
    assert_ne!(to_a.port(), 4000);
    assert_eq!(to_server, to_a);
}

#[test]
fn linux_tracked_entry_moves_only_that_peer_when_the_host_already_has_a_mapping() {
    // Given a linux NAT whose host already talks to the server, hit by A's probe,
    let mut n = nat(Preset::Linux);
    assert_eq!(send(&mut n, secs(0), HOST, SERVER), Some(addr("198.51.100.6:4000")));
    let mut log = Vec::new();
    n.inbound(secs(1), pkt(PEER, "198.51.100.6:4000"), &mut log);
    // when the host then sends to A and to the server,
    let to_a = send(&mut n, secs(2), HOST, PEER).unwrap();
    let to_server = send(&mut n, secs(2), HOST, SERVER).unwrap();
    // then only A's flow leaves from another port.
    assert_ne!(to_a.port(), 4000);
    assert_eq!(to_server, addr("198.51.100.6:4000"));
}

#[test]
fn linux_opener_before_the_peer_probe_keeps_the_port() {
    // Given a linux NAT whose host opened toward A first (DESIGN §3),
    let mut n = nat(Preset::Linux);
    send(&mut n, secs(0), HOST, SERVER);
    send(&mut n, secs(1), HOST, PEER);
    // when A's probe arrives, then it passes and nothing is tracked.
    assert_eq!(recv(&mut n, secs(2), PEER, "198.51.100.6:4000"), Some(addr(HOST)));
    assert_eq!(n.tracked_count(), 0);
}

#[test]
fn a_tracked_entry_dies_after_the_remote_goes_quiet_for_the_timeout() {
    // Given a tracked entry that A keeps alive until t=20 s,
    let mut n = nat(Preset::Linux);
    for t in [0, 10, 20] {
        recv(&mut n, secs(t), PEER, "198.51.100.6:4000");
    }
    assert_eq!(n.tracked_count(), 1);
    // when the host sends to A at 49 s and at 50 s (30 s after A's last packet),
    // then the first is moved off 4000 and a fresh host's flow at 50 s is not.
    assert_ne!(send(&mut n, secs(49), HOST, PEER).map(|a| a.port()), Some(4000));
    n.expire(secs(50), &mut Vec::new());
    assert_eq!(n.tracked_count(), 0);
    assert_eq!(send(&mut n, secs(50), "10.0.0.3:4000", PEER), Some(addr("198.51.100.6:4000")));
}

#[test]
fn linux_random_maps_each_destination_to_a_random_port_and_tracks() {
    let mut n = nat(Preset::LinuxRandom);
    let a = send(&mut n, secs(0), HOST, SERVER).unwrap();
    let b = send(&mut n, secs(0), HOST, ALT).unwrap();
    assert_ne!(a, b);
    assert_eq!(recv(&mut n, secs(1), PEER, &a.to_string()), None);
    assert_eq!(n.tracked_count(), 1);
}
