//! What file transfers put on the wire (issue 22): the control messages
//! that ride a session's reliable stream ([`super::StreamMessage`]'s
//! `File*` variants) and the bulk data that rides the session's
//! congestion-controlled data plane ([`super::SessionBody::FileData`] and
//! [`super::SessionBody::FileAck`]).
//!
//! A transfer is named by the sender's [`TransferId`], unique among the
//! transfers that sender started in the session. Its bytes are addressed
//! in 1 KiB *pieces*: pieces `0..m` carry the manifest (the BLAKE3
//! chaining values of the file's 16 KiB groups, see [`crate::files`]) and
//! pieces `m..m + c` the content, so one acknowledgement and one flow
//! control window cover both.

use serde::{Deserialize, Serialize};

/// Longest file name on the wire, in bytes of UTF-8 (what common file
/// systems allow).
pub const MAX_FILE_NAME: usize = 255;
/// Most ranges of groups a receiver names as already verified when it
/// accepts: enough for a resume after many interruptions; a receiver with
/// more names the first ones (the rest are sent again, not lost).
pub const MAX_HAVE_RANGES: usize = 48;
/// Most acknowledged ranges of packet numbers in one [`super::SessionBody::FileAck`].
pub const MAX_ACK_RANGES: usize = 32;
/// Most flow-control credits in one acknowledgement (one per transfer the
/// acknowledging side receives).
pub const MAX_CREDITS: usize = 16;
/// Bytes of one piece: BLAKE3's chunk.
pub const PIECE: usize = 1024;

/// A transfer's number, chosen by its sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TransferId(pub u32);

impl std::fmt::Display for TransferId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// Why a receiver refused an offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileRefusal {
    /// The receiver does not accept files (no `--accept-files`).
    NotAccepting,
    /// The user said no.
    Declined,
    /// The name is not one a receiver writes (see [`crate::files::check_name`]).
    BadName,
    /// The receiver has no room for it.
    NoSpace,
    /// The receiver takes no more transfers at once.
    Busy,
}

impl std::fmt::Display for FileRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileRefusal::NotAccepting => "the peer does not accept files (it runs without --accept-files)",
            FileRefusal::Declined => "the peer declined the file",
            FileRefusal::BadName => "the peer refuses the file's name",
            FileRefusal::NoSpace => "the peer has no room for the file",
            FileRefusal::Busy => "the peer takes no more transfers at once",
        })
    }
}

/// Why a transfer under way ended early.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileAbort {
    /// Its user cancelled it.
    Cancelled,
    /// The sender could not read the file.
    ReadFailed,
    /// The receiver's disk is full; its verified part is kept for a resume.
    DiskFull,
    /// The receiver could not write the file.
    WriteFailed,
    /// What the sender sent does not match the offered root: the sender
    /// lied or its file changed while it was sent.
    VerificationFailed,
}

impl std::fmt::Display for FileAbort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileAbort::Cancelled => "cancelled",
            FileAbort::ReadFailed => "the sender could not read the file",
            FileAbort::DiskFull => "the receiver's disk is full (its verified part is kept for a resume)",
            FileAbort::WriteFailed => "the receiver could not write the file",
            FileAbort::VerificationFailed => "the data does not match the offered BLAKE3 root",
        })
    }
}
