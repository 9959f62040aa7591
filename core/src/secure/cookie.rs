//! Cheap checks before a Diffie–Hellman, after WireGuard (§5.4.4 of its
//! paper, "Cookie MACs"):
//!
//! - **mac1** ends every Hello: a keyed BLAKE2s-128 over the message, keyed
//!   by `BLAKE2s-256("mac1----" ‖ server's public key)`. Only a sender that
//!   knows the server's key can make one; the server checks it before any
//!   X25519, so junk and scans at Hello's size cost it a hash, not a DH.
//! - **mac2** follows, zero normally. Under load (more than
//!   [`ServerConfig::handshakes_per_second`](crate::server::ServerConfig::handshakes_per_second)
//!   handshakes in the current second) the server spends DHs only on Hellos
//!   whose mac2 is keyed by a fresh *cookie* for their source address; others
//!   get a [`CookieReply`](crate::wire::channel::tag::COOKIE_REPLY) carrying
//!   one. The cookie is a MAC of the source address under a secret that
//!   changes every two minutes, so the server keeps no state per source,
//!   and a spoofed source never learns it (it goes to the source).
//!
//! The cookie travels encrypted (XChaCha20-Poly1305 under a key derived from
//! the server's public key, with the Hello's mac1 as associated data), so
//! only the client that sent that Hello can use it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::timer::Moment;

use blake2::digest::consts::U16;
use blake2::digest::{FixedOutput, KeyInit, Update};
use blake2::{Blake2s256, Blake2sMac, Digest};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::XChaCha20Poly1305;

use super::keys::PublicKey;
use crate::rng::Rng;
use crate::wire::channel::MAC_LEN;

/// How long a cookie secret is used, and so how long a cookie stays good.
pub(crate) const COOKIE_LIFETIME: Duration = Duration::from_secs(120);

/// The keys every mac1 and cookie reply toward one server use.
#[derive(Clone)]
pub(crate) struct MacKeys {
    mac1: [u8; 32],
    cookie: [u8; 32],
}

impl std::fmt::Debug for MacKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKeys(..)")
    }
}

impl MacKeys {
    pub(crate) fn for_server(server: &PublicKey) -> MacKeys {
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut hash = Blake2s256::new();
            Digest::update(&mut hash, label);
            Digest::update(&mut hash, server.0);
            hash.finalize().into()
        };
        MacKeys { mac1: derive(b"mac1----"), cookie: derive(b"cookie--") }
    }

    pub(crate) fn mac1(&self, covered: &[u8]) -> [u8; MAC_LEN] {
        mac(&self.mac1, covered)
    }

    /// The cookie sealed for the client whose Hello carried `mac1`.
    pub(crate) fn seal_cookie(&self, cookie: &[u8; MAC_LEN], nonce: &[u8; 24], mac1: &[u8; MAC_LEN]) -> [u8; 32] {
        let cipher = XChaCha20Poly1305::new(&self.cookie.into());
        let sealed = cipher
            .encrypt(nonce.into(), Payload { msg: cookie, aad: mac1 })
            .expect("XChaCha20-Poly1305 seals 16 bytes");
        sealed.try_into().expect("16 bytes and a 16-byte tag")
    }

    /// The cookie in a reply to our Hello whose mac1 was `mac1`.
    pub(crate) fn open_cookie(&self, sealed: &[u8; 32], nonce: &[u8; 24], mac1: &[u8; MAC_LEN]) -> Option<[u8; 16]> {
        let cipher = XChaCha20Poly1305::new(&self.cookie.into());
        let cookie = cipher.decrypt(nonce.into(), Payload { msg: sealed, aad: mac1 }).ok()?;
        cookie.try_into().ok()
    }
}

/// A keyed BLAKE2s-128.
pub(crate) fn mac(key: &[u8], covered: &[u8]) -> [u8; MAC_LEN] {
    let mut m = <Blake2sMac<U16> as KeyInit>::new_from_slice(key).expect("BLAKE2s takes keys up to 32 bytes");
    Update::update(&mut m, covered);
    m.finalize_fixed().into()
}

/// Compares two MACs in constant time.
pub(crate) fn same(a: &[u8; MAC_LEN], b: &[u8; MAC_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server's cookie secrets and its measure of load, over the
/// machine's `Instant`s (a `Duration` since an epoch in the unit tests,
/// which read no clock).
#[derive(Debug)]
pub(crate) struct CookieJar<T: Moment = Instant> {
    rng: Rng,
    secret: [u8; 32],
    /// The secret before the current one: a cookie handed out just before
    /// a rotation still works.
    previous: [u8; 32],
    rotated_at: T,
    /// Handshakes (DHs spent) in the current one-second window.
    window_start: T,
    in_window: u32,
}

impl<T: Moment> CookieJar<T> {
    pub(crate) fn new(mut rng: Rng, now: T) -> CookieJar<T> {
        let mut secret = [0; 32];
        rng.fill(&mut secret);
        CookieJar { rng, secret, previous: secret, rotated_at: now, window_start: now, in_window: 0 }
    }

    fn rotate(&mut self, now: T) {
        if now.saturating_duration_since(self.rotated_at) >= COOKIE_LIFETIME {
            self.previous = self.secret;
            self.rng.fill(&mut self.secret);
            self.rotated_at = now;
        }
    }

    /// The cookie for `source`, under the current secret.
    pub(crate) fn cookie(&mut self, now: T, source: SocketAddr) -> [u8; MAC_LEN] {
        self.rotate(now);
        cookie_for(&self.secret, source)
    }

    /// True when `mac2` is keyed by a current (or just rotated) cookie of
    /// `source`.
    pub(crate) fn mac2_valid(&mut self, now: T, source: SocketAddr, covered: &[u8], mac2: &[u8; 16]) -> bool {
        self.rotate(now);
        [self.secret, self.previous].iter().any(|secret| same(&mac(&cookie_for(secret, source), covered), mac2))
    }

    /// A nonce for a cookie reply.
    pub(crate) fn nonce(&mut self) -> [u8; 24] {
        let mut nonce = [0; 24];
        self.rng.fill(&mut nonce);
        nonce
    }

    /// Counts one handshake about to be spent; true when more than `limit`
    /// were spent in the current second (the server is under load).
    pub(crate) fn under_load(&self, now: T, limit: u32) -> bool {
        now.saturating_duration_since(self.window_start) < Duration::from_secs(1) && self.in_window >= limit
    }

    /// Counts a handshake spent now.
    pub(crate) fn count_handshake(&mut self, now: T) {
        if now.saturating_duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.in_window = 0;
        }
        self.in_window = self.in_window.saturating_add(1);
    }
}

fn cookie_for(secret: &[u8; 32], source: SocketAddr) -> [u8; MAC_LEN] {
    let mut covered = Vec::with_capacity(18);
    match source.ip() {
        std::net::IpAddr::V4(ip) => covered.extend_from_slice(&ip.octets()),
        std::net::IpAddr::V6(ip) => covered.extend_from_slice(&ip.octets()),
    }
    covered.extend_from_slice(&source.port().to_le_bytes());
    mac(secret, &covered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_opens_only_for_the_hello_it_answers() {
        let keys = MacKeys::for_server(&PublicKey([3; 32]));
        let sealed = keys.seal_cookie(&[9; 16], &[1; 24], &[7; 16]);
        assert_eq!(keys.open_cookie(&sealed, &[1; 24], &[7; 16]), Some([9; 16]));
        assert_eq!(keys.open_cookie(&sealed, &[1; 24], &[8; 16]), None, "another hello's mac1");
        let other = MacKeys::for_server(&PublicKey([4; 32]));
        assert_eq!(other.open_cookie(&sealed, &[1; 24], &[7; 16]), None, "another server");
    }

    #[test]
    fn mac2_holds_for_its_source_across_one_rotation_only() {
        let t0 = Duration::from_secs(1_000);
        let mut jar = CookieJar::new(Rng::new(1), t0);
        let alice: SocketAddr = "198.51.100.1:4000".parse().unwrap();
        let cookie = jar.cookie(t0, alice);
        let mac2 = mac(&cookie, b"hello");
        assert!(jar.mac2_valid(t0, alice, b"hello", &mac2));
        assert!(!jar.mac2_valid(t0, "198.51.100.1:4001".parse().unwrap(), b"hello", &mac2));
        assert!(!jar.mac2_valid(t0, alice, b"hellO", &mac2));
        assert!(jar.mac2_valid(t0 + COOKIE_LIFETIME, alice, b"hello", &mac2), "the previous secret");
        assert!(!jar.mac2_valid(t0 + 2 * COOKIE_LIFETIME, alice, b"hello", &mac2));
    }

    #[test]
    fn load_is_the_handshakes_of_the_current_second() {
        let t0 = Duration::from_secs(1_000);
        let mut jar = CookieJar::new(Rng::new(1), t0);
        for _ in 0..3 {
            assert!(!jar.under_load(t0, 3));
            jar.count_handshake(t0);
        }
        assert!(jar.under_load(t0 + Duration::from_millis(999), 3));
        assert!(!jar.under_load(t0 + Duration::from_secs(1), 3));
    }
}
