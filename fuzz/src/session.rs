//! A session's end-to-end handshake (Noise IK between two users' keys,
//! through the relay) and its transport with rekeying, through the public
//! values `punchline_core::secure` gives tests and tools: arbitrary and
//! mutated hellos, welcomes and sealed datagrams around one real handshake
//! per input, with time moving so that keys change.

use std::sync::OnceLock;
use std::time::Duration;

use punchline_core::secure::{PeerHelloReceived, PeerHelloSent, SessionCipher, StaticKey, REKEY_AFTER_TIME};
use punchline_core::wire::channel::{self as layout, tag, SEALED_OVERHEAD};
use punchline_core::wire::frame::SessionId;
use punchline_core::Seed;

use crate::input::{mutate, Input};

/// The most transport operations one input drives.
const MAX_OPS: usize = 64;
/// The counter's low 48 bits are the packet number, the high 16 the key's
/// epoch (`core/src/secure/peer.rs`); a receiver follows at most this many
/// epochs ahead of its own.
const PACKET_BITS: u32 = 48;
const MAX_EPOCH_SKIP: u64 = 4;

/// The keys: the session's two users and a stranger. Derived once.
fn keys() -> &'static [StaticKey; 3] {
    static KEYS: OnceLock<[StaticKey; 3]> = OnceLock::new();
    KEYS.get_or_init(|| ["alice", "bob", "mallory"].map(|label| StaticKey::derive(Seed::from(0), label)))
}

/// How far one input got: what the replay test checks its corpus reaches.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reached {
    /// The real handshake finished into two ends.
    pub keyed: bool,
    /// Sealed datagrams that opened, both ways.
    pub opened: usize,
    /// Sealed datagrams refused: mutated, replayed, reflected, forged.
    pub refused: usize,
    /// Datagrams sealed under a key after the first (rekeyed).
    pub rekeyed: usize,
}

/// One direction: what was sealed, and what the receiving end opened.
#[derive(Default)]
struct Direction {
    /// Each sealed datagram with the frame inside.
    sealed: Vec<(Vec<u8>, Vec<u8>)>,
    /// Counters opened.
    opened: Vec<u64>,
}

impl Direction {
    fn highest_packet(&self) -> Option<u64> {
        self.opened.iter().map(|c| c & ((1 << PACKET_BITS) - 1)).max()
    }

    fn highest_epoch(&self) -> u64 {
        self.opened.iter().map(|c| c >> PACKET_BITS).max().unwrap_or(0)
    }
}

/// Runs one input. Nothing panics, and:
/// - a hello is answered only unmodified, for its session, from the key the
///   responder expects; a welcome finishes the handshake only unmodified
///   and only its own; both ends then hold the same keys;
/// - a sealed datagram opens only at the other end, unmodified, once, to
///   the frame sealed in it; one that is fresh, ahead of every packet
///   opened so far and at most four keys ahead always opens, across
///   rekeys; arbitrary, reflected and forged datagrams never open.
pub fn check(data: &[u8]) -> Reached {
    let mut input = Input::new(data);
    let [alice, bob, mallory] = keys();
    let mut reached = Reached::default();
    let session = SessionId(input.u64());
    let t0 = Duration::ZERO;

    // Arbitrary bytes as a hello: never answered.
    let junk = layout::peer_handshake(tag::PEER_HELLO, session.0, &input.bytes());
    assert!(PeerHelloReceived::answer(bob, &alice.public(), session, &junk, t0, Seed::from(1)).is_none());

    // A real hello: refused from another key than the expected one, for
    // another session, or mutated (unless the mutations undid themselves).
    let seed = input.u64();
    let (mut sent, hello) = PeerHelloSent::start(alice, &bob.public(), session, Seed::from(seed));
    let answer = |hello: &[u8], expected: &StaticKey, session: SessionId| {
        PeerHelloReceived::answer(bob, &expected.public(), session, hello, t0, Seed::from(2))
    };
    assert!(answer(&hello, mallory, session).is_none(), "a hello answered as another key's");
    assert!(answer(&hello, alice, SessionId(session.0 ^ 1)).is_none(), "a hello answered for another session");
    let mut mutated = hello.clone();
    let changed = mutate(&mut mutated, &mut input);
    assert_eq!(answer(&mutated, alice, session).is_some(), !changed, "a mutated hello answered, or a real one not");
    let (welcome, bob_end) = answer(&hello, alice, session).expect("a real hello is answered");

    // The welcome: another handshake's is refused, a mutated one too, and
    // neither spoils the real one.
    // (Another seed: the same one would make the same hello.)
    let (_, other_hello) = PeerHelloSent::start(alice, &bob.public(), session, Seed::from(seed ^ 1));
    let (other_welcome, _) = answer(&other_hello, alice, session).expect("answered");
    assert!(sent.finish(&other_welcome, t0).is_none(), "another handshake's welcome finished ours");
    let mut mutated = welcome.clone();
    if mutate(&mut mutated, &mut input) {
        assert!(sent.finish(&mutated, t0).is_none(), "a mutated welcome finished the handshake");
    }
    let Some(alice_end) = sent.finish(&welcome, t0) else { panic!("the real welcome did not finish") };
    assert!(sent.finish(&welcome, t0).is_none(), "a handshake finished twice");
    reached.keyed = true;

    // The transport, both ways, while time moves.
    let mut ends: [SessionCipher<Duration>; 2] = [alice_end, bob_end];
    let mut ways = [Direction::default(), Direction::default()];
    let mut now = t0;
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = input.byte();
        let from = usize::from(op & 1);
        let to = 1 - from;
        match (op >> 1) % 7 {
            // A frame (any bytes) sealed.
            0 | 1 => {
                let frame = input.bytes();
                let (datagram, counter) = ends[from].seal(now, &frame).expect("counters left");
                let parsed = layout::parse_sealed_as(tag::PEER_SEALED, &datagram).expect("a sealed datagram parses");
                assert_eq!((parsed.0, parsed.1), (session.0, counter));
                assert_eq!(datagram.len(), frame.len() + SEALED_OVERHEAD);
                assert_eq!(counter >> PACKET_BITS, u64::from(ends[from].send_epoch()));
                if counter >> PACKET_BITS > 0 {
                    reached.rekeyed += 1;
                }
                ways[from].sealed.push((datagram, frame));
            }
            // One delivered to the other end, maybe mutated.
            2 => {
                let Some((datagram, frame)) = input.recent(&ways[from].sealed).cloned() else { continue };
                let mut delivered = datagram.clone();
                let changed = mutate(&mut delivered, &mut input);
                let counter = layout::parse_sealed_as(tag::PEER_SEALED, &datagram).map(|p| p.1).expect("parses");
                let (packet, epoch) = (counter & ((1 << PACKET_BITS) - 1), counter >> PACKET_BITS);
                let fresh = !ways[from].opened.contains(&counter);
                let ahead = ways[from].highest_packet().is_none_or(|p| packet > p)
                    && epoch >= ways[from].highest_epoch()
                    && epoch - ways[from].highest_epoch() <= MAX_EPOCH_SKIP;
                match ends[to].open(now, &delivered) {
                    Ok(opened) => {
                        assert!(!changed, "a mutated sealed datagram opened");
                        assert!(fresh, "a sealed datagram opened twice");
                        assert_eq!(opened, frame, "opened to another frame than it sealed");
                        ways[from].opened.push(counter);
                        reached.opened += 1;
                    }
                    Err(_) => {
                        assert!(changed || !fresh || !ahead, "a fresh sealed datagram ahead of the window refused");
                        reached.refused += 1;
                    }
                }
            }
            // One reflected back to its sender.
            3 => {
                let Some((datagram, _)) = input.recent(&ways[from].sealed).cloned() else { continue };
                assert!(ends[from].open(now, &datagram).is_err(), "a reflected sealed datagram opened");
                reached.refused += 1;
            }
            // Arbitrary bytes, and a forgery in the sealed layout naming the
            // session (with a packet number no end reaches: the keys grow
            // from the input's seeds, so the fuzzer can learn a datagram
            // another run sealed).
            4 => {
                let bytes = input.bytes();
                let genuine = ways.iter().any(|w| w.sealed.iter().any(|(d, _)| *d == bytes));
                if !genuine {
                    assert!(ends[to].open(now, &bytes).is_err(), "arbitrary bytes opened");
                    reached.refused += 1;
                }
                let (counter, ciphertext) = (input.u64() | 1 << (PACKET_BITS - 1), input.bytes());
                let mut forged = layout::sealed_buffer_as(tag::PEER_SEALED, session.0, counter, ciphertext.len());
                forged[layout::SEALED_HEADER..].copy_from_slice(&ciphertext);
                assert!(ends[to].open(now, &forged).is_err(), "a forged sealed datagram opened");
                reached.refused += 1;
            }
            // Time passes: up to a few key lifetimes.
            5 => now += REKEY_AFTER_TIME * u32::from(input.byte() % 4) + Duration::from_secs(input.byte().into()),
            // A burst sealed and dropped (loss), so the sender's packet
            // numbers move on without the receiver.
            _ => {
                for _ in 0..input.byte() % 16 {
                    ends[from].seal(now, b"lost").expect("counters left");
                }
            }
        }
    }
    reached
}
