//! Reflexive address discovery against any standard STUN server (RFC 8489
//! Binding), for `nat-check --stun`.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use punchline_core::wire::stun::{self, Class, Message, TransactionId};

use crate::exit::Failure;

/// RFC 8489 §6.2.1: the first retransmission timeout is 500 ms and doubles.
const FIRST_RTO: Duration = Duration::from_millis(500);
/// Requests sent before giving up (RFC 8489's Rc is 7; three is enough to
/// tell a dead server from a lost packet at the command line: 3.5 s).
const SENDS: u32 = 3;

/// Resolves `host:port` to an address of the same family as `local`.
pub fn resolve(server: &str, local: SocketAddr) -> Result<SocketAddr, Failure> {
    let addrs =
        server.to_socket_addrs().map_err(|e| Failure::Usage(format!("cannot resolve STUN server {server:?}: {e}")))?;
    addrs
        .into_iter()
        .find(|a| a.is_ipv4() == local.is_ipv4())
        .ok_or_else(|| Failure::Usage(format!("STUN server {server:?} has no address of the local socket's family")))
}

/// Asks `server` for the reflexive address of `socket` with Binding requests,
/// retransmitting per RFC 8489 §6.2.1. The transaction id is 96 bits from
/// the OS, as RFC 8489 §5 asks ("cryptographically random"), so an off-path
/// attacker cannot answer for the server.
pub fn reflexive(socket: &UdpSocket, server: SocketAddr) -> Result<SocketAddr, Failure> {
    let mut tid = [0u8; 12];
    getrandom::fill(&mut tid).map_err(|e| std::io::Error::other(format!("no OS randomness: {e}")))?;
    let tid = TransactionId(tid);
    let request = stun::binding_request(tid);
    let mut rto = FIRST_RTO;
    let mut buf = [0u8; 1500];
    for _ in 0..SENDS {
        socket.send_to(&request, server)?;
        let deadline = Instant::now() + rto;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            socket.set_read_timeout(Some(left))?;
            let (len, from) = match socket.recv_from(&mut buf) {
                Ok(x) => x,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => break,
                // An ICMP port unreachable from an earlier send: keep waiting.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e.into()),
            };
            // Only the server's answer to our transaction counts (§6.3.4).
            let Ok(message) = Message::decode(&buf[..len]) else { continue };
            if from != server || message.transaction_id != tid {
                continue;
            }
            match message.class {
                Class::SuccessResponse => {
                    if let Some(mapped) = message.xor_mapped_address().or_else(|| message.mapped_address()) {
                        return Ok(mapped);
                    }
                }
                Class::ErrorResponse => {
                    let (code, reason) = message.error_code().unwrap_or((0, String::new()));
                    return Err(Failure::Refused(format!("STUN server {server} answered {code} {reason}")));
                }
                _ => {}
            }
        }
        rto *= 2;
    }
    socket.set_read_timeout(None)?;
    Err(Failure::StunUnreachable(server.to_string()))
}
