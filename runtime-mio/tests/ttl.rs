//! Per-packet TTL: a transmit with `ttl` leaves with exactly that TTL, and
//! the socket's default is restored for the next one.
//!
//! The TTLs are counted on the wire by nftables rules, in a network
//! namespace of the test's own: the test re-executes itself inside
//! `ip netns exec` and deletes the namespace (with its rules) afterwards. It
//! needs root, iproute2 and nftables, so it is
//! `#[ignore]`d (`cargo test -p punchline-mio --test ttl -- --ignored`
//! runs it) and fails without them.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use punchline_core::{Machine, SocketId, Transmit};
use punchline_mio::{Endpoint, Role, Sockets};

#[path = "support/netns.rs"]
mod netns;
use netns::run;

const INSIDE: &str = "PUNCHLINE_MIO_TEST_IN_NETNS";
/// A TTL nothing else on this loopback uses (Linux's default is 64).
const OPENER_TTL: u8 = 7;
const TABLE: &str = "punchline_mio_test";

/// A machine that only sends what it is given.
#[derive(Default)]
struct Sender {
    queue: VecDeque<Transmit>,
}

impl Machine for Sender {
    type Event = ();
    fn handle_datagram(&mut self, _: Instant, _: SocketId, _: SocketAddr, _: &[u8]) {}
    fn handle_timeout(&mut self, _: Instant) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.queue.pop_front()
    }
    fn poll_event(&mut self) -> Option<()> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

impl Role for Sender {
    fn driver_event(&mut self, _: Instant, event: (), _: &mut Sockets) -> Option<()> {
        Some(event)
    }
}

#[test]
#[ignore = "needs root, iproute2 and nftables"]
fn openers_carry_their_ttl_on_the_wire_and_the_default_is_restored() {
    if netns::inside(INSIDE) {
        return count_ttls_inside();
    }
    netns::run_test_in_fresh_namespace(
        "plmio",
        "openers_carry_their_ttl_on_the_wire_and_the_default_is_restored",
        INSIDE,
        "a network namespace with counting rules",
    );
}

/// Inside the namespace.
fn count_ttls_inside() {
    // Given counters for the opener TTL and the socket's default TTL.
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
    receiver.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let probe = socket.try_clone().expect("clone");
    let default_ttl = probe.ttl().expect("ttl");
    assert_ne!(default_ttl, u32::from(OPENER_TTL));
    let chain = "{ type filter hook input priority 0; }";
    assert!(run("nft", &["add", "table", "inet", TABLE]), "nft table");
    assert!(run("nft", &["add", "chain", "inet", TABLE, "input", chain]), "nft chain");
    for ttl in [u32::from(OPENER_TTL), default_ttl] {
        let ttl = ttl.to_string();
        assert!(run(
            "nft",
            &["add", "rule", "inet", TABLE, "input", "udp", "dport", "1-65535", "ip", "ttl", &ttl, "counter"]
        ));
    }
    let mut endpoint = Endpoint::new(Sender::default(), vec![(SocketId(0), socket)]).expect("endpoint");

    // When three openers with a TTL and two ordinary datagrams interleave.
    let to = receiver.local_addr().expect("addr");
    let sends = [
        (Some(OPENER_TTL), "opener 1"),
        (None, "probe 1"),
        (Some(OPENER_TTL), "opener 2"),
        (Some(OPENER_TTL), "opener 3"),
        (None, "probe 2"),
    ];
    for (ttl, payload) in sends {
        endpoint.machine_mut().queue.push_back(Transmit {
            socket: SocketId(0),
            destination: to,
            ttl,
            payload: Bytes::from_static(payload.as_bytes()),
            plaintext: None,
            droppable: false,
        });
    }
    endpoint.flush(Instant::now(), &mut |()| {});

    // Then all arrive, the openers with their TTL and the rest with the default.
    let mut buf = [0u8; 64];
    for (_, expected) in sends {
        let (len, _) = receiver.recv_from(&mut buf).expect("datagram arrives");
        assert_eq!(&buf[..len], expected.as_bytes());
    }
    assert_eq!(packets_counted_with_ttl(u32::from(OPENER_TTL)), 3);
    assert_eq!(packets_counted_with_ttl(default_ttl), 2);
    assert_eq!(probe.ttl().expect("ttl"), default_ttl);
}

/// The packets the `ip ttl N counter` rule counted.
fn packets_counted_with_ttl(ttl: u32) -> u64 {
    let out = Command::new("nft").args(["list", "chain", "inet", TABLE, "input"]).output().expect("nft");
    let listing = String::from_utf8_lossy(&out.stdout);
    let line = listing.lines().find(|l| l.contains(&format!("ip ttl {ttl} counter"))).expect("the counter rule");
    let mut words = line.split_whitespace().skip_while(|w| *w != "packets");
    words.nth(1).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("a packet count in {line:?}"))
}
