//! Identity, the client–server channel, sessions sealed end to end and
//! texts sealed to their recipient (DESIGN §7, issue 20; `SECURITY.md`).
//!
//! - [`keys`](PublicKey): static X25519 keys and their fingerprints.
//! - `noise`: the Noise IK handshake through `snow`, seeded by the core's
//!   generator.
//! - `channel`: the transport that seals every signaling frame after the
//!   handshake, with RFC 6479 replay protection (`replay`).
//! - [`hello`](HelloSent): the client's half of the handshake as values,
//!   public for tests, fuzzers and tools.
//! - [`peer`](SessionCipher): sessions between users, end to end: their
//!   IK handshake, their transport and its rekeying.
//! - [`sealed_text`](seal_text): offline texts sealed to their recipient
//!   (Noise X), which the server stores and cannot read.
//! - `cookie`: mac1 and the cookie (mac2) a loaded server asks for, before
//!   it spends a Diffie–Hellman.
//!
//! The wire layouts are in [`crate::wire::channel`].

mod channel;
mod cookie;
mod hello;
mod keys;
mod noise;
mod peer;
mod replay;
mod sealed_text;

pub use hello::{ChannelEnd, Finished, HelloReceived, HelloSent};
pub use keys::{PublicKey, StaticKey};
pub use noise::X_OVERHEAD;
pub use peer::{
    PeerHelloReceived, PeerHelloSent, SessionCipher, PREVIOUS_KEY_LIFETIME, REKEY_AFTER_MESSAGES, REKEY_AFTER_TIME,
};
pub use replay::ReplayWindow;
pub(crate) use sealed_text::seal_text_with;
pub use sealed_text::{open_text, seal_text};

pub use crate::timer::Moment;
pub use channel::OpenError;
pub(crate) use cookie::{same, CookieJar, MacKeys, COOKIE_LIFETIME};
pub(crate) use noise::IK_MESSAGE_1_OVERHEAD;
