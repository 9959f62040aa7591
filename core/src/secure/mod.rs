//! Identity and the client–server channel (DESIGN §7, issue 20).
//!
//! - [`keys`](PublicKey): static X25519 keys and their fingerprints.
//! - `noise`: the Noise IK handshake through `snow`, seeded by the core's
//!   generator.
//! - `channel`: the transport that seals every signaling frame after the
//!   handshake, with RFC 6479 replay protection.
//! - [`hello`](HelloSent): the client's half of the handshake as values,
//!   public for tests, fuzzers and tools.
//! - `cookie`: mac1 and the cookie (mac2) a loaded server asks for, before
//!   it spends a Diffie–Hellman.
//!
//! The wire layouts are in [`crate::wire::channel`].

mod channel;
mod cookie;
mod hello;
mod keys;
mod noise;

pub use hello::{ChannelEnd, Finished, HelloReceived, HelloSent};
pub use keys::{PublicKey, StaticKey};

pub(crate) use channel::OpenError;
pub(crate) use cookie::{same, CookieJar, MacKeys, COOKIE_LIFETIME};
pub(crate) use noise::IK_MESSAGE_1_OVERHEAD;
