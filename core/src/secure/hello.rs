//! Both halves of the handshake as plain values. The client's: a Hello
//! built ([`HelloSent`]), a Welcome finished into a [`ChannelEnd`]. The
//! server's: a Hello read ([`HelloReceived`]) and answered. The machines
//! use them; they are public so that tests, fuzzers and tools can speak to
//! a server (or a client) as the real other side does, and forge what it
//! must refuse, with the same code, as [`crate::auth`] is for peer frames.

use super::channel::{Channel, OpenError};
use super::cookie::{mac, MacKeys};
use super::keys::{PublicKey, StaticKey};
use super::noise::{client_handshake, server_handshake, Handshake, IK_MESSAGE_1_OVERHEAD, IK_MESSAGE_2_OVERHEAD};
use crate::rng::Rng;
use crate::wire::channel::{self as layout, HELLO_HEADER, MAC_LEN};

/// A Hello sent and not answered yet.
#[derive(Debug)]
pub struct HelloSent {
    handshake: Handshake,
    sender: u64,
    mac1: [u8; MAC_LEN],
}

impl HelloSent {
    /// Starts a handshake as `identity` with the server whose key is
    /// `server`, carrying `payload` (an encoded `Login` frame). `mac2` is
    /// keyed by `cookie` when the server gave one. Returns the Hello to
    /// send. Randomness (the ephemeral key, the index) grows from `seed`.
    pub fn start(
        identity: &StaticKey,
        server: &PublicKey,
        payload: &[u8],
        cookie: Option<&[u8; MAC_LEN]>,
        seed: crate::Seed,
    ) -> (HelloSent, Vec<u8>) {
        let mut rng = Rng::new(seed);
        Self::start_with(identity, server, &MacKeys::for_server(server), payload, cookie, &mut rng)
    }

    pub(crate) fn start_with(
        identity: &StaticKey,
        server: &PublicKey,
        mac_keys: &MacKeys,
        payload: &[u8],
        cookie: Option<&[u8; MAC_LEN]>,
        rng: &mut Rng,
    ) -> (HelloSent, Vec<u8>) {
        let label = rng.next_u64();
        let mut handshake = client_handshake(identity, server, rng.fork(label));
        let sender = rng.next_u64();
        let mut noise = vec![0; payload.len() + IK_MESSAGE_1_OVERHEAD];
        let len = handshake.0.write_message(payload, &mut noise).expect("an IK message 1 fits its buffer");
        let mut datagram = layout::hello_buffer(sender, len);
        datagram[HELLO_HEADER..HELLO_HEADER + len].copy_from_slice(&noise[..len]);
        let end = datagram.len();
        let mac1 = mac_keys.mac1(&datagram[..end - 2 * MAC_LEN]);
        datagram[end - 2 * MAC_LEN..end - MAC_LEN].copy_from_slice(&mac1);
        if let Some(cookie) = cookie {
            let mac2 = mac(cookie, &datagram[..end - MAC_LEN]);
            datagram[end - MAC_LEN..].copy_from_slice(&mac2);
        }
        (HelloSent { handshake, sender, mac1 }, datagram)
    }

    /// The index the server's answers name.
    pub fn sender(&self) -> u64 {
        self.sender
    }

    /// The Hello's mac1: a cookie reply to it is sealed with it.
    pub fn mac1(&self) -> &[u8; MAC_LEN] {
        &self.mac1
    }

    /// Reads the server's Welcome: the payload it carries (an encoded
    /// `LoginOk` or `Error`), and the finished handshake. `None` when the
    /// datagram is no Welcome to this Hello, or does not authenticate.
    pub fn finish(mut self, datagram: &[u8]) -> Option<(Vec<u8>, Finished)> {
        let (receiver, noise) = layout::parse_welcome(datagram)?;
        if receiver != self.sender {
            return None;
        }
        let mut payload = vec![0; noise.len()];
        let len = self.handshake.0.read_message(noise, &mut payload).ok()?;
        payload.truncate(len);
        Some((payload, Finished { handshake: self.handshake, index: self.sender }))
    }
}

/// A Hello the server read: who sent it (the static key it proved) and
/// what it carries, waiting for the server's answer.
#[derive(Debug)]
pub struct HelloReceived {
    handshake: Handshake,
    sender: u64,
    client_key: PublicKey,
    payload: Vec<u8>,
}

impl HelloReceived {
    /// Reads the Noise message of a Hello from `sender` with the server's
    /// `key` (mac1 and mac2 are the caller's to check, first). `None` when
    /// it does not decrypt. Randomness (the server's ephemeral key) grows
    /// from `seed`.
    pub fn read(key: &StaticKey, sender: u64, noise: &[u8], seed: crate::Seed) -> Option<HelloReceived> {
        Self::read_with(key, sender, noise, Rng::new(seed))
    }

    pub(crate) fn read_with(key: &StaticKey, sender: u64, noise: &[u8], rng: Rng) -> Option<HelloReceived> {
        let mut handshake = server_handshake(key, rng);
        let mut payload = vec![0; noise.len()];
        let len = handshake.0.read_message(noise, &mut payload).ok()?;
        payload.truncate(len);
        let client_key = handshake.remote_static()?;
        Some(HelloReceived { handshake, sender, client_key, payload })
    }

    /// The client's static key, which the Hello proved.
    pub fn client_key(&self) -> PublicKey {
        self.client_key
    }

    /// What the Hello carries (an encoded `Login` frame).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Answers with a Welcome carrying `payload` (an encoded `LoginOk` or
    /// `Error`); returns it and the server's end of the channel, which the
    /// client's sealed frames name by `index` (the token in `LoginOk`).
    pub fn answer(mut self, payload: &[u8], index: u64) -> Option<(Vec<u8>, ChannelEnd)> {
        let mut noise = vec![0; payload.len() + IK_MESSAGE_2_OVERHEAD];
        let len = self.handshake.0.write_message(payload, &mut noise).ok()?;
        let welcome = layout::welcome(self.sender, &noise[..len]);
        let transport = self.handshake.into_transport()?;
        Some((welcome, ChannelEnd { channel: Channel::new(transport, self.sender), index }))
    }
}

/// A handshake both messages went through: becomes a channel once the
/// client knows the server's index (the token in `LoginOk`).
#[derive(Debug)]
pub struct Finished {
    handshake: Handshake,
    index: u64,
}

impl Finished {
    /// The client's end of the channel; `server_index` goes in every
    /// sealed frame the client sends.
    pub fn into_channel(self, server_index: u64) -> Option<ChannelEnd> {
        let transport = self.handshake.into_transport()?;
        Some(ChannelEnd { channel: Channel::new(transport, server_index), index: self.index })
    }
}

/// One end of an established channel: the client's or the server's.
#[derive(Debug)]
pub struct ChannelEnd {
    pub(crate) channel: Channel,
    /// Our index: the server's sealed frames name it.
    pub(crate) index: u64,
}

impl ChannelEnd {
    /// `frame` (encoded) sealed for the other end.
    pub fn seal(&self, frame: &[u8]) -> Option<Vec<u8>> {
        self.channel.seal(frame)
    }

    /// The frame sealed in `datagram`, if it is the other end's, for us,
    /// and not a replay.
    pub fn open(&mut self, datagram: &[u8]) -> Option<Vec<u8>> {
        self.open_checked(datagram).ok()
    }

    pub(crate) fn open_checked(&mut self, datagram: &[u8]) -> Result<Vec<u8>, OpenError> {
        match layout::parse_sealed(datagram) {
            Some((receiver, _, _)) if receiver == self.index => self.channel.open(datagram),
            Some(_) => Err(OpenError::Forged),
            None => Err(OpenError::Malformed),
        }
    }
}
