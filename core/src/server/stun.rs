//! STUN on the server's sockets: Binding answers for standard clients, with
//! RFC 5780 NAT behaviour discovery when the server has an alternate
//! address (coturn's `turnutils_natdiscovery` classifies a NAT against us).
//!
//! RFC 5780 §6.1, Table 1, for a request that arrived at `Da:Dp` on a server
//! whose other IP and port are `Ca` and `Cp`:
//!
//! | CHANGE-REQUEST        | answered from | OTHER-ADDRESS |
//! |-----------------------|---------------|---------------|
//! | none, or no flag      | `Da:Dp`       | `Ca:Cp`       |
//! | change IP             | `Ca:Dp`       | `Ca:Cp`       |
//! | change port           | `Da:Cp`       | `Ca:Cp`       |
//! | change IP and port    | `Ca:Cp`       | `Ca:Cp`       |
//!
//! The four addresses are the server's four sockets (see
//! [`Server::sockets`]); the answering socket is chosen as for our own
//! `Discover` frame (`answer_socket`). RESPONSE-ORIGIN names the socket the
//! answer leaves from. A server without an alternate IP *and* port has no
//! `Ca:Cp`: it leaves OTHER-ADDRESS out and answers every CHANGE-REQUEST
//! with 420 (§6).
//!
//! Every source is unproven here (STUN has no handshake): requests count
//! against the source's rate limit, and each answer is at most
//! [`stun::MAX_AMPLIFICATION`] times its request (whose documentation
//! gives the measured sizes).

use std::net::SocketAddr;
use std::time::Instant;

use tracing::debug;

use super::Server;
use crate::machine::SocketId;
use crate::wire;
use crate::wire::frame::AnswerFrom;
use crate::wire::stun::{self, ChangeRequest, Received};

/// Where a Binding answer leaves from.
struct Origin {
    /// The socket it leaves from.
    socket: SocketId,
    /// That socket's address, for RESPONSE-ORIGIN (unknown for a socket the
    /// server did not list).
    address: Option<SocketAddr>,
    /// The OTHER-ADDRESS, when the server has an alternate address.
    other: Option<SocketAddr>,
}

impl Server {
    /// Answers a STUN datagram that arrived on `socket` from `from`.
    pub(super) fn stun(&mut self, now: Instant, socket: SocketId, from: SocketAddr, payload: &[u8]) {
        if !self.limits.allow(now, from.ip()) {
            self.stats.rate_limited += 1;
            return;
        }
        let limit = payload.len().saturating_mul(stun::MAX_AMPLIFICATION);
        let (out, answer) = match stun::read_request(payload) {
            None => {
                self.stats.malformed += 1;
                return;
            }
            Some(Received::Refused(refusal)) => (socket, refusal.encode(limit)),
            Some(Received::Binding(request)) => match self.binding_origin(socket, request.change) {
                Some(origin) => (origin.socket, request.success(from, origin.address, origin.other, limit)),
                None => {
                    debug!(%from, "a CHANGE-REQUEST without an alternate address to honour it");
                    (socket, request.refuse_change().encode(limit))
                }
            },
        };
        self.stats.stun_answered += 1;
        self.send(out, from, wire::payload_bytes(answer));
    }

    /// Where the answer to a Binding request that arrived on `socket` with
    /// `change` leaves from (RFC 5780 §6.1, Table 1), or `None` when the
    /// server cannot honour a CHANGE-REQUEST.
    fn binding_origin(&self, socket: SocketId, change: Option<ChangeRequest>) -> Option<Origin> {
        let other = self.other_address(socket);
        let out = match change {
            None => socket,
            // §6: no alternate address, a 420 for any CHANGE-REQUEST.
            Some(_) if other.is_none() => return None,
            Some(ChangeRequest { change_ip: false, change_port: false }) => socket,
            Some(ChangeRequest { change_ip: false, change_port: true }) => {
                self.answer_socket(socket, AnswerFrom::OtherPort)?
            }
            Some(ChangeRequest { change_ip: true, change_port: true }) => {
                self.answer_socket(socket, AnswerFrom::OtherAddress)?
            }
            // Our own Discover frame never asks for the other IP alone:
            // the other address's other port is the other IP at this port.
            Some(ChangeRequest { change_ip: true, change_port: false }) => {
                let across = self.answer_socket(socket, AnswerFrom::OtherAddress)?;
                self.answer_socket(across, AnswerFrom::OtherPort)?
            }
        };
        Some(Origin { socket: out, address: self.socket_address(out), other })
    }

    /// The OTHER-ADDRESS for a request on `socket`: the server's address
    /// with the other IP and the other port, when it has one (RFC 5780 §6:
    /// the alternate address must differ in both).
    fn other_address(&self, socket: SocketId) -> Option<SocketAddr> {
        let here = self.socket_address(socket)?;
        let other = self.socket_address(self.answer_socket(socket, AnswerFrom::OtherAddress)?)?;
        (other.ip() != here.ip() && other.port() != here.port()).then_some(other)
    }

    /// The address of one of the server's sockets.
    fn socket_address(&self, socket: SocketId) -> Option<SocketAddr> {
        self.sockets.iter().find(|(id, _)| *id == socket).map(|(_, addr)| *addr)
    }
}
