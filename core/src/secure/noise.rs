//! The Noise handshake (Noise Protocol Framework, revision 34) through the
//! `snow` crate, with the core's own generator as its randomness.
//!
//! `snow` asks its resolver for a random source each time it builds a
//! handshake; ours hands it a child of the machine's seeded ChaCha20
//! generator ([`Rng`]), so ephemeral keys, like everything else, come from
//! the seed: OS entropy in a deployment, a number in the simulator, where
//! traces stay byte-identical run to run.

use snow::params::NoiseParams;
use snow::resolvers::{BoxedCryptoResolver, CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{Builder, HandshakeState, StatelessTransportState};

use super::keys::{PublicKey, StaticKey};
use crate::rng::Rng;

/// IK, for the client–server channel (the client's first message already
/// proves its identity, the server's key being known beforehand, so the
/// handshake costs the one round trip a login always took) and for sessions
/// between peers.
const IK: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
/// X: one message from a sender whose key travels inside it to a recipient
/// whose key the sender knows (Noise §7.4): offline texts.
const X: &str = "Noise_X_25519_ChaChaPoly_BLAKE2s";

/// Bound into every client–server handshake hash (Noise §6), so a
/// transcript of another protocol (or another version) never verifies.
const CLIENT_SERVER_PROLOGUE: &[u8] = b"punchline/1 client-server";

/// The tag Noise adds to each encrypted payload.
pub(crate) const TAG_LEN: usize = 16;

/// Bytes the IK pattern adds to message 1's payload: `e`, encrypted `s`
/// with its tag, and the payload's tag.
pub(crate) const IK_MESSAGE_1_OVERHEAD: usize = 32 + 32 + TAG_LEN + TAG_LEN;
/// Bytes the IK pattern adds to message 2's payload: `e` and the tag.
pub(crate) const IK_MESSAGE_2_OVERHEAD: usize = 32 + TAG_LEN;
/// Bytes the X pattern adds to its one payload: `e`, encrypted `s` with its
/// tag, and the payload's tag.
pub const X_OVERHEAD: usize = 32 + 32 + TAG_LEN + TAG_LEN;

/// A handshake in progress, either side. Prints nothing secret.
pub(crate) struct Handshake(pub(crate) HandshakeState);

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handshake(..)")
    }
}

/// The client's side of an IK handshake with the server whose key is
/// `server`.
pub(crate) fn client_handshake(identity: &StaticKey, server: &PublicKey, rng: Rng) -> Handshake {
    ik_initiator(identity, server, CLIENT_SERVER_PROLOGUE, rng)
}

/// The server's side of an IK handshake.
pub(crate) fn server_handshake(key: &StaticKey, rng: Rng) -> Handshake {
    ik_responder(key, CLIENT_SERVER_PROLOGUE, rng)
}

/// The initiator of an IK handshake with `remote`, bound to `prologue`.
pub(crate) fn ik_initiator(identity: &StaticKey, remote: &PublicKey, prologue: &[u8], rng: Rng) -> Handshake {
    let built = builder(IK, rng)
        .local_private_key(identity.secret())
        .and_then(|b| b.remote_public_key(&remote.0))
        .and_then(|b| b.prologue(prologue))
        .and_then(|b| b.build_initiator())
        .expect("a 32-byte X25519 key pair and a known pattern always build");
    Handshake(built)
}

/// The responder of an IK handshake, bound to `prologue`.
pub(crate) fn ik_responder(identity: &StaticKey, prologue: &[u8], rng: Rng) -> Handshake {
    let built = builder(IK, rng)
        .local_private_key(identity.secret())
        .and_then(|b| b.prologue(prologue))
        .and_then(|b| b.build_responder())
        .expect("a 32-byte X25519 key pair and a known pattern always build");
    Handshake(built)
}

/// The sender of a one-way X message to `recipient`, bound to `prologue`.
pub(crate) fn x_sender(identity: &StaticKey, recipient: &PublicKey, prologue: &[u8], rng: Rng) -> Handshake {
    let built = builder(X, rng)
        .local_private_key(identity.secret())
        .and_then(|b| b.remote_public_key(&recipient.0))
        .and_then(|b| b.prologue(prologue))
        .and_then(|b| b.build_initiator())
        .expect("a 32-byte X25519 key pair and a known pattern always build");
    Handshake(built)
}

/// The recipient of a one-way X message, bound to `prologue`.
pub(crate) fn x_recipient(identity: &StaticKey, prologue: &[u8]) -> Handshake {
    // A recipient draws no randomness: X's only ephemeral is the sender's.
    let built = builder(X, Rng::new(crate::Seed::from(0)))
        .local_private_key(identity.secret())
        .and_then(|b| b.prologue(prologue))
        .and_then(|b| b.build_responder())
        .expect("a 32-byte X25519 key pair and a known pattern always build");
    Handshake(built)
}

impl Handshake {
    /// The peer's static key, once the handshake has read it.
    pub(crate) fn remote_static(&self) -> Option<PublicKey> {
        let bytes: [u8; 32] = self.0.get_remote_static()?.try_into().ok()?;
        Some(PublicKey(bytes))
    }

    /// Finishes into transport keys, once both messages went through.
    pub(crate) fn into_transport(self) -> Option<StatelessTransportState> {
        self.0.into_stateless_transport_mode().ok()
    }

    /// Finishes into the raw keys of Noise's `Split()` (§5.2): the
    /// initiator's sending key first. Sessions between peers keep their
    /// own cipher states, to rekey (§11.3) while keeping the previous key
    /// for datagrams in flight, which `snow`'s transport cannot.
    pub(crate) fn raw_split(&mut self) -> Option<([u8; 32], [u8; 32])> {
        self.0.is_handshake_finished().then(|| self.0.dangerously_get_raw_split())
    }
}

fn builder(pattern: &str, rng: Rng) -> Builder<'static> {
    let params: NoiseParams = pattern.parse().expect("a pattern snow knows");
    Builder::with_resolver(params, Box::new(SeededResolver(std::sync::Mutex::new(Some(rng)))) as BoxedCryptoResolver)
}

/// `snow`'s own primitives, with our generator as the random source.
struct SeededResolver(std::sync::Mutex<Option<Rng>>);

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        // Each handshake builds one resolver and asks once.
        let rng = self.0.lock().ok()?.take()?;
        Some(Box::new(SeededRandom(rng)))
    }
    fn resolve_dh(&self, choice: &snow::params::DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

struct SeededRandom(Rng);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill(dest);
        Ok(())
    }
}
