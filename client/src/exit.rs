//! Exit codes and the errors that map to them.

use std::process::ExitCode;

/// Why a command failed; each kind has its own exit code.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A socket or thread failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// The server did not answer.
    #[error("server {0} unreachable: no answer to the login")]
    ServerUnreachable(std::net::SocketAddr),
    /// No such user.
    #[error("unknown peer {0:?}: no such user has ever logged in")]
    UnknownPeer(String),
    /// The user is not online.
    #[error("peer {0:?} is offline")]
    PeerOffline(String),
    /// Nothing conclusive within the time allowed.
    #[error("timed out after {after}: {waiting_for}")]
    Timeout {
        /// The limit.
        after: String,
        /// What was missing.
        waiting_for: String,
    },
    /// The session ended early.
    #[error("session with {peer:?} closed: {reason}")]
    SessionClosed {
        /// The peer.
        peer: String,
        /// Why, in words.
        reason: String,
    },
    /// The server refused the login or the request.
    #[error("refused by the server: {0}")]
    Refused(String),
    /// The STUN server did not answer.
    #[error("STUN server {0} did not answer")]
    StunUnreachable(String),
    /// A text message was refused (too large, recipient's store full,
    /// invalid recipient).
    #[error("message refused: {0}")]
    TextRefused(String),
    /// The server binds the name to another key: someone else holds it.
    #[error("the name {0:?} belongs to another key on this server (is this the right identity file?)")]
    NameTaken(String),
    /// The server's key is not the pinned one.
    #[error(
        "THE SERVER'S KEY HAS CHANGED: pinned {pinned}, offered {offered}. Someone may be impersonating the \
         server, or its operator replaced the key; if you trust the new key, remove the old pin from {pins}"
    )]
    ServerKeyChanged {
        /// The pinned key.
        pinned: String,
        /// The key offered.
        offered: String,
        /// Where the pin lives.
        pins: String,
    },
    /// The directory gives a contact another key than the pinned one.
    #[error(
        "THE KEY OF {peer:?} HAS CHANGED: pinned {pinned}, the server now says {offered}. Someone may be \
         impersonating them, or the server substitutes keys; if they confirm the new key, remove the old pin from {pins}"
    )]
    ContactKeyChanged {
        /// The contact.
        peer: String,
        /// The pinned key.
        pinned: String,
        /// The key the directory gives now.
        offered: String,
        /// Where the pin lives.
        pins: String,
    },
    /// A key file that is unsafe (readable by others) or not a key.
    #[error("key file refused: {0}")]
    UnsafeKeyFile(String),
    /// The peer refused the file offered (`send-file`).
    #[error("file refused: {0}")]
    FileRefused(String),
    /// The peer went away while the file was offered or sent: its session
    /// closed (it left, or was silent longer than the session timeout).
    #[error("{0}")]
    PeerGone(String),
    /// The receiver's disk is full.
    #[error("{0}")]
    DiskFull(String),
    /// What was sent does not match the file's BLAKE3 root.
    #[error("{0}")]
    VerificationFailed(String),
    /// The peer ended the transfer for another reason: it cancelled, or it
    /// could not write the file.
    #[error("{0}")]
    FileAborted(String),
}

/// The exit codes, as `--help` lists them.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  local I/O error
  2  bad arguments
  3  server unreachable
  4  unknown peer
  5  peer offline
  6  timed out (no session, no answer, or no acknowledgement, within --timeout)
  7  session closed by the peer or lost (peer vanished)
  8  refused by the server (login or request)
  9  STUN server did not answer (nat-check --stun)
 10  message refused (too large, recipient's store full, invalid recipient)
 11  the user name belongs to another key on this server
 12  the server's key is not the pinned one (possible impersonation)
 13  key file refused (readable by others, or not a key)
 14  a contact's key is not the pinned one (whois)
 15  file refused by the peer (send-file; the message says why)
 16  peer gone: the session closed while the file was offered or sent
     (sending the same file again resumes)
 17  the receiver's disk is full (it keeps what it received for a resume)
 18  verification failed: the data does not match the file's BLAKE3 root
     (the file changed while it was sent)
 19  the peer ended the transfer (cancelled, or it could not write)";

impl Failure {
    /// The process exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Io(_) => 1,
            Failure::Usage(_) => 2,
            Failure::ServerUnreachable(_) => 3,
            Failure::UnknownPeer(_) => 4,
            Failure::PeerOffline(_) => 5,
            Failure::Timeout { .. } => 6,
            Failure::SessionClosed { .. } => 7,
            Failure::Refused(_) => 8,
            Failure::StunUnreachable(_) => 9,
            Failure::TextRefused(_) => 10,
            Failure::NameTaken(_) => 11,
            Failure::ServerKeyChanged { .. } => 12,
            Failure::UnsafeKeyFile(_) => 13,
            Failure::ContactKeyChanged { .. } => 14,
            Failure::FileRefused(_) => 15,
            Failure::PeerGone(_) => 16,
            Failure::DiskFull(_) => 17,
            Failure::VerificationFailed(_) => 18,
            Failure::FileAborted(_) => 19,
        }
    }

    /// The exit code as a process result.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code())
    }
}
