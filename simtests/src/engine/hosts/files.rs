//! A peer host's files (issue 22), driven as a real driver drives them
//! (`punchline_core::client::file_api`), with the disk replaced by a
//! generator:
//!
//! - a `send_file` event generates the file's content ([`Content`]), hashes
//!   it once with the core's `TreeBuilder` and offers it with
//!   `Client::send_file`; every `FileRead` is answered from the generator;
//! - a receiving host accepts every offer, holding nothing
//!   (`accept_file(.., &[])`), and checks every `FileWrite` against the
//!   bytes the same generator gives for the offer's identity before it
//!   answers `file_written(Ok)`: a file is `verified` when every group
//!   matched and the transfer completed.
//!
//! The content is a function of the run's seed and the offer's identity
//! (sender, name, size), not of the scenario event: the receiver can
//! regenerate it from the `FileOffered` alone, without reading the
//! sender's state (which may run on another thread), and the same
//! `send_file` twice offers the same bytes, as a user sending one file
//! twice does. Each 16 KiB group has its own child generator, so any group
//! is made again on demand and no file is ever held in memory whole.

use std::time::Duration;

use punchline_core::client::{ClientEvent, FileDirection, FileId, FileSource, PathKind};
use punchline_core::files::{group_len, Hash, Manifest, RangeSet, TreeBuilder, GROUP};

use super::{ConnectionState, Hosts};
use crate::engine::views::PathView;
use crate::report::{FileTransfer, PeerPath};
use crate::rng::Rng;

/// The content generators' branch of the run's tree of generators (apart
/// from every other consumer's labels, so adding files shifts nothing).
const CONTENT_LABEL: u64 = 0xf11e_c0de;

/// A file's content, generated: 16 KiB groups, each from its own child of
/// one generator seeded from the run's seed and the file's identity.
#[derive(Clone, Debug)]
pub(crate) struct Content {
    rng: Rng,
    size: u64,
}

impl Content {
    /// The content `sender` offers as `name`, `size` bytes long, in a run
    /// with `seed`.
    pub(crate) fn new(seed: u64, sender: &str, name: &str, size: u64) -> Content {
        // FNV-1a over the identity: stable across platforms and runs (the
        // std hasher is not promised to be).
        let mut label: u64 = 0xcbf2_9ce4_8422_2325;
        let bytes = sender.bytes().chain([0]).chain(name.bytes()).chain([0]).chain(size.to_le_bytes());
        for b in bytes {
            label = (label ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Content { rng: Rng::new(seed).fork(CONTENT_LABEL).fork(label), size }
    }

    /// Group `index`'s bytes: [`GROUP`] of them, fewer for the last.
    pub(crate) fn group(&self, index: u64) -> Vec<u8> {
        let len = group_len(self.size, index);
        let mut rng = self.rng.fork(index);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let word = rng.next_u64().to_le_bytes();
            let take = (len - out.len()).min(word.len());
            out.extend_from_slice(&word[..take]);
        }
        out
    }

    /// `len` bytes from `offset` (fewer at the end of the file), across
    /// groups if need be.
    pub(crate) fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let end = offset.saturating_add(len as u64).min(self.size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let index = at / GROUP as u64;
            let start = index * GROUP as u64;
            let group = self.group(index);
            // Both ends fall inside this group: the casts cannot truncate.
            let from = (at - start) as usize;
            let to = (end - start).min(group.len() as u64) as usize;
            out.extend_from_slice(&group[from..to]);
            at = start + to as u64;
        }
        out
    }

    /// The BLAKE3 root and manifest, in one pass over the groups.
    pub(crate) fn tree(&self) -> (Hash, Manifest) {
        let mut tree = TreeBuilder::new(self.size);
        for index in 0..self.size.div_ceil(GROUP as u64) {
            tree.update(&self.group(index));
        }
        // Invariant: exactly `size` bytes were fed, group by group.
        tree.finish().expect("the generator gives exactly `size` bytes")
    }

    /// Groups with content (none for an empty file).
    fn groups(&self) -> u64 {
        self.size.div_ceil(GROUP as u64)
    }
}

/// A file a peer offered, from its `send_file` event on.
pub(crate) struct Outgoing {
    /// The scenario event that sent it.
    pub(crate) event: usize,
    pub(crate) to: String,
    pub(crate) name: String,
    pub(crate) size: u64,
    pub(crate) root: Hash,
    content: Content,
    /// `None` when the client refused to send it.
    file: Option<FileId>,
    /// When the event happened.
    pub(crate) started: Duration,
    /// The sender's `FileAccepted`.
    pub(crate) accepted_at: Option<Duration>,
    /// Bytes the receiver held already (0: the simulator's receivers hold
    /// nothing).
    pub(crate) resumed: u64,
    /// Completed or failed, at the sender.
    finished: bool,
    /// Pieces sent again, as the sender's `FileProgress` last said.
    pub(crate) retransmitted: u64,
    /// Why it failed, at the sender (or why `send_file` was refused).
    pub(crate) failure: Option<String>,
    /// The sender's session paths while it was under way, from the offer
    /// (no repeats).
    pub(crate) paths: Vec<PathView>,
}

/// A file a peer was offered (and accepted).
pub(crate) struct Incoming {
    file: FileId,
    /// The sender.
    pub(crate) from: String,
    pub(crate) root: Hash,
    content: Content,
    /// Groups written that matched the generator.
    matched: RangeSet,
    /// Writes that did not (must stay 0).
    pub(crate) mismatched: u64,
    /// The receiver's `FileCompleted`.
    pub(crate) completed_at: Option<Duration>,
    /// Why it failed, at the receiver.
    pub(crate) failure: Option<String>,
}

impl Incoming {
    /// Bytes of the groups written that matched.
    fn received(&self) -> u64 {
        // Per range, not per group: a sweep asks every few milliseconds.
        let offset = |g: u64| g.saturating_mul(GROUP as u64).min(self.content.size);
        self.matched.iter().map(|groups| offset(groups.end) - offset(groups.start)).sum()
    }

    /// Complete, and every group written matched the content sent: the
    /// file arrived byte for byte.
    pub(crate) fn verified(&self) -> bool {
        self.completed_at.is_some() && self.mismatched == 0 && self.matched.len() == self.content.groups()
    }
}

/// A peer host's files, both ways.
#[derive(Default)]
pub(crate) struct PeerFiles {
    pub(crate) outgoing: Vec<Outgoing>,
    pub(crate) incoming: Vec<Incoming>,
}

impl PeerFiles {
    /// The outgoing file under way named `file`.
    fn sending(&mut self, file: FileId) -> Option<&mut Outgoing> {
        self.active().find(|o| o.file == Some(file))
    }

    /// Outgoing files not yet completed or failed.
    fn active(&mut self) -> impl Iterator<Item = &mut Outgoing> {
        self.outgoing.iter_mut().filter(|o| !o.finished)
    }
}

/// The report's `files`: every peer's outgoing files in the order their
/// events happened, each joined with the receiver's record of it (the
/// first not yet joined with the same sender and root). `peers` are the
/// world's, in order; `ms` rounds a duration as the report does.
pub(crate) fn report(peers: &[&super::PeerHost], ms: impl Fn(Duration) -> f64) -> Vec<FileTransfer> {
    let mut sent: Vec<(&super::PeerHost, &Outgoing)> =
        peers.iter().flat_map(|p| p.files.outgoing.iter().map(move |o| (*p, o))).collect();
    sent.sort_by_key(|(_, o)| (o.started, o.event));
    let mut joined: Vec<Vec<bool>> = peers.iter().map(|p| vec![false; p.files.incoming.len()]).collect();
    sent.into_iter()
        .map(|(sender, o)| {
            let receiver = peers.iter().position(|p| p.name == o.to);
            let incoming = receiver.and_then(|r| {
                let k = peers[r]
                    .files
                    .incoming
                    .iter()
                    .enumerate()
                    .position(|(k, f)| !joined[r][k] && f.from == sender.name && f.root == o.root)?;
                joined[r][k] = true;
                Some(&peers[r].files.incoming[k])
            });
            let completed_at = incoming.and_then(|f| f.completed_at);
            let goodput = match (o.accepted_at, completed_at) {
                (Some(accepted), Some(completed)) if completed > accepted => {
                    let bits = (o.size - o.resumed.min(o.size)) as f64 * 8.0;
                    let mbps = bits / (completed - accepted).as_secs_f64() / 1e6;
                    Some((mbps * 1000.0).round() / 1000.0)
                }
                _ => None,
            };
            let paths = o
                .paths
                .iter()
                .map(|v| match v {
                    PathView::Direct => PeerPath::Direct,
                    PathView::Relay => PeerPath::Relay,
                    PathView::Closed => PeerPath::Closed,
                })
                .collect();
            FileTransfer {
                from: sender.name.clone(),
                to: o.to.clone(),
                size: o.size,
                completed_ms: completed_at.map(|t| ms(t - o.started)),
                goodput_mbps: goodput,
                retransmitted: o.retransmitted,
                verified: incoming.is_some_and(Incoming::verified),
                name: o.name.clone(),
                root: o.root.iter().map(|b| format!("{b:02x}")).collect(),
                accepted_ms: o.accepted_at.map(|t| ms(t - o.started)),
                resumed: o.resumed,
                received: incoming.map_or(0, Incoming::received),
                paths,
                failure: o.failure.clone().or_else(|| incoming.and_then(|f| f.failure.clone())),
            }
        })
        .collect()
}

fn short(root: &Hash) -> String {
    root[..4].iter().map(|b| format!("{b:02x}")).collect()
}

impl Hosts {
    /// A `send_file` event of peer `i` (the scenario's `event`-th).
    pub(super) fn send_file(&mut self, i: usize, event: usize, to: String, name: String, size: u64) {
        let now = self.instant();
        let sender = self.peers[i].name.clone();
        self.lines.record(self.now, format_args!("event: {sender} sends {name:?} ({size} B) to {to}"));
        let content = Content::new(self.seed, &sender, &name, size);
        let (root, manifest) = content.tree();
        // A file with no session opens one, as a connect does, and the
        // report lists it as a connect's.
        let client = &self.peers[i].client;
        let session = client.sessions().filter_map(|s| client.session_info(s)).find(|info| info.peer == to);
        let paths = match session.map(|s| s.path) {
            Some(PathKind::Direct { .. }) => vec![PathView::Direct],
            Some(PathKind::Relay) => vec![PathView::Relay],
            None => Vec::new(),
        };
        let opening = self.find_connection(i, |c| c.to == to && c.session.is_none() && !c.failed).is_some();
        let connects = paths.is_empty() && !opening;
        if connects {
            self.connections_of[i].push(self.connections.len());
            self.connections.push(ConnectionState::new(self.first + i, event, to.clone(), self.now));
        }
        let source = FileSource { name: name.clone(), size, root, manifest };
        let (file, failure) = match self.peers[i].client.send_file(now, &to, source) {
            Ok(file) => {
                self.lines.record(self.now, format_args!("{sender}: {file} to {to}, root {}", short(&root)));
                (Some(file), None)
            }
            Err(e) => {
                self.lines.record(self.now, format_args!("{sender}: send_file refused: {e}"));
                if connects {
                    self.connections.last_mut().expect("just pushed").failed = true;
                }
                (None, Some(e.to_string()))
            }
        };
        self.peers[i].files.outgoing.push(Outgoing {
            event,
            to,
            name,
            size,
            root,
            content,
            file,
            started: self.now,
            accepted_at: None,
            resumed: 0,
            finished: file.is_none(),
            retransmitted: 0,
            failure,
            paths,
        });
        self.drain_peer(i);
    }

    /// Peer `i`'s file events: answered as a driver answers them.
    pub(super) fn file_event(&mut self, i: usize, e: &ClientEvent) {
        let now = self.instant();
        let at = self.now;
        let seed = self.seed;
        let peer = &mut self.peers[i];
        match e {
            ClientEvent::FileRead { file, offset, len } => {
                let data = peer.files.sending(*file).map(|o| o.content.read(*offset, *len as usize));
                match data {
                    Some(data) => peer.client.file_data(now, *file, *offset, &data),
                    None => peer.client.file_read_failed(now, *file),
                }
            }
            ClientEvent::FileOffered { file, peer: from, name, size, root, .. } => {
                let content = Content::new(seed, from, name, *size);
                peer.files.incoming.push(Incoming {
                    file: *file,
                    from: from.clone(),
                    root: *root,
                    content,
                    matched: RangeSet::new(),
                    mismatched: 0,
                    completed_at: None,
                    failure: None,
                });
                peer.client.accept_file(now, *file, &[]);
            }
            ClientEvent::FileWrite { file, offset, data } => {
                if let Some(f) = peer.files.incoming.iter_mut().find(|f| f.file == *file) {
                    let index = offset / GROUP as u64;
                    let whole = offset % GROUP as u64 == 0 && data.len() == group_len(f.content.size, index);
                    if whole && f.content.group(index) == data.as_ref() {
                        f.matched.insert_one(index);
                    } else {
                        f.mismatched += 1;
                        let name = &peer.name;
                        self.lines.record(
                            at,
                            format_args!("{name}: {file} wrote {} B at {offset} that were not sent", data.len()),
                        );
                    }
                }
                self.peers[i].client.file_written(now, *file, *offset, Ok(()));
            }
            ClientEvent::FileAccepted { file, resumed } => {
                if let Some(o) = peer.files.sending(*file) {
                    o.accepted_at = Some(at);
                    o.resumed = *resumed;
                }
            }
            ClientEvent::FileCompleted { file, direction: FileDirection::Outgoing, .. } => {
                if let Some(o) = peer.files.sending(*file) {
                    o.finished = true;
                }
            }
            ClientEvent::FileCompleted { file, direction: FileDirection::Incoming, .. } => {
                if let Some(f) = peer.files.incoming.iter_mut().find(|f| f.file == *file) {
                    f.completed_at = Some(at);
                }
            }
            ClientEvent::FileFailed { file, failure } => {
                if let Some(o) = peer.files.sending(*file) {
                    o.finished = true;
                    o.failure = Some(failure.to_string());
                } else if let Some(f) = peer.files.incoming.iter_mut().find(|f| f.file == *file) {
                    f.failure = Some(failure.to_string());
                }
            }
            _ => {}
        }
    }

    /// After peer `i`'s client ran: what its transfers under way have
    /// retransmitted so far (a completed transfer's progress is gone, so
    /// it is read while it lasts: nothing is sent in the input that
    /// completes it, which is the receiver's `FileDone`).
    pub(super) fn file_progress(&mut self, i: usize) {
        let peer = &mut self.peers[i];
        for o in peer.files.outgoing.iter_mut().filter(|o| !o.finished && o.accepted_at.is_some()) {
            if let Some(p) = o.file.and_then(|f| peer.client.file_progress(f)) {
                o.retransmitted = p.retransmitted;
            }
        }
    }

    /// Peer `i`'s session events, for the paths of its files under way.
    pub(super) fn file_paths(&mut self, i: usize, e: &ClientEvent) {
        let peer = &mut self.peers[i];
        if peer.files.outgoing.iter().all(|o| o.finished) {
            return;
        }
        let info = |session| peer.client.session_info(session).map(|s| s.peer);
        let (with, view) = match e {
            ClientEvent::SessionOpened { peer, .. } => (Some(peer.clone()), PathView::Relay),
            ClientEvent::PathDirect { session, .. } => (info(*session), PathView::Direct),
            ClientEvent::PathFellBack { session } => (info(*session), PathView::Relay),
            _ => return,
        };
        let Some(with) = with else { return };
        for o in peer.files.active().filter(|o| o.to == with) {
            if o.paths.last() != Some(&view) {
                o.paths.push(view);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_is_the_same_for_the_same_identity_and_differs_otherwise() {
        // Given one identity generated twice, and identities differing in
        // one part each,
        let a = Content::new(7, "alice", "file.bin", 40_000);
        let again = Content::new(7, "alice", "file.bin", 40_000);
        let others = [
            Content::new(8, "alice", "file.bin", 40_000),
            Content::new(7, "bob", "file.bin", 40_000),
            Content::new(7, "alice", "other.bin", 40_000),
        ];
        // then the same identity gives the same bytes and the others differ.
        assert_eq!(a.read(0, 40_000), again.read(0, 40_000));
        for other in &others {
            assert_ne!(a.group(0), other.group(0));
        }
        assert_eq!(a.tree(), again.tree());
    }

    #[test]
    fn reads_across_groups_are_the_groups_bytes() {
        // Given a file of two full groups and a short third,
        let c = Content::new(1, "alice", "f", 2 * GROUP as u64 + 100);
        let whole: Vec<u8> = (0..3).flat_map(|g| c.group(g)).collect();
        // then its length is the size, and any read is the slice of the
        // whole, short at the end.
        assert_eq!(whole.len(), 2 * GROUP + 100);
        assert_eq!(c.read(GROUP as u64 - 10, 30), whole[GROUP - 10..GROUP + 20]);
        assert_eq!(c.read(2 * GROUP as u64 + 90, GROUP), whole[2 * GROUP + 90..]);
        assert!(c.read(3 * GROUP as u64, 10).is_empty());
    }

    #[test]
    fn the_tree_group_by_group_is_the_tree_of_the_bytes_read() {
        // Given a file hashed group by group, when its bytes are read in
        // one piece and hashed, then the roots agree: what a sender offers
        // is what a reader of the content gets.
        let c = Content::new(3, "alice", "f", 3 * GROUP as u64 + 5);
        let bytes = c.read(0, 4 * GROUP);
        let mut tree = TreeBuilder::new(bytes.len() as u64);
        tree.update(&bytes);
        assert_eq!(c.tree().0, tree.finish().expect("the whole file").0);
    }
}
