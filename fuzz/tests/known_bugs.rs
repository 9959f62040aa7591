//! Reproducers of the bugs the fuzz targets found in the core and that are
//! not fixed yet (README.md, "Findings"). Each test fails until its bug is
//! fixed; then move it to the core's own tests and remove the skip it
//! names in `src/server.rs`. Not part of the root workspace, so CI does not
//! run them: `cargo test --test known_bugs` in this directory does.
//!
//! Both break the rule of issue 20 that the channel's layouts state
//! (`core/src/wire/channel.rs`): every answer a server sends before the
//! sender has proved it receives at its address is smaller than the
//! request it answers, so a spoofed request never aims more bytes at a
//! victim than the attacker sent.

use std::net::SocketAddr;
use std::time::Instant;

use blake2::digest::consts::U16;
use blake2::digest::{FixedOutput, KeyInit, Update};
use blake2::{Blake2s256, Blake2sMac, Digest};
use punchline_core::secure::PublicKey;
use punchline_core::server::{Server, ServerConfig};
use punchline_core::wire::channel::{self as layout, MAC_LEN};
use punchline_core::wire::frame::{tag, VERSION};
use punchline_core::{Machine, SocketId};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("an address")
}

/// Every datagram `server` queued, as (destination, length).
fn sent(server: &mut Server) -> Vec<(SocketAddr, usize)> {
    std::iter::from_fn(|| server.poll_transmit()).map(|t| (t.destination, t.payload.len())).collect()
}

/// A Hello from `sender` around any `noise`, with the mac1 anyone who
/// knows the server's public key computes (WireGuard's: BLAKE2s-128 keyed
/// by BLAKE2s-256("mac1----" ‖ key)), mac2 zero.
fn hello_around(server: &PublicKey, sender: u64, noise: &[u8]) -> Vec<u8> {
    let mut hash = Blake2s256::new();
    Digest::update(&mut hash, b"mac1----");
    Digest::update(&mut hash, server.0);
    let key: [u8; 32] = hash.finalize().into();
    let mut datagram = layout::hello_buffer(sender, noise.len());
    let end = datagram.len();
    datagram[layout::HELLO_HEADER..end - 2 * MAC_LEN].copy_from_slice(noise);
    let mut mac = <Blake2sMac<U16> as KeyInit>::new_from_slice(&key).expect("a 32-byte key");
    Update::update(&mut mac, &datagram[..end - 2 * MAC_LEN]);
    let mac1: [u8; MAC_LEN] = mac.finalize_fixed().into();
    datagram[end - 2 * MAC_LEN..end - MAC_LEN].copy_from_slice(&mac1);
    datagram
}

/// BUG (found by `server_machine`): `Server::handle_datagram` answers a
/// frame of an unsupported version with a plain `Error {
/// UnsupportedVersion }` of four bytes, to any source, though the frame
/// can be two bytes (a tag and a version): twice the bytes at a spoofed
/// victim (`core/src/server/mod.rs`, the `FrameError::UnsupportedVersion`
/// arm; the source's request limit bounds the rate, not the size).
#[test]
fn an_unsupported_version_is_answered_with_no_more_bytes_than_it_had() {
    // Given a server,
    let now = Instant::now();
    let mut server = Server::new(ServerConfig::new(addr("203.0.113.10:3478"), None), now);
    // when a two-byte frame of another version comes from an address that
    // proved nothing (a spoofed victim's),
    let victim = addr("198.51.100.1:4000");
    let request = [tag::KEEPALIVE, VERSION + 1];
    server.handle_datagram(now, SocketId(0), victim, &request);
    // then whatever goes back to it is smaller than the request.
    for (to, len) in sent(&mut server) {
        assert_eq!(to, victim);
        assert!(len < request.len(), "a {len}-byte answer to a {}-byte request", request.len());
    }
}

/// BUG (found by `server_machine`): under load, `Server::hello` answers any
/// Hello whose mac1 is valid with a 66-byte cookie reply before it looks at
/// the Noise message; `Hello::parse` takes one of 43 bytes (a one-byte
/// Noise message), and mac1 is keyed by the server's *public* key, so
/// anyone can make one: 66 bytes at a spoofed victim for 43. The
/// compile-time check in `core/src/wire/channel.rs` compares the cookie
/// reply with the smallest *valid* Hello (an empty IK payload, 138 bytes),
/// which is not the smallest Hello that gets one.
#[test]
fn a_cookie_reply_is_smaller_than_the_hello_it_answers() {
    // Given a server under load (one handshake a second, one spent),
    let now = Instant::now();
    let mut config = ServerConfig::new(addr("203.0.113.10:3478"), None);
    config.handshakes_per_second = 1;
    let mut server = Server::new(config, now);
    let key = server.public_key();
    server.handle_datagram(now, SocketId(0), addr("192.0.2.66:1"), &hello_around(&key, 1, &[0; 1]));
    let _ = sent(&mut server);
    // when a 43-byte Hello with a valid mac1 comes from a spoofed victim,
    let victim = addr("198.51.100.1:4000");
    let hello = hello_around(&key, 2, &[0; 1]);
    assert_eq!(hello.len(), 43);
    server.handle_datagram(now, SocketId(0), victim, &hello);
    // then whatever goes back to it is smaller than the Hello.
    let answers = sent(&mut server);
    assert!(server.stats().cookies_sent <= 1);
    for (to, len) in answers {
        assert_eq!(to, victim);
        assert!(len < hello.len(), "a {len}-byte answer to a {}-byte Hello", hello.len());
    }
}
