//! A client's files as a driver would keep them, in memory: the contents it
//! offers, and per root the partial file and the groups written, so a test
//! can resume, fill the disk, or lie about what it sends.

use std::collections::{BTreeMap, BTreeSet};

use punchline_core::client::FileId;
use punchline_core::files::{group_count, Hash, GROUP};
use punchline_core::wire::frame::files::FileRefusal;

#[derive(Debug, Default)]
pub struct Disk {
    /// Files offered, by transfer: their bytes.
    pub sources: BTreeMap<FileId, Vec<u8>>,
    /// Offers are accepted (else refused as `NotAccepting`).
    pub accept: bool,
    /// Offers are refused with this instead.
    pub refuse: Option<FileRefusal>,
    /// Partial files by root: their bytes so far and the groups written.
    pub partial: BTreeMap<Hash, (Vec<u8>, BTreeSet<u64>)>,
    /// Transfers received, by id: their root.
    pub receiving: BTreeMap<FileId, Hash>,
    /// Complete files: (name, bytes).
    pub complete: Vec<(String, Vec<u8>)>,
    /// Names of the offers, by transfer.
    pub names: BTreeMap<FileId, String>,
    /// Bytes the disk takes before it is full.
    pub capacity: Option<u64>,
    /// Bytes written so far (all files).
    pub used: u64,
    /// A lying sender: every group read at this offset has a byte flipped.
    pub corrupt_offset: Option<u64>,
    /// Writes are not confirmed until released (a slow disk).
    pub hold_writes: bool,
    pub held_writes: Vec<(FileId, u64)>,
}

impl Disk {
    /// The groups of `root` written so far, as half-open ranges.
    pub fn have(&self, root: &Hash) -> Vec<(u64, u64)> {
        let Some((_, groups)) = self.partial.get(root) else { return Vec::new() };
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for &g in groups {
            match ranges.last_mut() {
                Some((_, end)) if *end == g => *end += 1,
                _ => ranges.push((g, g + 1)),
            }
        }
        ranges
    }

    /// The bytes a sender reads at `offset`.
    pub fn read(&self, file: FileId, offset: u64, len: u32) -> Option<Vec<u8>> {
        let bytes = self.sources.get(&file)?;
        let start = offset as usize;
        let mut data = bytes.get(start..start + len as usize)?.to_vec();
        if self.corrupt_offset == Some(offset) && !data.is_empty() {
            data[0] ^= 0xff;
        }
        Some(data)
    }

    /// Writes a verified group; false when the disk is full.
    pub fn write(&mut self, file: FileId, size: u64, offset: u64, data: &[u8]) -> bool {
        let Some(root) = self.receiving.get(&file).copied() else { return true };
        if self.capacity.is_some_and(|c| self.used + data.len() as u64 > c) {
            return false;
        }
        self.used += data.len() as u64;
        let (bytes, groups) = self.partial.entry(root).or_insert_with(|| (vec![0; size as usize], BTreeSet::new()));
        bytes[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        groups.insert(offset / GROUP as u64);
        true
    }

    /// The file is complete: moved out of the partials.
    pub fn finish(&mut self, file: FileId, size: u64) {
        let Some(root) = self.receiving.remove(&file) else { return };
        let (bytes, groups) = self.partial.remove(&root).unwrap_or_default();
        assert_eq!(groups.len() as u64, group_count(size), "every group written before completion");
        let name = self.names.get(&file).cloned().unwrap_or_default();
        self.complete.push((name, bytes));
    }
}
