//! The client's file transfers as its user sees them (issue 22): the
//! requests ([`Client::send_file`] and the answers a driver gives), their
//! identities, outcomes and progress.
//!
//! The core reads and writes no file. A sender's driver hashes the file
//! once ([`crate::files::TreeBuilder`]) and offers it; the core then asks
//! for the content in 16 KiB groups ([`ClientEvent::FileRead`], answered
//! by [`Client::file_data`]). A receiver's driver is asked whether to take
//! an offer ([`ClientEvent::FileOffered`]; [`Client::accept_file`] names
//! the groups it already holds, so a resume is an accept), is handed every
//! group once it verified against the offered BLAKE3 root
//! ([`ClientEvent::FileWrite`]) and says when it is written
//! ([`Client::file_written`]). Only written groups count as held, so a
//! driver that records them can resume after a crash.
//!
//! [`ClientEvent::FileRead`]: crate::client::ClientEvent::FileRead
//! [`ClientEvent::FileOffered`]: crate::client::ClientEvent::FileOffered
//! [`ClientEvent::FileWrite`]: crate::client::ClientEvent::FileWrite

use std::time::Instant;

use super::context::Ctx;
use super::events::{ConnectFailure, PathKind};
use super::{Client, ClientEvent};
use crate::files::{Hash, Manifest};
use crate::wire::frame::files::{FileAbort, FileRefusal};
use crate::wire::frame::{CloseReason, SessionId};

/// A file transfer, outgoing or incoming, unique within its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u64);

impl std::fmt::Display for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "file{}", self.0)
    }
}

/// A file to offer: what the sender's driver measured of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSource {
    /// The name the receiver sees (no directory); checked by
    /// [`crate::files::check_name`].
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
    /// Its BLAKE3 hash.
    pub root: Hash,
    /// Its groups' chaining values, from the same pass.
    pub manifest: Manifest,
}

/// Which way a transfer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileDirection {
    /// We send it.
    Outgoing,
    /// We receive it.
    Incoming,
}

/// Why a transfer ended without the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFailure {
    /// The peer refused the offer.
    Refused(FileRefusal),
    /// One side ended it: `by_peer` says which.
    Aborted {
        /// Why.
        reason: FileAbort,
        /// True when the peer ended it.
        by_peer: bool,
    },
    /// The session ended (the peer left or went silent longer than the
    /// session timeout, or we closed it). A later offer of the same
    /// content resumes from what was written.
    SessionClosed(CloseReason),
    /// No session could be opened for the offer.
    ConnectFailed(ConnectFailure),
}

impl std::fmt::Display for FileFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileFailure::Refused(reason) => write!(f, "refused: {reason}"),
            FileFailure::Aborted { reason, by_peer: true } => write!(f, "ended by the peer: {reason}"),
            FileFailure::Aborted { reason, by_peer: false } => write!(f, "ended here: {reason}"),
            FileFailure::SessionClosed(reason) => write!(f, "the session ended ({reason:?})"),
            FileFailure::ConnectFailed(reason) => write!(f, "no session with the peer ({reason:?})"),
        }
    }
}

/// Errors of [`Client::send_file`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendFileError {
    /// Not logged in.
    #[error("not logged in")]
    NotLoggedIn,
    /// The peer's name cannot be a user.
    #[error("invalid user name")]
    BadUserName,
    /// The name is not one a receiver writes.
    #[error("the file name is refused: {0}")]
    BadName(crate::files::NameError),
    /// The manifest does not belong to the size and root.
    #[error("the manifest does not match the file's size and root")]
    BadManifest,
}

/// A snapshot of a transfer ([`Client::file_progress`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProgress {
    /// Which way it goes.
    pub direction: FileDirection,
    /// The peer.
    pub peer: String,
    /// The file's name.
    pub name: String,
    /// Its length.
    pub size: u64,
    /// Content bytes done: acknowledged by the receiver (outgoing), or
    /// verified and written (incoming); including `resumed`.
    pub done: u64,
    /// Content bytes the receiver held before this transfer.
    pub resumed: u64,
    /// Pieces sent again after a loss (outgoing).
    pub retransmitted: u64,
    /// The session's path now.
    pub path: PathKind,
    /// Whether the peer has accepted it yet.
    pub accepted: bool,
}

impl Client {
    /// Offers `source` to `peer`, over the open session with `peer` or one
    /// opened for it (as [`Client::connect`] does). Answered by
    /// [`ClientEvent::FileAccepted`] then [`ClientEvent::FileCompleted`],
    /// or [`ClientEvent::FileFailed`]; meanwhile the core asks for the
    /// content with [`ClientEvent::FileRead`].
    pub fn send_file(&mut self, now: Instant, peer: &str, source: FileSource) -> Result<FileId, SendFileError> {
        self.out.now = Some(now);
        if !crate::server::valid_user_name(peer) || peer == self.config.user {
            return Err(SendFileError::BadUserName);
        }
        if !self.login.is_active() {
            return Err(SendFileError::NotLoggedIn);
        }
        crate::files::check_name(&source.name).map_err(SendFileError::BadName)?;
        if !crate::files::verify_manifest(&source.manifest, source.size, &source.root) {
            return Err(SendFileError::BadManifest);
        }
        let file = self.fresh_file_id();
        let ctx = ctx!(self, now);
        if let Some(session) = self.sessions.with_peer(peer).next() {
            session.offer_file(&ctx, &mut self.out, file, source);
            return Ok(file);
        }
        self.waiting_files.push((file, peer.to_owned(), source));
        let request = self.fresh_request();
        self.requests.connect(request, peer);
        self.send_waiting_connects(now);
        Ok(file)
    }

    /// The driver's answer to [`ClientEvent::FileRead`]: `data` from
    /// `offset` (the length asked, or less only at the end of the file).
    /// Data that was not asked for is ignored.
    pub fn file_data(&mut self, now: Instant, file: FileId, offset: u64, data: &[u8]) {
        self.out.now = Some(now);
        let ctx = ctx!(self, now);
        if let Some(s) = self.sessions.values_mut().find(|s| s.has_file(file)) {
            s.file_data(&ctx, &mut self.out, file, offset, data);
        }
    }

    /// The driver could not read the file being sent: the transfer ends
    /// ([`FileAbort::ReadFailed`]).
    pub fn file_read_failed(&mut self, now: Instant, file: FileId) {
        self.abort_file(now, file, FileAbort::ReadFailed);
    }

    /// Accepts the offer [`ClientEvent::FileOffered`] named `file`. `have`:
    /// ranges of 16 KiB groups (half-open, ascending) the driver already
    /// holds verified from an earlier transfer of the same root, which the
    /// sender skips.
    pub fn accept_file(&mut self, now: Instant, file: FileId, have: &[(u64, u64)]) {
        self.out.now = Some(now);
        let ctx = ctx!(self, now);
        if let Some(s) = self.sessions.values_mut().find(|s| s.has_file(file)) {
            s.accept_file(&ctx, &mut self.out, file, have);
        }
    }

    /// Refuses the offer named `file`.
    pub fn refuse_file(&mut self, now: Instant, file: FileId, reason: FileRefusal) {
        self.out.now = Some(now);
        let ctx = ctx!(self, now);
        if let Some(s) = self.sessions.values_mut().find(|s| s.has_file(file)) {
            s.refuse_file(&ctx, &mut self.out, file, reason);
        }
    }

    /// The driver's answer to [`ClientEvent::FileWrite`]: the group at
    /// `offset` is written (`Ok`), or could not be (`Err` with
    /// [`FileAbort::DiskFull`] or [`FileAbort::WriteFailed`], which ends the
    /// transfer; what was written stays for a resume).
    pub fn file_written(&mut self, now: Instant, file: FileId, offset: u64, result: Result<(), FileAbort>) {
        self.out.now = Some(now);
        let ctx = ctx!(self, now);
        if let Some(s) = self.sessions.values_mut().find(|s| s.has_file(file)) {
            s.file_written(&ctx, &mut self.out, file, offset, result);
        }
    }

    /// Ends a transfer, either way, telling the peer.
    pub fn cancel_file(&mut self, now: Instant, file: FileId) {
        self.abort_file(now, file, FileAbort::Cancelled);
    }

    /// A snapshot of a transfer under way.
    pub fn file_progress(&self, file: FileId) -> Option<FileProgress> {
        self.sessions.values().find_map(|s| s.file_progress(file))
    }

    fn abort_file(&mut self, now: Instant, file: FileId, reason: FileAbort) {
        self.out.now = Some(now);
        if let Some(i) = self.waiting_files.iter().position(|(id, _, _)| *id == file) {
            self.waiting_files.remove(i);
            let failure = FileFailure::Aborted { reason, by_peer: false };
            self.out.event(ClientEvent::FileFailed { file, failure });
            return;
        }
        let ctx = ctx!(self, now);
        if let Some(s) = self.sessions.values_mut().find(|s| s.has_file(file)) {
            s.abort_file(&ctx, &mut self.out, file, reason);
        }
    }

    fn fresh_file_id(&mut self) -> FileId {
        self.out.fresh_file_id()
    }

    /// A session with `peer` opened: offers that waited for one go out on it.
    pub(super) fn offer_waiting_files(&mut self, now: Instant, session: SessionId) {
        let ctx = ctx!(self, now);
        let Some(s) = self.sessions.get_mut(&session) else { return };
        let peer = s.peer().to_owned();
        let (mine, others) = std::mem::take(&mut self.waiting_files).into_iter().partition(|(_, p, _)| *p == peer);
        self.waiting_files = others;
        for (file, _, source) in mine {
            s.offer_file(&ctx, &mut self.out, file, source);
        }
    }

    /// No session with `peer` could be opened: offers waiting for one fail.
    pub(super) fn fail_waiting_files(&mut self, peer: &str, reason: ConnectFailure) {
        let (failed, others) = std::mem::take(&mut self.waiting_files).into_iter().partition(|(_, p, _)| p == peer);
        self.waiting_files = others;
        let failed: Vec<(FileId, String, FileSource)> = failed;
        for (file, _, _) in failed {
            self.out.event(ClientEvent::FileFailed { file, failure: FileFailure::ConnectFailed(reason) });
        }
    }
}
