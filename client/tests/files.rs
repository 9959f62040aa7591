//! File transfer end to end on loopback (issue 22): the real `punchline`
//! binary, `send-file` to `listen --accept-files`, against a
//! `punchline-server` running in this process, on both runtimes.
//!
//! Interruptions happen at points of the transfer, never at moments on the
//! clock: a process is killed once the receiver's state file records some
//! groups. The server's relay is held to 1 MiB/s per session for those
//! tests (`--relay`), so a transfer of a few MiB is still under way then.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use punchline_core::files::{TreeBuilder, GROUP};
use punchline_server::config::{FileConfig, RuntimeKind, Settings};
use punchline_server::Stopper;
use serde_json::Value;

const PUNCHLINE: &str = env!("CARGO_BIN_EXE_punchline");
/// Only keeps a hang from blocking the run forever: far beyond anything
/// the tests wait for.
const HANG_GUARD: Duration = Duration::from_secs(120);
/// The relay's rate per session in the tests that interrupt a transfer.
const SLOW_RELAY: u32 = 1 << 20;
const MIB: usize = 1 << 20;

/// A server running on a thread until dropped.
struct TestServer {
    primary: SocketAddr,
    alternate: SocketAddr,
    stopper: Option<Stopper>,
    thread: Option<thread::JoinHandle<Result<(), punchline_server::RunError>>>,
    /// The clients' identity files and pins: never the user's own.
    home: tempfile::TempDir,
}

impl TestServer {
    fn start(relay_rate_bytes: Option<u32>) -> TestServer {
        let file = FileConfig { relay_rate_bytes, ..FileConfig::default() };
        let settings = Settings::merge(
            Some("127.0.0.1:0".parse().expect("addr")),
            Some("127.0.0.2:0".parse().expect("addr")),
            Some(RuntimeKind::Mio),
            file,
            7.into(),
        )
        .expect("valid settings");
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            punchline_server::run(settings, |addrs, stopper| {
                tx.send((addrs.to_vec(), stopper)).expect("test waits");
            })
        });
        let (addrs, stopper) = rx.recv_timeout(HANG_GUARD).expect("server binds");
        let home = tempfile::tempdir().expect("temp dir");
        TestServer { primary: addrs[0].1, alternate: addrs[1].1, stopper: Some(stopper), thread: Some(thread), home }
    }

    /// `user`'s global arguments on `runtime`, then `rest`.
    fn args(&self, user: &str, runtime: &str, rest: &[&str]) -> Vec<String> {
        let identity = self.home.path().join(format!("{user}.key")).display().to_string();
        let pins = self.home.path().join("known_servers").display().to_string();
        let peers = self.home.path().join(format!("{user}.peers")).display().to_string();
        ["--server", &self.primary.to_string(), "--alt-server", &self.alternate.to_string(), "--user", user]
            .into_iter()
            .chain(["--runtime", runtime, "--identity", &identity, "--known-servers", &pins, "--known-peers", &peers])
            .chain(rest.iter().copied())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stopper) = self.stopper.take() {
            stopper.stop();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A child process killed when dropped, with its stdout as a channel of lines.
struct Running {
    child: Child,
    lines: Receiver<String>,
}

impl Running {
    fn spawn(program: &str, args: &[String]) -> Running {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("punchline starts");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running { child, lines }
    }

    /// `punchline listen --json` as `user`, with `flags` before the command
    /// and `listen_flags` after it; returns once logged in.
    fn listen(server: &TestServer, user: &str, runtime: &str, flags: &[&str], listen_flags: &[&str]) -> Running {
        Self::listen_via(PUNCHLINE, &[], server, user, runtime, flags, listen_flags)
    }

    /// As [`listen`](Self::listen), started through `wrapper` (`prlimit ...`).
    fn listen_via(
        program: &str,
        wrapper: &[&str],
        server: &TestServer,
        user: &str,
        runtime: &str,
        flags: &[&str],
        listen_flags: &[&str],
    ) -> Running {
        let rest: Vec<&str> =
            flags.iter().copied().chain(["listen", "--json"]).chain(listen_flags.iter().copied()).collect();
        let mut args: Vec<String> = wrapper.iter().map(|s| (*s).to_owned()).collect();
        if !wrapper.is_empty() {
            args.push(PUNCHLINE.to_owned());
        }
        args.extend(server.args(user, runtime, &rest));
        let listener = Running::spawn(program, &args);
        listener.wait_event("logged-in", &mut Vec::new());
        listener
    }

    /// The next JSON line whose `event` is `event`; every line read on the
    /// way is kept in `seen`.
    fn wait_event(&self, event: &str, seen: &mut Vec<Value>) -> Value {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("no {event:?} line; saw {seen:?}"));
            let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
            seen.push(value.clone());
            if value["event"] == event {
                return value;
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `send-file PEER PATH --json` as `user`, to its end.
fn send_file(server: &TestServer, user: &str, runtime: &str, flags: &[&str], peer: &str, path: &Path) -> Output {
    let path = path.display().to_string();
    let rest: Vec<&str> = flags.iter().copied().chain(["send-file", peer, &path, "--json"]).collect();
    Command::new(PUNCHLINE).args(server.args(user, runtime, &rest)).output().expect("punchline runs")
}

/// The JSON lines of an output's stdout.
fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `len` pseudo-random bytes from `seed` (xorshift64*): incompressible
/// enough, and different for every seed.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn root_hex(bytes: &[u8]) -> String {
    let mut tree = TreeBuilder::new(bytes.len() as u64);
    tree.update(bytes);
    let (root, _) = tree.finish().expect("whole file");
    root.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits until `dir` holds a state file that records at least one group.
fn wait_for_recorded_groups(dir: &Path) -> PathBuf {
    let deadline = Instant::now() + HANG_GUARD;
    while Instant::now() < deadline {
        for entry in std::fs::read_dir(dir).expect("dir").map_while(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".punchline-") && name.ends_with(".state") {
                let state: Option<Value> =
                    std::fs::read(entry.path()).ok().and_then(|b| serde_json::from_slice(&b).ok());
                if state.is_some_and(|s| s["groups"].as_array().is_some_and(|g| !g.is_empty())) {
                    return entry.path();
                }
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("no state file recording groups in {}", dir.display());
}

/// The names in `dir`, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").file_name().to_string_lossy().into()).collect();
    names.sort();
    names
}

/// Given bob listening with --accept-files and alice on `runtime`: a file
/// of a few MiB arrives byte-exact, both sides say so in JSON, and the same
/// file sent again lands beside it under a numbered name.
fn a_file_arrives_byte_exact(runtime: &str) {
    let server = TestServer::start(None);
    let inbox = tempfile::tempdir().expect("temp dir");
    let dir = inbox.path().display().to_string();
    let bob = Running::listen(&server, "bob", runtime, &[], &["--accept-files", &dir]);
    let src = tempfile::tempdir().expect("temp dir");
    let bytes = random_bytes(3 * MIB + 12_345, 1);
    let path = src.path().join("holiday photos.tar");
    std::fs::write(&path, &bytes).expect("write");

    // When alice sends it.
    let out = send_file(&server, "alice", runtime, &[], "bob", &path);

    // Then send-file exits 0 with a done line that names the content.
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), stderr(&out));
    let lines = json_lines(&out);
    let done = lines.last().expect("a done line");
    assert_eq!(done["event"], "done", "{lines:?}");
    assert_eq!(done["name"], "holiday photos.tar");
    assert_eq!(done["size"], bytes.len());
    assert_eq!(done["root"], root_hex(&bytes).as_str());
    assert_eq!(done["resumed_bytes"], 0);
    assert!(done["goodput_mbps"].as_f64().is_some_and(|g| g > 0.0), "{done}");
    assert!(matches!(done["path"].as_str(), Some("direct" | "relay")), "{done}");
    assert!(lines[..lines.len() - 1].iter().all(|l| l["event"] == "progress"), "{lines:?}");
    // And bob's file line names where it was saved, byte-exact, with no
    // partial or state left.
    let mut seen = Vec::new();
    let file = bob.wait_event("file", &mut seen);
    let saved = inbox.path().join("holiday photos.tar");
    assert_eq!(file["peer"], "alice");
    assert_eq!((file["name"].as_str(), file["size"].as_u64()), (Some("holiday photos.tar"), Some(bytes.len() as u64)));
    assert_eq!(file["root"], done["root"]);
    assert_eq!(file["saved"], saved.display().to_string().as_str());
    assert!(matches!(file["path"].as_str(), Some("direct" | "relay")), "{file}");
    assert!(std::fs::read(&saved).expect("saved") == bytes, "the saved file differs from the one sent");
    assert_eq!(names_in(inbox.path()), ["holiday photos.tar"]);

    // When the same file is sent again, then it does not replace the first.
    let again = send_file(&server, "alice", runtime, &[], "bob", &path);
    assert!(again.status.success(), "{}", stderr(&again));
    let file = bob.wait_event("file", &mut seen);
    assert_eq!(file["saved"], inbox.path().join("holiday photos (1).tar").display().to_string().as_str());
    assert_eq!(names_in(inbox.path()), ["holiday photos (1).tar", "holiday photos.tar"]);
}

#[test]
fn a_file_arrives_byte_exact_on_mio() {
    a_file_arrives_byte_exact("mio");
}

#[test]
fn a_file_arrives_byte_exact_on_smol() {
    a_file_arrives_byte_exact("smol");
}

#[test]
fn a_killed_receiver_resumes_from_its_recorded_groups() {
    // Given a 4 MiB transfer over a 1 MiB/s relay, with 2 s session timeouts.
    let server = TestServer::start(Some(SLOW_RELAY));
    let inbox = tempfile::tempdir().expect("temp dir");
    let dir = inbox.path().display().to_string();
    let flags = ["--relay", "--session-timeout", "2s"];
    let bob = Running::listen(&server, "bob", "mio", &flags, &["--accept-files", &dir]);
    let src = tempfile::tempdir().expect("temp dir");
    let bytes = random_bytes(4 * MIB, 2);
    let path = src.path().join("data.bin");
    std::fs::write(&path, &bytes).expect("write");
    let alice = Running::spawn(
        PUNCHLINE,
        &server.args(
            "alice",
            "mio",
            &[&flags[..], &["send-file", "bob", &path.display().to_string(), "--json"]].concat(),
        ),
    );

    // When bob is killed (SIGKILL) once his state file records some groups.
    wait_for_recorded_groups(inbox.path());
    drop(bob);

    // Then alice's send-file ends with "peer gone" (16) once the session
    // times out.
    let mut alice = alice;
    let status = wait_exit(&mut alice.child);
    assert_eq!(status, Some(16));

    // When bob listens again and alice sends the file again, then it
    // resumes from what bob had recorded, and arrives byte-exact.
    let bob = Running::listen(&server, "bob", "mio", &flags, &["--accept-files", &dir]);
    let out = send_file(&server, "alice", "mio", &flags, "bob", &path);
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), stderr(&out));
    let done = json_lines(&out).pop().expect("done");
    let resumed = done["resumed_bytes"].as_u64().expect("resumed_bytes");
    assert!(resumed > 0 && resumed < bytes.len() as u64 && resumed % GROUP as u64 == 0, "{done}");
    bob.wait_event("file", &mut Vec::new());
    assert!(std::fs::read(inbox.path().join("data.bin")).expect("saved") == bytes, "differs");
    assert_eq!(names_in(inbox.path()), ["data.bin"]);
}

/// Given a transfer over a slow relay, the sender killed once the receiver
/// recorded some groups, and the receiver's session timed out: sending
/// `copy_name` (a copy of the same bytes) resumes and lands as `copy_name`.
fn a_killed_sender_resumes(copy_name: &str) {
    let server = TestServer::start(Some(SLOW_RELAY));
    let inbox = tempfile::tempdir().expect("temp dir");
    let dir = inbox.path().display().to_string();
    let flags = ["--relay", "--session-timeout", "2s"];
    let bob = Running::listen(&server, "bob", "smol", &flags, &["--accept-files", &dir]);
    let src = tempfile::tempdir().expect("temp dir");
    let bytes = random_bytes(4 * MIB, 3);
    let path = src.path().join("data.bin");
    std::fs::write(&path, &bytes).expect("write");
    let alice = Running::spawn(
        PUNCHLINE,
        &server.args("alice", "smol", &[&flags[..], &["send-file", "bob", &path.display().to_string()]].concat()),
    );

    // When alice is killed once bob recorded some groups.
    wait_for_recorded_groups(inbox.path());
    drop(alice);

    // Then bob says the transfer failed with the session, and keeps the partial.
    let mut seen = Vec::new();
    let failed = bob.wait_event("file-failed", &mut seen);
    assert_eq!((failed["name"].as_str(), failed["reason"].as_str()), (Some("data.bin"), Some("session-closed")));
    let root = root_hex(&bytes);
    assert!(inbox.path().join(format!(".punchline-{root}.partial")).exists());
    assert!(inbox.path().join(format!(".punchline-{root}.state")).exists());

    // When alice sends the same content again (under `copy_name`).
    let copy = src.path().join(copy_name);
    if copy != path {
        std::fs::rename(&path, &copy).expect("rename");
    }
    let out = send_file(&server, "alice", "smol", &flags, "bob", &copy);

    // Then it resumes and arrives byte-exact under the name sent.
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), stderr(&out));
    let done = json_lines(&out).pop().expect("done");
    assert_eq!(done["name"], copy_name);
    let resumed = done["resumed_bytes"].as_u64().expect("resumed_bytes");
    assert!(resumed > 0 && resumed < bytes.len() as u64, "{done}");
    let file = bob.wait_event("file", &mut seen);
    assert_eq!(file["name"], copy_name);
    assert!(std::fs::read(inbox.path().join(copy_name)).expect("saved") == bytes, "differs");
    assert_eq!(names_in(inbox.path()), [copy_name]);
}

#[test]
fn a_killed_sender_resumes_when_the_file_is_sent_again() {
    a_killed_sender_resumes("data.bin");
}

#[test]
fn a_renamed_copy_of_the_same_content_resumes() {
    a_killed_sender_resumes("copy of data.bin");
}

#[test]
fn a_sender_restarted_at_once_resumes_without_waiting_for_the_session_timeout() {
    // Given a transfer over a slow relay whose sender is killed once the
    // receiver recorded some groups, the receiver's session with it still
    // open (30 s timeout).
    let server = TestServer::start(Some(SLOW_RELAY));
    let inbox = tempfile::tempdir().expect("temp dir");
    let dir = inbox.path().display().to_string();
    let bob = Running::listen(&server, "bob", "mio", &["--relay"], &["--accept-files", &dir]);
    let src = tempfile::tempdir().expect("temp dir");
    let bytes = random_bytes(4 * MIB, 7);
    let path = src.path().join("data.bin");
    std::fs::write(&path, &bytes).expect("write");
    let send = ["--relay", "send-file", "bob", &path.display().to_string()].map(str::to_owned);
    let send: Vec<&str> = send.iter().map(String::as_str).collect();
    let alice = Running::spawn(PUNCHLINE, &server.args("alice", "mio", &send));
    wait_for_recorded_groups(inbox.path());
    drop(alice);

    // When alice sends the file again at once.
    let out = send_file(&server, "alice", "mio", &["--relay"], "bob", &path);

    // Then the new login closes the old session (the server tells bob
    // alice's old presence went offline), which ends the old transfer on
    // bob's side; the new one resumes from what it wrote, and the file
    // arrives byte-exact.
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), stderr(&out));
    let done = json_lines(&out).pop().expect("done");
    assert!(done["resumed_bytes"].as_u64().is_some_and(|r| r > 0), "{done}");
    let mut seen = Vec::new();
    bob.wait_event("file", &mut seen);
    let failed: Vec<&Value> = seen.iter().filter(|v| v["event"] == "file-failed").collect();
    assert_eq!(failed.len(), 1, "{seen:?}");
    assert_eq!(failed[0]["reason"], "session-closed", "{seen:?}");
    assert!(std::fs::read(inbox.path().join("data.bin")).expect("saved") == bytes, "differs");
    assert_eq!(names_in(inbox.path()), ["data.bin"]);
}

#[test]
fn hostile_file_names_are_refused_before_anything_is_sent() {
    // Given files whose names a receiver would refuse (no server is needed:
    // the name is checked first).
    let server = TestServer::start(None);
    let src = tempfile::tempdir().expect("temp dir");
    for name in ["a\nb", "CON", "nul.txt", "bell\u{7}", "evil\u{202e}txt.exe", ".punchline-x", "trailing."] {
        let path = src.path().join(name);
        std::fs::write(&path, b"x").expect("write");
        // When alice tries to send one, then send-file refuses it: usage, 2.
        let out = send_file(&server, "alice", "mio", &[], "bob", &path);
        assert_eq!(out.status.code(), Some(2), "{name:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("the file name"), "{name:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{name:?}");
    }
}

#[test]
fn a_full_disk_fails_the_transfer_and_keeps_the_partial() {
    // Given bob limited to files of 1 MiB (RLIMIT_FSIZE, set by prlimit).
    let server = TestServer::start(None);
    let inbox = tempfile::tempdir().expect("temp dir");
    let dir = inbox.path().display().to_string();
    let limit = format!("--fsize={}", MIB);
    let bob = Running::listen_via("prlimit", &[&limit, "--"], &server, "bob", "mio", &[], &["--accept-files", &dir]);
    let src = tempfile::tempdir().expect("temp dir");
    let bytes = random_bytes(4 * MIB, 4);
    let path = src.path().join("big.bin");
    std::fs::write(&path, &bytes).expect("write");

    // When alice sends a 4 MiB file.
    let out = send_file(&server, "alice", "mio", &[], "bob", &path);

    // Then send-file exits 17 (disk full), bob says so and keeps what he
    // wrote (the partial and its state) for a resume; nothing is in place.
    assert_eq!(out.status.code(), Some(17), "{}", stderr(&out));
    assert!(stderr(&out).contains("disk is full"), "{}", stderr(&out));
    let failed = bob.wait_event("file-failed", &mut Vec::new());
    assert_eq!((failed["name"].as_str(), failed["reason"].as_str()), (Some("big.bin"), Some("disk-full")));
    let root = root_hex(&bytes);
    let state: Value =
        serde_json::from_slice(&std::fs::read(inbox.path().join(format!(".punchline-{root}.state"))).expect("state"))
            .expect("JSON");
    assert_eq!(state["size"], bytes.len());
    let partial = inbox.path().join(format!(".punchline-{root}.partial"));
    assert!(partial.exists());
    assert!(!inbox.path().join("big.bin").exists());
    // What the state claims is what was sent.
    let disk = std::fs::File::open(&partial).expect("partial");
    for range in state["groups"].as_array().expect("groups") {
        let (start, end) = (range[0].as_u64().expect("start"), range[1].as_u64().expect("end"));
        for g in start..end {
            let mut group = vec![0; GROUP];
            disk.read_exact_at(&mut group, g * GROUP as u64).expect("within the partial");
            assert!(group[..] == bytes[g as usize * GROUP..(g as usize + 1) * GROUP], "group {g} differs");
        }
    }
}

#[test]
fn a_file_changed_while_it_is_sent_fails_verification_and_lands_nowhere() {
    // Given a 14 MiB file going over the relay (2 MiB/s a session).
    let server = TestServer::start(None);
    let inbox = tempfile::tempdir().expect("temp dir");
    let dir = inbox.path().display().to_string();
    let bob = Running::listen(&server, "bob", "mio", &["--relay"], &["--accept-files", &dir]);
    let src = tempfile::tempdir().expect("temp dir");
    let bytes = random_bytes(14 * MIB, 5);
    let path = src.path().join("moving.bin");
    std::fs::write(&path, &bytes).expect("write");
    let alice = Running::spawn(
        PUNCHLINE,
        &server.args("alice", "mio", &["--relay", "send-file", "bob", &path.display().to_string(), "--json"]),
    );

    // When its last MiB is overwritten after the first progress line. The
    // sender reads nothing beyond the receiver's credit, which is its
    // written frontier plus an 8 MiB window: with less than 3 MiB
    // acknowledged, the last MiB is still unread.
    let mut seen = Vec::new();
    let progress = alice.wait_event("progress", &mut seen);
    let acknowledged = progress["bytes"].as_u64().expect("bytes");
    assert!(acknowledged < 3 * MIB as u64, "the transfer ran too far to change an unread part: {progress}");
    let file = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
    file.write_all_at(&random_bytes(MIB, 6), 13 * MIB as u64).expect("overwrite");
    drop(file);

    // Then send-file exits 18 (verification failed), bob reports it, and no
    // file is moved into place.
    let mut alice = alice;
    assert_eq!(wait_exit(&mut alice.child), Some(18));
    let failed = bob.wait_event("file-failed", &mut Vec::new());
    assert_eq!(failed["reason"], "verification-failed", "{failed}");
    assert!(!inbox.path().join("moving.bin").exists());
    assert!(names_in(inbox.path()).iter().all(|n| n.starts_with(".punchline-")), "{:?}", names_in(inbox.path()));
}

#[test]
fn a_listener_without_accept_files_refuses_with_a_reason() {
    // Given bob listening without --accept-files.
    let server = TestServer::start(None);
    let bob = Running::listen(&server, "bob", "smol", &[], &[]);
    let src = tempfile::tempdir().expect("temp dir");
    let path = src.path().join("notes.txt");
    std::fs::write(&path, b"hello").expect("write");

    // When alice sends a file, then send-file exits 15 saying why, and bob
    // prints the refusal.
    let out = send_file(&server, "alice", "mio", &[], "bob", &path);
    assert_eq!(out.status.code(), Some(15), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not accept files"), "{}", stderr(&out));
    let refused = bob.wait_event("file-refused", &mut Vec::new());
    assert_eq!(refused["peer"], "alice");
    assert_eq!((refused["name"].as_str(), refused["reason"].as_str()), (Some("notes.txt"), Some("not-accepting")));
}

#[test]
fn ask_without_a_terminal_is_a_usage_error() {
    let server = TestServer::start(None);
    let inbox = tempfile::tempdir().expect("temp dir");
    let dir = inbox.path().display().to_string();
    let out = Command::new(PUNCHLINE)
        .args(server.args("bob", "mio", &["listen", "--accept-files", &dir, "--ask"]))
        .stdin(Stdio::null())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--ask needs a terminal"), "{}", stderr(&out));
}

/// The exit code of `child`, waiting at most the hang guard.
fn wait_exit(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + HANG_GUARD;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code();
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!("the process did not exit");
}
