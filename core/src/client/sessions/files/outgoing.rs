//! A file we send: from the offer to the receiver's `FileDone`.
//!
//! After the accept, every piece the receiver lacks is sent once in order
//! (the manifest's first), each lost one again (RFC 9002: a new packet
//! number, the same piece), never beyond the receiver's credit. The
//! content comes from the driver a 16 KiB group at a time, read ahead of
//! the sending, and is held until every piece of its group is
//! acknowledged: the sender's memory is bounded by the receiver's window
//! and the read-ahead, whatever the file's size.

use std::collections::{BTreeMap, BTreeSet};

use crate::client::context::Out;
use crate::client::file_api::{FileId, FileSource};
use crate::client::ClientEvent;
use crate::files::{group_count, group_len, manifest_chunks, Hash, RangeSet, GROUP};
use crate::wire::frame::files::{TransferId, PIECE};

/// Groups read ahead of the next piece to send (1 MiB).
const READ_AHEAD_GROUPS: u64 = 64;
const PIECES_PER_GROUP: u64 = (GROUP / PIECE) as u64;

#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(super) file: FileId,
    pub(super) transfer: TransferId,
    pub(super) name: String,
    pub(super) size: u64,
    pub(super) root: Hash,
    /// The manifest's bytes: pieces `0..manifest_pieces`.
    manifest: Vec<u8>,
    manifest_pieces: u64,
    pieces: u64,
    pub(super) state: OutState,
}

#[derive(Debug)]
pub(crate) enum OutState {
    /// Waiting for the receiver's answer.
    Offered,
    Sending(Box<Sending>),
}

#[derive(Debug, Default)]
pub(crate) struct Sending {
    /// The first piece the receiver has no room for yet.
    credit: u64,
    /// Every piece below it was sent at least once (or held by the
    /// receiver before): new pieces go in order.
    cursor: u64,
    /// Pieces lost, to send again.
    lost: BTreeSet<u64>,
    /// Pieces acknowledged (or held by the receiver before).
    acked: RangeSet,
    /// Content groups asked of the driver (`None` until they come) and held
    /// until all their pieces are acknowledged.
    groups: BTreeMap<u64, Option<Vec<u8>>>,
    /// Every content group below it was asked for (or needs no asking).
    next_read: u64,
    /// Content bytes the receiver held before.
    pub(super) resumed: u64,
    /// Pieces sent again.
    pub(super) retransmitted: u64,
}

impl Outgoing {
    pub(crate) fn new(file: FileId, transfer: TransferId, source: FileSource) -> Self {
        let manifest = if manifest_chunks(source.size) > 0 { source.manifest.to_bytes() } else { Vec::new() };
        let manifest_pieces = manifest_chunks(source.size);
        Outgoing {
            file,
            transfer,
            name: source.name,
            size: source.size,
            root: source.root,
            manifest,
            manifest_pieces,
            pieces: manifest_pieces + source.size.div_ceil(PIECE as u64),
            state: OutState::Offered,
        }
    }

    /// The receiver accepted, holding the groups in `have` already, with
    /// room up to piece `credit`.
    pub(crate) fn accepted(&mut self, out: &mut Out, credit: u64, have: &[(u64, u64)]) {
        if !matches!(self.state, OutState::Offered) {
            return;
        }
        let mut s = Sending { credit, ..Sending::default() };
        let groups = group_count(self.size);
        for &(start, end) in have {
            let (start, end) = (start.min(groups), end.min(groups));
            if start >= end {
                continue;
            }
            let first = self.manifest_pieces + start * PIECES_PER_GROUP;
            let last = (self.manifest_pieces + end * PIECES_PER_GROUP).min(self.pieces);
            for g in start..end {
                if !s.acked.contains(first + (g - start) * PIECES_PER_GROUP) {
                    s.resumed += group_len(self.size, g) as u64;
                }
            }
            s.acked.insert(first..last);
        }
        out.event(ClientEvent::FileAccepted { file: self.file, resumed: s.resumed });
        self.state = OutState::Sending(Box::new(s));
    }

    pub(crate) fn sending(&self) -> Option<&Sending> {
        match &self.state {
            OutState::Sending(s) => Some(s),
            OutState::Offered => None,
        }
    }

    /// Content bytes the receiver acknowledged (or held before).
    pub(crate) fn done_bytes(&self) -> u64 {
        let Some(s) = self.sending() else { return 0 };
        let offset =
            |piece: u64| ((piece.max(self.manifest_pieces) - self.manifest_pieces) * PIECE as u64).min(self.size);
        s.acked.iter().map(|r| offset(r.end) - offset(r.start)).sum()
    }

    pub(crate) fn raise_credit(&mut self, credit: u64) {
        if let OutState::Sending(s) = &mut self.state {
            s.credit = s.credit.max(credit.min(self.pieces));
        }
    }

    /// The next piece to send and its bytes: a lost one first, else the
    /// next never sent within the credit; asks the driver for content it
    /// lacks (none is sent until it comes).
    pub(crate) fn next_piece(&mut self, out: &mut Out) -> Option<(u64, Vec<u8>)> {
        self.read_ahead(out);
        let OutState::Sending(s) = &self.state else { return None };
        let lost = s.lost.iter().copied().find(|&p| self.has_data(s, p));
        let piece = match lost {
            Some(p) => p,
            None => {
                let p = s.acked.first_missing_from(s.cursor);
                if p >= self.pieces || p >= s.credit || !self.has_data(s, p) {
                    return None;
                }
                p
            }
        };
        let data = self.piece_data(s, piece)?;
        let OutState::Sending(s) = &mut self.state else { return None };
        if s.lost.remove(&piece) {
            s.retransmitted += 1;
        } else {
            s.cursor = piece + 1;
        }
        Some((piece, data))
    }

    /// A piece for a PTO probe (RFC 9002 §6.2.4) when nothing new can go:
    /// the lowest sent and not yet acknowledged.
    pub(crate) fn probe_piece(&mut self) -> Option<(u64, Vec<u8>)> {
        let OutState::Sending(s) = &self.state else { return None };
        let piece = s.acked.first_missing_from(0);
        if piece >= s.cursor || !self.has_data(s, piece) {
            return None;
        }
        let data = self.piece_data(s, piece)?;
        if let OutState::Sending(s) = &mut self.state {
            s.retransmitted += 1;
        }
        Some((piece, data))
    }

    /// Whether this transfer has a piece to send now.
    pub(crate) fn wants_to_send(&self) -> bool {
        let OutState::Sending(s) = &self.state else { return false };
        let next = s.acked.first_missing_from(s.cursor);
        s.lost.iter().any(|&p| self.has_data(s, p)) || (next < self.pieces && next < s.credit && self.has_data(s, next))
    }

    pub(crate) fn on_acked(&mut self, piece: u64) {
        let manifest_pieces = self.manifest_pieces;
        let OutState::Sending(s) = &mut self.state else { return };
        if piece >= self.pieces || s.acked.contains(piece) {
            return;
        }
        s.acked.insert(piece..piece + 1);
        s.lost.remove(&piece);
        if piece >= manifest_pieces {
            let g = (piece - manifest_pieces) / PIECES_PER_GROUP;
            let first = manifest_pieces + g * PIECES_PER_GROUP;
            let end = (first + PIECES_PER_GROUP).min(self.pieces);
            if (first..end).all(|p| s.acked.contains(p)) {
                s.groups.remove(&g);
            }
        }
    }

    /// A packet carrying `piece` was lost (or its path went away): send
    /// the piece again unless it got through.
    pub(crate) fn on_lost(&mut self, piece: u64) {
        let OutState::Sending(s) = &mut self.state else { return };
        if piece < s.cursor && !s.acked.contains(piece) {
            s.lost.insert(piece);
        }
    }

    /// The driver's bytes for the group at `offset`; false when they were
    /// not asked for (or are not the group's length).
    pub(crate) fn on_data(&mut self, offset: u64, data: &[u8]) -> bool {
        let OutState::Sending(s) = &mut self.state else { return false };
        if offset % GROUP as u64 != 0 {
            return false;
        }
        let g = offset / GROUP as u64;
        match s.groups.get_mut(&g) {
            Some(slot @ None) if data.len() == group_len(self.size, g) => {
                *slot = Some(data.to_vec());
                true
            }
            _ => false,
        }
    }

    /// Asks the driver for the groups of the pieces due soon: from the
    /// next new piece's group, [`READ_AHEAD_GROUPS`] on, within the credit.
    /// Groups are asked for once, in order (a group is held until all its
    /// pieces are acknowledged, so a lost piece's group is still here).
    fn read_ahead(&mut self, out: &mut Out) {
        let m = self.manifest_pieces;
        let OutState::Sending(s) = &mut self.state else { return };
        let next = s.acked.first_missing_from(s.cursor);
        if next >= self.pieces {
            return;
        }
        let first_group = (next.max(m) - m) / PIECES_PER_GROUP;
        let limit = s.credit.max(m) - m;
        let last_group =
            limit.div_ceil(PIECES_PER_GROUP).min(first_group + READ_AHEAD_GROUPS).min(group_count(self.size));
        for g in s.next_read.max(first_group)..last_group {
            let start = m + g * PIECES_PER_GROUP;
            let end = (start + PIECES_PER_GROUP).min(self.pieces);
            // A group the receiver held before needs no reading.
            if s.acked.first_missing_from(start) < end && !s.groups.contains_key(&g) {
                s.groups.insert(g, None);
                let len = group_len(self.size, g) as u32;
                out.event(ClientEvent::FileRead { file: self.file, offset: g * GROUP as u64, len });
            }
        }
        s.next_read = s.next_read.max(last_group);
    }

    fn has_data(&self, s: &Sending, piece: u64) -> bool {
        piece < self.manifest_pieces
            || s.groups.get(&((piece - self.manifest_pieces) / PIECES_PER_GROUP)).is_some_and(Option::is_some)
    }

    fn piece_data(&self, s: &Sending, piece: u64) -> Option<Vec<u8>> {
        if piece < self.manifest_pieces {
            let start = piece as usize * PIECE;
            return Some(self.manifest[start..(start + PIECE).min(self.manifest.len())].to_vec());
        }
        let q = piece - self.manifest_pieces;
        let group = s.groups.get(&(q / PIECES_PER_GROUP))?.as_ref()?;
        let start = (q % PIECES_PER_GROUP) as usize * PIECE;
        Some(group[start..(start + PIECE).min(group.len())].to_vec())
    }
}
