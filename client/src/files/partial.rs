//! A file being received, on disk, beside its final place in the receiving
//! directory:
//!
//! - `DIR/.punchline-<root>.partial` holds the verified groups written so
//!   far, each at its offset (created at the file's final length, so it is
//!   sparse until filled);
//! - `DIR/.punchline-<root>.state` says which groups those are: a small JSON
//!   object (`name`, `size`, `root`, `groups` as half-open ranges of 16 KiB
//!   groups, `updated` in Unix seconds).
//!
//! Both are named by the BLAKE3 root alone (64 hex digits), never by the
//! offered name: a renamed copy of the same content resumes, and no name
//! from the network reaches a path until the final rename, after
//! [`check_name`] and the final root check.
//!
//! A group is listed in the state only once it is on disk: every
//! [`checkpoint`](Partial::checkpoint) first `fdatasync`s the partial, then
//! replaces the state atomically (a temporary file, `fsync`, `rename`), so a
//! crash at any moment leaves a state that claims nothing unwritten. The
//! cost is that groups written since the last checkpoint (at most a second's
//! worth, see [`CHECKPOINT_EVERY`]) are received again after a crash.
//!
//! Partials are kept for a resume for [`EXPIRY`] (7 days) after their last
//! checkpoint; [`sweep`] deletes older ones when `listen` starts.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use punchline_core::files::{check_name, group_count, group_len, Hash, Manifest, RangeSet, TreeBuilder, GROUP};
use punchline_core::wire::frame::files::FileAbort;
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::hex;

/// How long a partial file is kept for a resume after its last checkpoint.
pub const EXPIRY: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// The longest time between two checkpoints of a transfer under way.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// The prefix of every file this module writes in the receiving directory
/// ([`punchline_core::files::name::RESERVED_PREFIX`], which no offered name
/// may start with).
const PREFIX: &str = ".punchline-";
/// Bytes read at a time by the final root check.
const READ_BLOCK: usize = 1 << 20;
/// Numbered names tried before giving up ("NAME (9999).ext").
const MAX_NUMBERED: u32 = 9_999;

/// `DIR/.punchline-<root>.partial`.
pub fn partial_path(dir: &Path, root: &Hash) -> PathBuf {
    dir.join(format!("{PREFIX}{}.partial", hex(root)))
}

/// `DIR/.punchline-<root>.state`.
pub fn state_path(dir: &Path, root: &Hash) -> PathBuf {
    dir.join(format!("{PREFIX}{}.state", hex(root)))
}

fn state_tmp_path(dir: &Path, root: &Hash) -> PathBuf {
    dir.join(format!("{PREFIX}{}.state.tmp", hex(root)))
}

/// The state file's contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The name last offered for this content (informational: a resume
    /// takes the name of the offer that completes it).
    pub name: String,
    /// The file's length.
    pub size: u64,
    /// The BLAKE3 root, 64 hex digits.
    pub root: String,
    /// Groups on disk, as half-open ranges of 16 KiB groups.
    pub groups: Vec<(u64, u64)>,
    /// When this was written, in seconds since the Unix epoch.
    pub updated: u64,
}

/// A partial file open for writing, with the groups written so far.
#[derive(Debug)]
pub struct Partial {
    dir: PathBuf,
    root: Hash,
    size: u64,
    name: String,
    file: Arc<File>,
    /// Groups written (in the page cache at least).
    written: RangeSet,
    last_checkpoint: Instant,
    /// Groups written since the last checkpoint.
    dirty: bool,
}

impl Partial {
    /// Opens the partial of `root` in `dir`, creating it when there is
    /// none, and reads which groups it holds from its state file. A state
    /// that does not describe this content (another size, a root that is
    /// not its name's, groups past the end) counts as none: the groups are
    /// received again rather than trusted.
    pub fn open(dir: &Path, name: &str, size: u64, root: Hash) -> io::Result<Partial> {
        let path = partial_path(dir, &root);
        let existed = path.exists();
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let len = file.metadata()?.len();
        let mut written = RangeSet::new();
        if existed {
            if let Some(state) = read_state(&state_path(dir, &root)) {
                if state.size == size && state.root == hex(&root) {
                    let groups = group_count(size);
                    for (start, end) in state.groups {
                        let end = end.min(groups);
                        // A group counts only if the partial is long enough to hold it.
                        let end =
                            (start..end).find(|g| g * GROUP as u64 + group_len(size, *g) as u64 > len).unwrap_or(end);
                        if start < end {
                            written.insert(start..end);
                        }
                    }
                }
            }
        }
        if len != size {
            // A sparse file of the final length. Best effort: a limit on the
            // file size (RLIMIT_FSIZE) refuses it, and the writes then
            // report the full disk where it happens.
            if let Err(e) = file.set_len(size) {
                debug!(error = %e, "cannot size the partial file; it grows as it is written");
            }
        }
        Ok(Partial {
            dir: dir.to_owned(),
            root,
            size,
            name: name.to_owned(),
            file: Arc::new(file),
            written,
            last_checkpoint: Instant::now(),
            dirty: false,
        })
    }

    /// The groups held, as half-open ranges (what an accept names).
    pub fn held(&self) -> Vec<(u64, u64)> {
        self.written.iter().map(|r| (r.start, r.end)).collect()
    }

    /// Content bytes held.
    pub fn held_bytes(&self) -> u64 {
        self.written.iter().flatten().map(|g| group_len(self.size, g) as u64).sum()
    }

    /// The file's length.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The name the state file records.
    pub fn set_name(&mut self, name: &str) {
        name.clone_into(&mut self.name);
    }

    /// Writes a verified group at `offset`: `DiskFull` when the disk (or
    /// the process's file size limit) has no room, `WriteFailed` for any
    /// other error.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), FileAbort> {
        let end = offset.checked_add(data.len() as u64);
        if offset % GROUP as u64 != 0 || end.is_none_or(|end| end > self.size) {
            debug!(offset, len = data.len(), "a group outside the file; not written");
            return Err(FileAbort::WriteFailed);
        }
        if let Err(e) = self.file.write_all_at(data, offset) {
            debug!(error = %e, offset, "writing the partial file failed");
            return Err(write_abort(&e));
        }
        self.written.insert_one(offset / GROUP as u64);
        self.dirty = true;
        Ok(())
    }

    /// True when groups were written since the last checkpoint and it is
    /// [`CHECKPOINT_EVERY`] old.
    pub fn checkpoint_due(&self, now: Instant) -> bool {
        self.dirty && now.duration_since(self.last_checkpoint) >= CHECKPOINT_EVERY
    }

    /// Records the groups written so far: `fdatasync` of the partial, then
    /// the state file replaced atomically, on `checkpointer`'s thread (so
    /// the receiving loop never waits for the disk). Jobs run in order, so
    /// a later checkpoint never loses to an earlier one.
    pub fn checkpoint(&mut self, checkpointer: &Checkpointer) {
        let state = State {
            name: self.name.clone(),
            size: self.size,
            root: hex(&self.root),
            groups: self.held(),
            updated: unix_now(),
        };
        // Every group in `state` was written before this job was queued,
        // so the job's sync covers it.
        checkpointer.submit(Job::Save {
            file: Arc::clone(&self.file),
            state,
            path: state_path(&self.dir, &self.root),
            tmp: state_tmp_path(&self.dir, &self.root),
        });
        self.last_checkpoint = Instant::now();
        self.dirty = false;
    }

    /// The transfer is complete: every group is written. Syncs the file,
    /// hashes all of it again and compares with the root (the final root
    /// check: what is on disk, not what was verified on the way, decides),
    /// then moves it into place as `name` in the directory, numbered when
    /// taken ("NAME (1).ext"), never over an existing file, and removes the
    /// state. On a mismatch nothing is kept: the partial and its state are
    /// deleted and the error says so.
    pub fn finish(&mut self, checkpointer: &Checkpointer, name: &str) -> Result<PathBuf, FinishError> {
        // Queued checkpoints of this file land before its state is removed.
        checkpointer.flush();
        self.file.sync_all().map_err(FinishError::Io)?;
        let got = hash_file(&self.file, self.size).map_err(FinishError::Io)?;
        if got != self.root {
            self.discard();
            return Err(FinishError::Mismatch { got });
        }
        check_name(name).map_err(|e| FinishError::Io(io::Error::new(io::ErrorKind::InvalidInput, e.to_string())))?;
        let saved = place(&partial_path(&self.dir, &self.root), &self.dir, name).map_err(FinishError::Io)?;
        remove_quietly(&state_path(&self.dir, &self.root));
        // The rename itself is durable once the directory is synced.
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        Ok(saved)
    }

    /// Deletes the partial and its state (an offer refused before anything
    /// was written).
    pub fn abandon(self) {
        self.discard();
    }

    /// Deletes the partial and its state.
    fn discard(&self) {
        remove_quietly(&partial_path(&self.dir, &self.root));
        remove_quietly(&state_path(&self.dir, &self.root));
    }
}

/// Why [`Partial::finish`] kept nothing, or could not finish.
#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    /// The bytes on disk do not hash to the root: deleted.
    #[error("the file on disk does not match its BLAKE3 root (it hashes to {}); it was deleted", hex(.got))]
    Mismatch {
        /// What the bytes hash to.
        got: Hash,
    },
    /// Syncing, reading or renaming failed; the partial is kept.
    #[error("{0}")]
    Io(io::Error),
}

/// The abort a failed write becomes: `ENOSPC` (no room), `EFBIG` (past
/// the process's `RLIMIT_FSIZE`; the process ignores `SIGXFSZ` so it gets
/// the error instead of dying) and `EDQUOT` (quota) are a full disk.
pub fn write_abort(e: &io::Error) -> FileAbort {
    let full = [nix::errno::Errno::ENOSPC, nix::errno::Errno::EFBIG, nix::errno::Errno::EDQUOT];
    match e.raw_os_error() {
        Some(code) if full.iter().any(|errno| *errno as i32 == code) => FileAbort::DiskFull,
        _ if e.kind() == io::ErrorKind::StorageFull => FileAbort::DiskFull,
        _ => FileAbort::WriteFailed,
    }
}

/// The BLAKE3 root of the first `size` bytes of `file`, read in 1 MiB blocks.
pub fn hash_file(file: &File, size: u64) -> io::Result<Hash> {
    tree_of(file, size, |_| {}).map(|(root, _)| root)
}

/// The root and manifest of the first `size` bytes of `file`, read once in
/// 1 MiB blocks; `progress` hears the bytes hashed so far after each block.
/// A file shorter than `size` (it shrank) is an `UnexpectedEof` error.
pub fn tree_of(file: &File, size: u64, mut progress: impl FnMut(u64)) -> io::Result<(Hash, Manifest)> {
    let mut tree = TreeBuilder::new(size);
    let mut buf = vec![0u8; READ_BLOCK.min(usize::try_from(size).unwrap_or(READ_BLOCK)).max(1)];
    let mut offset = 0u64;
    while offset < size {
        let want = (size - offset).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..want], offset)?;
        tree.update(&buf[..want]);
        offset += want as u64;
        progress(offset);
    }
    tree.finish().map_err(|e| io::Error::other(e.to_string()))
}

/// Moves `from` to `dir/name`, or the first free numbered name
/// ([`numbered`]), never replacing a file: a hard link fails when the
/// name is taken, atomically, and the partial is removed after. Where the
/// file system has no hard links, the name is reserved by creating it
/// exclusively and the partial renamed over the reservation.
pub fn place(from: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    for n in 0..=MAX_NUMBERED {
        let target = dir.join(numbered(name, n));
        match std::fs::hard_link(from, &target) {
            Ok(()) => {
                std::fs::remove_file(from)?;
                return Ok(target);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                debug!(error = %e, "no hard link; reserving the name instead");
                match OpenOptions::new().write(true).create_new(true).open(&target) {
                    Ok(_) => {
                        std::fs::rename(from, &target)?;
                        return Ok(target);
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{name:?} and its numbered names are all taken")))
}

/// `name` for `n == 0`, else "STEM (n).EXT" ("report (2).pdf", "notes (1)",
/// ".bashrc (1)": a leading dot is not an extension). The stem is cut (at a
/// character boundary) so the result stays within 255 bytes.
pub fn numbered(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_owned();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    };
    let suffix = format!(" ({n}){ext}");
    let room = punchline_core::files::name::MAX_NAME_BYTES.saturating_sub(suffix.len());
    let mut cut = stem.len().min(room);
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &stem[..cut])
}

/// Deletes partials and states of `dir` last checkpointed more than
/// `expiry` ago (by the state's modification time, or the partial's when it
/// has no state), and leftover temporary states. Only files named as this
/// module names them (prefix, 64 hex digits, suffix) are touched. Returns
/// how many files were deleted.
pub fn sweep(dir: &Path, expiry: Duration) -> io::Result<usize> {
    let now = SystemTime::now();
    let old = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > expiry))
    };
    let mut deleted = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let Some((root, kind)) = ours(&name) else { continue };
        let path = entry.path();
        let gone = match kind {
            Kind::State | Kind::Tmp => old(&path),
            // A partial goes with its state, or alone when it has none.
            Kind::Partial => !dir.join(format!("{PREFIX}{root}.state")).exists() && old(&path),
        };
        if gone {
            if kind == Kind::State {
                let partial = dir.join(format!("{PREFIX}{root}.partial"));
                if std::fs::remove_file(&partial).is_ok() {
                    deleted += 1;
                }
            }
            if std::fs::remove_file(&path).is_ok() {
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Partial,
    State,
    Tmp,
}

/// The root's hex digits and the kind, for a name this module writes.
fn ours(name: &str) -> Option<(&str, Kind)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (root, kind) = rest.split_at_checked(64)?;
    if !root.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let kind = match kind {
        ".partial" => Kind::Partial,
        ".state" => Kind::State,
        ".state.tmp" => Kind::Tmp,
        _ => return None,
    };
    Some((root, kind))
}

/// Bytes free for an unprivileged writer on the file system of `dir`.
pub fn free_space(dir: &Path) -> io::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    #[allow(clippy::useless_conversion)] // the field types differ between platforms
    let free = u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size()));
    Ok(free)
}

fn read_state(path: &Path) -> Option<State> {
    let mut text = String::new();
    // A state file is a few hundred bytes; anything much larger is not ours.
    File::open(path).ok()?.take(1 << 20).read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).map_err(|e| debug!(error = %e, path = %path.display(), "unreadable state")).ok()
}

fn write_state(file: &File, state: &State, path: &Path, tmp: &Path) -> io::Result<()> {
    file.sync_data()?;
    let text = serde_json::to_vec(state).map_err(io::Error::other)?;
    {
        let mut out = File::create(tmp)?;
        io::Write::write_all(&mut out, &text)?;
        out.sync_all()?;
    }
    std::fs::rename(tmp, path)
}

fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            debug!(error = %e, path = %path.display(), "cannot remove");
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

enum Job {
    Save { file: Arc<File>, state: State, path: PathBuf, tmp: PathBuf },
    Flush(mpsc::Sender<()>),
}

/// A thread that records checkpoints in order, so the receiving loop never
/// waits for `fdatasync`.
#[derive(Debug)]
pub struct Checkpointer {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread.
    pub fn start() -> io::Result<Checkpointer> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new().name("punchline-checkpoints".into()).spawn(move || {
            for job in rx {
                match job {
                    Job::Save { file, state, path, tmp } => {
                        if let Err(e) = write_state(&file, &state, &path, &tmp) {
                            // The previous state stays: it claims less, never more.
                            tracing::warn!(error = %e, path = %path.display(), "cannot record a partial file's state");
                        }
                    }
                    Job::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        })?;
        Ok(Checkpointer { jobs: Some(jobs), thread: Some(thread) })
    }

    fn submit(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(job);
        }
    }

    /// Waits until every checkpoint queued so far is recorded.
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        self.submit(Job::Flush(done));
        let _ = wait.recv();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it recorded the rest.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
#[path = "partial_tests.rs"]
mod tests;
