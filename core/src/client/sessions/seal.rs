//! A session's end of frame authentication ([`crate::auth`]): every frame
//! it sends carries a counter it never repeats and a tag, HMAC-SHA-256 under
//! the session key (RFC 2104); every frame it accepts passed the tag check
//! and then a replay window (RFC 4303 §3.4.3), so no frame counts twice.

use std::net::SocketAddr;

use crate::auth::{ReplayWindow, Role, SessionMac};
use crate::client::context::Out;
use crate::machine::SocketId;
use crate::wire::frame::{Frame, SessionKey};

#[derive(Debug)]
pub(crate) struct Seal {
    /// Which end we are: frames are sealed with our role and verified with
    /// the peer's, so a frame reflected back at its sender fails.
    role: Role,
    /// The session key, prepared for HMAC once (RFC 2104 §2).
    mac: SessionMac,
    /// The last counter sent.
    counter: u64,
    replay: ReplayWindow,
}

impl Seal {
    pub(crate) fn new(key: &SessionKey, role: Role) -> Self {
        Seal { role, mac: SessionMac::new(key), counter: 0, replay: ReplayWindow::default() }
    }

    /// Checks the MAC and the replay window of a frame from the peer.
    pub(crate) fn open(&mut self, frame: &Frame, raw: &[u8]) -> bool {
        let counter = match frame {
            Frame::Probe { counter, .. } | Frame::ProbeAck { counter, .. } | Frame::Session { counter, .. } => *counter,
            _ => return false,
        };
        self.mac.verify(raw, self.role.peer()) && self.replay.accept(counter)
    }

    /// Queues `frame`, stamped and sealed, from `socket` to `to`.
    /// Returns the counter the frame was stamped with.
    pub(crate) fn send(&mut self, out: &mut Out, socket: SocketId, to: SocketAddr, frame: Frame) -> u64 {
        let frame = self.stamp(frame);
        out.send_sealed(socket, to, None, &frame, |bytes| self.mac.seal(bytes, self.role));
        self.counter
    }

    /// `frame`, stamped, encoded and sealed (for the relay to carry).
    pub(crate) fn seal(&mut self, frame: Frame) -> Vec<u8> {
        let mut bytes = self.stamp(frame).encode();
        self.mac.seal(&mut bytes, self.role);
        bytes
    }

    /// `frame` with the session's next counter, which makes it unique.
    fn stamp(&mut self, mut frame: Frame) -> Frame {
        self.counter += 1;
        match &mut frame {
            Frame::Probe { counter, .. } | Frame::ProbeAck { counter, .. } | Frame::Session { counter, .. } => {
                *counter = self.counter
            }
            _ => {}
        }
        frame
    }
}
