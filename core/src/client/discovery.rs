//! NAT behaviour discovery (RFC 4787 terms, RFC 5780 §4 method).
//!
//! *Mapping* is measured on the primary socket, which already has a mapping
//! toward the server's primary address `P` (the login's reflexive address
//! `X1`): ask the crossed address `(A.ip, P.port)` → `X2`; equal to `X1` means
//! endpoint-independent mapping. Otherwise ask `A` → `X3`; equal to `X2` means
//! address-dependent, else address-and-port-dependent (RFC 5780 §4.3).
//!
//! *Port allocation* (RFC 4787 §4.2.2) comes from the same requests. Behind
//! an endpoint-independent NAT, `X1` keeping the socket's own port means
//! preserving. Behind an address-and-port-dependent NAT, one more request to
//! `(P.ip, A.port)` gives a third fresh mapping `X4`, made right after `X2`
//! and `X3`: two steps of the same sign and at most [`MAX_SEQUENTIAL_STEP`]
//! ports mean sequential allocation, with the smaller step as the delta
//! (other hosts behind the NAT only ever add to a step); anything else is
//! random. A random allocator over the usual 64,512 ports passes that test by
//! chance about once in 4 million measurements. An address-dependent NAT has
//! only two fresh destinations (the server's two IPs), too few to tell, so its
//! ports stay unmeasured.
//!
//! *Filtering* is measured on a separate, fresh socket, because its answers
//! arrive unsolicited: on a Linux NAT an unsolicited packet leaves conntrack
//! state that would poison the primary socket's later mappings toward that
//! source (DESIGN §3). The fresh socket first talks to `P` only, then asks `P`
//! to answer from the other address (received: endpoint-independent
//! filtering) and, at the same time, from the other port (received, and
//! nothing from the other address: address-dependent; neither:
//! address-and-port-dependent). RFC 5780 §4.4 asks the two in turn; asking
//! both at once gives the same answers (each carries its own nonce) in one
//! timeout instead of two. The socket is released afterwards.
//!
//! Each request is sent up to five times within
//! [`ClientConfig::discovery_timeout`](super::ClientConfig::discovery_timeout);
//! a request never answered counts as "filtered" in the filtering tests and
//! leaves the mapping unmeasured in the mapping tests.

use std::net::SocketAddr;
use std::time::Instant;

use super::context::{Ctx, Out};
use crate::machine::SocketId;
use crate::nat::{FilteringBehavior, MappingBehavior, NatProfile, PortAllocation};
use crate::wire::frame::{AnswerFrom, Frame};

/// Sends of each request within [`ClientConfig::discovery_timeout`]: five,
/// so that at 15 % loss on the access link (28 % per round trip) a request
/// goes unanswered about once in 600, not once in 45; a lost answer reads as
/// stricter filtering or an unmeasured mapping.
///
/// [`ClientConfig::discovery_timeout`]: super::ClientConfig::discovery_timeout
const SENDS_PER_REQUEST: u32 = 5;

#[derive(Debug)]
pub(crate) struct Discovery {
    server: SocketAddr,
    alt: SocketAddr,
    x1: SocketAddr,
    primary: (SocketId, SocketAddr),
    nonce: u64,
    mapping: Phase<MappingStep>,
    filtering: Phase<FilteringStep>,
    filter_socket: SocketState,
    /// The request number reserved for the filtering socket.
    socket_request: u32,
    mapping_result: Option<Option<MappingBehavior>>,
    ports_result: Option<PortAllocation>,
    filtering_result: Option<Option<FilteringBehavior>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MappingStep {
    /// Asking the crossed address (or `A` when the server has none).
    Second,
    /// Asking `A`, after `X2 != X1`.
    Third { x2: SocketAddr },
    /// Asking `(P.ip, A.port)` for a third fresh mapping, after an
    /// address-and-port-dependent answer.
    Fourth { x2: SocketAddr, x3: SocketAddr },
}

/// The largest step between consecutive mappings still read as sequential.
pub(crate) const MAX_SEQUENTIAL_STEP: i32 = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilteringStep {
    /// Opening the fresh socket's mapping toward `P`.
    Open,
    /// Answer from the other address? Asked together with "from the other
    /// port" (nonce `other_port`, unless the server has only one port), so
    /// a port-restricted NAT waits out one timeout, not two.
    OtherAddress { other_port: Option<u64>, port_answered: bool },
    /// Answer from the other port (the server has only one IP)?
    OtherPort,
}

#[derive(Debug)]
enum SocketState {
    Wanted,
    Requested,
    Open(SocketId),
    Unavailable,
}

/// One outstanding request of a phase.
#[derive(Debug)]
struct Phase<S> {
    step: Option<S>,
    nonce: u64,
    sends: u32,
    next_send: Option<Instant>,
}

impl<S> Phase<S> {
    fn idle() -> Self {
        Phase { step: None, nonce: 0, sends: 0, next_send: None }
    }
}

impl Discovery {
    pub(crate) fn start(
        ctx: &Ctx<'_>,
        out: &mut Out,
        server: SocketAddr,
        alt: SocketAddr,
        x1: SocketAddr,
        nonce_seed: u64,
        socket_request: u32,
    ) -> Self {
        let mut d = Discovery {
            server,
            alt,
            x1,
            primary: ctx.primary,
            nonce: nonce_seed,
            mapping: Phase::idle(),
            filtering: Phase::idle(),
            filter_socket: SocketState::Wanted,
            socket_request,
            mapping_result: None,
            ports_result: None,
            filtering_result: None,
        };
        d.begin_mapping(ctx, out, MappingStep::Second);
        d
    }

    /// The profile, once both phases finished.
    pub(crate) fn result(&self) -> Option<NatProfile> {
        let (mapping, filtering) = (self.mapping_result?, self.filtering_result?);
        let public = self.x1 == self.primary.1;
        let ports = match mapping {
            Some(MappingBehavior::EndpointIndependent) if self.x1.port() == self.primary.1.port() => {
                Some(PortAllocation::Preserving)
            }
            Some(MappingBehavior::EndpointIndependent) => None,
            _ => self.ports_result,
        };
        Some(NatProfile { mapping, filtering, ports, public })
    }

    /// The filtering socket, to release.
    pub(crate) fn socket(&self) -> Option<SocketId> {
        match self.filter_socket {
            SocketState::Open(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn wants_socket(&self) -> bool {
        matches!(self.filter_socket, SocketState::Wanted)
    }

    /// The driver is asked for the filtering socket; returns the request
    /// number to quote.
    pub(crate) fn socket_requested(&mut self) -> u32 {
        self.filter_socket = SocketState::Requested;
        self.socket_request
    }

    /// True when `request` is this discovery's, not answered yet.
    pub(crate) fn awaits_socket(&self, request: u32) -> bool {
        request == self.socket_request && matches!(self.filter_socket, SocketState::Wanted | SocketState::Requested)
    }

    pub(crate) fn socket_opened(&mut self, ctx: &Ctx<'_>, out: &mut Out, socket: Option<(SocketId, SocketAddr)>) {
        match socket {
            Some((id, _)) => {
                self.filter_socket = SocketState::Open(id);
                self.begin_filtering(ctx, out, FilteringStep::Open);
            }
            None => {
                self.filter_socket = SocketState::Unavailable;
                self.filtering_result = Some(None);
            }
        }
    }

    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        [self.mapping.next_send, self.filtering.next_send].into_iter().flatten().min()
    }

    pub(crate) fn handle_timeout(&mut self, ctx: &Ctx<'_>, out: &mut Out) {
        if self.mapping.next_send.is_some_and(|at| at <= ctx.now) {
            if self.mapping.sends >= SENDS_PER_REQUEST {
                if matches!(self.mapping.step, Some(MappingStep::Fourth { .. })) {
                    // The mapping is known; only the ports stay unmeasured.
                    self.mapping_done(Some(MappingBehavior::AddressAndPortDependent));
                } else {
                    // No answer: the mapping stays unmeasured.
                    self.mapping = Phase::idle();
                    self.mapping_result = Some(None);
                }
            } else if let Some(step) = self.mapping.step {
                self.send_mapping(ctx, out, step);
            }
        }
        if self.filtering.next_send.is_some_and(|at| at <= ctx.now) {
            if self.filtering.sends >= SENDS_PER_REQUEST {
                match self.filtering.step {
                    Some(FilteringStep::Open) => self.filtering_done(None),
                    // No answer from the other port either (or no socket can
                    // give one): the strictest reading is the safe one.
                    Some(FilteringStep::OtherAddress { port_answered, .. }) => {
                        self.filtering_done(Some(if port_answered {
                            FilteringBehavior::AddressDependent
                        } else {
                            FilteringBehavior::AddressAndPortDependent
                        }))
                    }
                    Some(FilteringStep::OtherPort) => {
                        self.filtering_done(Some(FilteringBehavior::AddressAndPortDependent))
                    }
                    None => {}
                }
            } else if let Some(step) = self.filtering.step {
                self.send_filtering(ctx, out, step);
            }
        }
    }

    pub(crate) fn on_reply(
        &mut self,
        ctx: &Ctx<'_>,
        out: &mut Out,
        socket: SocketId,
        nonce: u64,
        reflexive: SocketAddr,
    ) {
        if socket == self.primary.0 && self.mapping.step.is_some() && nonce == self.mapping.nonce {
            match self.mapping.step {
                Some(MappingStep::Second) if reflexive == self.x1 => {
                    self.mapping_done(Some(MappingBehavior::EndpointIndependent))
                }
                Some(MappingStep::Second) if self.has_crossed() => {
                    self.begin_mapping(ctx, out, MappingStep::Third { x2: reflexive })
                }
                // Without a crossed address the server cannot tell address-
                // from address-and-port-dependent; assume the stricter.
                Some(MappingStep::Second) => self.mapping_done(Some(MappingBehavior::AddressAndPortDependent)),
                Some(MappingStep::Third { x2 }) if reflexive == x2 => {
                    self.mapping_done(Some(MappingBehavior::AddressDependent))
                }
                Some(MappingStep::Third { x2 }) => {
                    self.begin_mapping(ctx, out, MappingStep::Fourth { x2, x3: reflexive })
                }
                Some(MappingStep::Fourth { x2, x3 }) => {
                    self.ports_result = Some(classify_ports(x2, x3, reflexive));
                    self.mapping_done(Some(MappingBehavior::AddressAndPortDependent))
                }
                None => {}
            }
            return;
        }
        if !matches!(self.filter_socket, SocketState::Open(s) if s == socket) {
            return;
        }
        if let Some(FilteringStep::OtherAddress { other_port: Some(n), port_answered }) = &mut self.filtering.step {
            if nonce == *n {
                *port_answered = true;
                return;
            }
        }
        if nonce != self.filtering.nonce {
            return;
        }
        match self.filtering.step {
            Some(FilteringStep::Open) => {
                if self.alt.ip() != self.server.ip() {
                    let other_port = (self.alt.port() != self.server.port()).then(|| self.fresh_nonce());
                    self.begin_filtering(ctx, out, FilteringStep::OtherAddress { other_port, port_answered: false });
                } else {
                    self.begin_filtering(ctx, out, FilteringStep::OtherPort);
                }
            }
            Some(FilteringStep::OtherAddress { .. }) => {
                self.filtering_done(Some(FilteringBehavior::EndpointIndependent))
            }
            Some(FilteringStep::OtherPort) => self.filtering_done(Some(FilteringBehavior::AddressDependent)),
            None => {}
        }
    }

    fn has_crossed(&self) -> bool {
        self.alt.ip() != self.server.ip() && self.alt.port() != self.server.port()
    }

    fn crossed_alt_ip(&self) -> SocketAddr {
        SocketAddr::new(self.alt.ip(), self.server.port())
    }

    fn fresh_nonce(&mut self) -> u64 {
        self.nonce = self.nonce.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.nonce
    }

    fn begin_mapping(&mut self, ctx: &Ctx<'_>, out: &mut Out, step: MappingStep) {
        let nonce = self.fresh_nonce();
        self.mapping = Phase { step: Some(step), nonce, sends: 0, next_send: None };
        self.send_mapping(ctx, out, step);
    }

    fn send_mapping(&mut self, ctx: &Ctx<'_>, out: &mut Out, step: MappingStep) {
        let to = match step {
            MappingStep::Second if self.has_crossed() => self.crossed_alt_ip(),
            MappingStep::Second | MappingStep::Third { .. } => self.alt,
            MappingStep::Fourth { .. } => SocketAddr::new(self.server.ip(), self.alt.port()),
        };
        let frame = Frame::Discover { nonce: self.mapping.nonce, answer_from: AnswerFrom::Same };
        out.send_to_server_at(ctx, self.primary.0, to, &frame);
        self.mapping.sends += 1;
        self.mapping.next_send = Some(ctx.now + ctx.config.discovery_timeout / SENDS_PER_REQUEST);
    }

    fn mapping_done(&mut self, result: Option<MappingBehavior>) {
        self.mapping = Phase::idle();
        self.mapping_result = Some(result);
    }

    fn begin_filtering(&mut self, ctx: &Ctx<'_>, out: &mut Out, step: FilteringStep) {
        let nonce = self.fresh_nonce();
        self.filtering = Phase { step: Some(step), nonce, sends: 0, next_send: None };
        self.send_filtering(ctx, out, step);
    }

    fn send_filtering(&mut self, ctx: &Ctx<'_>, out: &mut Out, step: FilteringStep) {
        let SocketState::Open(socket) = self.filter_socket else { return };
        let answer_from = match step {
            FilteringStep::Open => AnswerFrom::Same,
            FilteringStep::OtherAddress { .. } => AnswerFrom::OtherAddress,
            FilteringStep::OtherPort => AnswerFrom::OtherPort,
        };
        let frame = Frame::Discover { nonce: self.filtering.nonce, answer_from };
        out.send_to_server_at(ctx, socket, self.server, &frame);
        if let FilteringStep::OtherAddress { other_port: Some(nonce), port_answered: false } = step {
            let frame = Frame::Discover { nonce, answer_from: AnswerFrom::OtherPort };
            out.send_to_server_at(ctx, socket, self.server, &frame);
        }
        self.filtering.sends += 1;
        self.filtering.next_send = Some(ctx.now + ctx.config.discovery_timeout / SENDS_PER_REQUEST);
    }

    fn filtering_done(&mut self, result: Option<FilteringBehavior>) {
        self.filtering = Phase::idle();
        self.filtering_result = Some(result);
    }
}

/// Port allocation from three consecutive fresh mappings (see the module
/// documentation for the rule and its false-positive rate).
pub(crate) fn classify_ports(x2: SocketAddr, x3: SocketAddr, x4: SocketAddr) -> PortAllocation {
    if x2.ip() != x3.ip() || x3.ip() != x4.ip() {
        return PortAllocation::Random;
    }
    let first = i32::from(x3.port()) - i32::from(x2.port());
    let second = i32::from(x4.port()) - i32::from(x3.port());
    let plausible = |step: i32| step != 0 && step.abs() <= MAX_SEQUENTIAL_STEP;
    if plausible(first) && plausible(second) && first.signum() == second.signum() {
        // Neighbours only add whole steps, so the allocator's own step
        // divides both observed ones.
        let delta = first.signum() * gcd(first.unsigned_abs(), second.unsigned_abs()) as i32;
        PortAllocation::Sequential { delta }
    } else {
        PortAllocation::Random
    }
}

/// Greatest common divisor (Euclid).
pub(crate) fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([198, 51, 100, 1], port))
    }

    #[test]
    fn equal_steps_are_sequential_with_that_delta() {
        assert_eq!(classify_ports(at(5000), at(5001), at(5002)), PortAllocation::Sequential { delta: 1 });
        assert_eq!(classify_ports(at(5000), at(4998), at(4996)), PortAllocation::Sequential { delta: -2 });
    }

    #[test]
    fn a_neighbour_widening_one_step_still_reads_sequential_with_the_smaller_step() {
        // Given another host behind the NAT took three ports between two samples,
        // then the allocation is still sequential, and the delta is the undisturbed step.
        assert_eq!(classify_ports(at(5000), at(5001), at(5005)), PortAllocation::Sequential { delta: 1 });
        assert_eq!(classify_ports(at(5000), at(5002), at(5003)), PortAllocation::Sequential { delta: 1 });
        assert_eq!(classify_ports(at(5000), at(5004), at(5010)), PortAllocation::Sequential { delta: 2 });
    }

    #[test]
    fn scattered_or_reversing_ports_are_random() {
        assert_eq!(classify_ports(at(5000), at(41_000), at(17_000)), PortAllocation::Random);
        assert_eq!(classify_ports(at(5000), at(5003), at(5001)), PortAllocation::Random);
        assert_eq!(classify_ports(at(5000), at(5000), at(5000)), PortAllocation::Random);
        let other_ip = SocketAddr::from(([198, 51, 100, 2], 5002));
        assert_eq!(classify_ports(at(5000), at(5001), other_ip), PortAllocation::Random);
    }
}
