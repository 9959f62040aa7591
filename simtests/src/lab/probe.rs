//! `punchline-sim lab-probe`: the lab's own tiny UDP tools, run inside its
//! namespaces to measure what the kernel's NATs do, independently of the
//! Punchline binaries.
//!
//! `echo ADDR...` binds every address and answers text requests:
//! - `who` → `seen IP:PORT` (the requester's address as seen here);
//! - `who-from K` → the same answer, sent from socket K (filtering tests);
//! - `poke IP:PORT from K` → sends `poke` from socket K to IP:PORT (an
//!   unsolicited packet for a NAT), then answers `poked`.
//!
//! `measure` runs from a host behind a NAT against an `echo` on the server
//! (sockets 0: A, 1: A's IP with another port, 2: another IP with A's port)
//! and prints one JSON line of [`Measurement`].

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a measurement waits for an answer before it counts as dropped.
/// A bound on a wait for an event, not a sleep: answers end it at once.
const ANSWER_WAIT: Duration = Duration::from_millis(800);

/// What `lab-probe measure` found behind one NAT.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurement {
    /// The NAT's reflexive address for local port 4000 toward socket 0.
    pub reflexive: Option<SocketAddr>,
    /// The external port equals the local port (4000).
    pub port_preserved: Option<bool>,
    /// RFC 4787 mapping, from the reflexive ports toward sockets 0, 1 and 2.
    pub mapping: Option<String>,
    /// RFC 4787 filtering, from answers sent by sockets 1 and 2 to a flow
    /// opened toward socket 0 only.
    pub filtering: Option<String>,
    /// Unsolicited packet to a fresh port P first, then the host's first flow
    /// from P to the poker: the external port it got.
    pub poisoned_first_flow_port: Option<u16>,
    /// … then the same local port toward another destination: the port.
    pub poisoned_next_flow_port: Option<u16>,
    /// That unsolicited packet, sent to a port the host had bound but never
    /// sent from, reached the host (a static full cone forwards everything).
    pub unsolicited_reached_host: Option<bool>,
    /// An established mapping (port Q toward socket 0), then an unsolicited
    /// packet to Q from socket 1, then Q's first packet to socket 1: its port.
    pub established_then_poisoned_port: Option<u16>,
    /// A packet with TTL `opener_ttl` reached the peer's NAT router.
    pub opener_ttl_arrived: Option<bool>,
    /// A packet with TTL `opener_ttl + 1` reached the peer's NAT router.
    pub opener_ttl_plus_one_arrived: Option<bool>,
}

/// `lab-probe echo`: serves until killed. Prints `ready` once bound.
pub fn echo(addrs: &[SocketAddr]) -> std::io::Result<()> {
    let sockets: Arc<Vec<UdpSocket>> = Arc::new(addrs.iter().map(UdpSocket::bind).collect::<Result<_, _>>()?);
    println!("ready");
    let mut threads = Vec::new();
    for i in 0..sockets.len() {
        let sockets = sockets.clone();
        threads.push(std::thread::spawn(move || serve(&sockets, i)));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

fn serve(sockets: &[UdpSocket], i: usize) {
    let mut buf = [0u8; 512];
    loop {
        let Ok((n, from)) = sockets[i].recv_from(&mut buf) else { continue };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let mut words = text.split_whitespace();
        let seen = format!("seen {from}");
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("who"), None, _, _) => {
                let _ = sockets[i].send_to(seen.as_bytes(), from);
            }
            (Some("who-from"), Some(k), None, _) => {
                if let Some(s) = k.parse::<usize>().ok().and_then(|k| sockets.get(k)) {
                    let _ = s.send_to(seen.as_bytes(), from);
                }
            }
            (Some("poke"), Some(target), Some("from"), Some(k)) => {
                let socket = k.parse::<usize>().ok().and_then(|k| sockets.get(k));
                if let (Some(s), Ok(target)) = (socket, target.parse::<SocketAddr>()) {
                    // The poke leaves before the answer on the same path, so
                    // it reaches the NAT first.
                    let _ = s.send_to(b"poke", target);
                    let _ = sockets[i].send_to(b"poked", from);
                }
            }
            _ => {}
        }
    }
}

/// `lab-probe measure`: `server` holds sockets 0, 1, 2 as above; `peer` is
/// an echo behind another NAT (for the TTL check), `opener_ttl` the
/// client's default.
pub fn measure(server: [SocketAddr; 3], peer: Option<SocketAddr>, opener_ttl: u8) -> Measurement {
    let mut m = Measurement::default();
    let Some(main) = bind(4000) else { return m };
    let seen: Vec<Option<SocketAddr>> = server.iter().map(|s| ask(&main, *s, "who")).collect();
    let Some(reflexive) = seen[0] else { return m };
    m.reflexive = Some(reflexive);
    m.port_preserved = Some(reflexive.port() == 4000);
    m.mapping = match (seen[1], seen[2]) {
        (Some(p1), Some(p2)) if p1 == reflexive && p2 == reflexive => Some("endpoint-independent"),
        (Some(p1), Some(_)) if p1 == reflexive => Some("address-dependent"),
        (Some(_), Some(_)) => Some("address-and-port-dependent"),
        _ => None,
    }
    .map(str::to_owned);

    if let Some(fresh) = bind(4001) {
        if ask(&fresh, server[0], "who").is_some() {
            let other_port = ask(&fresh, server[0], "who-from 1").is_some();
            let other_ip = ask(&fresh, server[0], "who-from 2").is_some();
            m.filtering = Some(
                match (other_ip, other_port) {
                    (true, _) => "endpoint-independent",
                    (false, true) => "address-dependent",
                    (false, false) => "address-and-port-dependent",
                }
                .to_owned(),
            );
        }
    }

    let public = reflexive.ip();
    // Unsolicited first: socket 1 pokes port 4100 (bound, but silent)
    // before the host sends from it.
    if let Some(p) = bind(4100) {
        if ask_text(&main, server[0], &format!("poke {} from 1", SocketAddr::new(public, 4100))).is_some() {
            // The poke left before the `poked` answer on the same path: if it
            // was forwarded, it is here now (the read timeout only bounds it).
            let mut buf = [0u8; 16];
            m.unsolicited_reached_host = Some(matches!(p.recv_from(&mut buf), Ok((4, _)) if &buf[..4] == b"poke"));
            m.poisoned_first_flow_port = ask(&p, server[1], "who").map(|a| a.port());
            m.poisoned_next_flow_port = ask(&p, server[0], "who").map(|a| a.port());
        }
    }
    // Established first: port 4200 maps toward socket 0, then socket 1 pokes it.
    if let Some(q) = bind(4200) {
        if let Some(mapped) = ask(&q, server[0], "who") {
            if ask_text(&main, server[0], &format!("poke {mapped} from 1")).is_some() {
                m.established_then_poisoned_port = ask(&q, server[1], "who").map(|a| a.port());
            }
        }
    }

    if let Some(peer) = peer {
        let arrived = |port: u16, ttl: u8| {
            let s = bind(port)?;
            s.set_ttl(u32::from(ttl)).ok()?;
            Some(ask(&s, peer, "who").is_some())
        };
        m.opener_ttl_arrived = arrived(4300, opener_ttl);
        m.opener_ttl_plus_one_arrived = arrived(4301, opener_ttl.saturating_add(1));
    }
    m
}

fn bind(port: u16) -> Option<UdpSocket> {
    let s = UdpSocket::bind(("0.0.0.0", port)).ok()?;
    s.set_read_timeout(Some(ANSWER_WAIT)).ok()?;
    Some(s)
}

/// Sends `request` and returns the address in the `seen` answer.
fn ask(socket: &UdpSocket, to: SocketAddr, request: &str) -> Option<SocketAddr> {
    ask_text(socket, to, request)?.strip_prefix("seen ")?.parse().ok()
}

/// Sends `request` and returns the first answer from anyone, skipping pokes
/// (a NAT that forwards unsolicited packets delivers them here).
fn ask_text(socket: &UdpSocket, to: SocketAddr, request: &str) -> Option<String> {
    socket.send_to(request.as_bytes(), to).ok()?;
    let mut buf = [0u8; 512];
    loop {
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        if &buf[..n] != b"poke" {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}
