//! The durability promise end to end, with the real binaries: a sender
//! streams thousands of texts to an offline recipient while the real
//! `punchline-server` is killed with SIGKILL and restarted on the same
//! `--data` directory; afterwards the recipient's `inbox` shows every message
//! whose send was acknowledged, each exactly once.
//!
//! The kills land at seeded points of the stream, not at moments on the
//! clock: right after the sender has reported its N-th acknowledgement, with
//! N drawn from a fixed seed, and the run is repeated for a few seeds.
//!
//! The server binary belongs to another package, so the test builds it with
//! cargo (a no-op when it is up to date) into the same target directory.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const PUNCHLINE: &str = env!("CARGO_BIN_EXE_punchline");
const MESSAGES: usize = 3_000;
/// Kills per run, one in each sixth of the stream.
const KILLS: usize = 6;
/// One run per seed; each seed fixes the kill points.
const SEEDS: [u64; 3] = [0x0005_eed7, 0x0bad_5eed, 0x0000_d1ce];
/// Only keeps a hung sender from blocking the run forever; far beyond what a
/// run takes.
const HANG_GUARD: Duration = Duration::from_secs(300);

/// Builds `punchline-server` beside the `punchline` binary and returns its path.
fn server_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "punchline-server", "--bin", "punchline-server"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building punchline-server failed");
    let path = Path::new(PUNCHLINE).with_file_name(format!("punchline-server{}", std::env::consts::EXE_SUFFIX));
    assert!(path.is_file(), "no server binary at {}", path.display());
    path
}

/// The real server on a fixed port and data directory, SIGKILLed when dropped.
struct Server {
    child: Child,
}

impl Server {
    fn start(binary: &Path, addr: SocketAddr, data: &Path, runtime: &str) -> Server {
        let mut child = Command::new(binary)
            .args(["--listen", &addr.to_string(), "--runtime", runtime, "--data"])
            .arg(data)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("read");
        assert!(line.starts_with("listening primary"), "server did not start: {line:?}");
        Server { child }
    }

    /// SIGKILL: no chance to flush or close anything.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// splitmix64: a seed's kill schedule, the same at every run.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// The acknowledgement counts after which the server is killed: one drawn
/// in each of `KILLS` equal parts of the stream, so every kill is mid-stream
/// and they come in order.
fn kill_points(seed: u64) -> Vec<usize> {
    let mut rng = Rng(seed);
    let part = MESSAGES / KILLS;
    (0..KILLS).map(|k| k * part + 1 + rng.below(part as u64 - 1) as usize).collect()
}

/// `punchline` as `user`. Its identity and pins live in a home of this
/// test process, never the user's own (the server keeps its key across the
/// kills, so the pin made on first contact holds).
fn client(server: SocketAddr, user: &str) -> Command {
    static HOME: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let home = HOME.get_or_init(|| tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir"));
    let mut c = Command::new(PUNCHLINE);
    c.args(["--server", &server.to_string(), "--user", user, "--server-timeout", "30s"])
        .env("PUNCHLINE_HOME", home.path());
    c
}

/// `inbox --json` as `user`: (id, text) per line, in the order shown.
fn inbox(server: SocketAddr, user: &str) -> Vec<(String, String)> {
    let out = client(server, user).args(["inbox", "--json", "--timeout", "60s"]).output().expect("inbox runs");
    assert!(out.status.success(), "inbox failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            assert_eq!(v["event"], "text", "{l}");
            (v["id"].as_str().expect("id").to_owned(), v["text"].as_str().expect("text").to_owned())
        })
        .collect()
}

#[test]
fn every_acknowledged_message_survives_sigkill_and_is_shown_exactly_once() {
    let binary = server_binary();
    for seed in SEEDS {
        stream_with_kills_then_inbox(&binary, seed);
    }
}

/// One run: the stream, a kill after each of the seed's acknowledgement
/// counts, then the inbox.
fn stream_with_kills_then_inbox(binary: &Path, seed: u64) {
    let data = tempfile::tempdir().expect("temp dir");
    let addr = std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free port");
    let runtimes = ["mio", "smol"];
    let mut server = Server::start(binary, addr, data.path(), runtimes[0]);

    // Given a recipient who logged in once (so the server knows the name)
    // and is offline from then on.
    assert!(inbox(addr, "bob").is_empty());

    // When a sender streams 3,000 texts...
    let mut sender = client(addr, "alice")
        .args(["send", "bob", "--stdin", "--json", "--timeout", "40s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("sender starts");
    let mut stdin = sender.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || {
        for i in 0..MESSAGES {
            writeln!(stdin, "message {i:05}").expect("sender reads stdin");
        }
    });
    let stdout = BufReader::new(sender.stdout.take().expect("piped"));
    let (acks_tx, acks) = mpsc::channel::<Value>();
    let reader = std::thread::spawn(move || {
        for line in stdout.lines() {
            let line = line.expect("read");
            let _ = acks_tx.send(serde_json::from_str(&line).expect("a JSON line"));
        }
    });

    // ... and the server is SIGKILLed right after the sender reports each of
    // the seed's acknowledgement counts, and restarted at once on the same
    // data directory (alternating runtimes),
    let kill_at = kill_points(seed);
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let mut kills = 0;
    loop {
        let v = match acks.recv_timeout(HANG_GUARD) {
            Ok(v) => v,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("seed {seed:#x}: the sender hung after {} acks", acked.len())
            }
        };
        assert!(v.get("error").is_none(), "seed {seed:#x}: a send failed: {v}");
        let line = v["line"].as_u64().expect("line") as usize;
        assert!(matches!(v["status"].as_str(), Some("stored")), "{v}");
        assert_eq!(v["path"], "server", "{v}");
        let previous = acked.insert(v["id"].as_str().expect("id").to_owned(), format!("message {:05}", line - 1));
        assert!(previous.is_none(), "seed {seed:#x}: one acknowledgement per message: {v}");
        if kill_at.get(kills) == Some(&acked.len()) {
            server.kill();
            kills += 1;
            server = Server::start(binary, addr, data.path(), runtimes[kills % 2]);
        }
    }
    let status = sender.wait().expect("the sender ends");
    writer.join().expect("writer");
    reader.join().expect("reader");
    assert!(status.success(), "seed {seed:#x}: sender exited with {status}");
    assert_eq!(kills, KILLS, "seed {seed:#x}: every kill point {kill_at:?} was reached");
    eprintln!("seed {seed:#x}: killed after acknowledgements {kill_at:?}");
    assert_eq!(acked.len(), MESSAGES, "seed {seed:#x}: every message acknowledged in the end");

    // Then, after one more SIGKILL (whatever was acknowledged is on disk),
    // the recipient's inbox shows each acknowledged message exactly once.
    server.kill();
    let _server = Server::start(binary, addr, data.path(), "mio");
    let shown = inbox(addr, "bob");
    let mut seen = BTreeSet::new();
    for (id, text) in &shown {
        assert!(seen.insert(id.clone()), "seed {seed:#x}: message {id} shown twice");
        assert_eq!(
            acked.get(id),
            Some(text),
            "seed {seed:#x}: message {id} shown with another text, or never acknowledged"
        );
    }
    let missing: Vec<&String> = acked.keys().filter(|id| !seen.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "seed {seed:#x}: {} acknowledged messages lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(3)]
    );
    // And nothing is left for a second look.
    assert!(inbox(addr, "bob").is_empty(), "seed {seed:#x}: the inbox kept messages it had delivered");
}

#[test]
fn the_kill_points_are_mid_stream_in_order_and_fixed_by_the_seed() {
    for seed in SEEDS {
        let points = kill_points(seed);
        assert_eq!(points, kill_points(seed), "seed {seed:#x}");
        assert_eq!(points.len(), KILLS);
        assert!(points.windows(2).all(|w| w[0] < w[1]), "seed {seed:#x}: {points:?}");
        assert!(points.iter().all(|&n| 0 < n && n < MESSAGES), "seed {seed:#x}: {points:?}");
    }
    assert_ne!(kill_points(SEEDS[0]), kill_points(SEEDS[1]));
}
