//! Property tests for the wire codec, frame authentication, the
//! client–server channel and both machines' robustness against hostile
//! input (DESIGN §2, "Hostile input never panics"; DESIGN §3, "Wire";
//! DESIGN §7, the channel).
//!
//! - (1) Every [`Frame`] variant round-trips through `encode`/`decode` and stays
//!   within its tag's [`Frame::max_size`], and `encode_into_slice` writes the
//!   same bytes or refuses a short buffer; worst-case instances of every
//!   variant (every field at its documented limit) fit too. Sealed frames
//!   verify for their sender's role only.
//! - (1b) The channel's datagrams (tags `0x70..=0x75`, no frame's) parse exactly
//!   as their layouts say; a real Noise IK handshake carries the Login and
//!   the LoginOk, its MACs check (by an independent implementation), and the
//!   channel it opens seals frames both ways that open once, in any order,
//!   and never reflected, replayed or altered. Answers before a proof are
//!   smaller than their requests.
//! - (2) Arbitrary bytes, frame-, channel- and STUN-shaped bytes and mutations
//!   of valid frames and channel datagrams never panic the decoders, a
//!   [`Client`] or a [`Server`]; every datagram either machine sends is at
//!   most [`MAX_DATAGRAM`] bytes and parses, and a Hello, Welcome or sealed
//!   frame shows the frame inside in its `plaintext`, which is what it
//!   really carries; undecodable input is counted exactly once; signaling
//!   frames outside a channel are believed by neither machine.
//! - (2b) A server whose clients log in with real handshakes (and cookies under
//!   load) is fed frames sealed in their own channels, in others' and in
//!   none, forged and replayed sealed datagrams and floods, each refusal
//!   counted exactly; it forgets idle users, and what concerns a session is
//!   sealed only for its members.
//! - (3) A logged-in client whose server the test plays (holding the server's
//!   end of the channel) is fed garbage, sealed, plain, mutated and
//!   replayed server frames, offers whose session keys the test knows (so
//!   authenticated peer traffic reaches deep into the session machine) and
//!   peer frames; it never panics and counts what it drops.
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

use punchline_core::auth::{self, Role};
use punchline_core::client::{Client, ClientConfig, ClientEvent, ClientStats, SendError};
use punchline_core::messaging::{MemoryStore, MessageStore};
use punchline_core::nat::{FilteringBehavior, MappingBehavior, NatProfile, PortAllocation, Strategy as NatStrategy};
use punchline_core::secure::{ChannelEnd, HelloReceived, HelloSent, PublicKey, StaticKey};
use punchline_core::server::{valid_user_name, Server, ServerConfig, ServerEvent, ServerStats, USER_NAME_PUNCTUATION};
use punchline_core::wire::channel::{self as layout, Hello, SEALED_OVERHEAD};
use punchline_core::wire::frame::{
    AnswerFrom, CloseReason, ErrorCode, Frame, FrameError, MessageId, SessionBody, SessionId, SessionKey,
    StreamMessage, TextRejection, TextStatus, FIRST_TAG, MAC_LEN, MAX_APP_PAYLOAD, MAX_CANDIDATES, MAX_RELAY_PAYLOAD,
    MAX_TEXT, MAX_USER_NAME, VERSION,
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
const ASSIGNED_TAGS: [u8; 28] = [
    0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x4b, 0x4c, 0x4d, 0x4e, 0x4f, 0x50, 0x51, 0x60, 0x61,
    0x62, 0x63, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58,
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

/// True when the first byte of `payload` is one of the channel's (a Hello,
/// a Welcome, a sealed frame...): its own fixed layout, not a [`Frame`].
fn is_channel(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| layout::is_channel_tag(*b))
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

/// True when no decoder accepts `payload` (for a channel datagram: its
/// layout does not parse), so a machine must drop it before looking at its
/// content.
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

/// What a client's counters must be after `payload`, from one of its
/// server's addresses or not, when it must drop it before reading its
/// content; `None` when it reads it. An [`undecodable`] datagram is one
/// more malformed one, but for the channel's datagrams, which the client
/// tells apart by their first byte before parsing them: a broken sealed
/// frame does not open (unauthenticated, whoever sent it); and a handshake
/// datagram is unexpected, whatever its layout: from anyone but the server,
/// one only a server receives (a Hello, a key request), and from the server
/// a Welcome, cookie reply or key reply that answers no Hello or key
/// request of the client's (hostile bytes never do: they would have to
/// guess a 64-bit index or nonce).
fn client_after_unread(before: &ClientStats, payload: &[u8], _from_server: bool) -> Option<ClientStats> {
    let mut after = before.clone();
    let handshake = is_channel(payload) && payload[0] != layout::tag::SEALED;
    if payload.len() <= MAX_DATAGRAM && handshake {
        after.unexpected += 1;
        return Some(after);
    }
    if !undecodable(payload) {
        return None;
    }
    if payload.len() > MAX_DATAGRAM || !is_channel(payload) {
        after.malformed += 1;
    } else if payload[0] == layout::tag::SEALED {
        after.unauthenticated += 1;
    }
    Some(after)
}

/// True when the server must drop `payload` before reading its content:
/// it is [`undecodable`], or a channel datagram only a client receives (a
/// Welcome, a cookie reply, a key reply).
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

/// Every datagram a machine sends must fit [`MAX_DATAGRAM`] and parse: a
/// frame or STUN message decodes, and carries no plaintext; a channel
/// datagram parses by its layout, and a Hello, Welcome or sealed frame shows
/// the signaling frame it carries in [`Transmit::plaintext`], which decodes
/// and accounts for the datagram's length exactly.
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
            assert_eq!(t.payload.len(), plain.len() + overhead, "{who}'s {tag:#04x} is not its plaintext's size");
            let frame = Frame::decode(plain);
            let Ok(frame) = frame else { panic!("{who} sealed an undecodable frame ({frame:?}): {:02x?}", &plain[..]) };
            assert!(!frame.is_authenticated() && frame != Frame::Opener, "{who} sent a peer frame in the channel");
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
        wire::Kind::Punchline => {
            let frame = Frame::decode(&t.payload);
            assert!(frame.is_ok(), "{who} sent an undecodable frame ({frame:?}): {:02x?}", &t.payload[..]);
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
