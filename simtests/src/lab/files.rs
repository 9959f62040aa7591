//! Part 6 of the lab: a 64 MiB file between kernel NATs (issue 22: "a 64
//! MiB file between `linux` and `linux-random` NATs arrives verified").
//!
//! The check, for each of [`CASES`]: a `listen --accept-files DIR` behind
//! the second NAT; a file of [`FILE_SIZE`] bytes from a generator seeded by
//! the case's tag, hashed as it is written with the core's
//! [`TreeBuilder`] (its root is the file's BLAKE3 hash); and `send-file PEER
//! PATH --json` from behind the first NAT. Both directories belong to the
//! run (`/tmp/punchline-lab-<tag>-files/{send,recv}`) and are removed after
//! the case, and on Ctrl-C.
//!
//! **Verified** means all of: `send-file` exits 0; its `done` line names
//! the file's size and root; the listener's `file` line names the same; and
//! the file it saved (inside DIR) hashes to that root. Nothing else
//! compares the bytes: equal BLAKE3 roots are equal content.
//!
//! **The path** compared is the `done` line's: the path the transfer ended
//! on. The prediction is the simulator's outcome for the pair, the one the
//! pairs check compares with ([`matrix::run_cell`]), and it predicts the
//! transfer's last path exactly whenever the transfer outlasts the wait for
//! a direct path. It does: the server relays at most 2 MiB/s per session
//! (its default `relay_rate_bytes`), so 64 MiB needs 32 s on the relay
//! alone, while the lab's sessions go direct within 3–4 s of the client's
//! start when they go direct at all (login, NAT discovery, then `punch` in
//! under a millisecond or `birthday` in about one second; `LAB.md`). So
//! the transfer ends direct exactly when the session does. For `linux → linux-random` that rests on
//! a birthday attempt succeeding: the simulator says it does on every seed,
//! and when the kernel's fails the row disagrees, as the pair would. What
//! cannot be predicted is how much went over the relay first (the start
//! races the punch); `paths` records it and nothing compares it.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use punchline_core::files::{Hash, TreeBuilder};
use serde::Serialize;
use serde_json::Value;

use super::clients::{client_args, ms_between, Listener};
use super::host::Binaries;
use super::pairs::sim_outcome;
use super::process::Spawned;
use super::topology::Site;
use super::{cleanup, LabError, LabOptions, Profile};
use crate::matrix;

/// The pairs a file crosses, sender's NAT first: `masquerade` to
/// `masquerade` (`punch`), and `masquerade` to `masquerade fully-random`
/// (`birthday`).
pub const CASES: [(Profile, Profile); 2] = [(Profile::Linux, Profile::Linux), (Profile::Linux, Profile::LinuxRandom)];

/// The file's size: 64 MiB.
pub const FILE_SIZE: u64 = 64 << 20;
/// `send-file --timeout`: for the session to open and the offer to be
/// answered.
const OFFER_TIMEOUT: &str = "30s";
/// The most `send-file` may take in all: login, NAT discovery, and the
/// 32 s the relay alone would need, with room to spare.
const SEND_BOUND: Duration = Duration::from_secs(180);
/// After `send-file` exits, how long the listener's `file` line may take
/// (it hashes the whole file again before moving it into place).
const FILE_LINE_WAIT: Duration = Duration::from_secs(30);
/// The generator's block, and the read size when hashing the saved file.
const BLOCK: usize = 1 << 20;

/// One file check (`punchline-sim lab --json` → `files`).
#[derive(Clone, Debug, Serialize)]
pub struct FileRow {
    /// The sender's profile (it opens the session).
    pub a: String,
    /// The receiver's profile (it runs `listen --accept-files`).
    pub b: String,
    /// The simulator's outcome for the pair (`direct`, `relay`, …, or
    /// `mixed d/r/t/f`): the path the transfer must end on.
    pub sim: String,
    /// The simulator's strategy for the pair.
    pub sim_strategy: Option<String>,
    /// The path the transfer ended on (the `done` line's `path`: `direct`,
    /// `relay`, `relay-tcp`), or `failed` without a `done` line.
    pub kernel: String,
    /// The file arrived whole and verified (see the module documentation).
    pub verified: bool,
    /// `verified` and `sim == kernel`.
    pub agree: bool,
    /// Bytes sent.
    pub size: u64,
    /// The file's BLAKE3 root, in hexadecimal.
    pub root: String,
    /// The `done` line's goodput (bytes sent over the time from the offer's
    /// acceptance to completion).
    pub goodput_mbps: Option<f64>,
    /// The `done` line's seconds from acceptance to completion.
    pub seconds: Option<f64>,
    /// Ms from `send-file`'s start to its exit: hashing, login, NAT
    /// discovery, the session and the transfer.
    pub elapsed_ms: f64,
    /// The sender's path as its `progress` lines (one a second) and its
    /// `done` line gave it, each change once.
    pub paths: Vec<String>,
    /// The receiver's path at the end, as its `file` line gave it.
    pub listener_path: Option<String>,
    /// Bytes the receiver held already (0: a fresh directory).
    pub resumed_bytes: Option<u64>,
    /// `send-file`'s exit code (`null`: killed after [`SEND_BOUND`]).
    pub exit_code: Option<i32>,
    /// Why it is not verified (with `send-file`'s stderr when it failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs one check: `send-file` from `a`'s host to a `listen --accept-files`
/// on `b`'s.
pub fn run_file(a: &Site, b: &Site, bins: &Binaries, opts: &LabOptions, tag: &str) -> Result<FileRow, LabError> {
    let sim = matrix::run_cell(a.profile.preset(), b.profile.preset(), opts.sim_seeds.max(1));
    let sim = (sim_outcome(&sim), sim.strategy);
    let work = WorkDir::create(std::env::temp_dir().join(format!("punchline-lab-{tag}-files")))?;
    let (send_dir, recv_dir) = (work.0.join("send"), work.0.join("recv"));
    for dir in [&send_dir, &recv_dir] {
        std::fs::create_dir(dir).map_err(|e| LabError::Command(format!("cannot create {}: {e}", dir.display())))?;
    }
    let source = send_dir.join(format!("lab-{tag}.bin"));
    let root = write_random_file(&source, FILE_SIZE, seed_of(tag))
        .map_err(|e| LabError::Command(format!("cannot write {}: {e}", source.display())))?;
    let root = hex(&root);

    // Dropped (stopped) before `work` is removed: declared after it.
    let (user_a, user_b) = (format!("fa-{tag}"), format!("fb-{tag}"));
    let recv_arg = recv_dir.to_string_lossy().into_owned();
    let mut listener = Listener::start_with(&b.host_ns, &user_b, bins, opts, &["--accept-files", &recv_arg])?;
    let client = bins.client.to_string_lossy().into_owned();
    let source_arg = source.to_string_lossy().into_owned();
    let command = ["send-file", &user_b, &source_arg, "--timeout", OFFER_TIMEOUT, "--json"];
    let started = Instant::now();
    let send =
        Spawned::start(&format!("send-file {user_a}"), &a.host_ns, &client, &client_args(&user_a, opts, &command))?;
    let (exit_code, lines, stderr) = send.finish(SEND_BOUND);
    let elapsed_ms = ms_between(started, Instant::now());
    let file_line = listener.wait_file(Instant::now() + FILE_LINE_WAIT);

    let (done, paths) = sender_report(&lines);
    let saved = saved_file(file_line.as_ref(), &recv_dir);
    let verdict = check(&root, FILE_SIZE, exit_code, done.as_ref(), file_line.as_ref(), saved);
    let kernel = done.as_ref().and_then(|d| d["path"].as_str()).unwrap_or("failed").to_owned();
    let verified = verdict.is_ok();
    let error = verdict.err().map(|why| {
        let stderr = stderr.trim();
        if exit_code == Some(0) || stderr.is_empty() {
            why
        } else {
            format!("{why}; send-file: {}", stderr.chars().take(400).collect::<String>())
        }
    });
    let done_f64 = |k: &str| done.as_ref().and_then(|d| d[k].as_f64());
    Ok(FileRow {
        a: a.profile.name().to_owned(),
        b: b.profile.name().to_owned(),
        agree: verified && sim.0 == kernel,
        sim: sim.0,
        sim_strategy: sim.1,
        kernel,
        verified,
        size: FILE_SIZE,
        root,
        goodput_mbps: done_f64("goodput_mbps"),
        seconds: done_f64("seconds"),
        elapsed_ms,
        paths,
        listener_path: file_line.as_ref().and_then(|f| f["path"].as_str().map(str::to_owned)),
        resumed_bytes: done.as_ref().and_then(|d| d["resumed_bytes"].as_u64()),
        exit_code,
        error,
    })
}

/// The `done` line of `send-file --json`'s output, and the sender's paths
/// (from its `progress` lines and the `done` line), each change once.
fn sender_report(lines: &[String]) -> (Option<Value>, Vec<String>) {
    let mut paths: Vec<String> = Vec::new();
    let mut done = None;
    for json in lines.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        let event = json["event"].as_str();
        if !matches!(event, Some("progress" | "done")) {
            continue;
        }
        if let Some(path) = json["path"].as_str() {
            if paths.last().map(String::as_str) != Some(path) {
                paths.push(path.to_owned());
            }
        }
        if event == Some("done") {
            done = Some(json);
        }
    }
    (done, paths)
}

/// The size and root of the file a `file` line says was saved, read back;
/// a path outside `dir` is not read.
fn saved_file(file_line: Option<&Value>, dir: &Path) -> Result<(u64, String), String> {
    let saved = file_line.and_then(|f| f["saved"].as_str()).ok_or("the listener named no saved file")?;
    let saved = PathBuf::from(saved);
    if saved.parent() != Some(dir) {
        return Err(format!("the listener saved {} outside {}", saved.display(), dir.display()));
    }
    let (size, root) = hash_file(&saved).map_err(|e| format!("cannot read back {}: {e}", saved.display()))?;
    Ok((size, hex(&root)))
}

/// `Ok` when the file arrived verified, else why not.
fn check(
    root: &str,
    size: u64,
    exit_code: Option<i32>,
    done: Option<&Value>,
    file_line: Option<&Value>,
    saved: Result<(u64, String), String>,
) -> Result<(), String> {
    let matches = |line: &Value| line["root"] == root && line["size"] == size;
    if exit_code != Some(0) {
        return Err(format!(
            "send-file exited {}",
            exit_code.map_or("on its deadline (killed)".into(), |c| c.to_string())
        ));
    }
    match done {
        None => return Err("send-file printed no done line".into()),
        Some(d) if !matches(d) => return Err(format!("the done line names another file: {d}")),
        Some(_) => {}
    }
    match file_line {
        None => return Err("the listener printed no file line".into()),
        Some(f) if f["event"] != "file" => return Err(format!("the listener: {f}")),
        Some(f) if !matches(f) => return Err(format!("the listener's file line names another file: {f}")),
        Some(_) => {}
    }
    let (saved_size, saved_root) = saved?;
    if saved_size != size || saved_root != root {
        return Err(format!("the saved file differs: {saved_size} bytes, BLAKE3 {saved_root}"));
    }
    Ok(())
}

/// Writes `size` bytes from a generator seeded with `seed` and returns their
/// BLAKE3 root, hashed as they are written.
pub fn write_random_file(path: &Path, size: u64, seed: u64) -> std::io::Result<Hash> {
    let mut out = BufWriter::new(File::create(path)?);
    let mut tree = TreeBuilder::new(size);
    let mut state = seed;
    let mut block = vec![0u8; BLOCK];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left).map_or(BLOCK, |l| l.min(BLOCK));
        for word in block[..n].chunks_mut(8) {
            let bytes = splitmix64(&mut state).to_le_bytes();
            word.copy_from_slice(&bytes[..word.len()]);
        }
        tree.update(&block[..n]);
        out.write_all(&block[..n])?;
        left -= n as u64;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    tree.finish().map(|(root, _)| root).map_err(std::io::Error::other)
}

/// A file's size and BLAKE3 root.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, Hash)> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut tree = TreeBuilder::new(size);
    let mut block = vec![0u8; BLOCK];
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            break;
        }
        tree.update(&block[..n]);
    }
    // A file that changed size while read fails here (SizeMismatch).
    tree.finish().map(|(root, _)| (size, root)).map_err(std::io::Error::other)
}

/// SplitMix64 (Steele, Lea, Flood 2014): fast, and enough to make content
/// no compressor or cache could shortcut.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed from the case's tag (FNV-1a): each run and case sends other bytes.
fn seed_of(tag: &str) -> u64 {
    tag.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The case's directory, removed when dropped (and on Ctrl-C).
struct WorkDir(PathBuf);

impl WorkDir {
    fn create(dir: PathBuf) -> Result<WorkDir, LabError> {
        cleanup::create_dir(&dir).map_err(|e| LabError::Command(format!("cannot create {}: {e}", dir.display())))?;
        Ok(WorkDir(dir))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        cleanup::remove(&self.0);
    }
}

/// The file table.
pub fn table(rows: &[FileRow]) -> String {
    let num = |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
    let mut out = format!(
        "A {} MiB file: send-file from behind the first NAT to listen --accept-files behind the second\n\
         {:<13} {:<13} {:<10} {:<10} {:<6} {:<9} {:>8} {:>8} {:>10}  {}\n",
        FILE_SIZE >> 20,
        "sending",
        "receiving",
        "sim",
        "kernel",
        "agree",
        "verified",
        "mbit/s",
        "seconds",
        "elapsed_ms",
        "paths"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<13} {:<13} {:<10} {:<10} {:<6} {:<9} {:>8} {:>8} {:>10.0}  {}",
            r.a,
            r.b,
            r.sim,
            r.kernel,
            if r.agree { "yes" } else { "NO" },
            if r.verified { "yes" } else { "NO" },
            num(r.goodput_mbps, 1),
            num(r.seconds, 2),
            r.elapsed_ms,
            if r.paths.is_empty() { "-".to_owned() } else { r.paths.join(">") },
        );
        if let Some(e) = &r.error {
            let _ = writeln!(out, "    {e}");
        }
    }
    out.push_str(
        "kernel: the path the transfer ended on (send-file's done line); mbit/s and seconds: from the offer's \
         acceptance to completion; elapsed_ms: send-file's whole run (login and NAT discovery included)\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(v: Value) -> String {
        v.to_string()
    }

    #[test]
    fn a_generated_file_reads_back_to_the_root_it_was_written_with_and_another_seed_gives_another() {
        // Given a file of a size that ends mid-group, written from a seed,
        let dir = std::env::temp_dir().join(format!("punchline-lab-files-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (one, two, three) = (dir.join("one"), dir.join("two"), dir.join("three"));
        let size = 3 * BLOCK as u64 / 2 + 5;
        let root = write_random_file(&one, size, seed_of("pl1-0")).unwrap();
        // then reading it back gives its size and the same root,
        assert_eq!(hash_file(&one).unwrap(), (size, root));
        // the same seed writes the same bytes, another seed other bytes.
        assert_eq!(write_random_file(&two, size, seed_of("pl1-0")).unwrap(), root);
        assert_ne!(write_random_file(&three, size, seed_of("pl1-1")).unwrap(), root);
        assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_senders_paths_come_from_its_progress_and_done_lines_each_change_once() {
        // Given send-file's output with a move from the relay to a direct path,
        let lines = [
            line(serde_json::json!({"event": "progress", "bytes": 10, "path": "relay"})),
            "not json".to_owned(),
            line(serde_json::json!({"event": "progress", "bytes": 20, "path": "relay"})),
            line(serde_json::json!({"event": "progress", "bytes": 30, "path": "direct"})),
            line(serde_json::json!({"event": "done", "root": "ab", "size": 40, "path": "direct"})),
        ];
        let (done, paths) = sender_report(&lines);
        // then the paths are relay then direct, and the done line is found.
        assert_eq!(paths, ["relay", "direct"]);
        assert_eq!(done.map(|d| d["size"].clone()), Some(Value::from(40)));
        assert_eq!(sender_report(&lines[..3]).0, None);
    }

    #[test]
    fn a_file_is_verified_only_when_every_report_and_the_saved_bytes_name_its_root() {
        // Given a transfer of 40 bytes with root "ab" that went right,
        let done = serde_json::json!({"event": "done", "root": "ab", "size": 40, "path": "direct"});
        let file = serde_json::json!({"event": "file", "root": "ab", "size": 40, "saved": "/d/x"});
        let saved = || Ok((40, "ab".to_owned()));
        assert_eq!(check("ab", 40, Some(0), Some(&done), Some(&file), saved()), Ok(()));
        // then any one thing wrong is caught: the exit code,
        assert!(check("ab", 40, Some(18), Some(&done), Some(&file), saved()).is_err());
        assert!(check("ab", 40, None, Some(&done), Some(&file), saved()).is_err());
        // a missing or different done line,
        assert!(check("ab", 40, Some(0), None, Some(&file), saved()).is_err());
        let other = serde_json::json!({"event": "done", "root": "cd", "size": 40});
        assert!(check("ab", 40, Some(0), Some(&other), Some(&file), saved()).is_err());
        // a missing, failed or different file line,
        assert!(check("ab", 40, Some(0), Some(&done), None, saved()).is_err());
        let failed = serde_json::json!({"event": "file-failed", "reason": "verification-failed"});
        assert!(check("ab", 40, Some(0), Some(&done), Some(&failed), saved()).is_err());
        let short = serde_json::json!({"event": "file", "root": "ab", "size": 39});
        assert!(check("ab", 40, Some(0), Some(&done), Some(&short), saved()).is_err());
        // and saved bytes that differ or could not be read.
        assert!(check("ab", 40, Some(0), Some(&done), Some(&file), Ok((40, "cd".to_owned()))).is_err());
        assert!(check("ab", 40, Some(0), Some(&done), Some(&file), Err("gone".into())).is_err());
    }

    #[test]
    fn a_saved_file_outside_the_accept_directory_is_not_read() {
        // Given a file line naming a file outside the directory given to
        // --accept-files,
        let file = serde_json::json!({"event": "file", "saved": "/etc/passwd"});
        // then it is refused unread.
        let err = saved_file(Some(&file), Path::new("/tmp/recv")).unwrap_err();
        assert!(err.contains("outside"), "{err}");
        assert!(saved_file(None, Path::new("/tmp/recv")).is_err());
    }
}
