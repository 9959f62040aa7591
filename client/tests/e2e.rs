//! End to end on loopback: the real `punchline` binary against a
//! `punchline-server` (the library behind the binary, in this process, so a
//! test can stop it at a chosen moment), on both runtimes.
//!
//! Addresses: the server listens on 127.0.0.1 (primary) and 127.0.0.2
//! (alternate) with ports the system picks, so tests run in parallel.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use punchline_server::config::{FileConfig, RuntimeKind, Settings};
use punchline_server::Stopper;
use serde_json::Value;

const PUNCHLINE: &str = env!("CARGO_BIN_EXE_punchline");

/// A server running on a thread until stopped (or dropped).
struct TestServer {
    primary: SocketAddr,
    alternate: SocketAddr,
    stopper: Option<Stopper>,
    thread: Option<thread::JoinHandle<Result<(), punchline_server::RunError>>>,
    /// The clients' identity files and pins: never the user's own.
    home: tempfile::TempDir,
}

impl TestServer {
    fn start(runtime: RuntimeKind) -> TestServer {
        let settings = Settings::merge(
            Some("127.0.0.1:0".parse().expect("addr")),
            Some("127.0.0.2:0".parse().expect("addr")),
            Some(runtime),
            FileConfig::default(),
            7.into(),
        )
        .expect("valid settings");
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            punchline_server::run(settings, |addrs, stopper| {
                tx.send((addrs.to_vec(), stopper)).expect("test waits");
            })
        });
        let (addrs, stopper) = rx.recv_timeout(Duration::from_secs(120)).expect("server binds");
        let home = tempfile::tempdir().expect("temp dir");
        TestServer { primary: addrs[0].1, alternate: addrs[1].1, stopper: Some(stopper), thread: Some(thread), home }
    }

    /// Stops the server: its sockets close; clients get no goodbye.
    fn kill(&mut self) {
        if let Some(stopper) = self.stopper.take() {
            stopper.stop();
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread").expect("server ran cleanly");
        }
    }

    fn args(&self, user: &str, runtime: &str) -> Vec<String> {
        let identity = self.home.path().join(format!("{user}.key")).display().to_string();
        let pins = self.home.path().join("known_servers").display().to_string();
        ["--server", &self.primary.to_string(), "--alt-server", &self.alternate.to_string(), "--user", user]
            .into_iter()
            .chain(["--runtime", runtime, "--identity", &identity, "--known-servers", &pins])
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A child process killed when dropped, with its stdout as a channel of lines.
struct Running {
    child: Child,
    lines: Receiver<String>,
}

impl Running {
    fn spawn(args: &[String]) -> Running {
        let mut child = Command::new(PUNCHLINE)
            .args(args)
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

    /// The next JSON line whose `event` is `event`; every line read on the
    /// way is returned too. The deadline only keeps a hang from blocking the
    /// run forever: it is far beyond anything the tests wait for.
    fn wait_event(&self, event: &str, seen: &mut Vec<Value>) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
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

    fn drain(&self, seen: &mut Vec<Value>) {
        while let Ok(line) = self.lines.try_recv() {
            seen.push(serde_json::from_str(&line).expect("JSON line"));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[String]) -> Output {
    Command::new(PUNCHLINE).args(args).output().expect("punchline runs")
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

fn json_of(output: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!("stdout is not one JSON object: {stdout:?} ({e}); stderr: {}", String::from_utf8_lossy(&output.stderr))
    })
}

/// Given a server, `bob` listening on `listener` and `alice` connecting on
/// `connector`: the session goes direct and every ping is answered.
fn direct_session_with_pings(listener: &str, connector: &str) {
    let server = TestServer::start(RuntimeKind::Mio);
    let bob = Running::spawn(&[server.args("bob", listener), strings(&["listen", "--json"])].concat());
    let mut seen = Vec::new();
    let login = bob.wait_event("logged-in", &mut seen);
    assert!(login["reflexive"].as_str().expect("reflexive").starts_with("127.0.0.1:"), "{login}");

    // When alice connects and sends 5 pings.
    let output =
        run(&[server.args("alice", connector), strings(&["connect", "bob", "--pings", "5", "--json"])].concat());

    // Then the session went direct, all pings were answered, and bob saw it.
    let report = json_of(&output);
    assert!(output.status.success(), "{report}");
    assert_eq!(report["peer"], "bob");
    assert_eq!(report["outcome"], "direct", "{report}");
    assert_eq!(report["strategy"], "punch");
    assert_eq!(report["pings_answered"], 5, "{report}");
    assert!(report["connect_ms"].as_f64().is_some() && report["direct_ms"].as_f64().is_some(), "{report}");
    assert!(report["rtt_ms_p50"].as_f64().is_some(), "{report}");
    // (Bob may see alice's first pings a moment before his own side of the
    // path turns direct: events are checked as a whole, in order.)
    let closed = bob.wait_event("session-closed", &mut seen);
    assert_eq!(closed["reason"], "peer");
    let events: Vec<&str> = seen.iter().filter_map(|v| v["event"].as_str()).collect();
    let at = |name: &str| events.iter().position(|e| *e == name).unwrap_or_else(|| panic!("no {name}: {events:?}"));
    assert!(at("session-opened") < at("path-direct") && at("path-direct") < at("session-closed"), "{events:?}");
    let opened = &seen[at("session-opened")];
    assert_eq!((opened["peer"].as_str(), opened["path"].as_str()), (Some("alice"), Some("relay")));
    let direct = &seen[at("path-direct")];
    assert_eq!((direct["peer"].as_str(), direct["path"].as_str()), (Some("alice"), Some("direct")));
    let pings: Vec<u64> = seen.iter().filter(|v| v["event"] == "ping").filter_map(|v| v["seq"].as_u64()).collect();
    assert_eq!(pings, [1, 2, 3, 4, 5]);
}

#[test]
fn mio_to_mio_goes_direct_and_pings_flow() {
    direct_session_with_pings("mio", "mio");
}

#[test]
fn smol_to_smol_goes_direct_and_pings_flow() {
    direct_session_with_pings("smol", "smol");
}

#[test]
fn mio_listener_and_smol_connector_go_direct() {
    direct_session_with_pings("mio", "smol");
}

#[test]
fn smol_listener_and_mio_connector_go_direct() {
    direct_session_with_pings("smol", "mio");
}

#[test]
fn pings_keep_flowing_after_the_server_dies() {
    // Given a direct session between bob (listening) and alice (pinging 30
    // times, every 100 ms).
    let mut server = TestServer::start(RuntimeKind::Smol);
    let bob = Running::spawn(&[server.args("bob", "mio"), strings(&["listen", "--json"])].concat());
    let mut seen = Vec::new();
    bob.wait_event("logged-in", &mut seen);
    let alice = Command::new(PUNCHLINE)
        .args(
            [
                server.args("alice", "mio"),
                strings(&["connect", "bob", "--pings", "30", "--interval", "100ms", "--json"]),
            ]
            .concat(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("alice starts");
    bob.wait_event("path-direct", &mut seen);

    // When the server is killed once bob has seen the third ping (a fixed
    // point in the stream, not a moment on the clock).
    // (Bob may have seen it already, while waiting for his direct path.)
    let ping_seqs = |lines: &[Value]| -> Vec<u64> {
        lines.iter().filter(|v| v["event"] == "ping").filter_map(|v| v["seq"].as_u64()).collect()
    };
    while !ping_seqs(&seen).contains(&3) {
        bob.wait_event("ping", &mut seen);
    }
    server.kill();
    bob.drain(&mut seen);
    let lines_before = seen.len();
    let last_before = ping_seqs(&seen).last().copied().expect("pings before the kill");
    assert!(last_before < 30, "every ping arrived before the server was down: nothing was tested");

    // Then every ping is still answered, over the direct path: bob sees
    // each ping once and in order, those after the kill all direct.
    let output = alice.wait_with_output().expect("alice ends");
    let report = json_of(&output);
    assert!(output.status.success(), "{report}");
    assert_eq!(report["outcome"], "direct", "{report}");
    assert_eq!(report["pings_answered"], 30, "{report}");
    assert_eq!(report["fallbacks"], 0, "{report}");
    bob.drain(&mut seen);
    while ping_seqs(&seen).last() != Some(&30) {
        bob.wait_event("ping", &mut seen);
    }
    assert_eq!(ping_seqs(&seen), (1..=30).collect::<Vec<u64>>());
    let after: Vec<&Value> = seen[lines_before..].iter().filter(|v| v["event"] == "ping").collect();
    assert_eq!(after.len() as u64, 30 - last_before, "{after:?}");
    assert!(after.iter().all(|v| v["path"] == "direct"), "{after:?}");
}

#[test]
fn a_vanished_peer_closes_the_session_and_connect_fails() {
    // Given alice pinging bob over a direct session, with a 2 s session timeout.
    let server = TestServer::start(RuntimeKind::Mio);
    let mut bob = Running::spawn(&[server.args("bob", "smol"), strings(&["listen", "--json"])].concat());
    let mut seen = Vec::new();
    bob.wait_event("logged-in", &mut seen);
    let alice = Command::new(PUNCHLINE)
        .args(
            [
                server.args("alice", "mio"),
                strings(&[
                    "--session-timeout",
                    "2s",
                    "connect",
                    "bob",
                    "--pings",
                    "200",
                    "--interval",
                    "100ms",
                    "--json",
                ]),
            ]
            .concat(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("alice starts");
    bob.wait_event("ping", &mut seen);

    // When bob vanishes without a word.
    bob.child.kill().expect("kill bob");

    // Then alice's session closes for a peer timeout, and the CLI says so
    // with exit code 7, before it has sent its 200 pings: the close ended
    // the command, not the end of its pings.
    let output = alice.wait_with_output().expect("alice ends");
    assert_eq!(output.status.code(), Some(7), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("session with \"bob\" closed: peer timed out"), "{stderr}");
    // (Besides the notice that bob's key was pinned on first use.)
    let errors: Vec<&str> = stderr.lines().filter(|l| !l.contains("pinned the key of")).collect();
    assert_eq!(errors.len(), 1, "one clear line: {stderr}");
    let report = json_of(&output);
    assert_eq!(report["outcome"], "failed", "{report}");
    let sent = report["pings_sent"].as_u64().expect("pings_sent");
    assert!(sent < 200, "the session closed only after all {sent} pings were sent: {report}");
}

#[test]
fn errors_have_distinct_exit_codes() {
    let server = TestServer::start(RuntimeKind::Mio);

    // An unknown peer: 4.
    let out = run(&[server.args("alice", "mio"), strings(&["connect", "nobody"])].concat());
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown peer \"nobody\""));

    // A peer that logged in once and left: 5.
    let carol = run(&[server.args("carol", "mio"), strings(&["nat-check"])].concat());
    assert!(carol.status.success());
    let out = run(&[server.args("alice", "smol"), strings(&["connect", "carol"])].concat());
    assert_eq!(out.status.code(), Some(5), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("peer \"carol\" is offline"));

    // Connecting to oneself: a usage error, 2.
    let out = run(&[server.args("alice", "mio"), strings(&["connect", "alice"])].concat());
    assert_eq!(out.status.code(), Some(2));

    // No server at all: 3.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let dead = silent.local_addr().expect("addr").to_string();
    let identity = server.home.path().join("alice.key").display().to_string();
    let pins = server.home.path().join("known_servers").display().to_string();
    for runtime in ["mio", "smol"] {
        let out = run(&strings(&[
            "--server",
            &dead,
            "--user",
            "alice",
            "--runtime",
            runtime,
            "--server-timeout",
            "1s",
            "--identity",
            &identity,
            "--known-servers",
            &pins,
            "connect",
            "bob",
        ]));
        assert_eq!(out.status.code(), Some(3), "{runtime}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("server {dead} unreachable")));
    }
}

#[test]
fn nat_check_on_loopback_reports_no_nat() {
    let server = TestServer::start(RuntimeKind::Mio);
    let bind = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").to_string();
    for runtime in ["mio", "smol"] {
        let out = run(&[server.args("dave", runtime), strings(&["--bind", &bind, "nat-check", "--json"])].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let report = json_of(&out);
        assert_eq!(report["reflexive"], bind.as_str());
        assert_eq!(report["mapping"], "endpoint-independent");
        assert_eq!(report["filtering"], "endpoint-independent");
        assert_eq!(report["ports"], "preserve");
        assert_eq!(report["preset"], "open");
    }
}

#[test]
#[ignore = "needs coturn's `turnserver` (apt-get install -y coturn)"]
fn nat_check_with_coturn_as_stun_server() {
    if let Err(e) = Command::new("turnserver").arg("--help").output() {
        panic!("this test needs coturn's `turnserver` (apt-get install -y coturn): {e}");
    }
    // Given coturn's STUN server, once it says its UDP listener is open, and ours.
    let server = TestServer::start(RuntimeKind::Mio);
    let stun_port = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let stun = format!("127.0.0.1:{stun_port}");
    let scratch = tempfile::tempdir().expect("temp dir");
    let mut turn = Command::new("turnserver")
        .args(["-n", "-v", "--listening-ip", "127.0.0.1", "--listening-port", &stun_port.to_string()])
        .args(["--stun-only", "--no-cli", "--no-tls", "--no-dtls", "--log-file", "stdout", "--pidfile"])
        .arg(scratch.path().join("turnserver.pid"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnserver starts");
    let mut log = BufReader::new(turn.stdout.take().expect("piped")).lines().map_while(Result::ok);
    let ready = format!("UDP listener opened on: {stun}");
    let mut seen = Vec::new();
    let opened = log.by_ref().any(|l| {
        seen.push(l.clone());
        l.contains(&ready)
    });
    assert!(opened, "turnserver exited without opening {stun}: {seen:#?}");
    // (Its log keeps coming; read it so that coturn never blocks on the pipe.)
    thread::spawn(move || log.for_each(drop));
    let bind = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").to_string();

    // When nat-check asks coturn for the reflexive address,
    let out = run(
        &[server.args("erin", "mio"), strings(&["--bind", &bind, "nat-check", "--stun", &stun, "--json"])].concat()
    );
    let _ = turn.kill();
    let _ = turn.wait();

    // then coturn's answer is our bound address (loopback has no NAT).
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json_of(&out);
    assert_eq!(report["reflexive"], bind.as_str(), "{report}");
    assert_eq!(report["stun"], stun.as_str());
    assert_eq!(report["preset"], "open");
}

#[test]
fn nat_check_with_a_silent_stun_server_fails_with_its_own_code() {
    let server = TestServer::start(RuntimeKind::Mio);
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let stun = silent.local_addr().expect("addr").to_string();
    let out = run(&[server.args("frank", "mio"), strings(&["nat-check", "--stun", &stun])].concat());
    assert_eq!(out.status.code(), Some(9));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("STUN server {stun} did not answer")));
}
