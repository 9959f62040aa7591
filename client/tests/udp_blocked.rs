//! End to end where UDP is blocked (issue 21): the real `punchline` binary
//! and a `punchline-server` in a network namespace the test creates, whose
//! nftables drop every UDP packet. Everything must still work over TCP:
//! `connect --pings 20` on the relay (`relay-tcp`), and texts through the
//! server (`send`, `inbox`), on both runtimes.
//!
//! Each test re-runs itself inside the namespace (`ip netns exec`), so the
//! server it starts in-process and the clients it spawns all live there;
//! the namespace is removed afterwards, pass or fail.

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use punchline_server::config::{FileConfig, RuntimeKind, Settings};
use serde_json::Value;

const PUNCHLINE: &str = env!("CARGO_BIN_EXE_punchline");
/// Set in the copy of the test that runs inside the namespace.
const INSIDE: &str = "PUNCHLINE_TEST_INSIDE_NETNS";
/// UDP dropped both ways on every interface of the namespace.
const DROP_UDP: &str = "table inet punchline_test {\n  \
     chain input { type filter hook input priority filter; policy accept; meta l4proto udp drop; }\n  \
     chain output { type filter hook output priority filter; policy accept; meta l4proto udp drop; }\n}\n";

/// The namespace, removed when dropped.
struct Netns(String);

impl Netns {
    fn create(name: &str) -> Netns {
        // A namespace left by a killed run goes first (usually there is none).
        let _ = Command::new("ip").args(["netns", "del", name]).stderr(Stdio::null()).status();
        assert!(Command::new("ip").args(["netns", "add", name]).status().expect("ip runs").success());
        let ns = Netns(name.to_owned());
        ns.exec(&["ip", "link", "set", "lo", "up"], None);
        ns.exec(&["nft", "-f", "-"], Some(DROP_UDP));
        ns
    }

    fn exec(&self, command: &[&str], input: Option<&str>) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(command)
            .stdin(Stdio::piped())
            .spawn()
            .expect("ip netns exec runs");
        if let Some(text) = input {
            use std::io::Write as _;
            child.stdin.take().expect("piped").write_all(text.as_bytes()).expect("written");
        }
        drop(child.stdin.take());
        assert!(child.wait().expect("waited").success(), "{command:?} failed in {}", self.0);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Runs test `name` again inside a fresh namespace whose UDP is dropped,
/// and asserts it passed there.
fn run_inside_udp_blocked_netns(name: &str, tag: &str) {
    // One namespace per test: the tests of this binary run in parallel.
    let ns = Netns::create(&format!("pl-udpblk-{tag}-{}", std::process::id()));
    let me = std::env::current_exe().expect("the test binary");
    let status = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(me)
        .args(["--exact", name, "--ignored", "--nocapture", "--test-threads", "1"])
        .env(INSIDE, "1")
        .status()
        .expect("the test runs inside");
    assert!(status.success(), "{name} failed inside the namespace");
}

/// The server, on loopback, in this process.
fn start_server(runtime: RuntimeKind) -> (SocketAddr, punchline_server::Stopper) {
    let settings = Settings::merge(
        Some("127.0.0.1:0".parse().expect("addr")),
        Some("127.0.0.2:0".parse().expect("addr")),
        Some(runtime),
        FileConfig::default(),
        7.into(),
    )
    .expect("valid settings");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        punchline_server::run(settings, |addrs, stopper| {
            tx.send((addrs[0].1, stopper)).expect("test waits");
        })
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("server binds")
}

fn args(server: SocketAddr, home: &std::path::Path, user: &str, runtime: &str, command: &[&str]) -> Vec<String> {
    let identity = home.join(format!("{user}.key")).display().to_string();
    let pins = home.join("known_servers").display().to_string();
    let server = server.to_string();
    ["--server", &server, "--user", user, "--runtime", runtime, "--identity", &identity, "--known-servers", &pins]
        .into_iter()
        .chain(command.iter().copied())
        .map(str::to_owned)
        .collect()
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// Inside the namespace: connect with 20 pings, then a text to an offline
/// user fetched with `inbox`, all over TCP.
fn everything_works_over_tcp(runtime: &str) {
    // Given a server and two users in a namespace that drops UDP,
    let (server, _stopper) = start_server(if runtime == "smol" { RuntimeKind::Smol } else { RuntimeKind::Mio });
    let home = tempfile::tempdir().expect("temp dir");
    let mut bob = Command::new(PUNCHLINE)
        .args(args(server, home.path(), "bob", runtime, &["listen", "--json"]))
        .stdout(Stdio::piped())
        .spawn()
        .expect("listen starts");
    let stdout = bob.stdout.take().expect("piped");
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let login: Value = loop {
        let line = lines.recv_timeout(Duration::from_secs(30)).expect("bob logs in");
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["event"] == "logged-in" {
            break v;
        }
    };
    // bob logged in over TCP;
    assert_eq!(login["transport"], "tcp", "{login}");

    // when alice connects and sends 20 pings,
    let out = Command::new(PUNCHLINE)
        .args(args(server, home.path(), "alice", runtime, &["connect", "bob", "--pings", "20", "--json"]))
        .output()
        .expect("connect runs");
    let report = json_lines(&out).pop().unwrap_or_default();
    // then the session is on the relay over TCP and every ping came back;
    assert!(out.status.success(), "{report}: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!((&report["outcome"], &report["transport"]), (&Value::from("relay-tcp"), &Value::from("tcp")));
    assert_eq!((report["pings_sent"].as_u64(), report["pings_answered"].as_u64()), (Some(20), Some(20)));
    let _ = bob.kill();
    let _ = bob.wait();

    // and a text to carol, who has never been online, is stored and shown
    // once by her inbox.
    let carol_registers = Command::new(PUNCHLINE)
        .args(args(server, home.path(), "carol", runtime, &["inbox", "--json"]))
        .output()
        .expect("inbox runs");
    assert!(carol_registers.status.success(), "{}", String::from_utf8_lossy(&carol_registers.stderr));
    let sent = Command::new(PUNCHLINE)
        .args(args(server, home.path(), "alice", runtime, &["send", "carol", "over tcp 7f3a", "--json"]))
        .output()
        .expect("send runs");
    assert!(sent.status.success(), "{}", String::from_utf8_lossy(&sent.stderr));
    assert_eq!(json_lines(&sent).first().map(|ack| ack["status"].clone()), Some(Value::from("stored")));
    let inbox = Command::new(PUNCHLINE)
        .args(args(server, home.path(), "carol", runtime, &["inbox", "--json"]))
        .output()
        .expect("inbox runs");
    let texts: Vec<Value> = json_lines(&inbox).into_iter().filter(|v| v["text"] == "over tcp 7f3a").collect();
    assert_eq!(texts.len(), 1, "{}", String::from_utf8_lossy(&inbox.stdout));
    assert_eq!(texts[0]["peer"], "alice");
}

#[test]
#[ignore = "needs root, iproute2 and nftables"]
fn with_udp_blocked_connect_and_texts_work_over_tcp_on_mio() {
    if std::env::var_os(INSIDE).is_some() {
        return everything_works_over_tcp("mio");
    }
    run_inside_udp_blocked_netns("with_udp_blocked_connect_and_texts_work_over_tcp_on_mio", "mio");
}

#[test]
#[ignore = "needs root, iproute2 and nftables"]
fn with_udp_blocked_connect_and_texts_work_over_tcp_on_smol() {
    if std::env::var_os(INSIDE).is_some() {
        return everything_works_over_tcp("smol");
    }
    run_inside_udp_blocked_netns("with_udp_blocked_connect_and_texts_work_over_tcp_on_smol", "smol");
}
