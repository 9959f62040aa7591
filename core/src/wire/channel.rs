//! The layouts of the client–server channel (DESIGN §7): the Noise IK
//! handshake, the cookie that answers it under load, the sealed frames that
//! carry every signaling frame afterwards, and the key request that lets a
//! client pin a server's key on first contact.
//!
//! These are fixed layouts read at fixed offsets, not postcard bodies: the
//! MACs cover exact byte ranges, and a server checks `mac1` before it
//! decodes anything. Integers are little-endian. `ver` is
//! [`VERSION`](super::frame::VERSION).
//!
//! | tag | name | layout |
//! |---|---|---|
//! | `0x70` | Hello | `tag ver sender:u64 noise_msg_1 mac1:16 mac2:16` |
//! | `0x71` | Welcome | `tag ver receiver:u64 noise_msg_2` |
//! | `0x72` | CookieReply | `tag ver receiver:u64 nonce:24 sealed_cookie:32` |
//! | `0x73` | Sealed | `tag ver receiver:u64 counter:u64 ciphertext` |
//! | `0x74` | KeyRequest | `tag ver nonce:u64`, zero-padded to [`KEY_REQUEST_LEN`] |
//! | `0x75` | KeyReply | `tag ver nonce:u64 key:32` |
//!
//! Between the two members of a session, end to end (the server relays
//! them and can read none):
//!
//! | tag | name | layout |
//! |---|---|---|
//! | `0x76` | PeerSealed | `tag ver session:u64 counter:u64 ciphertext` |
//! | `0x77` | PeerHello | `tag ver session:u64 noise_msg_1` |
//! | `0x78` | PeerWelcome | `tag ver session:u64 noise_msg_2` |
//!
//! Every answer a server sends before the sender has proved it receives at
//! its address (Welcome, CookieReply, KeyReply) is smaller than the request
//! it answers, so a spoofed request never aims more bytes at a victim than
//! the attacker sent (issue 20; coturn's CVE-2020-26262).

use super::frame::VERSION;

/// The tags of the channel's datagrams.
pub mod tag {
    /// Noise IK message 1 with `mac1` and `mac2`.
    pub const HELLO: u8 = 0x70;
    /// Noise IK message 2.
    pub const WELCOME: u8 = 0x71;
    /// A cookie to echo, under load.
    pub const COOKIE_REPLY: u8 = 0x72;
    /// A frame inside the channel's transport encryption.
    pub const SEALED: u8 = 0x73;
    /// Which key do you have?
    pub const KEY_REQUEST: u8 = 0x74;
    /// This key.
    pub const KEY_REPLY: u8 = 0x75;
    /// A peer frame inside a session's end-to-end encryption.
    pub const PEER_SEALED: u8 = 0x76;
    /// A session's Noise IK message 1, initiator to responder.
    pub const PEER_HELLO: u8 = 0x77;
    /// A session's Noise IK message 2, responder to initiator.
    pub const PEER_WELCOME: u8 = 0x78;
}

/// Length of `mac1` and `mac2`.
pub const MAC_LEN: usize = 16;
/// Bytes before a Hello's Noise message: tag, version, sender index.
pub const HELLO_HEADER: usize = 10;
/// Bytes before a Welcome's Noise message.
pub const WELCOME_HEADER: usize = 10;
/// Bytes before a sealed frame's ciphertext: tag, version, receiver, counter.
pub const SEALED_HEADER: usize = 18;
/// What sealing adds to a frame: the header and the AEAD tag.
pub const SEALED_OVERHEAD: usize = SEALED_HEADER + 16;
/// The length of a cookie reply.
pub const COOKIE_REPLY_LEN: usize = 10 + 24 + 32;
/// The length of a key request: padded so the reply is never larger.
pub const KEY_REQUEST_LEN: usize = 64;
/// The length of a key reply.
pub const KEY_REPLY_LEN: usize = 10 + 32;

/// Is this first byte one of the channel's?
pub fn is_channel_tag(byte: u8) -> bool {
    (tag::HELLO..=tag::KEY_REPLY).contains(&byte)
}

/// Is this first byte one of a session's end-to-end datagrams?
pub fn is_peer_tag(byte: u8) -> bool {
    (tag::PEER_SEALED..=tag::PEER_WELCOME).contains(&byte)
}

/// The session a peer datagram names, if it is one.
pub fn peer_session(datagram: &[u8]) -> Option<u64> {
    (datagram.len() >= PEER_HEADER && is_peer_tag(datagram[0]) && datagram[1] == VERSION).then(|| u64_at(datagram, 2))
}

/// Bytes before a peer handshake message: tag, version, session.
pub const PEER_HEADER: usize = 10;

/// A peer handshake datagram (`PEER_HELLO` or `PEER_WELCOME`) for `session`
/// around `noise`.
pub fn peer_handshake(tag: u8, session: u64, noise: &[u8]) -> Vec<u8> {
    let mut datagram = Vec::with_capacity(PEER_HEADER + noise.len());
    datagram.extend_from_slice(&[tag, VERSION]);
    datagram.extend_from_slice(&session.to_le_bytes());
    datagram.extend_from_slice(noise);
    datagram
}

/// A peer handshake datagram's session and Noise message, if it has `tag`.
pub fn parse_peer_handshake(tag: u8, datagram: &[u8]) -> Option<(u64, &[u8])> {
    (datagram.len() > PEER_HEADER && datagram[0] == tag && datagram[1] == VERSION)
        .then(|| (u64_at(datagram, 2), &datagram[PEER_HEADER..]))
}

/// A Hello, split at its fixed offsets.
#[derive(Debug, PartialEq, Eq)]
pub struct Hello<'a> {
    /// The client's index for this handshake: the server's Welcome and
    /// sealed frames name it.
    pub sender: u64,
    /// Noise IK message 1.
    pub noise: &'a [u8],
    /// The bytes `mac1` covers: everything before it.
    pub before_mac1: &'a [u8],
    /// `mac1`: keyed by the server's public key.
    pub mac1: [u8; MAC_LEN],
    /// The bytes `mac2` covers: everything before it.
    pub before_mac2: &'a [u8],
    /// `mac2`: keyed by a cookie, or zero.
    pub mac2: [u8; MAC_LEN],
}

impl<'a> Hello<'a> {
    /// Splits `datagram`, or `None` when it is not a Hello of our version,
    /// or is shorter than the smallest real one (an IK message 1 with an
    /// empty payload): an answer to it (a cookie reply) would be larger
    /// than it (found by the server_machine fuzz target).
    pub fn parse(datagram: &'a [u8]) -> Option<Hello<'a>> {
        let len = datagram.len();
        if len < SMALLEST_HELLO || datagram[0] != tag::HELLO || datagram[1] != VERSION {
            return None;
        }
        Some(Hello {
            sender: u64_at(datagram, 2),
            noise: &datagram[HELLO_HEADER..len - 2 * MAC_LEN],
            before_mac1: &datagram[..len - 2 * MAC_LEN],
            mac1: datagram[len - 2 * MAC_LEN..len - MAC_LEN].try_into().ok()?,
            before_mac2: &datagram[..len - MAC_LEN],
            mac2: datagram[len - MAC_LEN..].try_into().ok()?,
        })
    }
}

/// The header of a Hello carrying `noise_len` bytes of Noise message, with
/// room for the message and both MACs after it.
pub fn hello_buffer(sender: u64, noise_len: usize) -> Vec<u8> {
    let mut datagram = vec![0; HELLO_HEADER + noise_len + 2 * MAC_LEN];
    datagram[0] = tag::HELLO;
    datagram[1] = VERSION;
    datagram[2..10].copy_from_slice(&sender.to_le_bytes());
    datagram
}

/// A Welcome's receiver and Noise message.
pub fn parse_welcome(datagram: &[u8]) -> Option<(u64, &[u8])> {
    (datagram.len() > WELCOME_HEADER && datagram[0] == tag::WELCOME && datagram[1] == VERSION)
        .then(|| (u64_at(datagram, 2), &datagram[WELCOME_HEADER..]))
}

/// A Welcome to `receiver` around `noise`.
pub fn welcome(receiver: u64, noise: &[u8]) -> Vec<u8> {
    let mut datagram = Vec::with_capacity(WELCOME_HEADER + noise.len());
    datagram.extend_from_slice(&[tag::WELCOME, VERSION]);
    datagram.extend_from_slice(&receiver.to_le_bytes());
    datagram.extend_from_slice(noise);
    datagram
}

/// A cookie reply's receiver, nonce and sealed cookie.
pub fn parse_cookie_reply(datagram: &[u8]) -> Option<(u64, [u8; 24], [u8; 32])> {
    if datagram.len() != COOKIE_REPLY_LEN || datagram[0] != tag::COOKIE_REPLY || datagram[1] != VERSION {
        return None;
    }
    Some((u64_at(datagram, 2), datagram[10..34].try_into().ok()?, datagram[34..66].try_into().ok()?))
}

/// A cookie reply.
pub fn cookie_reply(receiver: u64, nonce: &[u8; 24], sealed_cookie: &[u8; 32]) -> Vec<u8> {
    let mut datagram = Vec::with_capacity(COOKIE_REPLY_LEN);
    datagram.extend_from_slice(&[tag::COOKIE_REPLY, VERSION]);
    datagram.extend_from_slice(&receiver.to_le_bytes());
    datagram.extend_from_slice(nonce);
    datagram.extend_from_slice(sealed_cookie);
    datagram
}

/// A sealed frame's receiver, counter and ciphertext.
pub fn parse_sealed(datagram: &[u8]) -> Option<(u64, u64, &[u8])> {
    parse_sealed_as(tag::SEALED, datagram)
}

/// A sealed datagram with `tag` (`SEALED` or `PEER_SEALED`, which share
/// the layout): its receiver (or session), counter and ciphertext.
pub fn parse_sealed_as(tag: u8, datagram: &[u8]) -> Option<(u64, u64, &[u8])> {
    (datagram.len() >= SEALED_OVERHEAD && datagram[0] == tag && datagram[1] == VERSION)
        .then(|| (u64_at(datagram, 2), u64_at(datagram, 10), &datagram[SEALED_HEADER..]))
}

/// The header of a sealed frame, with room for `ciphertext_len` bytes.
pub fn sealed_buffer(receiver: u64, counter: u64, ciphertext_len: usize) -> Vec<u8> {
    sealed_buffer_as(tag::SEALED, receiver, counter, ciphertext_len)
}

/// The header of a sealed datagram with `tag`, with room for
/// `ciphertext_len` bytes.
pub fn sealed_buffer_as(tag: u8, receiver: u64, counter: u64, ciphertext_len: usize) -> Vec<u8> {
    let mut datagram = vec![0; SEALED_HEADER + ciphertext_len];
    datagram[0] = tag;
    datagram[1] = VERSION;
    datagram[2..10].copy_from_slice(&receiver.to_le_bytes());
    datagram[10..18].copy_from_slice(&counter.to_le_bytes());
    datagram
}

/// A key request's nonce. Shorter requests are refused: the padding is
/// what makes the reply no larger than the request.
pub fn parse_key_request(datagram: &[u8]) -> Option<u64> {
    (datagram.len() >= KEY_REQUEST_LEN && datagram[0] == tag::KEY_REQUEST && datagram[1] == VERSION)
        .then(|| u64_at(datagram, 2))
}

/// A key request with `nonce`.
pub fn key_request(nonce: u64) -> Vec<u8> {
    let mut datagram = vec![0; KEY_REQUEST_LEN];
    datagram[0] = tag::KEY_REQUEST;
    datagram[1] = VERSION;
    datagram[2..10].copy_from_slice(&nonce.to_le_bytes());
    datagram
}

/// A key reply's nonce and key.
pub fn parse_key_reply(datagram: &[u8]) -> Option<(u64, [u8; 32])> {
    if datagram.len() != KEY_REPLY_LEN || datagram[0] != tag::KEY_REPLY || datagram[1] != VERSION {
        return None;
    }
    Some((u64_at(datagram, 2), datagram[10..42].try_into().ok()?))
}

/// A key reply.
pub fn key_reply(nonce: u64, key: &[u8; 32]) -> Vec<u8> {
    let mut datagram = Vec::with_capacity(KEY_REPLY_LEN);
    datagram.extend_from_slice(&[tag::KEY_REPLY, VERSION]);
    datagram.extend_from_slice(&nonce.to_le_bytes());
    datagram.extend_from_slice(key);
    datagram
}

/// The smallest Hello [`Hello::parse`] takes: an IK message 1 with an empty
/// payload, and both MACs.
pub const SMALLEST_HELLO: usize = HELLO_HEADER + crate::secure::IK_MESSAGE_1_OVERHEAD + 2 * MAC_LEN;

// Every answer before a proof is smaller than its request, checked when the
// crate compiles: a cookie reply than the smallest Hello the server reads, a
// key reply than a key request. (A Welcome is checked against its own Hello
// as it is sent.)
const _: () = assert!(COOKIE_REPLY_LEN < SMALLEST_HELLO);
const _: () = assert!(KEY_REPLY_LEN < KEY_REQUEST_LEN);

fn u64_at(datagram: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(datagram[at..at + 8].try_into().expect("callers check the length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layout_parses_back_and_refuses_short_or_foreign_bytes() {
        let mut hello = hello_buffer(7, 100);
        let n = hello.len();
        hello[n - 32..n - 16].copy_from_slice(&[1; 16]);
        hello[n - 16..].copy_from_slice(&[2; 16]);
        let parsed = Hello::parse(&hello).expect("a hello");
        assert_eq!((parsed.sender, parsed.noise.len(), parsed.mac1, parsed.mac2), (7, 100, [1; 16], [2; 16]));
        assert_eq!(parsed.before_mac1.len(), n - 32);
        assert!(Hello::parse(&hello[..HELLO_HEADER + 32]).is_none());
        assert!(Hello::parse(&hello_buffer(7, 95)).is_none(), "shorter than any IK message 1");

        assert_eq!(parse_welcome(&welcome(9, &[5; 60])), Some((9, &[5u8; 60][..])));
        assert_eq!(parse_cookie_reply(&cookie_reply(3, &[4; 24], &[6; 32])), Some((3, [4; 24], [6; 32])));
        let sealed = sealed_buffer(11, 12, 20);
        assert_eq!(parse_sealed(&sealed).map(|(r, c, t)| (r, c, t.len())), Some((11, 12, 20)));
        assert!(parse_sealed(&sealed[..SEALED_OVERHEAD - 1]).is_none());
        assert_eq!(parse_key_request(&key_request(13)), Some(13));
        assert_eq!(parse_key_request(&key_request(13)[..KEY_REQUEST_LEN - 1]), None);
        assert_eq!(parse_key_reply(&key_reply(13, &[8; 32])), Some((13, [8; 32])));
        // A frame of another version is nobody's.
        let mut other = key_request(1);
        other[1] = VERSION + 1;
        assert_eq!(parse_key_request(&other), None);
    }
}
