//! Property tests for the wire codec, the client–server channel, the
//! sessions' end-to-end encryption and both machines' robustness against
//! hostile input (DESIGN §2, "Hostile input never panics"; DESIGN §3,
//! "Wire"; DESIGN §7, the channels).
//!
//! - (1) Every [`Frame`] variant round-trips through `encode`/`decode` and stays
//!   within its tag's [`Frame::max_size`], and `encode_into_slice` writes the
//!   same bytes or refuses a short buffer; worst-case instances of every
//!   variant (every field at its documented limit) fit too. A frame is its
//!   tag, the version and its fields, peer frames too (no MAC slot). A peer
//!   frame sealed in a session's keys ([`SessionCipher`]) opens at the other
//!   end once, not reflected, not replayed, not altered, not in another
//!   handshake's keys; the session handshake completes only between the keys
//!   and for the session it names; keys move on and datagrams still open.
//!   Texts sealed to a recipient open for it only, and say who sealed them.
//! - (1b) The channel's datagrams (tags `0x70..=0x75`) and the sessions'
//!   (`0x76..=0x78`), no frame's, parse exactly as their layouts say; a real
//!   Noise IK handshake carries the Login and the LoginOk, its MACs check
//!   (by an independent implementation), and the channel it opens seals
//!   frames both ways that open once, in any order, and never reflected,
//!   replayed or altered. Answers before a proof are smaller than their
//!   requests.
//! - (2) Arbitrary bytes, frame-, channel-, peer- and STUN-shaped bytes and
//!   mutations of valid frames, channel and peer datagrams never panic the
//!   decoders, a [`Client`] or a [`Server`]; every datagram either machine
//!   sends is at most [`MAX_DATAGRAM`] bytes and parses, a Hello, Welcome or
//!   sealed frame shows the frame inside in its `plaintext` (a relay frame
//!   with the peer frame its sealed payload carries), and a peer frame
//!   travels only sealed end to end; undecodable input is counted exactly
//!   once; signaling and peer frames in the clear are believed by neither
//!   machine.
//! - (2b) A server whose clients log in with real handshakes (and cookies under
//!   load) is fed frames sealed in their own channels, in others' and in
//!   none, forged and replayed sealed datagrams and floods, each refusal
//!   counted exactly; it relays only the sessions' own datagrams, each relay
//!   counted once; it forgets idle users, and what concerns a session is
//!   sealed only for its members, an offer naming the other member's bound
//!   key.
//! - (3) A logged-in client whose server and peers the test plays (holding the
//!   server's end of the channel, and each session's end after a real
//!   handshake through the relay) is fed garbage, sealed, plain, mutated and
//!   replayed server frames, offers naming keys the test holds (so sealed
//!   peer traffic reaches deep into the session machine), genuine, tampered
//!   and foreign handshakes, and peer datagrams sealed in the session's keys,
//!   in another handshake's, reflected, replayed or in the clear; it never
//!   panics, never acts on what does not open, counts what it drops, and
//!   seals what it sends to the keys it pinned.
//! - (4) The decoder's rejections carry exact error values.
//!
//! Bugs these tests found are shown by focused reproducers near the end
//! ("Bugs found"), kept as regression tests once the core is fixed.
//!
//! Files: `strategies.rs` and `hostile.rs` build frames and hostile
//! datagrams, `drivers.rs` runs a client or a server on them; `codec.rs`
//! holds 1, 1b, 2 (decoders) and 4, `fresh_machines.rs` 2 (machines),
//! `server_machine.rs` 2b, `client_machine.rs` 3 and `bugs.rs` the
//! reproducers. Shared fixtures stay here.
//!
//! The core never reads the clock: each test takes one `Instant::now()` and
//! moves time forward by adding durations.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use blake2::digest::consts::U16;
use blake2::digest::{FixedOutput, KeyInit, Update};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::XChaCha20Poly1305;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use proptest::test_runner::TestRunner;

use punchline_core::client::{Client, ClientConfig, ClientEvent, ClientStats, ConnectFailure, SendError};
use punchline_core::messaging::{MemoryStore, MessageStore, TextFailure};
use punchline_core::nat::{FilteringBehavior, MappingBehavior, NatProfile, PortAllocation, Strategy as NatStrategy};
use punchline_core::secure::{
    open_text, seal_text, ChannelEnd, HelloReceived, HelloSent, OpenError, PeerHelloReceived, PeerHelloSent, PublicKey,
    SessionCipher, StaticKey,
};
use punchline_core::server::{valid_user_name, Server, ServerConfig, ServerEvent, ServerStats, USER_NAME_PUNCTUATION};
use punchline_core::wire::channel::{self as layout, Hello, SEALED_OVERHEAD};
use punchline_core::wire::frame::{
    AnswerFrom, CloseReason, ErrorCode, Frame, FrameError, MessageId, SessionBody, SessionId, StreamMessage,
    TextRejection, TextStatus, FIRST_TAG, MAX_APP_PAYLOAD, MAX_CANDIDATES, MAX_PEER_FRAME, MAX_RELAY_PAYLOAD,
    MAX_SEALED_TEXT, MAX_TEXT, MAX_USER_NAME, VERSION,
};
use punchline_core::wire::{self, stun, MAX_DATAGRAM};
use punchline_core::{Machine, Seed, SocketId, Transmit};

// The sections below, one file each; the shared ones are brought in whole.
mod bugs;
mod client_machine;
mod codec;
mod drivers;
mod fresh_machines;
mod hostile;
mod server_machine;
mod strategies;

use client_machine::logged_in_client;
use drivers::*;
use fresh_machines::{advance, socket_id, source, stats_sum};
use hostile::*;
use strategies::*;

// ---------------------------------------------------------------------------
// Shared fixtures
// ---------------------------------------------------------------------------

/// Every assigned frame tag, in declaration order.
const ASSIGNED_TAGS: [u8; 29] = [
    0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f, 0x50, 0x51, 0x60, 0x61,
    0x62, 0x63, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59,
];

/// Names the stateful tests log in with, so connects find their peers.
const NAMES: [&str; 3] = ["alice", "bob", "carol"];

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address parses")
}

fn server_primary() -> SocketAddr {
    addr("203.0.113.10:3478")
}

fn server_alt() -> SocketAddr {
    addr("203.0.113.11:3479")
}

/// Every address a server with [`server_primary`] and [`server_alt`] listens
/// on, in [`Server::sockets`] order.
fn server_addrs() -> [SocketAddr; 4] {
    [server_primary(), server_alt(), addr("203.0.113.10:3479"), addr("203.0.113.11:3478")]
}

/// Client-side addresses the stateful tests send from (v4 and v6).
fn client_pool() -> [SocketAddr; 5] {
    [
        addr("198.51.100.1:4000"),
        addr("198.51.100.2:4000"),
        addr("198.51.100.1:4001"),
        addr("[2001:db8::1]:4000"),
        addr("192.0.2.77:9"),
    ]
}

fn config(cases: u32) -> ProptestConfig {
    // No regression files: this test owns only this source file.
    ProptestConfig { cases, failure_persistence: None, max_shrink_iters: 4096, ..ProptestConfig::default() }
}

/// What Noise IK adds to the payload of its first message (`e`, the
/// encrypted `s` with its tag, the payload's tag) and of its second (`e`
/// and the payload's tag): the Noise specification's, not the core's
/// constants.
const IK_MESSAGE_1_OVERHEAD: usize = 32 + 32 + 16 + 16;
const IK_MESSAGE_2_OVERHEAD: usize = 32 + 16;
/// What Noise X adds to a sealed text (`e`, the encrypted `s` with its
/// tag, the text's tag).
const X_OVERHEAD: usize = 32 + 32 + 16 + 16;
/// What a `PeerSealed` datagram adds to its frame: tag, version, session,
/// counter, and the AEAD tag (the layout of `wire::channel`).
const PEER_SEALED_OVERHEAD: usize = 1 + 1 + 8 + 8 + 16;

/// The server's static key in these tests: the one [`ServerConfig::new`]
/// derives (once: it costs a scalar multiplication).
fn server_key() -> StaticKey {
    static KEY: std::sync::OnceLock<StaticKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| StaticKey::derive(Seed::from(0), "server")).clone()
}

/// A key of the MACs toward `server`: BLAKE2s-256 of `label` and its
/// public key (WireGuard's, which the channel follows: an independent
/// implementation of DESIGN §7, not the core's).
fn mac_key(label: &[u8], server: &PublicKey) -> [u8; 32] {
    let mut hash = Blake2s256::new();
    Digest::update(&mut hash, label);
    Digest::update(&mut hash, server.0);
    hash.finalize().into()
}

/// A keyed BLAKE2s-128.
fn keyed_mac(key: &[u8], covered: &[u8]) -> [u8; layout::MAC_LEN] {
    let mut m = <Blake2sMac<U16> as KeyInit>::new_from_slice(key).expect("a key of at most 32 bytes");
    Update::update(&mut m, covered);
    m.finalize_fixed().into()
}

/// True when `hello`'s mac1 is the one `server`'s key gives.
fn mac1_valid(server: &PublicKey, hello: &Hello<'_>) -> bool {
    keyed_mac(&mac_key(b"mac1----", server), hello.before_mac1) == hello.mac1
}

/// The cookie in `reply`, a cookie reply from `server` to the Hello whose
/// mac1 was `mac1`.
fn open_cookie(server: &PublicKey, reply: &[u8], mac1: &[u8; layout::MAC_LEN]) -> Option<[u8; layout::MAC_LEN]> {
    let (_, nonce, sealed) = layout::parse_cookie_reply(reply)?;
    let cipher = XChaCha20Poly1305::new(&mac_key(b"cookie--", server).into());
    cipher.decrypt(&nonce.into(), Payload { msg: &sealed, aad: mac1 }).ok()?.try_into().ok()
}

/// The static key of each user the tests play (the pool's [`NAMES`], and
/// `mallory`, an impostor, and `eve`, an attacker), as clients derive
/// theirs by default ([`ClientConfig::new`]): derived once each, since each
/// costs a scalar multiplication.
fn user_key(name: &str) -> &'static StaticKey {
    static KEYS: std::sync::OnceLock<Vec<(&'static str, StaticKey)>> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        NAMES.iter().chain(&["mallory", "eve"]).map(|n| (*n, StaticKey::derive(Seed::from(0), n))).collect()
    });
    &keys.iter().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("{name} is not a test user")).1
}

/// Both ends of a session between `initiator` and `responder` (the
/// initiator's end first), after a real handshake at `now`.
fn handshake<T: punchline_core::secure::Moment>(
    initiator: &StaticKey,
    responder: &StaticKey,
    session: SessionId,
    now: T,
    seed: u64,
) -> (SessionCipher<T>, SessionCipher<T>) {
    let (mut hello, datagram) = PeerHelloSent::start(initiator, &responder.public(), session, Seed::from(seed));
    let (welcome, responder_end) =
        PeerHelloReceived::answer(responder, &initiator.public(), session, &datagram, now, Seed::from(seed + 1))
            .expect("a hello to our key, from the key we expect, for our session");
    let initiator_end = hello.finish(&welcome, now).expect("the welcome to our hello");
    (initiator_end, responder_end)
}

/// The session the shared ends of [`with_shared_session`] belong to.
const SHARED_SESSION: SessionId = SessionId(0x5e55_1011);

/// Runs `f` with this thread's ends of one session between alice and bob
/// (alice's end first), and an end of the same session from another
/// handshake (mallory's with eve): made once per thread, as properties seal
/// thousands of datagrams and a handshake costs some ten X25519 operations.
/// Counters only grow across cases, so each datagram sealed is new to the
/// other end.
fn with_shared_session<R>(
    f: impl FnOnce(&mut SessionCipher<Duration>, &mut SessionCipher<Duration>, &mut SessionCipher<Duration>) -> R,
) -> R {
    type Ends = (SessionCipher<Duration>, SessionCipher<Duration>, SessionCipher<Duration>);
    thread_local! {
        static ENDS: std::cell::RefCell<Option<Ends>> = const { std::cell::RefCell::new(None) };
    }
    ENDS.with_borrow_mut(|ends| {
        let (alice, bob, other) = ends.get_or_insert_with(|| {
            let (alice, bob) = handshake(user_key("alice"), user_key("bob"), SHARED_SESSION, Duration::ZERO, 1);
            let (other, _) = handshake(user_key("mallory"), user_key("eve"), SHARED_SESSION, Duration::ZERO, 3);
            (alice, bob, other)
        });
        f(alice, bob, other)
    })
}

/// True when the first byte of `payload` is one of the channel's (a Hello,
/// a Welcome, a sealed frame...): its own fixed layout, not a [`Frame`].
fn is_channel(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| layout::is_channel_tag(*b))
}

/// True when the first byte of `payload` is one of a session's end-to-end
/// datagrams (`PeerSealed`, `PeerHello`, `PeerWelcome`): a fixed layout
/// too, which only the members read (the server carries them inside relay
/// frames).
fn is_peer_datagram(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| layout::is_peer_tag(*b))
}

/// True when the layout of the channel datagram `payload` (see
/// [`is_channel`]) parses.
fn channel_layout_ok(payload: &[u8]) -> bool {
    match payload[0] {
        layout::tag::HELLO => Hello::parse(payload).is_some(),
        layout::tag::WELCOME => layout::parse_welcome(payload).is_some(),
        layout::tag::COOKIE_REPLY => layout::parse_cookie_reply(payload).is_some(),
        layout::tag::SEALED => layout::parse_sealed(payload).is_some(),
        layout::tag::KEY_REQUEST => layout::parse_key_request(payload).is_some(),
        layout::tag::KEY_REPLY => layout::parse_key_reply(payload).is_some(),
        other => unreachable!("{other:#04x} is not a channel tag"),
    }
}

/// True when no decoder of the machines accepts `payload` as a frame, a
/// STUN message or a channel datagram (for the latter: its layout does not
/// parse). Peer datagrams are no frames: the server drops them so; the
/// client reads them by their own layout (see [`client_after_unread`]).
fn undecodable(payload: &[u8]) -> bool {
    if payload.len() > MAX_DATAGRAM {
        return true;
    }
    match wire::classify(payload) {
        wire::Kind::Unknown => true,
        wire::Kind::Stun => stun::Message::decode(payload).is_err(),
        wire::Kind::Punchline if is_channel(payload) => !channel_layout_ok(payload),
        wire::Kind::Punchline => Frame::decode(payload).is_err(),
    }
}

/// How a client holds the session a `PeerSealed` datagram names, as far
/// as a test knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PeerView {
    /// It has no such session.
    Absent,
    /// The session's keys exist: what does not open is refused.
    Keyed,
    /// The session's handshake is under way, `held` datagrams wait for its
    /// keys: up to [`MAX_EARLY`] are held (not counted yet), more refused.
    Unkeyed { held: usize },
}

/// Most sealed datagrams a client holds for a session until its keys
/// exist (DESIGN §7: one burst of probes and stream messages).
const MAX_EARLY: usize = 8;

/// What a client's counters must be after `payload` arrived directly (not
/// relayed), when it must drop it without acting on it: `payload` does not
/// authenticate (it is garbage, forged, replayed or reflected), and `view`
/// says how the client holds each session. `None` when it reads it (a frame
/// or STUN message that decodes, a well-formed channel datagram).
///
/// An [`undecodable`] datagram is one more malformed one, but for the
/// channel's datagrams, which the client tells apart by their first byte
/// before parsing them: a broken sealed frame does not open
/// (unauthenticated, whoever sent it); and a handshake datagram is
/// unexpected, whatever its layout: from anyone but the server, one only a
/// server receives (a Hello, a key request), and from the server a Welcome,
/// cookie reply or key reply that answers no Hello or key request of the
/// client's (hostile bytes never do: they would have to guess a 64-bit
/// index or nonce). A session's handshake outside the relay is
/// unauthenticated; a `PeerSealed` datagram without its header is
/// malformed, one for a session the client does not have or whose keys
/// exist is unauthenticated, and one for a session still in its handshake
/// is held (changing no counter) while there is room.
fn client_after_unread(
    before: &ClientStats,
    payload: &[u8],
    view: impl Fn(SessionId) -> PeerView,
) -> Option<ClientStats> {
    let mut after = before.clone();
    if payload.len() > MAX_DATAGRAM {
        after.malformed += 1;
        return Some(after);
    }
    if is_channel(payload) && payload[0] != layout::tag::SEALED {
        after.unexpected += 1;
        return Some(after);
    }
    if is_peer_datagram(payload) {
        if payload[0] != layout::tag::PEER_SEALED {
            after.unauthenticated += 1;
            return Some(after);
        }
        let Some(session) = layout::peer_session(payload) else {
            after.malformed += 1;
            return Some(after);
        };
        match view(SessionId(session)) {
            PeerView::Absent | PeerView::Keyed => after.unauthenticated += 1,
            PeerView::Unkeyed { held } if held < MAX_EARLY => {}
            PeerView::Unkeyed { .. } => after.unauthenticated += 1,
        }
        return Some(after);
    }
    if !undecodable(payload) {
        return None;
    }
    if !is_channel(payload) {
        after.malformed += 1;
    } else {
        // A sealed frame whose layout does not parse.
        after.unauthenticated += 1;
    }
    Some(after)
}

/// True when the server must drop `payload` before reading its content:
/// it is [`undecodable`] (a peer datagram outside a relay frame included),
/// or a channel datagram only a client receives (a Welcome, a cookie reply,
/// a key reply).
fn server_drops_unread(payload: &[u8]) -> bool {
    let for_clients = [layout::tag::WELCOME, layout::tag::COOKIE_REPLY, layout::tag::KEY_REPLY];
    undecodable(payload) || (payload.len() <= MAX_DATAGRAM && payload.first().is_some_and(|b| for_clients.contains(b)))
}

/// The server's counters after it dropped `payload` unread (see
/// [`server_drops_unread`]): one more malformed datagram, with everything
/// else unchanged; but what it limits per source before reading it (STUN, a
/// Hello, a key request) may be refused by the limit instead (or, for STUN,
/// answered).
fn assert_server_dropped(before: &ServerStats, after: &ServerStats, payload: &[u8]) -> Result<(), TestCaseError> {
    let limited_first = payload.len() <= MAX_DATAGRAM
        && (wire::classify(payload) == wire::Kind::Stun
            || matches!(payload.first(), Some(&layout::tag::HELLO | &layout::tag::KEY_REQUEST)));
    if limited_first {
        let absorbed = ServerStats {
            malformed: after.malformed,
            rate_limited: after.rate_limited,
            stun_answered: after.stun_answered,
            ..before.clone()
        };
        prop_assert_eq!(after, &absorbed);
        prop_assert_eq!(stats_sum(after), stats_sum(before) + 1);
    } else {
        prop_assert_eq!(after, &ServerStats { malformed: before.malformed + 1, ..before.clone() });
    }
    Ok(())
}

/// The encoded length of a `Relay` frame with `token` and `session`
/// carrying `payload_len` bytes.
fn relay_len(token: u64, session: SessionId, payload_len: usize) -> usize {
    Frame::Relay { token, session, payload: vec![0; payload_len] }.encode().len()
}

/// Every datagram a machine sends must fit [`MAX_DATAGRAM`] and parse:
///
/// - a frame or STUN message decodes, and carries no plaintext; a frame in
///   the clear is never a peer frame, which travels only sealed end to end;
/// - a channel datagram parses by its layout, and a Hello, Welcome or sealed
///   frame shows the signaling frame it carries in [`Transmit::plaintext`],
///   which decodes and accounts for the datagram's length exactly; but a
///   relay frame carrying a sealed peer frame, which its trace shows with
///   the peer frame inside (accounting for the sealing too); a relay frame
///   carries only a peer datagram of its own session;
/// - a peer datagram is a `PeerSealed` one (a session's handshake travels
///   only through the relay), which parses and shows the peer frame of its
///   own session it seals, accounting for its length exactly.
fn assert_well_formed(who: &str, t: &Transmit) {
    assert!(
        t.payload.len() <= MAX_DATAGRAM,
        "{who} sent {} bytes to {} (limit {MAX_DATAGRAM}): {:02x?}, carrying {:?}",
        t.payload.len(),
        t.destination,
        &t.payload[..t.payload.len().min(16)],
        t.plaintext.as_deref().map(Frame::decode),
    );
    match wire::classify(&t.payload) {
        wire::Kind::Punchline if is_channel(&t.payload) => {
            let tag = t.payload[0];
            assert!(channel_layout_ok(&t.payload), "{who} sent a broken channel datagram: {:02x?}", &t.payload[..]);
            let overhead = match tag {
                layout::tag::HELLO => layout::HELLO_HEADER + IK_MESSAGE_1_OVERHEAD + 2 * layout::MAC_LEN,
                layout::tag::WELCOME => layout::WELCOME_HEADER + IK_MESSAGE_2_OVERHEAD,
                layout::tag::SEALED => SEALED_OVERHEAD,
                _ => {
                    assert_eq!(t.plaintext, None, "{who} sent a {tag:#04x} that carries no frame, with plaintext");
                    return;
                }
            };
            let plain = t.plaintext.as_ref().unwrap_or_else(|| panic!("{who} sent a {tag:#04x} without its plaintext"));
            assert!(plain.len() <= MAX_DATAGRAM);
            let frame = Frame::decode(plain);
            let Ok(frame) = frame else { panic!("{who} sealed an undecodable frame ({frame:?}): {:02x?}", &plain[..]) };
            assert!(!frame.is_peer(), "{who} sent a peer frame in the channel");
            let len = match &frame {
                Frame::Relay { token, session, payload } if Frame::decode(payload).is_ok() => {
                    // Shown with the peer frame inside: the wire carries it
                    // sealed in the session's keys.
                    let inner = Frame::decode(payload).expect("checked by the guard");
                    assert!(inner.is_peer() && inner.session() == Some(*session), "{who} relays {inner:?}");
                    relay_len(*token, *session, payload.len() + PEER_SEALED_OVERHEAD) + overhead
                }
                Frame::Relay { session, payload, .. } | Frame::Relayed { session, payload } => {
                    assert_eq!(
                        layout::peer_session(payload),
                        Some(session.0),
                        "{who} relays no datagram of {session}: {:02x?}",
                        &payload[..payload.len().min(16)]
                    );
                    plain.len() + overhead
                }
                _ => plain.len() + overhead,
            };
            assert_eq!(t.payload.len(), len, "{who}'s {tag:#04x} is not its plaintext's size");
            match tag {
                layout::tag::HELLO => assert!(matches!(frame, Frame::Login { .. }), "a Hello carrying {frame:?}"),
                layout::tag::WELCOME => {
                    assert!(
                        matches!(frame, Frame::LoginOk { .. } | Frame::Error { .. }),
                        "a Welcome carrying {frame:?}"
                    )
                }
                _ => assert!(!matches!(frame, Frame::Login { .. }), "a Login sealed in a channel"),
            }
        }
        wire::Kind::Punchline if is_peer_datagram(&t.payload) => {
            assert_eq!(t.payload[0], layout::tag::PEER_SEALED, "{who} sent a session's handshake outside the relay");
            let sealed = layout::parse_sealed_as(layout::tag::PEER_SEALED, &t.payload);
            let Some((session, _, _)) = sealed else {
                panic!("{who} sent a broken PeerSealed: {:02x?}", &t.payload[..])
            };
            let plain = t.plaintext.as_ref().unwrap_or_else(|| panic!("{who} sent a PeerSealed without its plaintext"));
            let frame = Frame::decode(plain);
            let Ok(frame) = frame else { panic!("{who} sealed an undecodable peer frame ({frame:?})") };
            assert!(frame.is_peer(), "{who} sealed {frame:?} end to end");
            assert_eq!(frame.session(), Some(SessionId(session)), "{who} sealed a frame of another session");
            assert_eq!(
                t.payload.len(),
                plain.len() + PEER_SEALED_OVERHEAD,
                "{who}'s PeerSealed is not its frame's size"
            );
        }
        wire::Kind::Punchline => {
            let frame = Frame::decode(&t.payload);
            let Ok(frame) = frame else {
                panic!("{who} sent an undecodable frame ({frame:?}): {:02x?}", &t.payload[..]);
            };
            assert!(!frame.is_peer(), "{who} sent a peer frame in the clear: {frame:?}");
            assert_eq!(t.plaintext, None, "{who} sent a plain frame with a plaintext");
        }
        wire::Kind::Stun => {
            let m = stun::Message::decode(&t.payload);
            assert!(m.is_ok(), "{who} sent an undecodable STUN message ({m:?}): {:02x?}", &t.payload[..]);
            assert_eq!(t.plaintext, None, "{who} sent a STUN message with a plaintext");
        }
        wire::Kind::Unknown => {
            panic!("{who} sent a datagram that is neither STUN nor a frame: {:02x?}", &t.payload[..])
        }
    }
}

/// The frame a datagram a machine sent carries: the one sealed inside (its
/// plaintext), or the datagram itself.
fn sent_frame(t: &Transmit) -> Option<Frame> {
    Frame::decode(t.plaintext.as_deref().unwrap_or(&t.payload)).ok()
}
