//! The server's STUN answers for NAT behaviour discovery (RFC 5780, issue
//! 21), through the machine's public API: which socket answers a
//! CHANGE-REQUEST, what RESPONSE-ORIGIN and OTHER-ADDRESS say, the 420 of a
//! server without an alternate address, and that answers stay within
//! [`stun::MAX_AMPLIFICATION`] times their request.
//!
//! The server's sockets (see `Server::sockets`): 0 is the primary
//! `IP1:P1`, 1 the alternate `IP2:P2`, 2 is `IP1:P2` and 3 is `IP2:P1`.

use std::net::SocketAddr;
use std::time::Instant;

use punchline_core::server::{Server, ServerConfig};
use punchline_core::wire::stun::{self, attr, ChangeRequest, Class, Message, RawAttribute, TransactionId, BINDING};
use punchline_core::{Machine, SocketId, Transmit};

const TID: TransactionId = TransactionId([0x52, 0x46, 0x43, 0x35, 0x37, 0x38, 0x30, 0, 1, 2, 3, 4]);

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a test address")
}

/// `IP1:P1`, `IP2:P2`, `IP1:P2`, `IP2:P1`, by socket id.
fn sockets() -> [SocketAddr; 4] {
    [addr("203.0.113.10:3478"), addr("203.0.113.11:3479"), addr("203.0.113.10:3479"), addr("203.0.113.11:3478")]
}

/// The id of socket `i`.
fn id(i: usize) -> SocketId {
    SocketId(u32::try_from(i).expect("a small socket index"))
}

fn client() -> SocketAddr {
    addr("198.51.100.7:40000")
}

fn rfc5780_server() -> Server {
    let [primary, alternate, ..] = sockets();
    Server::new(ServerConfig::new(primary, Some(alternate)), Instant::now())
}

/// A Binding request with `attributes`.
fn request(attributes: Vec<RawAttribute>) -> Vec<u8> {
    Message { class: Class::Request, method: BINDING, transaction_id: TID, attributes }.encode()
}

/// A Binding request with a CHANGE-REQUEST and FINGERPRINT, as an RFC 5780
/// client sends it.
fn change_request(change_ip: bool, change_port: bool) -> Vec<u8> {
    request(vec![RawAttribute::change_request(ChangeRequest { change_ip, change_port }), RawAttribute::fingerprint()])
}

/// Feeds `payload` in on `socket` from the client; returns every datagram
/// the server sends.
fn exchange(server: &mut Server, socket: usize, payload: &[u8]) -> Vec<Transmit> {
    server.handle_datagram(Instant::now(), id(socket), client(), payload);
    std::iter::from_fn(|| server.poll_transmit()).collect()
}

/// The one answer to `payload` on `socket`: the socket it leaves from, and
/// the message.
fn answer(server: &mut Server, socket: usize, payload: &[u8]) -> (SocketId, Message) {
    let sent = exchange(server, socket, payload);
    assert_eq!(sent.len(), 1, "one answer: {sent:?}");
    let t = &sent[0];
    assert_eq!(t.destination, client());
    (t.socket, Message::decode(&t.payload).expect("the answer decodes"))
}

#[test]
fn the_server_has_the_four_sockets_these_tests_assume() {
    // Given a server with an alternate address of another IP and port,
    // then it listens on both and their two crossings, in this order.
    let server = rfc5780_server();
    let expected: Vec<(SocketId, SocketAddr)> = sockets().into_iter().enumerate().map(|(i, a)| (id(i), a)).collect();
    assert_eq!(server.sockets(), expected.as_slice());
}

#[test]
fn a_plain_binding_is_answered_from_where_it_arrived_with_the_other_address() {
    // Given a server with an alternate address.
    let mut server = rfc5780_server();
    let s = sockets();
    // When a plain Binding request (our own, with SOFTWARE and FINGERPRINT)
    // arrives on each socket,
    for (arrived, other) in [(0, s[1]), (1, s[0]), (2, s[3]), (3, s[2])] {
        let (out, m) = answer(&mut server, arrived, &stun::binding_request(TID));
        // then the success leaves from that socket, says so in
        // RESPONSE-ORIGIN, names the address with the other IP and the other
        // port in OTHER-ADDRESS (RFC 5780 §6.1, Table 1), and carries the
        // client's address, SOFTWARE and FINGERPRINT.
        assert_eq!(out, id(arrived));
        assert_eq!((m.class, m.method, m.transaction_id), (Class::SuccessResponse, BINDING, TID));
        assert_eq!(m.xor_mapped_address(), Some(client()));
        assert_eq!(m.response_origin(), Some(s[arrived]), "socket {arrived}");
        assert_eq!(m.other_address(), Some(other), "socket {arrived}");
        assert_eq!(m.software(), Some(stun::SOFTWARE_NAME));
        assert!(m.has_fingerprint());
    }
    assert_eq!(server.stats().stun_answered, 4);
}

#[test]
fn change_ip_and_port_from_the_primary_answers_from_the_alternate() {
    // Given a server with an alternate address.
    let mut server = rfc5780_server();
    let s = sockets();
    // When a Binding asks on the primary for an answer from the other IP and
    // the other port,
    let (out, m) = answer(&mut server, 0, &change_request(true, true));
    // then the alternate socket answers, and says so.
    assert_eq!(out, SocketId(1));
    assert_eq!(m.class, Class::SuccessResponse);
    assert_eq!(m.xor_mapped_address(), Some(client()));
    assert_eq!(m.response_origin(), Some(s[1]));
    assert_eq!(m.other_address(), Some(s[1]));
}

#[test]
fn every_change_request_on_every_socket_picks_the_socket_of_rfc5780_table_1() {
    // Given a server with an alternate address, and for each socket the
    // socket that answers (no change, change port, change IP, change both):
    // IP1:P1 -> IP1:P2, IP2:P1, IP2:P2 and so on.
    let table = [(0, [0, 2, 3, 1]), (1, [1, 3, 2, 0]), (2, [2, 0, 1, 3]), (3, [3, 1, 0, 2])];
    let mut server = rfc5780_server();
    let s = sockets();
    for (arrived, answering) in table {
        let flags = [(false, false), (false, true), (true, false), (true, true)];
        for ((change_ip, change_port), want) in flags.into_iter().zip(answering) {
            // When a Binding with that CHANGE-REQUEST arrives there,
            let (out, m) = answer(&mut server, arrived, &change_request(change_ip, change_port));
            // then that socket answers, RESPONSE-ORIGIN names it, and
            // OTHER-ADDRESS is the arrival socket's other IP and port,
            // whatever the flags.
            let case = format!("arrived on {arrived}, change IP {change_ip}, change port {change_port}");
            assert_eq!(out, id(want), "{case}");
            assert_eq!(m.class, Class::SuccessResponse, "{case}");
            assert_eq!(m.xor_mapped_address(), Some(client()), "{case}");
            assert_eq!(m.response_origin(), Some(s[want]), "{case}");
            assert_eq!(m.other_address(), Some(s[[1, 0, 3, 2][arrived]]), "{case}");
            // The answer's address pair is what Table 1 says: the IP
            // changes with flag A, the port with flag B.
            let here = s[arrived];
            assert_eq!(s[want].ip() != here.ip(), change_ip, "{case}");
            assert_eq!(s[want].port() != here.port(), change_port, "{case}");
        }
    }
}

#[test]
fn without_an_alternate_address_there_is_no_other_address_and_change_requests_get_420() {
    // Given a server with one address.
    let primary = sockets()[0];
    let mut server = Server::new(ServerConfig::new(primary, None), Instant::now());
    // When a plain Binding arrives, then it is answered with the client's
    // address and RESPONSE-ORIGIN, but no OTHER-ADDRESS (RFC 5780 §6).
    let (out, m) = answer(&mut server, 0, &stun::binding_request(TID));
    assert_eq!((out, m.class), (SocketId(0), Class::SuccessResponse));
    assert_eq!(m.xor_mapped_address(), Some(client()));
    assert_eq!(m.response_origin(), Some(primary));
    assert_eq!(m.other_address(), None);
    // And every CHANGE-REQUEST, even one with no flag set, gets 420 listing
    // CHANGE-REQUEST, from the socket it arrived at.
    for (change_ip, change_port) in [(false, false), (false, true), (true, false), (true, true)] {
        let (out, m) = answer(&mut server, 0, &change_request(change_ip, change_port));
        assert_eq!((out, m.class, m.transaction_id), (SocketId(0), Class::ErrorResponse, TID));
        assert_eq!(m.error_code(), Some((420, "Unknown Attribute".to_owned())));
        assert_eq!(m.unknown_attributes(), Some(vec![attr::CHANGE_REQUEST]));
        assert!(m.has_fingerprint());
    }
}

#[test]
fn an_alternate_that_shares_the_ip_is_no_rfc5780_alternate() {
    // Given a server whose alternate differs only in port (two sockets).
    let mut server = Server::new(ServerConfig::new(sockets()[0], Some(sockets()[2])), Instant::now());
    assert_eq!(server.sockets().len(), 2);
    // When a plain Binding and a change-port request arrive on the primary,
    let (_, plain) = answer(&mut server, 0, &stun::binding_request(TID));
    let (out, change) = answer(&mut server, 0, &change_request(false, true));
    // then there is no OTHER-ADDRESS, and the CHANGE-REQUEST gets 420: RFC
    // 5780 §6 wants both another IP and another port.
    assert_eq!(plain.other_address(), None);
    assert_eq!((out, change.error_code().map(|(code, _)| code)), (SocketId(0), Some(420)));
}

#[test]
fn a_bare_20_byte_binding_gets_56_bytes_as_before_rfc5780() {
    // Given a server with an alternate address, and the 20-byte Binding
    // request with no attribute that turnutils_natdiscovery sends.
    let mut server = rfc5780_server();
    let bare = request(vec![]);
    assert_eq!(bare.len(), 20);
    // When it arrives,
    let sent = exchange(&mut server, 0, &bare);
    // then the answer is 56 bytes, 2.8 times the request (as the answer
    // with SOFTWARE and FINGERPRINT was before): XOR-MAPPED-ADDRESS and the
    // RFC 5780 addresses fit within 3 times, SOFTWARE and FINGERPRINT do not.
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].payload.len(), 56);
    let m = Message::decode(&sent[0].payload).expect("decodes");
    let kinds: Vec<u16> = m.attributes.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [attr::XOR_MAPPED_ADDRESS, attr::RESPONSE_ORIGIN, attr::OTHER_ADDRESS]);
    assert_eq!(m.other_address(), Some(sockets()[1]));
}

#[test]
fn no_stun_answer_exceeds_three_times_its_request() {
    // Given a server with an alternate address, and STUN requests of every
    // kind it answers, smallest first: bare, with a CHANGE-REQUEST, ours,
    // of another method, with unknown or malformed attributes,
    let mut server = rfc5780_server();
    let mut allocate = Message::decode(&request(vec![])).expect("decodes");
    allocate.method = 0x0003;
    let requests = [
        request(vec![]),
        request(vec![RawAttribute::change_request(ChangeRequest { change_ip: true, change_port: false })]),
        change_request(true, true),
        stun::binding_request(TID),
        allocate.encode(),
        request(vec![RawAttribute::new(0x0004, vec![])]),
        request(vec![RawAttribute::new(attr::PADDING, vec![0; 4])]),
        request(vec![RawAttribute::new(attr::CHANGE_REQUEST, vec![6])]),
    ];
    for (i, payload) in requests.iter().enumerate() {
        // when each arrives,
        let sent = exchange(&mut server, i % 4, payload);
        // then exactly one answer goes back, at most three times its size.
        assert_eq!(sent.len(), 1, "request {i}");
        let ratio = sent[0].payload.len() as f64 / payload.len() as f64;
        assert!(ratio <= stun::MAX_AMPLIFICATION as f64, "request {i}: {ratio:.2}x");
    }
}

#[test]
fn stun_answers_count_against_the_source_rate_limit() {
    // Given a server whose sources may send 2 requests and then 1 a second.
    let [primary, alternate, ..] = sockets();
    let mut config = ServerConfig::new(primary, Some(alternate));
    (config.request_burst, config.request_rate) = (2, 1);
    let now = Instant::now();
    let mut server = Server::new(config, now);
    // When one source sends three CHANGE-REQUESTs at once,
    let mut answered = 0;
    for _ in 0..3 {
        server.handle_datagram(now, SocketId(0), client(), &change_request(true, true));
        answered += std::iter::from_fn(|| server.poll_transmit()).count();
    }
    // then two are answered and the third is refused and counted.
    assert_eq!(answered, 2);
    assert_eq!((server.stats().stun_answered, server.stats().rate_limited), (2, 1));
}

#[test]
fn responses_and_garbage_on_the_stun_range_get_no_answer() {
    // Given a server, a STUN success response and an indication.
    let mut server = rfc5780_server();
    let response = stun::binding_success(TID, client());
    let indication = Message::new(Class::Indication, BINDING, TID).encode();
    // When they arrive, then nothing is sent and both count as malformed.
    assert!(exchange(&mut server, 0, &response).is_empty());
    assert!(exchange(&mut server, 1, &indication).is_empty());
    assert_eq!((server.stats().stun_answered, server.stats().malformed), (0, 2));
}
