//! What a STUN server answers (RFC 8489 §6.3, RFC 5780 §6.1), in two steps
//! so that the caller chooses the socket an answer leaves from:
//! [`read_request`] says what a datagram asks for, then
//! [`BindingRequest::success`] or [`Refusal::encode`] builds the answer
//! within a size limit. [`answer_binding`] does both for a server with a
//! single address.
//!
//! [`MAX_AMPLIFICATION`] bounds every answer the server machine sends; the
//! RFC 5780 deviations are listed in the `stun` module's documentation.

use std::net::SocketAddr;

use super::binding::{encode_built, error_message};
use super::{attr, ChangeRequest, Class, Message, RawAttribute, TransactionId, BINDING, HEADER_LEN, SOFTWARE_NAME};

/// The most an answer of the server machine may be, as a multiple of its
/// request's size.
///
/// STUN is unauthenticated: a request's source address proves nothing, so
/// a spoofed request turns a server into an amplifier aimed at the address
/// it names. The server machine answers each request with at most this many
/// times its size: the attributes an answer needs (XOR-MAPPED-ADDRESS;
/// ERROR-CODE and UNKNOWN-ATTRIBUTES) always fit, and the others are added,
/// in this order, while they fit: RESPONSE-ORIGIN with OTHER-ADDRESS (RFC
/// 5780 §7.3, §7.4), FINGERPRINT (8 bytes), SOFTWARE (16 bytes). Measured
/// answers of a server with an alternate address, IPv4 (IPv6):
///
/// | request                                | answer        | ratio       |
/// |----------------------------------------|---------------|-------------|
/// | bare Binding, 20 bytes                 | 56 (52) bytes | 2.8 (2.6)   |
/// | CHANGE-REQUEST, 28 bytes               | 80 (68)       | 2.86 (2.43) |
/// | CHANGE-REQUEST + FINGERPRINT, 36 bytes | 80 (100)      | 2.22 (2.78) |
/// | SOFTWARE + FINGERPRINT, 44 bytes       | 80 (116)      | 1.82 (2.64) |
///
/// Before RFC 5780 the server answered every Binding with
/// XOR-MAPPED-ADDRESS, SOFTWARE and FINGERPRINT: 56 (68) bytes to a bare
/// 20-byte request, 2.8 (3.4) times. So no answer grows past 3 times its
/// request, and none is larger than before for a bare request, where the
/// rule bites hardest. With the per-source request limit (a burst of 64,
/// then 32 a second, by default), one server sends a spoofed address at
/// most a few kilobytes a second. PADDING and RESPONSE-PORT (RFC 5780
/// §7.5, §7.6), which ask for large answers or answers to another port,
/// are not understood: a request with either gets 420.
pub const MAX_AMPLIFICATION: usize = 3;

/// What a STUN request asks of a server (see [`read_request`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// A Binding request the server can understand: answer it with
    /// [`BindingRequest::success`], or, when it cannot honour its
    /// CHANGE-REQUEST, with [`BindingRequest::refuse_change`].
    Binding(BindingRequest),
    /// A request to refuse: answer it with [`Refusal::encode`].
    Refused(Refusal),
}

/// A well-formed Binding request with no unknown comprehension-required
/// attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindingRequest {
    /// The id its answer echoes.
    pub transaction_id: TransactionId,
    /// Its CHANGE-REQUEST (RFC 5780 §7.2), if it has one.
    pub change: Option<ChangeRequest>,
}

/// An error response a request has earned (RFC 8489 §6.3.1.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The request's method, which the answer repeats.
    pub method: u16,
    /// The id the answer echoes.
    pub transaction_id: TransactionId,
    /// The ERROR-CODE: 400 (Bad Request) or 420 (Unknown Attribute).
    pub code: u16,
    /// The ERROR-CODE's reason phrase.
    pub reason: &'static str,
    /// The attribute types listed in UNKNOWN-ATTRIBUTES (420 only).
    pub unknown: Vec<u16>,
}

/// What a STUN server must answer to `datagram`, or `None` when it must
/// stay silent (RFC 8489 §6.3):
/// - undecodable datagrams, including a bad FINGERPRINT, are dropped;
/// - indications and responses get no answer;
/// - a request for another method gets 400 (Bad Request);
/// - a Binding request with unknown comprehension-required attributes gets
///   420 (Unknown Attribute) listing them (§6.3.1);
/// - a Binding request with a CHANGE-REQUEST that is not 4 bytes long gets
///   400;
/// - any other Binding request is [`Received::Binding`].
///
/// Stateless and allocation-bounded; never panics.
pub fn read_request(datagram: &[u8]) -> Option<Received> {
    let request = Message::decode(datagram).ok()?;
    if request.class != Class::Request {
        return None;
    }
    let transaction_id = request.transaction_id;
    if request.method != BINDING {
        return Some(Received::Refused(Refusal::bad_request(request.method, transaction_id)));
    }
    let unknown = request.unknown_comprehension_required();
    if !unknown.is_empty() {
        return Some(Received::Refused(Refusal::unknown_attributes(transaction_id, unknown)));
    }
    match request.change_request() {
        Some(None) => Some(Received::Refused(Refusal::bad_request(BINDING, transaction_id))),
        change => Some(Received::Binding(BindingRequest { transaction_id, change: change.flatten() })),
    }
}

/// What a STUN server with a single address answers to `datagram`
/// received from `from` (see [`read_request`]): a Binding request gets a
/// success response carrying `from` in XOR-MAPPED-ADDRESS (§6.3.1.1), or,
/// when it has a CHANGE-REQUEST, 420 listing it (RFC 5780 §6.1: a server
/// with no alternate address cannot honour one). Every answer echoes the
/// request's transaction id and carries SOFTWARE and FINGERPRINT, whatever
/// its size: the server machine answers through [`read_request`], within
/// [`MAX_AMPLIFICATION`].
pub fn answer_binding(datagram: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let unlimited = usize::MAX;
    Some(match read_request(datagram)? {
        Received::Refused(refusal) => refusal.encode(unlimited),
        Received::Binding(request) if request.change.is_some() => request.refuse_change().encode(unlimited),
        Received::Binding(request) => request.success(from, None, None, unlimited),
    })
}

impl BindingRequest {
    /// The success response (RFC 8489 §6.3.1.1, RFC 5780 §6.1) telling the
    /// requester its reflexive address `mapped` in XOR-MAPPED-ADDRESS; then,
    /// while the answer stays within `limit` bytes: RESPONSE-ORIGIN
    /// `origin` (the address the answer leaves from) with OTHER-ADDRESS
    /// `other` (the server's address with the other IP and port, for a
    /// server that has one), FINGERPRINT, SOFTWARE ([`SOFTWARE_NAME`]).
    /// XOR-MAPPED-ADDRESS is always there, whatever `limit`.
    pub fn success(
        &self,
        mapped: SocketAddr,
        origin: Option<SocketAddr>,
        other: Option<SocketAddr>,
        limit: usize,
    ) -> Vec<u8> {
        let tid = self.transaction_id;
        let mut m = Message::new(Class::SuccessResponse, BINDING, tid);
        m.attributes.push(RawAttribute::xor_mapped_address(mapped, tid));
        let rfc5780: Vec<RawAttribute> = origin
            .map(RawAttribute::response_origin)
            .into_iter()
            .chain(other.map(RawAttribute::other_address))
            .collect();
        let mut room = Room::after(&m, limit);
        if room.take(&rfc5780) {
            m.attributes.extend(rfc5780);
        }
        finish(m, room)
    }

    /// The 420 (Unknown Attribute) listing CHANGE-REQUEST that a server
    /// answers when it cannot honour one (RFC 5780 §6.1: it has no
    /// alternate address).
    pub fn refuse_change(&self) -> Refusal {
        Refusal::unknown_attributes(self.transaction_id, vec![attr::CHANGE_REQUEST])
    }
}

impl Refusal {
    /// 400 (Bad Request) for a request of `method`.
    pub fn bad_request(method: u16, transaction_id: TransactionId) -> Refusal {
        Refusal { method, transaction_id, code: 400, reason: "Bad Request", unknown: Vec::new() }
    }

    /// 420 (Unknown Attribute) for a Binding request, listing `unknown`.
    pub fn unknown_attributes(transaction_id: TransactionId, unknown: Vec<u16>) -> Refusal {
        Refusal { method: BINDING, transaction_id, code: 420, reason: "Unknown Attribute", unknown }
    }

    /// The error response: ERROR-CODE, UNKNOWN-ATTRIBUTES when the list is
    /// not empty, and, while the answer stays within `limit` bytes,
    /// FINGERPRINT and SOFTWARE. The first two are always there.
    pub fn encode(&self, limit: usize) -> Vec<u8> {
        let m = error_message(self.method, self.transaction_id, self.code, self.reason, &self.unknown);
        let room = Room::after(&m, limit);
        finish(m, room)
    }
}

/// Adds SOFTWARE and FINGERPRINT to `m` as far as `room` allows (the
/// FINGERPRINT first: it lets a receiver that multiplexes protocols tell
/// STUN apart, SOFTWARE only names us), FINGERPRINT last on the wire as
/// RFC 8489 §14.7 requires, and encodes it.
fn finish(mut m: Message, mut room: Room) -> Vec<u8> {
    let fingerprint = room.take(&[RawAttribute::fingerprint()]);
    let software = RawAttribute::software(SOFTWARE_NAME);
    if room.take(std::slice::from_ref(&software)) {
        m.attributes.push(software);
    }
    if fingerprint {
        m.attributes.push(RawAttribute::fingerprint());
    }
    encode_built(&m)
}

/// The bytes an answer has used, and may use.
struct Room {
    used: usize,
    limit: usize,
}

impl Room {
    /// The room left after `m`'s header and attributes.
    fn after(m: &Message, limit: usize) -> Room {
        Room { used: HEADER_LEN + m.attributes.iter().map(encoded_len).sum::<usize>(), limit }
    }

    /// Takes the room `attributes` need, if it is there.
    fn take(&mut self, attributes: &[RawAttribute]) -> bool {
        let needed: usize = attributes.iter().map(encoded_len).sum();
        let fits = self.used.saturating_add(needed) <= self.limit;
        if fits {
            self.used += needed;
        }
        fits
    }
}

/// An attribute's size on the wire: its header, value and padding (§14).
fn encoded_len(a: &RawAttribute) -> usize {
    4 + a.value.len().next_multiple_of(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::stun::test_support::{v4, TID};
    use crate::wire::stun::{binding_request, binding_success};

    /// A Binding request with `attributes`.
    fn request(attributes: Vec<RawAttribute>) -> Vec<u8> {
        Message { class: Class::Request, method: BINDING, transaction_id: TID, attributes }.encode()
    }

    fn both() -> ChangeRequest {
        ChangeRequest { change_ip: true, change_port: true }
    }

    #[test]
    fn a_change_request_is_read() {
        // Given Binding requests with and without a CHANGE-REQUEST.
        let plain = request(vec![]);
        let change = request(vec![RawAttribute::change_request(both())]);
        // When they are read, then the flags come out.
        let binding = |change| Some(Received::Binding(BindingRequest { transaction_id: TID, change }));
        assert_eq!(read_request(&plain), binding(None));
        assert_eq!(read_request(&change), binding(Some(both())));
    }

    #[test]
    fn a_malformed_change_request_gets_400() {
        // Given a CHANGE-REQUEST of 2 bytes.
        let bytes = request(vec![RawAttribute::new(attr::CHANGE_REQUEST, vec![0, 6])]);
        // When it is read, then it is refused as a bad request.
        assert_eq!(read_request(&bytes), Some(Received::Refused(Refusal::bad_request(BINDING, TID))));
    }

    #[test]
    fn padding_and_response_port_get_420() {
        // Given requests asking for padding or for another response port.
        for kind in [attr::PADDING, attr::RESPONSE_PORT] {
            let bytes = request(vec![RawAttribute::new(kind, vec![0; 4])]);
            // When they are read, then they are refused as unknown.
            assert_eq!(read_request(&bytes), Some(Received::Refused(Refusal::unknown_attributes(TID, vec![kind]))));
        }
    }

    #[test]
    fn a_single_address_server_refuses_change_requests_with_420() {
        // Given a Binding request asking for no change at all, but with a
        // CHANGE-REQUEST (RFC 5780 §6.1 makes no exception for it).
        let bytes = request(vec![RawAttribute::change_request(ChangeRequest::default())]);
        // When a server with one address answers it.
        let answer = answer_binding(&bytes, v4("192.0.2.1:1")).expect("answered");
        // Then it is 420 listing CHANGE-REQUEST, in full.
        let r = Message::decode(&answer).expect("decodes");
        assert_eq!(r.error_code(), Some((420, "Unknown Attribute".to_owned())));
        assert_eq!(r.unknown_attributes(), Some(vec![0x0003]));
        assert_eq!(r.software(), Some(SOFTWARE_NAME));
        assert!(r.has_fingerprint());
    }

    #[test]
    fn an_unlimited_success_is_the_plain_binding_success() {
        // Given our own Binding request.
        let Some(Received::Binding(req)) = read_request(&binding_request(TID)) else { panic!("a Binding") };
        // When it is answered without RFC 5780 addresses nor a limit.
        let answer = req.success(v4("198.51.100.7:40000"), None, None, usize::MAX);
        // Then it is byte for byte what `binding_success` builds.
        assert_eq!(answer, binding_success(TID, v4("198.51.100.7:40000")));
    }

    #[test]
    fn a_full_rfc5780_success_in_wire_order() {
        // Given a Binding request, answered with room to spare.
        let req = BindingRequest { transaction_id: TID, change: None };
        let (mapped, origin, other) = (v4("192.0.2.1:32853"), v4("203.0.113.10:3478"), v4("203.0.113.11:3479"));
        // When the answer is built.
        let answer = req.success(mapped, Some(origin), Some(other), usize::MAX);
        // Then its attributes are XOR-MAPPED-ADDRESS, RESPONSE-ORIGIN,
        // OTHER-ADDRESS, SOFTWARE, FINGERPRINT: 80 bytes.
        let r = Message::decode(&answer).expect("decodes");
        let kinds: Vec<u16> = r.attributes.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [0x0020, 0x802B, 0x802C, 0x8022, 0x8028]);
        assert_eq!(answer.len(), 80);
        assert_eq!(
            (r.xor_mapped_address(), r.response_origin(), r.other_address()),
            (Some(mapped), Some(origin), Some(other))
        );
    }

    #[test]
    fn the_limit_keeps_the_rfc5780_addresses_then_fingerprint_then_software() {
        // Given an RFC 5780 answer for IPv4 (80 bytes in full).
        let req = BindingRequest { transaction_id: TID, change: None };
        let (mapped, origin, other) = (v4("192.0.2.1:1"), v4("203.0.113.10:3478"), v4("203.0.113.11:3479"));
        let kinds = |limit| {
            let answer = req.success(mapped, Some(origin), Some(other), limit);
            let r = Message::decode(&answer).expect("decodes");
            (answer.len(), r.attributes.iter().map(|a| a.kind).collect::<Vec<u16>>())
        };
        // When it must fit in less and less, then SOFTWARE goes first, then
        // FINGERPRINT; without room for the RFC 5780 pair, FINGERPRINT still
        // fits; XOR-MAPPED-ADDRESS always stays.
        assert_eq!(kinds(80), (80, vec![0x0020, 0x802B, 0x802C, 0x8022, 0x8028]));
        assert_eq!(kinds(79), (64, vec![0x0020, 0x802B, 0x802C, 0x8028]));
        assert_eq!(kinds(63), (56, vec![0x0020, 0x802B, 0x802C]));
        assert_eq!(kinds(55), (40, vec![0x0020, 0x8028]));
        assert_eq!(kinds(39), (32, vec![0x0020]));
        assert_eq!(kinds(0), (32, vec![0x0020]));
    }

    #[test]
    fn answers_stay_within_three_times_their_request() {
        // Given the requests an RFC 5780 client sends, over IPv4 and IPv6,
        // and the limit the server machine applies.
        let (v4_addrs, v6_addrs) = (
            (v4("192.0.2.1:1"), v4("203.0.113.10:3478"), v4("203.0.113.11:3479")),
            (v4("[2001:db8::1]:1"), v4("[2001:db8::10]:3478"), v4("[2001:db8::11]:3479")),
        );
        let change = RawAttribute::change_request(both());
        let cases = [
            ("bare", request(vec![]), (56, 52)),
            ("change", request(vec![change.clone()]), (80, 68)),
            ("ours", binding_request(TID), (80, 116)),
            ("change + fingerprint", request(vec![change, RawAttribute::fingerprint()]), (80, 100)),
        ];
        for (what, bytes, (want_v4, want_v6)) in cases {
            let Some(Received::Binding(req)) = read_request(&bytes) else { panic!("{what}: a Binding") };
            let limit = bytes.len() * MAX_AMPLIFICATION;
            // When each is answered.
            let answer = |(mapped, origin, other)| req.success(mapped, Some(origin), Some(other), limit).len();
            let (got_v4, got_v6) = (answer(v4_addrs), answer(v6_addrs));
            // Then the sizes are the ones the module documents.
            assert_eq!((got_v4, got_v6), (want_v4, want_v6), "{what}");
            assert!(got_v4.max(got_v6) <= limit, "{what}");
        }
        // And the smallest refusals fit as well: 400 to a bare request of
        // another method (48 bytes), 420 to a bare CHANGE-REQUEST (80).
        let bad = Refusal::bad_request(0x0003, TID).encode(20 * MAX_AMPLIFICATION);
        let change = BindingRequest { transaction_id: TID, change: Some(both()) };
        assert_eq!((bad.len(), change.refuse_change().encode(28 * MAX_AMPLIFICATION).len()), (48, 80));
    }
}
