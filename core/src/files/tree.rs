//! BLAKE3 verified streaming at 16 KiB granularity: the sender's one-pass
//! [`TreeBuilder`], the group [`Manifest`], and the receiver's checks
//! ([`verify_manifest`], [`verify_group`]).
//!
//! The tree is BLAKE3's own (paper §2.1: 1 KiB chunks, a binary
//! tree whose left subtrees are complete and hold the largest power of two of
//! chunks smaller than the whole). Cutting it at 16-chunk subtrees loses
//! nothing: a group starting at chunk `16·i` is always a complete subtree of
//! the whole-file tree (or the right edge of one), so its chaining value is a
//! node of the tree, and the root follows from the group values alone. This
//! is iroh-blobs' "chunk group" (bao-tree's `BlockSize::from_chunk_log(4)`):
//! the same root hash as plain BLAKE3, with the lowest four levels pruned.
//!
//! The one-group file is special: BLAKE3 finalises a lone subtree as the root
//! (the ROOT flag goes on its last compression), so it has no non-root value
//! to send. Its manifest is the root itself and the data verifies as
//! `blake3::hash(data) == root`.

use std::fmt;

use blake3::hazmat::{merge_subtrees_non_root, merge_subtrees_root, HasherExt, Mode};
use blake3::Hasher;

/// BLAKE3's chunk (paper §2.1), and the unit in which the transfer counts pieces.
pub const CHUNK: usize = 1024;
/// The verification unit: a group is written and marked "have" only once it verifies.
pub const GROUP: usize = 16 * 1024;
/// Chunks in a full group.
pub const CHUNKS_PER_GROUP: usize = GROUP / CHUNK;
/// A BLAKE3 output: a root hash or a chaining value.
pub type Hash = [u8; 32];

/// Bytes of one manifest entry.
const CV_LEN: usize = 32;

/// How many groups a file of `size` bytes has: `ceil(size / GROUP)`, and at
/// least one (an empty file is one empty group, hashed as BLAKE3 hashes the
/// empty input).
pub fn group_count(size: u64) -> u64 {
    size.div_ceil(GROUP as u64).max(1)
}

/// The length of group `index` of a file of `size` bytes: [`GROUP`], except
/// the last, which may be short (and is 0 only for the empty file). An index
/// past the end has length 0.
pub fn group_len(size: u64, index: u64) -> usize {
    let start = index.saturating_mul(GROUP as u64);
    // `min` keeps the result at most GROUP, so the cast cannot truncate.
    size.saturating_sub(start).min(GROUP as u64) as usize
}

/// How many 1 KiB pieces the manifest's bytes take on the wire: 0 for a
/// one-group file (the root verifies its data directly, nothing to send),
/// otherwise `ceil(32 · groups / 1024)`.
pub fn manifest_chunks(size: u64) -> u64 {
    let groups = group_count(size);
    if groups == 1 {
        0
    } else {
        (groups * CV_LEN as u64).div_ceil(CHUNK as u64)
    }
}

/// Why a tree could not be built or a manifest read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeError {
    /// The bytes fed to a [`TreeBuilder`] are not the size it was promised
    /// (the file changed while it was read).
    SizeMismatch {
        /// The size given to [`TreeBuilder::new`].
        expected: u64,
        /// The bytes actually fed.
        fed: u64,
    },
    /// Manifest bytes of the wrong length for the file's size.
    ManifestLength {
        /// `32 · group_count(size)`.
        expected: u64,
        /// The length received.
        got: u64,
    },
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TreeError::SizeMismatch { expected, fed } => {
                write!(f, "the file was expected to be {expected} bytes but {fed} bytes were read (did it change?)")
            }
            TreeError::ManifestLength { expected, got } => {
                write!(f, "a manifest of {got} bytes, where this file's size needs {expected}")
            }
        }
    }
}

impl std::error::Error for TreeError {}

/// The sender's streaming hasher: feed the file through it once, in any
/// slicing, and [`finish`](Self::finish) gives the BLAKE3 root (equal to
/// `blake3::hash` of the whole) and the [`Manifest`] of group chaining values.
///
/// Only the groups are hashed; the root is merged from their values, so the
/// one pass costs one BLAKE3 of the file plus one parent compression per
/// group. A group arriving whole in one slice is hashed in place (BLAKE3's
/// SIMD hashes its 16 chunks in parallel); a group split across slices is
/// gathered in a 16 KiB buffer first, so small reads cost a copy, not the
/// parallelism.
#[derive(Debug, Clone)]
pub struct TreeBuilder {
    size: u64,
    fed: u64,
    /// Bytes of the current (incomplete) group, when it arrived in pieces.
    pending: Vec<u8>,
    cvs: Vec<Hash>,
}

impl TreeBuilder {
    /// A builder for a file of `size` bytes.
    pub fn new(size: u64) -> Self {
        // The capacity is a hint; a (local) size in the terabytes grows the
        // vector as groups arrive rather than reserving it all up front.
        let capacity = group_count(size).min(1 << 16) as usize;
        TreeBuilder { size, fed: 0, pending: Vec::new(), cvs: Vec::with_capacity(capacity) }
    }

    /// Feeds the next bytes of the file. Bytes beyond the promised size are
    /// counted (so [`finish`](Self::finish) refuses) but not hashed.
    pub fn update(&mut self, bytes: &[u8]) {
        let room = self.size - self.fed.min(self.size);
        self.fed = self.fed.saturating_add(bytes.len() as u64);
        let mut bytes = &bytes[..bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
        while !bytes.is_empty() {
            let index = self.cvs.len() as u64;
            let want = group_len(self.size, index);
            if self.pending.is_empty() && bytes.len() >= want {
                let cv = group_cv(self.size, index, &bytes[..want]);
                self.cvs.push(cv);
                bytes = &bytes[want..];
            } else {
                let take = (want - self.pending.len()).min(bytes.len());
                self.pending.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.pending.len() == want {
                    let cv = group_cv(self.size, index, &self.pending);
                    self.cvs.push(cv);
                    self.pending.clear();
                }
            }
        }
    }

    /// The root and the manifest, or [`TreeError::SizeMismatch`] when the
    /// bytes fed were not exactly the promised size.
    pub fn finish(mut self) -> Result<(Hash, Manifest), TreeError> {
        if self.fed != self.size {
            return Err(TreeError::SizeMismatch { expected: self.size, fed: self.fed });
        }
        if self.size == 0 {
            // The empty file's one group is empty: no byte ever completed it.
            self.cvs.push(group_cv(0, 0, &[]));
        }
        debug_assert_eq!(self.cvs.len() as u64, group_count(self.size), "every group was hashed");
        let manifest = Manifest { cvs: self.cvs };
        Ok((manifest.root(self.size), manifest))
    }
}

/// The chaining values of every 16 KiB group of a file, in order: what the
/// receiver checks against the root once, then checks each group against.
///
/// For a one-group file it holds one entry, the root itself (see the module
/// documentation). A manifest is 1/512 of its file (32 bytes per 16 KiB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    cvs: Vec<Hash>,
}

// A manifest always has at least one group, so `is_empty` would always be false.
#[allow(clippy::len_without_is_empty)]
impl Manifest {
    /// The number of groups (at least one).
    pub fn len(&self) -> u64 {
        self.cvs.len() as u64
    }

    /// The chaining value of group `index`, if there is such a group.
    pub fn get(&self, index: u64) -> Option<&Hash> {
        self.cvs.get(usize::try_from(index).ok()?)
    }

    /// The wire form: 32 bytes per group, concatenated in order.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.cvs.concat()
    }

    /// Reads the wire form for a file of `size` bytes: exactly
    /// `32 · group_count(size)` bytes, or [`TreeError::ManifestLength`].
    /// Reading checks only the shape; [`verify_manifest`] checks the content.
    pub fn from_bytes(bytes: &[u8], size: u64) -> Result<Manifest, TreeError> {
        let expected = group_count(size).saturating_mul(CV_LEN as u64);
        if bytes.len() as u64 != expected {
            return Err(TreeError::ManifestLength { expected, got: bytes.len() as u64 });
        }
        let cvs = bytes.chunks_exact(CV_LEN).map(|cv| cv.try_into().expect("chunks_exact gives 32 bytes")).collect();
        Ok(Manifest { cvs })
    }

    /// The BLAKE3 root these group values make for a file of `size` bytes,
    /// merged as BLAKE3's left-balanced tree merges them (paper §2.1): every
    /// group but the last is full, so the left subtree holds the largest power
    /// of two of groups smaller than the group count.
    ///
    /// Only the number of groups matters here: BLAKE3 commits to the exact
    /// length through the last chunk, so a size is proven by the last group
    /// verifying (as in Bao), not by the root. A manifest whose length does
    /// not match `size` gives an all-zero value, which no BLAKE3 output is
    /// expected to equal; [`verify_manifest`] refuses such a pair first anyway.
    pub fn root(&self, size: u64) -> Hash {
        if self.len() != group_count(size) {
            return [0; 32];
        }
        match self.cvs.as_slice() {
            [only] => *only,
            cvs => {
                let split = left_groups(cvs.len());
                let (left, right) = cvs.split_at(split);
                merge_subtrees_root(&subtree_cv(left), &subtree_cv(right), Mode::Hash).into()
            }
        }
    }
}

/// Whether `manifest` is the manifest of a file of `size` bytes with `root`:
/// one entry per group, merging to the root.
pub fn verify_manifest(manifest: &Manifest, size: u64, root: &Hash) -> bool {
    manifest.len() == group_count(size) && manifest.root(size) == *root
}

/// Whether `data` is group `index` of the file that `manifest` (already
/// checked with [`verify_manifest`]) describes: the right length for that
/// group of a file of `size` bytes, and the same chaining value at that
/// offset. The values are public, so the comparison need not be constant-time.
pub fn verify_group(manifest: &Manifest, size: u64, index: u64, data: &[u8]) -> bool {
    if manifest.len() != group_count(size) || index >= manifest.len() || data.len() != group_len(size, index) {
        return false;
    }
    manifest.get(index) == Some(&group_cv(size, index, data))
}

/// The value a group contributes: its non-root chaining value at its offset,
/// or, for a one-group file, the root itself. `data` must be exactly the
/// group (its length checked by the callers), so BLAKE3's subtree bounds hold:
/// a group starts at a multiple of 16 chunks and is at most 16 chunks long.
fn group_cv(size: u64, index: u64, data: &[u8]) -> Hash {
    if group_count(size) == 1 {
        return blake3::hash(data).into();
    }
    Hasher::new().set_input_offset(index * GROUP as u64).update(data).finalize_non_root()
}

/// How many of `groups` (at least 2) the left subtree holds: the largest
/// power of two strictly smaller than `groups`.
fn left_groups(groups: usize) -> usize {
    debug_assert!(groups >= 2);
    1 << (usize::BITS - 1 - (groups - 1).leading_zeros())
}

/// The non-root chaining value of a subtree made of `cvs` (at least one).
fn subtree_cv(cvs: &[Hash]) -> Hash {
    match cvs {
        [only] => *only,
        _ => {
            let (left, right) = cvs.split_at(left_groups(cvs.len()));
            merge_subtrees_non_root(&subtree_cv(left), &subtree_cv(right), Mode::Hash)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The sizes the brief names (every boundary of chunk and group), and a
    /// few seeded random ones.
    fn sizes() -> Vec<u64> {
        let mut sizes = vec![0, 1, 1023, 1024, 1025, 16383, 16384, 16385, 32768, 32769, 5 * 16384 + 7, (1 << 20) + 1];
        let mut rng = Rng::new(22);
        sizes.extend((0..6).map(|_| rng.below(600_000)));
        sizes
    }

    fn content(size: u64, seed: u64) -> Vec<u8> {
        let mut data = vec![0; size as usize];
        Rng::new(seed).fill(&mut data);
        data
    }

    fn build(data: &[u8]) -> (Hash, Manifest) {
        let mut builder = TreeBuilder::new(data.len() as u64);
        builder.update(data);
        builder.finish().expect("the promised size")
    }

    fn group(data: &[u8], index: u64) -> &[u8] {
        let start = index as usize * GROUP;
        &data[start..start + group_len(data.len() as u64, index)]
    }

    #[test]
    fn groups_count_and_lengths_cover_the_file() {
        assert_eq!((group_count(0), group_len(0, 0)), (1, 0));
        assert_eq!((group_count(1), group_len(1, 0)), (1, 1));
        assert_eq!((group_count(16384), group_len(16384, 0)), (1, GROUP));
        assert_eq!((group_count(16385), group_len(16385, 0), group_len(16385, 1)), (2, GROUP, 1));
        assert_eq!(group_len(16385, 2), 0, "past the end");
        assert_eq!(group_count(u64::MAX), u64::MAX / GROUP as u64 + 1);
        for size in sizes() {
            let total: u64 = (0..group_count(size)).map(|i| group_len(size, i) as u64).sum();
            assert_eq!(total, size, "size {size}");
        }
    }

    #[test]
    fn manifest_pieces_are_zero_for_one_group_and_round_up_otherwise() {
        assert_eq!(manifest_chunks(0), 0);
        assert_eq!(manifest_chunks(16384), 0);
        // Two groups: 64 bytes, one piece; 32 groups: exactly 1 KiB; 33: two.
        assert_eq!(manifest_chunks(16385), 1);
        assert_eq!(manifest_chunks(32 * 16384), 1);
        assert_eq!(manifest_chunks(32 * 16384 + 1), 2);
        // 1 GiB: 65,536 groups, 2 MiB of manifest, 2,048 pieces.
        assert_eq!(manifest_chunks(1 << 30), 2048);
    }

    #[test]
    fn the_builder_gives_blake3_s_root_for_every_size_and_any_slicing() {
        let mut rng = Rng::new(7);
        for size in sizes() {
            let data = content(size, size);
            let expected: Hash = blake3::hash(&data).into();
            // Given the file in one slice, in 1-byte-then-group slices, and in
            // random slices,
            let (root, manifest) = build(&data);
            assert_eq!(root, expected, "size {size}: whole");
            let mut odd = TreeBuilder::new(size);
            let (first, rest) = data.split_at(data.len().min(1));
            odd.update(first);
            rest.chunks(GROUP).for_each(|c| odd.update(c));
            assert_eq!(odd.finish().expect("size"), (expected, manifest.clone()), "size {size}: shifted");
            let mut random = TreeBuilder::new(size);
            let mut at = 0;
            while at < data.len() {
                let step = (rng.below(40_000) as usize + 1).min(data.len() - at);
                random.update(&data[at..at + step]);
                random.update(&[]);
                at += step;
            }
            // then the same root and manifest, whose merge is the root too.
            assert_eq!(random.finish().expect("size"), (expected, manifest.clone()), "size {size}: random");
            assert_eq!(manifest.len(), group_count(size));
            assert_eq!(manifest.root(size), expected, "size {size}: merged");
            assert!(verify_manifest(&manifest, size, &expected));
        }
    }

    #[test]
    fn a_one_group_manifest_is_the_root() {
        let data = content(5000, 1);
        let (root, manifest) = build(&data);
        assert_eq!(manifest.to_bytes(), root.to_vec());
        assert_eq!(manifest_chunks(5000), 0);
        assert!(verify_group(&manifest, 5000, 0, &data));
    }

    #[test]
    fn the_builder_refuses_too_few_or_too_many_bytes() {
        let mut short = TreeBuilder::new(20_000);
        short.update(&[1; 19_999]);
        assert_eq!(short.finish().unwrap_err(), TreeError::SizeMismatch { expected: 20_000, fed: 19_999 });
        let mut long = TreeBuilder::new(20_000);
        long.update(&[1; 15_000]);
        long.update(&[1; 5_001]);
        assert_eq!(long.finish().unwrap_err(), TreeError::SizeMismatch { expected: 20_000, fed: 20_001 });
        let mut empty = TreeBuilder::new(0);
        empty.update(b"x");
        assert!(empty.finish().is_err());
    }

    #[test]
    fn every_true_group_verifies_and_a_flipped_byte_wrong_index_or_wrong_length_does_not() {
        for size in sizes() {
            let data = content(size, size ^ 0x55);
            let (_, manifest) = build(&data);
            let groups = group_count(size);
            for index in 0..groups {
                let good = group(&data, index);
                assert!(verify_group(&manifest, size, index, good), "size {size} group {index}");
                if !good.is_empty() {
                    let mut flipped = good.to_vec();
                    let at = flipped.len() / 2;
                    flipped[at] ^= 1;
                    assert!(!verify_group(&manifest, size, index, &flipped), "size {size} group {index}: flipped");
                    assert!(!verify_group(&manifest, size, index, &good[..good.len() - 1]), "shorter");
                }
                let mut longer = good.to_vec();
                longer.push(0);
                assert!(!verify_group(&manifest, size, index, &longer), "size {size} group {index}: longer");
                // The right bytes at another index (full groups only, so the
                // length is right and only the offset differs).
                if group_len(size, index) == GROUP && index + 1 < groups && group_len(size, index + 1) == GROUP {
                    assert!(!verify_group(&manifest, size, index + 1, good), "size {size} group {index}: moved");
                }
            }
            assert!(!verify_group(&manifest, size, groups, &[]), "size {size}: past the end");
        }
    }

    #[test]
    fn identical_groups_at_different_offsets_have_different_values() {
        // Given a file whose two groups are the same bytes,
        let data = vec![9; 2 * GROUP];
        let (root, manifest) = build(&data);
        // then their values differ (the chunk counter is hashed), and each
        // verifies only at its own index: a group cannot be replayed elsewhere.
        assert_ne!(manifest.get(0), manifest.get(1));
        assert!(verify_manifest(&manifest, data.len() as u64, &root));
        let swapped = Manifest { cvs: vec![manifest.cvs[1], manifest.cvs[0]] };
        assert!(!verify_manifest(&swapped, data.len() as u64, &root));
    }

    #[test]
    fn a_flipped_truncated_or_misfitted_manifest_is_refused() {
        for size in sizes().into_iter().filter(|&s| group_count(s) > 1) {
            let data = content(size, size + 1);
            let (root, manifest) = build(&data);
            let bytes = manifest.to_bytes();
            assert_eq!(Manifest::from_bytes(&bytes, size).as_ref(), Ok(&manifest));
            // One flipped bit in any one value,
            for index in [0, manifest.len() / 2, manifest.len() - 1] {
                let mut flipped = bytes.clone();
                flipped[index as usize * 32 + 5] ^= 0x10;
                let flipped = Manifest::from_bytes(&flipped, size).expect("the shape is right");
                assert!(!verify_manifest(&flipped, size, &root), "size {size}: flipped value {index}");
            }
            // a truncated manifest,
            let err = Manifest::from_bytes(&bytes[..bytes.len() - 32], size).unwrap_err();
            assert_eq!(err, TreeError::ManifestLength { expected: bytes.len() as u64, got: bytes.len() as u64 - 32 });
            assert!(Manifest::from_bytes(&bytes[..bytes.len() - 1], size).is_err());
            let truncated = Manifest { cvs: manifest.cvs[..manifest.cvs.len() - 1].to_vec() };
            assert!(!verify_manifest(&truncated, size, &root), "size {size}: truncated");
            // and the right manifest for a size with another group count are refused.
            for other in [size - GROUP as u64, size + GROUP as u64] {
                assert!(!verify_manifest(&manifest, other, &root), "size {size} as {other}");
                assert!(Manifest::from_bytes(&bytes, other).is_err());
            }
        }
    }

    #[test]
    fn a_size_lie_within_the_last_group_is_caught_by_the_last_group() {
        // Given the true manifest and root of a 5-group file, offered with a
        // size one byte short (the same group count),
        let size = 5 * 16384 + 7;
        let data = content(size, 3);
        let (root, manifest) = build(&data);
        let lie = size - 1;
        // then the manifest still merges to the root (BLAKE3 binds the length
        // only through the last chunk), but the last group cannot verify at
        // the claimed length, so the transfer can never complete.
        assert!(verify_manifest(&manifest, lie, &root));
        let last = group(&data, 5);
        assert!(!verify_group(&manifest, lie, 5, &last[..last.len() - 1]));
        assert!(!verify_group(&manifest, lie, 5, last), "the true bytes are the wrong length for the lie");
        assert!(verify_group(&manifest, size, 5, last));
        // A one-group file's size lie is the same: the root is of the true length.
        let small = content(100, 4);
        let (root, manifest) = build(&small);
        assert!(verify_manifest(&manifest, 99, &root));
        assert!(!verify_group(&manifest, 99, 0, &small[..99]));
    }

    #[test]
    fn one_file_s_manifest_does_not_verify_another_file_s_root() {
        for size in [100, 16384, 16385, 5 * 16384 + 7] {
            let (root_a, manifest_a) = build(&content(size, 100));
            let (root_b, manifest_b) = build(&content(size, 200));
            assert!(!verify_manifest(&manifest_a, size, &root_b), "size {size}");
            assert!(!verify_manifest(&manifest_b, size, &root_a), "size {size}");
        }
    }

    #[test]
    fn errors_read_as_sentences() {
        let e = TreeError::SizeMismatch { expected: 10, fed: 9 };
        assert_eq!(e.to_string(), "the file was expected to be 10 bytes but 9 bytes were read (did it change?)");
        let e = TreeError::ManifestLength { expected: 64, got: 32 };
        assert_eq!(e.to_string(), "a manifest of 32 bytes, where this file's size needs 64");
    }
}
