//! A file we receive: from the peer's offer to our `FileDone`.
//!
//! Pieces are buffered by group. A group is checked against the manifest
//! (itself checked against the offered root once all its pieces are in) as
//! soon as it is complete, handed to the driver to write only if it
//! verifies, and counts as held only once the driver says it is written.
//! The credit granted to the sender is the first piece of the first group
//! not yet written plus the window, so what this side buffers (and what
//! waits in the driver's queue) never exceeds the window.

use std::collections::{BTreeMap, BTreeSet};

use crate::client::context::Out;
use crate::client::file_api::FileId;
use crate::client::ClientEvent;
use crate::files::GROUP;
use crate::files::{group_count, group_len, manifest_chunks, verify_group, verify_manifest, Hash, Manifest, RangeSet};
use crate::wire::frame::files::{FileAbort, TransferId, MAX_HAVE_RANGES, PIECE};

/// The receive window of one transfer, in pieces (8 MiB): the most it
/// buffers, and the most the sender keeps in flight for it.
pub(crate) const WINDOW_PIECES: u64 = 8 * 1024;
const PIECES_PER_GROUP: u64 = (GROUP / PIECE) as u64;

#[derive(Debug)]
pub(crate) struct Incoming {
    pub(super) file: FileId,
    pub(super) transfer: TransferId,
    pub(super) name: String,
    pub(super) size: u64,
    pub(super) root: Hash,
    manifest_pieces: u64,
    pieces: u64,
    pub(super) state: InState,
}

#[derive(Debug)]
pub(crate) enum InState {
    /// Waiting for the driver's answer.
    Offered,
    Receiving(Box<Receiving>),
}

#[derive(Debug, Default)]
pub(crate) struct Receiving {
    /// The manifest, once it verified against the root.
    manifest: Option<Manifest>,
    /// The manifest's pieces as they come.
    manifest_bytes: Vec<u8>,
    manifest_got: RangeSet,
    /// Incomplete (or not yet verifiable) groups: bytes and pieces got.
    buffered: BTreeMap<u64, (Vec<u8>, u16)>,
    /// Groups handed to the driver, not yet confirmed written.
    writing: BTreeSet<u64>,
    /// Groups written (or held before).
    written: RangeSet,
    /// Content bytes held before.
    pub(super) resumed: u64,
    /// The credit last told to the sender.
    pub(super) advertised: u64,
}

/// What a piece led to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PieceOutcome {
    /// Taken, a duplicate, or (hostile) out of bounds: nothing more to do.
    Taken,
    /// What came does not match the root: end the transfer.
    Corrupt,
}

impl Incoming {
    pub(crate) fn new(file: FileId, transfer: TransferId, name: String, size: u64, root: Hash) -> Self {
        let manifest_pieces = manifest_chunks(size);
        Incoming {
            file,
            transfer,
            name,
            size,
            root,
            manifest_pieces,
            pieces: manifest_pieces + size.div_ceil(PIECE as u64),
            state: InState::Offered,
        }
    }

    pub(crate) fn receiving(&self) -> Option<&Receiving> {
        match &self.state {
            InState::Receiving(r) => Some(r),
            InState::Offered => None,
        }
    }

    /// The driver accepts, holding the groups in `have`; returns the ranges
    /// to tell the sender and the first credit.
    pub(crate) fn accept(&mut self, have: &[(u64, u64)]) -> (Vec<(u64, u64)>, u64) {
        let groups = group_count(self.size);
        let mut r = Receiving::default();
        for &(start, end) in have.iter().take(MAX_HAVE_RANGES) {
            let (start, end) = (start.min(groups), end.min(groups));
            if start < end {
                r.written.insert(start..end);
            }
        }
        r.resumed = group_bytes(&r.written, self.size);
        if self.manifest_pieces == 0 {
            // One group: the root is its own manifest.
            r.manifest = Manifest::from_bytes(&self.root, self.size).ok();
        }
        let told: Vec<(u64, u64)> = r.written.iter().map(|g| (g.start, g.end)).collect();
        self.state = InState::Receiving(Box::new(r));
        let credit = self.credit();
        if let InState::Receiving(r) = &mut self.state {
            r.advertised = credit;
        }
        (told, credit)
    }

    /// The first piece there is no room for: the window past the first
    /// piece not yet settled (manifest pieces got, content groups written).
    pub(crate) fn credit(&self) -> u64 {
        let Some(r) = self.receiving() else { return 0 };
        let frontier = if r.manifest.is_none() && self.manifest_pieces > 0 {
            r.manifest_got.first_missing_from(0)
        } else {
            self.manifest_pieces + r.written.first_missing_from(0) * PIECES_PER_GROUP
        };
        (frontier + WINDOW_PIECES).min(self.pieces)
    }

    /// True once every group is written.
    pub(crate) fn is_complete(&self) -> bool {
        self.receiving().is_some_and(|r| r.written.len() >= group_count(self.size))
    }

    /// Content bytes verified and written (or held before).
    pub(crate) fn done_bytes(&self) -> u64 {
        let Some(r) = self.receiving() else { return 0 };
        group_bytes(&r.written, self.size)
    }

    /// A piece from the sender.
    pub(crate) fn on_piece(&mut self, out: &mut Out, piece: u64, data: &[u8]) -> PieceOutcome {
        let credit = self.credit();
        let (manifest_pieces, size, file) = (self.manifest_pieces, self.size, self.file);
        let InState::Receiving(r) = &mut self.state else { return PieceOutcome::Taken };
        if piece >= credit || data.len() != piece_len(size, manifest_pieces, piece) {
            // Beyond the credit granted, or not the piece's length: a
            // sender that breaks the protocol; dropped.
            return PieceOutcome::Taken;
        }
        if piece < manifest_pieces {
            if r.manifest.is_some() || r.manifest_got.contains(piece) {
                return PieceOutcome::Taken;
            }
            let start = piece as usize * PIECE;
            if r.manifest_bytes.len() < start + data.len() {
                r.manifest_bytes.resize(start + data.len(), 0);
            }
            r.manifest_bytes[start..start + data.len()].copy_from_slice(data);
            r.manifest_got.insert(piece..piece + 1);
            if r.manifest_got.len() < manifest_pieces {
                return PieceOutcome::Taken;
            }
            let manifest = match Manifest::from_bytes(&r.manifest_bytes, size) {
                Ok(m) if verify_manifest(&m, size, &self.root) => m,
                _ => return PieceOutcome::Corrupt,
            };
            r.manifest = Some(manifest);
            r.manifest_bytes = Vec::new();
            // Groups that completed before the manifest came.
            let complete: Vec<u64> = r
                .buffered
                .iter()
                .filter(|(g, (_, got))| u64::from(got.count_ones()) == group_pieces(size, **g))
                .map(|(g, _)| *g)
                .collect();
            for g in complete {
                if !Self::verify_and_write(r, out, file, size, g) {
                    return PieceOutcome::Corrupt;
                }
            }
            return PieceOutcome::Taken;
        }
        let q = piece - manifest_pieces;
        let g = q / PIECES_PER_GROUP;
        if r.written.contains(g) || r.writing.contains(&g) {
            return PieceOutcome::Taken;
        }
        let (bytes, got) = r.buffered.entry(g).or_insert_with(|| (vec![0; group_len(size, g)], 0));
        let bit = 1u16 << (q % PIECES_PER_GROUP);
        if *got & bit != 0 {
            return PieceOutcome::Taken;
        }
        let start = (q % PIECES_PER_GROUP) as usize * PIECE;
        bytes[start..start + data.len()].copy_from_slice(data);
        *got |= bit;
        let complete = u64::from(got.count_ones()) == group_pieces(size, g);
        if complete && r.manifest.is_some() && !Self::verify_and_write(r, out, file, size, g) {
            return PieceOutcome::Corrupt;
        }
        PieceOutcome::Taken
    }

    /// Checks complete group `g` and hands it to the driver; false when it
    /// does not verify.
    fn verify_and_write(r: &mut Receiving, out: &mut Out, file: FileId, size: u64, g: u64) -> bool {
        let Some((bytes, _)) = r.buffered.remove(&g) else { return true };
        let manifest = r.manifest.as_ref().expect("checked by the callers");
        if !verify_group(manifest, size, g, &bytes) {
            return false;
        }
        r.writing.insert(g);
        out.event(ClientEvent::FileWrite { file, offset: g * GROUP as u64, data: bytes.into() });
        true
    }

    /// The driver wrote the group at `offset`.
    pub(crate) fn written(&mut self, offset: u64) {
        let InState::Receiving(r) = &mut self.state else { return };
        if offset % GROUP as u64 != 0 {
            return;
        }
        let g = offset / GROUP as u64;
        if r.writing.remove(&g) {
            r.written.insert(g..g + 1);
        }
    }

    /// An empty file needs no piece: its one group is checked and written
    /// at the accept.
    pub(crate) fn start_empty(&mut self, out: &mut Out) -> bool {
        let (size, file) = (self.size, self.file);
        let InState::Receiving(r) = &mut self.state else { return true };
        if size != 0 || r.written.contains(0) || r.writing.contains(&0) {
            return true;
        }
        r.buffered.insert(0, (Vec::new(), 0));
        Self::verify_and_write(r, out, file, size, 0)
    }
}

/// The content bytes of the groups in `groups`.
fn group_bytes(groups: &RangeSet, size: u64) -> u64 {
    let offset = |g: u64| g.saturating_mul(GROUP as u64).min(size);
    groups.iter().map(|r| offset(r.end) - offset(r.start)).sum()
}

/// Pieces in content group `g`.
fn group_pieces(size: u64, g: u64) -> u64 {
    (group_len(size, g) as u64).div_ceil(PIECE as u64)
}

/// The length of piece `piece`.
fn piece_len(size: u64, manifest_pieces: u64, piece: u64) -> usize {
    if piece < manifest_pieces {
        let manifest_len = group_count(size) * 32;
        return (manifest_len - piece * PIECE as u64).min(PIECE as u64) as usize;
    }
    let offset = (piece - manifest_pieces) * PIECE as u64;
    size.saturating_sub(offset).min(PIECE as u64) as usize
}

/// The abort a write failure becomes.
pub(crate) fn write_abort(reason: FileAbort) -> FileAbort {
    match reason {
        FileAbort::DiskFull => FileAbort::DiskFull,
        _ => FileAbort::WriteFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::TreeBuilder;

    fn file(size: usize) -> (Vec<u8>, Hash, Manifest) {
        let bytes: Vec<u8> = (0..size).map(|i| (i * 7 + i / 1000) as u8).collect();
        let mut tree = TreeBuilder::new(size as u64);
        tree.update(&bytes);
        let (root, manifest) = tree.finish().expect("whole file");
        (bytes, root, manifest)
    }

    fn writes(out: &Out) -> Vec<u64> {
        out.events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::FileWrite { offset, .. } => Some(*offset),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn groups_that_complete_before_the_manifest_are_written_once_it_verifies() {
        // Given a 3-group file being received, whose manifest (one piece)
        // is lost at first,
        let (bytes, root, manifest) = file(3 * GROUP);
        let mut incoming = Incoming::new(FileId(1), TransferId(1), "f".into(), bytes.len() as u64, root);
        incoming.accept(&[]);
        let mut out = Out::default();
        // when all the content's pieces arrive first,
        for (i, piece) in bytes.chunks(PIECE).enumerate() {
            assert_eq!(incoming.on_piece(&mut out, 1 + i as u64, piece), PieceOutcome::Taken);
        }
        assert!(writes(&out).is_empty(), "nothing is written before the manifest verifies");
        // then once the manifest comes, every group verifies and is written.
        assert_eq!(incoming.on_piece(&mut out, 0, &manifest.to_bytes()), PieceOutcome::Taken);
        assert_eq!(writes(&out), [0, GROUP as u64, 2 * GROUP as u64]);
    }

    #[test]
    fn a_manifest_that_does_not_match_the_root_is_corrupt() {
        // Given a transfer whose manifest comes with one value altered,
        let (bytes, root, manifest) = file(3 * GROUP);
        let mut incoming = Incoming::new(FileId(1), TransferId(1), "f".into(), bytes.len() as u64, root);
        incoming.accept(&[]);
        let mut forged = manifest.to_bytes();
        forged[40] ^= 1;
        // then it is refused as corrupt, and nothing is written.
        let mut out = Out::default();
        assert_eq!(incoming.on_piece(&mut out, 0, &forged), PieceOutcome::Corrupt);
        assert!(writes(&out).is_empty());
    }

    #[test]
    fn pieces_beyond_the_credit_or_of_the_wrong_length_are_dropped() {
        // Given a large transfer just accepted (credit: the window),
        let size = 64 * 1024 * 1024;
        let mut incoming = Incoming::new(FileId(1), TransferId(1), "f".into(), size, [7; 32]);
        let (_, credit) = incoming.accept(&[]);
        assert_eq!(credit, WINDOW_PIECES);
        let mut out = Out::default();
        // when a piece beyond it, and a short one, arrive,
        incoming.on_piece(&mut out, credit + 5, &[0; PIECE]);
        incoming.on_piece(&mut out, 200, &[0; 10]);
        // then neither is held.
        let r = incoming.receiving().expect("receiving");
        assert!(r.buffered.is_empty() && r.manifest_got.is_empty());
    }
}
