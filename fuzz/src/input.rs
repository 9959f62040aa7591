//! What the machine and handshake targets share: the fuzz input read as a
//! stream of small values (a hand-rolled reader: the core's tests, which
//! replay the corpora, have no `arbitrary`), byte mutations, and the
//! channel's MACs computed independently of the core (WireGuard's, which
//! the channel follows), so the drivers can forge what only a sender who
//! knows the server's public key can.
//!
//! Reading past the end gives zeros, so every input is a valid run and a
//! longer input extends a shorter one's run.

use blake2::digest::consts::U16;
use blake2::digest::{FixedOutput, KeyInit, Update};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::XChaCha20Poly1305;
use punchline_core::secure::PublicKey;
use punchline_core::wire::channel::{self as layout, MAC_LEN};
use punchline_core::wire::frame::{FRAME_TYPES, VERSION};

/// The fuzz input, read front to back.
pub(crate) struct Input<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Input<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Input { data, at: 0 }
    }

    /// True once every byte was read.
    pub(crate) fn is_empty(&self) -> bool {
        self.at >= self.data.len()
    }

    pub(crate) fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    pub(crate) fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// True for one byte value in `n`.
    #[allow(clippy::manual_is_multiple_of)] // (is_multiple_of is newer than the workspace's rust-version)
    pub(crate) fn one_in(&mut self, n: u8) -> bool {
        self.byte() % n == 0
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    pub(crate) fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// A byte string: a length byte, then up to that many bytes (fewer at
    /// the end of the input). Lengths over 200 mean `200 + 8 × (len − 200)`
    /// (up to 640), so datagram-sized strings are reachable.
    pub(crate) fn bytes(&mut self) -> Vec<u8> {
        let len = usize::from(self.byte());
        let len = if len > 200 { 200 + 8 * (len - 200) } else { len };
        let end = (self.at + len).min(self.data.len());
        let out = self.data.get(self.at..end).unwrap_or_default().to_vec();
        self.at += len;
        out
    }

    /// `items`' element the next byte picks, cycling (`items` is never
    /// empty).
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[usize::from(self.byte()) % items.len()]
    }

    /// The `n`th most recent of `items` (the next byte picks `n`), if any.
    pub(crate) fn recent<'b, T>(&mut self, items: &'b [T]) -> Option<&'b T> {
        let back = usize::from(self.byte());
        (!items.is_empty()).then(|| &items[items.len() - 1 - back % items.len()])
    }
}

/// Up to three mutations the input describes, applied to `bytes`: a bit
/// flipped, a byte set, the tail cut, a byte inserted or removed. Returns
/// whether the bytes changed (mutations can undo each other).
pub(crate) fn mutate(bytes: &mut Vec<u8>, input: &mut Input<'_>) -> bool {
    let original = bytes.clone();
    for _ in 0..input.byte() % 4 {
        let (kind, at, value) = (input.byte() % 5, usize::from(input.u16()), input.byte());
        let len = bytes.len();
        match kind {
            0 if len > 0 => bytes[at % len] ^= 1 << (value % 8),
            1 if len > 0 => bytes[at % len] = value,
            2 => bytes.truncate(at % (len + 1)),
            3 => bytes.insert(at % (len + 1), value),
            4 if len > 0 => drop(bytes.remove(at % len)),
            _ => {}
        }
    }
    *bytes != original
}

/// A frame of the registry row `kind` picks: its tag, the version, then
/// `body` as it is.
pub(crate) fn registered_frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let row = &FRAME_TYPES[usize::from(kind) % FRAME_TYPES.len()];
    [&[row.tag, VERSION][..], body].concat()
}

/// A key of the MACs toward `server`: BLAKE2s-256 of `label` and its key.
fn mac_key(label: &[u8], server: &PublicKey) -> [u8; 32] {
    let mut hash = Blake2s256::new();
    Digest::update(&mut hash, label);
    Digest::update(&mut hash, server.0);
    hash.finalize().into()
}

/// A keyed BLAKE2s-128.
pub(crate) fn keyed_mac(key: &[u8], covered: &[u8]) -> [u8; MAC_LEN] {
    let mut m = <Blake2sMac<U16> as KeyInit>::new_from_slice(key).expect("a key of at most 32 bytes");
    Update::update(&mut m, covered);
    m.finalize_fixed().into()
}

/// A Hello from `sender` around any `noise` bytes, with the mac1 `server`'s
/// key gives (so a server spends its Diffie–Hellman on it) and mac2 zero.
pub(crate) fn hello_around(server: &PublicKey, sender: u64, noise: &[u8]) -> Vec<u8> {
    let mut datagram = layout::hello_buffer(sender, noise.len());
    let end = datagram.len();
    datagram[layout::HELLO_HEADER..end - 2 * MAC_LEN].copy_from_slice(noise);
    let mac1 = keyed_mac(&mac_key(b"mac1----", server), &datagram[..end - 2 * MAC_LEN]);
    datagram[end - 2 * MAC_LEN..end - MAC_LEN].copy_from_slice(&mac1);
    datagram
}

/// The cookie in `reply`, a cookie reply from `server` to the Hello whose
/// mac1 was `mac1`.
pub(crate) fn open_cookie(server: &PublicKey, reply: &[u8], mac1: &[u8; MAC_LEN]) -> Option<[u8; MAC_LEN]> {
    let (_, nonce, sealed) = layout::parse_cookie_reply(reply)?;
    let cipher = XChaCha20Poly1305::new(&mac_key(b"cookie--", server).into());
    cipher.decrypt(&nonce.into(), Payload { msg: &sealed, aad: mac1 }).ok()?.try_into().ok()
}

/// A cookie reply from `server` to the Hello from `receiver` whose mac1
/// was `mac1`, carrying `cookie`.
pub(crate) fn cookie_reply(
    server: &PublicKey,
    receiver: u64,
    cookie: &[u8; MAC_LEN],
    nonce: &[u8; 24],
    mac1: &[u8; MAC_LEN],
) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(&mac_key(b"cookie--", server).into());
    let sealed = cipher.encrypt(nonce.into(), Payload { msg: cookie, aad: mac1 }).expect("XChaCha20 seals 16 bytes");
    layout::cookie_reply(receiver, nonce, &sealed.try_into().expect("16 bytes and a 16-byte tag"))
}
