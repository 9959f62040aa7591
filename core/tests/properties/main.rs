//! Property tests for the wire codec, frame authentication and both machines'
//! robustness against hostile input (DESIGN §2, "Hostile input never panics";
//! DESIGN §3, "Wire").
//!
//! 1. Every [`Frame`] variant round-trips through `encode`/`decode` and stays
//!    within its tag's [`Frame::max_size`], and `encode_into_slice` writes the
//!    same bytes or refuses a short buffer; worst-case instances of every
//!    variant (every field at its documented limit) fit too. Sealed frames
//!    verify for their sender's role only.
//! 2. Arbitrary bytes, frame- and STUN-shaped bytes and mutations of valid
//!    frames never panic the decoders, a [`Client`] or a [`Server`]; every
//!    datagram either machine sends is at most [`MAX_DATAGRAM`] bytes and
//!    decodes; undecodable input is counted exactly once.
//! 3. A logged-in client fed garbage and forged or mutated frames *from the
//!    server's address* (including offers whose session keys the test knows,
//!    so authenticated peer traffic reaches deep into the session machine)
//!    never panics and counts what it drops.
//! 4. The decoder's rejections carry exact error values.
//!
//! Bugs these tests found are shown by focused reproducers near the end
//! ("Bugs found"); they fail until the core is fixed.
//!
//! Files: `strategies.rs` and `hostile.rs` build frames and hostile
//! datagrams, `drivers.rs` runs a client or a server on them; `codec.rs`
//! holds 1, 2 (decoders) and 4, `fresh_machines.rs` 2 (machines),
//! `server_machine.rs` 2b, `client_machine.rs` 3 and `bugs.rs` the
//! reproducers. Shared fixtures stay here.
//!
//! The core never reads the clock: each test takes one `Instant::now()` and
//! moves time forward by adding durations.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::Union;
use proptest::test_runner::TestRunner;

use punchline_core::auth::{self, Role};
use punchline_core::client::{Client, ClientConfig, ClientEvent, ClientStats, SendError};
use punchline_core::messaging::{MemoryStore, MessageStore};
use punchline_core::nat::{FilteringBehavior, MappingBehavior, NatProfile, PortAllocation, Strategy as NatStrategy};
use punchline_core::server::{valid_user_name, Server, ServerConfig, ServerStats, USER_NAME_PUNCTUATION};
use punchline_core::wire::frame::{
    AnswerFrom, CloseReason, ErrorCode, Frame, FrameError, MessageId, SessionBody, SessionId, SessionKey,
    StreamMessage, TextRejection, TextStatus, FIRST_TAG, MAC_LEN, MAX_APP_PAYLOAD, MAX_CANDIDATES, MAX_RELAY_PAYLOAD,
    MAX_TEXT, MAX_USER_NAME, VERSION,
};
use punchline_core::wire::{self, stun, MAX_DATAGRAM};
use punchline_core::{Machine, SocketId, Transmit};

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

/// True when no decoder accepts `payload`, so a machine must drop it as
/// malformed before looking at its content.
fn undecodable(payload: &[u8]) -> bool {
    if payload.len() > MAX_DATAGRAM {
        return true;
    }
    match wire::classify(payload) {
        wire::Kind::Unknown => true,
        wire::Kind::Stun => stun::Message::decode(payload).is_err(),
        wire::Kind::Punchline => Frame::decode(payload).is_err(),
    }
}

/// Every datagram a machine sends must fit [`MAX_DATAGRAM`] and decode.
fn assert_well_formed(who: &str, t: &Transmit) {
    assert!(
        t.payload.len() <= MAX_DATAGRAM,
        "{who} sent {} bytes to {} (limit {MAX_DATAGRAM}): {:02x?}",
        t.payload.len(),
        t.destination,
        &t.payload[..t.payload.len().min(16)]
    );
    match wire::classify(&t.payload) {
        wire::Kind::Punchline => {
            let frame = Frame::decode(&t.payload);
            assert!(frame.is_ok(), "{who} sent an undecodable frame ({frame:?}): {:02x?}", &t.payload[..]);
        }
        wire::Kind::Stun => {
            let m = stun::Message::decode(&t.payload);
            assert!(m.is_ok(), "{who} sent an undecodable STUN message ({m:?}): {:02x?}", &t.payload[..]);
        }
        wire::Kind::Unknown => {
            panic!("{who} sent a datagram that is neither STUN nor a frame: {:02x?}", &t.payload[..])
        }
    }
}
