//! Static X25519 keys: a user's identity, the server's key, and how both
//! are shown to people (fingerprints) and parsed back.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use curve25519_dalek::montgomery::MontgomeryPoint;

use crate::rng::Rng;

/// A static X25519 public key: who a user or a server is.
///
/// Its [`Display`](std::fmt::Display) form is its *fingerprint*: the whole
/// key in unpadded URL-safe base64 (43 characters), as WireGuard shows its
/// keys. The whole key, not a hash of it, so that a fingerprint given on a
/// command line (`--server-key`) is enough to start a handshake.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Parses a fingerprint (43 base64url characters, or 44 with one `=`).
    pub fn parse(fingerprint: &str) -> Option<PublicKey> {
        let text = fingerprint.trim().trim_end_matches('=');
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        Some(PublicKey(bytes.try_into().ok()?))
    }

    /// The fingerprint; the same as `to_string()`.
    pub fn fingerprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }
}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.fingerprint())
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

/// A static X25519 key pair: a user's identity or a server's key.
///
/// The secret never prints ([`Debug`] shows the public half only). Keys for
/// deployment are made by [`StaticKey::from_secret`] from 32 bytes of OS
/// entropy (the binaries keep them in `0600` key files); [`StaticKey::derive`]
/// makes reproducible ones from a seed, for the simulator and tests.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticKey {
    secret: [u8; 32],
    public: PublicKey,
}

impl StaticKey {
    /// The key pair whose secret is `secret` (clamped as X25519 does,
    /// RFC 7748 §5).
    pub fn from_secret(secret: [u8; 32]) -> StaticKey {
        let public = PublicKey(MontgomeryPoint::mul_base_clamped(secret).to_bytes());
        StaticKey { secret, public }
    }

    /// A reproducible key for `label` grown from `seed`: the same seed and
    /// label always give the same key. For simulations and tests; as
    /// guessable as the seed.
    pub fn derive(seed: crate::Seed, label: &str) -> StaticKey {
        let mut labelled = Rng::new(seed).fork(0x5ec2_e7ed).fork(label_hash(label));
        let mut secret = [0; 32];
        labelled.fill(&mut secret);
        StaticKey::from_secret(secret)
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The secret half, for the handshake and for writing the key file.
    pub fn secret(&self) -> &[u8; 32] {
        &self.secret
    }
}

impl std::fmt::Debug for StaticKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticKey(public {})", self.public)
    }
}

/// A label as a fork number: the first 8 bytes of its SHA-256.
fn label_hash(label: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(label.as_bytes());
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_parses_back_to_its_key() {
        // Given a key, when its fingerprint is printed and parsed, then it
        // is the same key; with one `=` of padding too.
        let key = StaticKey::derive(crate::Seed::from(3), "alice").public();
        let shown = key.to_string();
        assert_eq!(shown.len(), 43);
        assert_eq!(PublicKey::parse(&shown), Some(key));
        assert_eq!(PublicKey::parse(&format!("{shown}=")), Some(key));
        // and text that is not 32 bytes of base64url is refused.
        assert_eq!(PublicKey::parse(&shown[..42]), None);
        assert_eq!(PublicKey::parse("not a key at all, not a key at all, not a k"), None);
    }

    #[test]
    fn derived_keys_depend_on_seed_and_label_and_match_x25519() {
        let a = StaticKey::derive(crate::Seed::from(1), "alice");
        assert_eq!(a, StaticKey::derive(crate::Seed::from(1), "alice"));
        assert_ne!(a.public(), StaticKey::derive(crate::Seed::from(1), "bob").public());
        assert_ne!(a.public(), StaticKey::derive(crate::Seed::from(2), "alice").public());
        // RFC 7748 §6.1's test vector: Alice's private key and public key.
        let secret: [u8; 32] = hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let public = hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        assert_eq!(StaticKey::from_secret(secret).public(), PublicKey(public));
        assert!(!format!("{a:?}").contains(&format!("{:?}", a.secret())));
    }

    fn hex32(s: &str) -> [u8; 32] {
        let bytes: Vec<u8> = (0..32).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect();
        bytes.try_into().unwrap()
    }
}
