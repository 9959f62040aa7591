//! Issue 20's attacks on the client–server channel, each a test that now
//! fails for the attacker: an impostor with another key, a changed server
//! key, replayed and racing handshakes, spoofed sources that want the
//! server to send more than they did, and a server under a flood of
//! handshakes.

mod harness;

use std::net::SocketAddr;
use std::time::Duration;

use harness::{Harness, SERVER};
use punchline_core::client::ClientEvent;
use punchline_core::secure::{HelloSent, StaticKey};
use punchline_core::wire::channel::{self as layout, Hello};
use punchline_core::wire::frame::{tag, ErrorCode, Frame, TextStatus};
use punchline_core::wire::stun;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A login frame for `user`, as a Hello carries it.
fn login(user: &str) -> Vec<u8> {
    Frame::Login { request: 1, user: user.into(), host_candidates: Vec::new() }.encode()
}

/// Datagrams and bytes the server sent to `to` from index `since` of
/// [`Harness::server_sent`] on.
fn sent_to(h: &Harness, since: usize, to: SocketAddr) -> (usize, usize) {
    let sent: Vec<_> = h.server_sent[since..].iter().filter(|p| p.dst == to).collect();
    (sent.len(), sent.iter().map(|p| p.payload.len()).sum())
}

#[test]
fn an_impostor_with_another_key_is_refused_online_offline_and_after_a_restart() {
    // Given alice, logged in once with her key,
    let mut h = Harness::new(1);
    let alice = h.add_public_client(h.config("alice"));
    let bob = h.add_public_client(h.config("bob"));
    h.run_for(secs(2));
    assert!(h.clients[alice].client.is_logged_in());
    let impostor = |h: &mut Harness, seed: u64| {
        let mut config = h.config("alice");
        config.identity = StaticKey::derive(seed.into(), "mallory's alice");
        let i = h.add_public_client(config);
        h.run_for(secs(3));
        i
    };
    // when someone logs in as alice with another key while she is online,
    let first = impostor(&mut h, 1);
    // then the login fails with KeyMismatch, and alice keeps her login and
    // her texts.
    let refused = |h: &Harness, i: usize| {
        h.find(i, |e| match e {
            ClientEvent::LoginFailed { code } => Some(*code),
            _ => None,
        })
    };
    assert_eq!(refused(&h, first).len(), 1);
    assert_eq!(refused(&h, first)[0].1, ErrorCode::KeyMismatch);
    assert!(!h.clients[first].client.is_logged_in());
    h.send_text(bob, "alice", "for alice only");
    h.run_for(secs(1));
    assert_eq!(h.texts(alice).len(), 1);
    assert!(h.texts(first).is_empty());

    // When alice is gone, and even after the server restarts over its store,
    h.leave(alice, secs(1));
    let second = impostor(&mut h, 2);
    let store = h.crash_server();
    h.start_server(store);
    let third = impostor(&mut h, 3);
    // then the impostor is refused all the same: the binding is durable,
    for i in [second, third] {
        assert_eq!(refused(&h, i).iter().map(|(_, c)| *c).collect::<Vec<_>>(), [ErrorCode::KeyMismatch]);
    }
    // and a text for alice waits for her, not for them.
    let id = h.send_text(bob, "alice", "still for alice");
    h.run_for(secs(5));
    assert!(
        h.find(bob, |e| matches!(e, ClientEvent::TextAcked { id: i, status: TextStatus::Stored, .. } if *i == id)
            .then_some(()))
            .len()
            == 1
    );
    assert!(h.texts(second).is_empty() && h.texts(third).is_empty());
    assert!(h.server.stats().key_mismatches >= 1);
}

#[test]
fn two_first_logins_racing_for_a_name_bind_it_to_one_key() {
    // Given two handshakes for a new name with two keys, both completed
    // before either proved its address,
    let mut h = Harness::new(2);
    let server_key = h.server_config.key.public();
    let (a, b): (SocketAddr, SocketAddr) = ("192.0.2.1:1000".parse().unwrap(), "192.0.2.2:2000".parse().unwrap());
    let mut ends = Vec::new();
    for (from, seed) in [(a, 1u64), (b, 2)] {
        let identity = StaticKey::derive(seed.into(), "carol");
        let (hello, datagram) = HelloSent::start(&identity, &server_key, &login("carol"), None, seed.into());
        let since = h.server_sent.len();
        h.inject(from, SERVER, datagram);
        h.run_for(Duration::from_millis(100));
        let welcome = h.server_sent[since..].iter().find(|p| p.dst == from).expect("a welcome").clone();
        let (payload, finished) = hello.finish(&welcome.payload).expect("authenticates");
        let Ok(Frame::LoginOk { token, .. }) = Frame::decode(&payload) else { panic!("{payload:?}") };
        ends.push((from, token, finished.into_channel(token).expect("a channel")));
    }
    // when both prove their address, the first one first,
    let mut answers = Vec::new();
    for (from, token, end) in &mut ends {
        let since = h.server_sent.len();
        let keepalive = Frame::Keepalive { token: *token, profile: Default::default() }.encode();
        h.inject(*from, SERVER, end.seal(&keepalive).unwrap());
        h.run_for(Duration::from_millis(100));
        let frames: Vec<Frame> = h.server_sent[since..]
            .iter()
            .filter(|p| p.dst == *from)
            .filter_map(|p| end.open(&p.payload).and_then(|f| Frame::decode(&f).ok()))
            .collect();
        answers.push(frames);
    }
    // then the first is online, the second told KeyMismatch and nothing else.
    assert!(answers[0].iter().any(|f| matches!(f, Frame::KeepaliveAck { .. })), "{:?}", answers[0]);
    assert_eq!(answers[1], [Frame::Error { request: 0, code: ErrorCode::KeyMismatch }]);
    assert_eq!(h.server.online_users().collect::<Vec<_>>(), ["carol"]);
}

#[test]
fn a_changed_server_key_is_refused_and_nothing_but_handshakes_is_sent() {
    // Given a client that pinned a key the server does not have (an
    // impostor answers, or the operator replaced the key),
    let mut h = Harness::new(3);
    let mut config = h.config("alice");
    let pinned = StaticKey::derive(9.into(), "the old server").public();
    config.server_key = Some(pinned);
    let alice = h.add_public_client(config);
    // when it tries to log in,
    h.run_for(secs(20));
    // then the server drops its Hellos (their mac1 is for another key), the
    // client asks which key the server has, and stops loudly,
    let changed = h.find(alice, |e| match e {
        ClientEvent::ServerKeyChanged { pinned, offered } => Some((*pinned, *offered)),
        _ => None,
    });
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].1, (pinned, h.server_config.key.public()));
    assert!(!h.clients[alice].client.is_logged_in());
    assert!(h.server.stats().handshakes_refused >= 1);
    // having sent nothing but Hellos and key requests.
    let tags: std::collections::BTreeSet<u8> = h.captured.iter().map(|(_, p)| p.payload[0]).collect();
    assert_eq!(tags, [layout::tag::HELLO, layout::tag::KEY_REQUEST].into());
    // And it stays stopped.
    let sent = h.captured.len();
    h.run_for(secs(60));
    assert_eq!(h.captured.len(), sent);
}

#[test]
fn with_no_key_pinned_the_client_learns_the_servers_key_then_logs_in() {
    // Given a client with nothing pinned,
    let mut h = Harness::new(4);
    let mut config = h.config("alice");
    config.server_key = None;
    let alice = h.add_public_client(config);
    // when it starts, then it learns the server's real key (and says so,
    // for the application to pin) and logs in with it.
    h.run_for(secs(2));
    let learned = h.find(alice, |e| match e {
        ClientEvent::ServerKeyLearned { key } => Some(*key),
        _ => None,
    });
    assert_eq!(learned.iter().map(|(_, k)| *k).collect::<Vec<_>>(), [h.server_config.key.public()]);
    assert!(h.clients[alice].client.is_logged_in());
}

#[test]
fn a_replayed_hello_neither_replaces_the_login_nor_reaches_anyone_else() {
    // Given alice online, and her Hello captured on the wire,
    let mut h = Harness::new(5);
    let alice = h.add_public_client(h.config("alice"));
    let bob = h.add_public_client(h.config("bob"));
    h.run_for(secs(2));
    let hello = h.captured.iter().find(|(i, p)| *i == alice && p.payload[0] == layout::tag::HELLO).unwrap().1.clone();
    // when an attacker replays it from her address and from a victim's,
    let victim: SocketAddr = "192.0.2.99:9999".parse().unwrap();
    let since = h.server_sent.len();
    let handshakes = h.server.stats().handshakes;
    h.inject(hello.src, SERVER, hello.payload.clone());
    h.inject(victim, SERVER, hello.payload.clone());
    h.run_for(secs(15));
    // then the server knows them for copies: no Diffie–Hellman, no pending
    // login, nothing sent to anyone;
    assert_eq!(h.server.stats().replayed, 2);
    assert_eq!(h.server.stats().handshakes, handshakes);
    let (datagrams, _) = sent_to(&h, since, victim);
    assert_eq!(datagrams, 0);
    // and alice's login goes on: her texts still reach her.
    h.send_text(bob, "alice", "still mine");
    h.run_for(secs(1));
    assert_eq!(h.texts(alice).len(), 1);
    assert!(h.clients[alice].client.is_logged_in());
}

#[test]
fn no_unauthenticated_request_gets_more_bytes_back_than_it_carried() {
    // Given a server with a user whose texts are stored, and requests from a
    // spoofed source (the victim): everything the server answers before a
    // handshake completes.
    let mut h = Harness::new(6);
    let bob = h.add_public_client(h.config("bob"));
    h.run_for(secs(1));
    h.leave(bob, secs(1));
    let alice = h.add_public_client(h.config("alice"));
    h.run_for(secs(1));
    for n in 0..20 {
        h.send_text(alice, "bob", &format!("a text long enough to be worth aiming at someone, number {n}"));
    }
    h.run_for(secs(1));
    let server_key = h.server_config.key.public();
    let bob_identity = h.config("bob").identity;
    let stun_request = stun::binding_request(stun::TransactionId([7; 12]));
    let stun_message = |attributes| {
        stun::Message {
            class: stun::Class::Request,
            method: stun::BINDING,
            transaction_id: stun::TransactionId([8; 12]),
            attributes,
        }
        .encode()
    };
    let bare_stun = stun_message(vec![]);
    let change = stun::ChangeRequest { change_ip: true, change_port: true };
    let stun_change = stun_message(vec![stun::RawAttribute::change_request(change)]);
    let (_, hello) = HelloSent::start(&bob_identity, &server_key, &login("bob"), None, 8.into());
    let mut bad_mac = hello.clone();
    let last = bad_mac.len() - 20;
    bad_mac[last] ^= 1;
    let mut other_version = Frame::Keepalive { token: 1, profile: Default::default() }.encode();
    other_version[1] = 99;
    let requests: Vec<(&str, Vec<u8>)> = vec![
        ("STUN Binding", stun_request),
        ("bare 20-byte STUN Binding", bare_stun),
        ("STUN Binding with CHANGE-REQUEST", stun_change),
        ("key request", layout::key_request(1)),
        ("Hello (bob's own key)", hello),
        ("Hello with a bad mac1", bad_mac),
        ("sealed frame for no channel", layout::sealed_buffer(42, 0, 40)),
        ("plain Login", login("bob")),
        ("plain Keepalive", Frame::Keepalive { token: 1, profile: Default::default() }.encode()),
        ("plain InboxSync", Frame::InboxSync { token: 1 }.encode()),
        ("frame of another version", other_version),
        ("two-byte frame of another version", vec![tag::KEEPALIVE, 99]),
    ];
    // When each is sent from a victim's address of its own, and the victim
    // never answers,
    let mut ratios = Vec::new();
    for (n, (what, request)) in requests.iter().enumerate() {
        let victim: SocketAddr = format!("192.0.2.{}:7000", n + 10).parse().unwrap();
        let since = h.server_sent.len();
        h.inject(victim, SERVER, request.clone());
        h.run_for(secs(30));
        let (_, bytes) = sent_to(&h, since, victim);
        ratios.push((*what, bytes as f64 / request.len() as f64));
    }
    eprintln!("amplification (bytes answered / bytes sent): {ratios:?}");
    // then nothing answered is larger than its request, but for STUN
    // Binding, whose answer is the RFC's own (RFC 8489: an XOR-MAPPED-ADDRESS
    // for a 20-byte request; RFC 5780 adds the server's addresses), and is
    // at most 3 times the request.
    for (what, ratio) in ratios {
        let limit = if what.contains("STUN") { stun::MAX_AMPLIFICATION as f64 } else { 1.0 };
        assert!(ratio <= limit, "{what}: {ratio:.2}x");
    }
}

/// A Hello around any `noise`, with the mac1 anyone who knows `server`'s
/// public key can compute (BLAKE2s-128 keyed by BLAKE2s-256("mac1----" ‖
/// key), as WireGuard's), and no mac2.
fn hello_around(server: &punchline_core::secure::PublicKey, sender: u64, noise: &[u8]) -> Vec<u8> {
    use blake2::digest::consts::U16;
    use blake2::digest::{FixedOutput, KeyInit, Update};
    use blake2::{Blake2s256, Blake2sMac, Digest};
    let key: [u8; 32] = Blake2s256::new().chain_update(b"mac1----").chain_update(server.0).finalize().into();
    let mut datagram = layout::hello_buffer(sender, noise.len());
    let end = datagram.len();
    datagram[layout::HELLO_HEADER..end - 2 * layout::MAC_LEN].copy_from_slice(noise);
    let mut mac = <Blake2sMac<U16> as KeyInit>::new_from_slice(&key).expect("a 32-byte key");
    Update::update(&mut mac, &datagram[..end - 2 * layout::MAC_LEN]);
    let mac1: [u8; layout::MAC_LEN] = mac.finalize_fixed().into();
    datagram[end - 2 * layout::MAC_LEN..end - layout::MAC_LEN].copy_from_slice(&mac1);
    datagram
}

#[test]
fn under_load_a_hello_too_short_to_be_real_gets_no_cookie_larger_than_itself() {
    // Given a server under load (one handshake a second, spent),
    let mut h = Harness::new(12);
    h.server_config.handshakes_per_second = 1;
    let store = h.crash_server();
    h.start_server(store);
    let key = h.server_config.key.public();
    h.inject("192.0.2.66:1".parse().unwrap(), SERVER, hello_around(&key, 1, &[0; 96]));
    // when, in the same second, Hellos with a valid mac1 (anyone can make
    // one) but a Noise message shorter than any real one come from a
    // spoofed victim,
    let victim: SocketAddr = "198.51.100.77:4000".parse().unwrap();
    let since = h.server_sent.len();
    for len in [1, 20, 95] {
        h.inject(victim, SERVER, hello_around(&key, 2 + len as u64, &vec![0; len]));
    }
    h.run_for(Duration::from_millis(100));
    // then nothing goes back to it (found by the server_machine fuzz target:
    // a 43-byte Hello got a 66-byte cookie reply),
    assert_eq!(sent_to(&h, since, victim), (0, 0));
    // while one of a real one's length gets a cookie reply smaller than it.
    let real = hello_around(&key, 99, &[0; 96]);
    h.inject(victim, SERVER, real.clone());
    h.run_for(Duration::from_millis(100));
    let (count, bytes) = sent_to(&h, since, victim);
    assert_eq!(count, 1);
    assert!(bytes < real.len(), "{bytes} bytes for {}", real.len());
}

#[test]
fn under_a_flood_of_handshakes_the_server_asks_for_cookies_and_clients_still_log_in() {
    // Given a server that counts more than 3 handshakes a second as load,
    let mut h = Harness::new(7);
    h.server_config.handshakes_per_second = 3;
    let store = h.crash_server();
    h.start_server(store);
    // when twelve clients log in at once,
    let clients: Vec<usize> = (0..12).map(|i| h.add_public_client(h.config(&format!("user{i}")))).collect();
    h.run_for(secs(10));
    // then the server sent cookies instead of spending a DH on some of
    // their first Hellos, and every client, echoing its cookie, is in.
    assert!(h.server.stats().cookies_sent > 0);
    assert!(clients.iter().all(|&i| h.clients[i].client.is_logged_in()));
    // And a Hello from a spoofed source under load gets only a cookie reply,
    // smaller than it, and costs no handshake.
    let flood: Vec<Vec<u8>> = (0..5u64)
        .map(|n| {
            let identity = StaticKey::derive(n.into(), "flood");
            HelloSent::start(&identity, &h.server_config.key.public(), &login("flood"), None, n.into()).1
        })
        .collect();
    let victim: SocketAddr = "192.0.2.77:7777".parse().unwrap();
    let (handshakes, since) = (h.server.stats().handshakes, h.server_sent.len());
    for hello in &flood {
        h.inject(victim, SERVER, hello.clone());
    }
    h.run_for(Duration::from_millis(10));
    let answers: Vec<&[u8]> =
        h.server_sent[since..].iter().filter(|p| p.dst == victim).map(|p| &p.payload[..]).collect();
    let cookies = answers.iter().filter(|a| a[0] == layout::tag::COOKIE_REPLY).count();
    assert!(cookies >= 2, "{answers:?}");
    assert!(answers.iter().all(|a| a.len() < flood[0].len()));
    assert!(h.server.stats().handshakes - handshakes <= 3);
    assert!(Hello::parse(&flood[0]).is_some());
}

#[test]
fn a_full_server_refuses_newcomers_without_evicting_anyone_and_they_get_in_later() {
    // Given a server for two users online at once, with two online,
    let mut h = Harness::new(8);
    h.server_config.max_users = 2;
    let store = h.crash_server();
    h.start_server(store);
    let alice = h.add_public_client(h.config("alice"));
    let bob = h.add_public_client(h.config("bob"));
    h.run_for(secs(2));
    // when a third logs in,
    let carol = h.add_public_client(h.config("carol"));
    h.run_for(secs(3));
    // then she is refused (the handshake's answer says the server is
    // full: she never thinks she is logged in), and alice and bob stay
    // online;
    let online: Vec<&str> = h.server.online_users().collect();
    assert_eq!(online, ["alice", "bob"]);
    assert!(h.server.stats().rate_limited >= 1);
    assert!(h.find(carol, |e| matches!(e, ClientEvent::LoggedIn { .. }).then_some(())).is_empty());
    assert!(h.clients[alice].client.is_logged_in() && h.clients[bob].client.is_logged_in());
    // and once bob leaves, carol's next try gets her in.
    h.leave(bob, Duration::from_millis(100));
    h.run_for(secs(10));
    assert!(h.clients[carol].client.is_logged_in());
    assert_eq!(h.server.online_users().collect::<Vec<_>>(), ["alice", "carol"]);
}

#[test]
fn two_users_behind_one_address_each_get_their_own_frames_in_their_own_channel() {
    // Given bob and carol logged in from one address (a NAT that reused a
    // port, or a test that does it on purpose),
    let mut h = Harness::new(9);
    let shared: SocketAddr = "192.0.2.50:5000".parse().unwrap();
    let (bob, mut bob_end) = h.hand_login(shared, "bob");
    let (_, mut carol_end) = h.hand_login(shared, "carol");
    // when bob asks for a session with carol,
    let since = h.server_sent.len();
    let connect = Frame::Connect { token: bob, request: 7, peer: "carol".into(), profile: Default::default() };
    h.inject(shared, SERVER, bob_end.seal(&connect.encode()).unwrap());
    h.run_for(Duration::from_millis(10));
    // then each offer opens only in its member's channel, naming the other.
    let mut offers = Vec::new();
    for p in h.server_sent[since..].iter().filter(|p| p.dst == shared) {
        match (bob_end.open(&p.payload), carol_end.open(&p.payload)) {
            (Some(f), None) => offers.push(("bob", Frame::decode(&f).unwrap())),
            (None, Some(f)) => offers.push(("carol", Frame::decode(&f).unwrap())),
            other => panic!("a datagram for both or neither: {other:?}"),
        }
    }
    let peers: Vec<(&str, String)> = offers
        .iter()
        .filter_map(|(who, f)| match f {
            Frame::Offer { peer, .. } => Some((*who, peer.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(peers, [("bob", "carol".to_owned()), ("carol", "bob".to_owned())], "{offers:?}");
}

#[test]
fn the_directory_gives_each_name_its_bound_key_online_offline_and_after_a_restart() {
    // Given bob, online and then gone, and a server restarted over its store,
    let mut h = Harness::new(10);
    let alice = h.add_public_client(h.config("alice"));
    let bob = h.add_public_client(h.config("bob"));
    h.run_for(secs(2));
    let bob_key = h.config("bob").identity.public();
    let look = |h: &mut Harness, user: &str| {
        let now = h.now;
        h.clients[alice].client.lookup(now, user).unwrap();
        h.run_for(Duration::from_millis(200));
        h.find(alice, |e| match e {
            ClientEvent::LookupResult { user: u, online, key } if u == user => Some((*online, *key)),
            _ => None,
        })
        .last()
        .map(|(_, answer)| *answer)
    };
    // when alice looks bob up while he is online, after he left, and after
    // a restart (the server then asks its store),
    let online = look(&mut h, "bob");
    h.leave(bob, Duration::from_millis(100));
    let offline = look(&mut h, "bob");
    let store = h.crash_server();
    h.start_server(store);
    h.run_for(secs(30));
    let restarted = look(&mut h, "bob");
    // then the directory always gives bob's own key, and none for a name
    // nobody ever logged in as.
    assert_eq!(online, Some((true, Some(bob_key))));
    assert_eq!(offline, Some((false, Some(bob_key))));
    assert_eq!(restarted, Some((false, Some(bob_key))));
    assert_eq!(look(&mut h, "nobody"), Some((false, None)));
}
