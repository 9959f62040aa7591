//! The content side of file transfer (issue 22): what a file's bytes are
//! checked against, which names may be written, and which parts are had.
//! Pure like the rest of the core: the driver reads and writes the disk and
//! feeds bytes in; nothing here touches a file or a clock.
//!
//! # Verified streaming
//!
//! A file is named by its BLAKE3 root, the plain `blake3::hash` of its bytes,
//! so a renamed copy is the same transfer and resumes. BLAKE3 is a tree hash
//! (the BLAKE3 paper, "BLAKE3: one function, fast everywhere", §2.1 for the
//! tree and §6.4 "Verified Streaming"): 1 KiB [`CHUNK`]s are the leaves, and
//! every subtree has a 32-byte chaining value (CV) that its parent hashes.
//! The transfer cuts the tree at 16 KiB [`GROUP`]s, as iroh-blobs does
//! (bao-tree with a chunk group of 2⁴ chunks; Bao's spec is the model for
//! verified streaming of BLAKE3):
//!
//! 1. The sender feeds the file once through a [`TreeBuilder`], which gives
//!    the root and the [`Manifest`], the CVs of all groups in order (32 bytes
//!    per 16 KiB: 0.2 % of the file).
//! 2. The offer carries the root. The receiver takes the manifest
//!    ([`manifest_chunks`] pieces on the wire) and checks it once against the
//!    root with [`verify_manifest`]: the CVs merge into the root exactly as
//!    BLAKE3's tree merges them.
//! 3. Each group that arrives is checked alone with [`verify_group`] against
//!    its CV, then written and marked had. Nothing unverified is kept.
//!
//! Bao and iroh-blobs send the parent nodes along each group instead, so a
//! group verifies against the root with no manifest first. A flat manifest
//! costs one round of 0.2 % up front and buys simpler resume: any group, in
//! any order, verifies with one lookup, and a partial file's state is the
//! manifest plus a [`RangeSet`] of verified groups (the Taildrop and
//! BitTorrent v2 "piece layer" shape, on BLAKE3's own tree).
//!
//! A file of one group (16 KiB or less) has no non-root CV: its manifest is
//! its root and its data verifies as `blake3::hash(data) == root`.
//!
//! # Names
//!
//! [`check_name`] refuses hostile names (separators, `..`, control and bidi
//! characters, Windows devices, our partial files' prefix) rather than
//! sanitising them; see [`name`] for why.

pub mod name;
pub mod ranges;
pub mod tree;

pub use name::{check_name, NameError};
pub use ranges::RangeSet;
pub use tree::{
    group_count, group_len, manifest_chunks, verify_group, verify_manifest, Hash, Manifest, TreeBuilder, TreeError,
    CHUNK, CHUNKS_PER_GROUP, GROUP,
};
