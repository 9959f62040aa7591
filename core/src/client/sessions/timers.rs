//! A session's named timers. One set serves all of the session's parts, so
//! timers that fall due together fire in deadline order whichever part owns
//! them, ties in the order below.

use crate::timer::Timers;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SessionTimer {
    /// The end-to-end handshake: resend our hello.
    Handshake,
    /// The stream: retransmit what is unacknowledged.
    Retransmit,
    /// Traversal: resend a Binding request.
    Binding,
    /// Traversal: the next round of probes.
    Probe,
    /// Traversal: the attempt failed.
    AttemptDeadline,
    /// Traversal: start the next attempt.
    Retry,
    /// Traversal: the next round of probes to the peer's LAN addresses.
    LanProbe,
    /// The path: probe the direct path to keep it open, and judge whether
    /// it lives.
    DirectKeepalive,
    /// The path: keep the relay's session alive.
    RelayKeepalive,
    /// The session: nothing heard from the peer for too long.
    Idle,
    /// Files: the pacer lets the next packet go.
    FilePace,
    /// Files: loss detection (a packet's time threshold, or the probe
    /// timeout).
    FileLoss,
    /// Files: acknowledge what arrived.
    FileAck,
    /// Files: tell the sender our credit again.
    FileCredit,
}

pub(crate) type SessionTimers = Timers<SessionTimer>;
