//! The Noise IK handshake and the channel's transport, through the public
//! values `punchline_core::secure` gives tests and tools: arbitrary and
//! mutated Hellos, Welcomes and sealed datagrams, around one real
//! handshake per input.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use punchline_core::secure::{ChannelEnd, HelloReceived, HelloSent, StaticKey};
use punchline_core::wire::channel::{self as layout, Hello, MAC_LEN, SEALED_OVERHEAD};
use punchline_core::Seed;

use crate::input::{hello_around, mutate, Input};

/// Bytes Noise IK adds to message 1's payload (`e`, encrypted `s` with its
/// tag, the payload's tag) and to message 2's (`e`, the tag): the Noise
/// specification's numbers, not the core's constants.
const IK_MESSAGE_1_OVERHEAD: usize = 32 + 32 + 16 + 16;
const IK_MESSAGE_2_OVERHEAD: usize = 32 + 16;

/// The most transport operations one input drives.
const MAX_OPS: usize = 64;

/// The keys: the server's, a client's, and a stranger's. Derived once (each
/// costs a scalar multiplication).
pub(crate) fn keys() -> &'static [StaticKey; 3] {
    static KEYS: OnceLock<[StaticKey; 3]> = OnceLock::new();
    KEYS.get_or_init(|| ["server", "client", "stranger"].map(|label| StaticKey::derive(Seed::from(0), label)))
}

/// How far one input got: what the replay test checks its corpus reaches.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reached {
    /// The real handshake finished into two channel ends.
    pub channel: bool,
    /// Sealed datagrams that opened, both ways.
    pub opened: usize,
    /// Sealed datagrams refused: mutated, replayed, reflected, forged.
    pub refused: usize,
}

/// One direction of the channel: what was sealed, and which counters the
/// receiving end opened.
#[derive(Default)]
struct Direction {
    /// Each sealed datagram with the frame inside.
    sealed: Vec<(Vec<u8>, Vec<u8>)>,
    opened: BTreeSet<u64>,
}

/// Runs one input. Nothing panics, and:
/// - `HelloReceived::read` refuses arbitrary bytes, and a real Hello's Noise
///   message unless it is unmodified and read with the server's key; then it
///   gives the Login payload and the client's key. The Hello's layout, mac1
///   and mac2 (with a cookie) are what an independent BLAKE2s computes.
/// - `HelloSent::finish` takes the server's Welcome only unmodified, and
///   gives its payload.
/// - a sealed datagram opens only at the other end, unmodified, once; one
///   whose counter is above every counter opened so far always opens (to
///   the frame sealed in it); arbitrary and forged datagrams never do.
pub fn check(data: &[u8]) -> Reached {
    let mut input = Input::new(data);
    let [server, client, stranger] = keys();
    let mut reached = Reached::default();

    // Arbitrary bytes as a Hello's Noise message: never read.
    let (sender, noise) = (input.u64(), input.bytes());
    assert!(HelloReceived::read(server, sender, &noise, Seed::from(1)).is_none(), "arbitrary bytes read as a Hello");

    // A real Hello, carrying any payload, maybe with a cookie.
    let payload = input.bytes();
    let cookie: Option<[u8; MAC_LEN]> = input.bool().then(|| std::array::from_fn(|_| input.byte()));
    let seed = Seed::from(input.u64());
    let (sent, datagram) = HelloSent::start(client, &server.public(), &payload, cookie.as_ref(), seed);
    let hello = Hello::parse(&datagram).expect("a Hello parses");
    assert_eq!(hello.sender, sent.sender());
    assert_eq!(&hello.mac1, sent.mac1());
    assert_eq!(hello.noise.len(), payload.len() + IK_MESSAGE_1_OVERHEAD);
    let independent = hello_around(&server.public(), hello.sender, hello.noise);
    assert_eq!(independent[..datagram.len() - MAC_LEN], datagram[..datagram.len() - MAC_LEN], "mac1");
    let expected_mac2 = cookie.map_or([0; MAC_LEN], |c| crate::input::keyed_mac(&c, hello.before_mac2));
    assert_eq!(hello.mac2, expected_mac2, "mac2");

    // Read with another key than the server's: refused.
    assert!(HelloReceived::read(stranger, hello.sender, hello.noise, Seed::from(2)).is_none());
    // Mutated: refused, unless the mutations undid each other.
    let mut mutated = hello.noise.to_vec();
    let changed = mutate(&mut mutated, &mut input);
    let read = HelloReceived::read(server, hello.sender, &mutated, Seed::from(3));
    assert_eq!(read.is_some(), !changed, "a Hello's Noise message read though mutated, or refused though not");
    let received =
        HelloReceived::read(server, hello.sender, hello.noise, Seed::from(input.u64())).expect("a real Hello reads");
    assert_eq!(received.payload(), &payload[..]);
    assert_eq!(received.client_key(), client.public());

    // The Welcome, carrying any payload; the token (the server's index) is
    // any number, even the client's own index.
    let answer = input.bytes();
    let token = if input.bool() { hello.sender } else { input.u64() };
    let (welcome, server_end) = received.answer(&answer, token).expect("a Welcome for a payload this small");
    let (receiver, welcome_noise) = layout::parse_welcome(&welcome).expect("a Welcome parses");
    assert_eq!((receiver, welcome_noise.len()), (hello.sender, answer.len() + IK_MESSAGE_2_OVERHEAD));
    let mut mutated = welcome.clone();
    let changed = mutate(&mut mutated, &mut input);
    let finished = sent.finish(&mutated);
    assert_eq!(finished.is_some(), !changed, "a Welcome finished though mutated, or refused though not");
    let Some((got, finished)) = finished else { return reached };
    assert_eq!(got, answer);
    let client_end = finished.into_channel(token).expect("a finished handshake gives a channel");
    reached.channel = true;

    // The transport, both ways.
    let mut ends: [ChannelEnd; 2] = [client_end, server_end];
    let mut ways = [Direction::default(), Direction::default()];
    let indexes = [token, hello.sender]; // the receiver each end's datagrams name
    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        let op = input.byte();
        let from = usize::from(op & 1); // 0: client to server, 1: server to client
        let to = 1 - from;
        match (op >> 1) % 6 {
            // A frame (any bytes) sealed.
            0 | 1 => {
                let frame = input.bytes();
                let datagram = ends[from].seal(&frame).expect("counters left");
                let (receiver, counter, _) = layout::parse_sealed(&datagram).expect("a sealed datagram parses");
                assert_eq!(receiver, indexes[from]);
                assert_eq!(counter, ways[from].sealed.len() as u64, "counters count up from 0");
                assert_eq!(datagram.len(), frame.len() + SEALED_OVERHEAD);
                ways[from].sealed.push((datagram, frame));
            }
            // One delivered to the other end, maybe mutated.
            2 => {
                let Some((datagram, frame)) = input.recent(&ways[from].sealed).cloned() else { continue };
                let mut delivered = datagram.clone();
                let changed = mutate(&mut delivered, &mut input);
                let counter = layout::parse_sealed(&datagram).map(|(_, c, _)| c).expect("parses");
                let fresh = !ways[from].opened.contains(&counter);
                let ahead = ways[from].opened.last().is_none_or(|&highest| counter > highest);
                match ends[to].open(&delivered) {
                    Some(opened) => {
                        assert!(!changed, "a mutated sealed datagram opened");
                        assert!(fresh, "a sealed datagram opened twice");
                        assert_eq!(opened, frame, "opened to another frame than it sealed");
                        ways[from].opened.insert(counter);
                        reached.opened += 1;
                    }
                    None => {
                        assert!(changed || !fresh || !ahead, "a fresh sealed datagram ahead of the window refused");
                        reached.refused += 1;
                    }
                }
            }
            // One reflected back to its sender.
            3 => {
                let Some((datagram, _)) = input.recent(&ways[from].sealed).cloned() else { continue };
                assert!(ends[from].open(&datagram).is_none(), "a reflected sealed datagram opened");
                reached.refused += 1;
            }
            // Arbitrary bytes. (In the sealed layout, with a counter no
            // channel reaches: the keys grow from the input's seeds, so the
            // fuzzer can learn a datagram another run sealed, which this
            // run's end would seal too.)
            4 => {
                let mut bytes = input.bytes();
                if layout::parse_sealed(&bytes).is_some() {
                    bytes[layout::SEALED_HEADER - 1] |= 0x80;
                }
                let genuine = ways.iter().any(|w| w.sealed.iter().any(|(d, _)| *d == bytes));
                if !genuine {
                    assert!(ends[to].open(&bytes).is_none(), "arbitrary bytes opened");
                    reached.refused += 1;
                }
            }
            // A forgery in the sealed layout, naming the end and any counter.
            _ => {
                let (counter, ciphertext) = (input.u64() | 1 << 63, input.bytes()); // (as above)
                let mut forged = layout::sealed_buffer(indexes[from], counter, ciphertext.len());
                forged[layout::SEALED_HEADER..].copy_from_slice(&ciphertext);
                let genuine = ways[from].sealed.iter().any(|(d, _)| *d == forged);
                if !genuine {
                    assert!(ends[to].open(&forged).is_none(), "a forged sealed datagram opened");
                    reached.refused += 1;
                }
            }
        }
    }
    reached
}
