//! `punchline send` and `punchline inbox` against an in-process server with
//! a SQLite store: stored for an offline user, shown once by `inbox`, and
//! the refusals (oversized text, unknown recipient) as one stderr line and
//! their exit codes.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use punchline_core::messaging::MAX_TEXT;
use punchline_server::config::{FileConfig, RuntimeKind, Settings};
use serde_json::Value;

const PUNCHLINE: &str = env!("CARGO_BIN_EXE_punchline");

/// A server with its store in a temporary directory, on a thread.
struct TestServer {
    primary: SocketAddr,
    stopper: Option<punchline_server::Stopper>,
    thread: Option<thread::JoinHandle<Result<(), punchline_server::RunError>>>,
    _data: tempfile::TempDir,
    /// The clients' identity files and pins: never the user's own.
    home: tempfile::TempDir,
}

impl TestServer {
    fn start(runtime: RuntimeKind) -> TestServer {
        Self::start_on(runtime, "127.0.0.1:0".parse().expect("addr"))
    }

    fn start_on(runtime: RuntimeKind, listen: SocketAddr) -> TestServer {
        Self::start_keyed(runtime, listen, None, tempfile::tempdir().expect("temp dir"))
    }

    /// A server at `listen` with `key` (default: the one derived from
    /// seed 0) whose clients live in `home`.
    fn start_keyed(
        runtime: RuntimeKind,
        listen: SocketAddr,
        key: Option<punchline_core::secure::StaticKey>,
        home: tempfile::TempDir,
    ) -> TestServer {
        let data = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings::merge(Some(listen), None, Some(runtime), FileConfig::default(), 7.into())
            .expect("valid settings");
        settings.data = Some(data.path().to_owned());
        if let Some(key) = key {
            settings.server.key = key;
        }
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            punchline_server::run(settings, |addrs, stopper| {
                tx.send((addrs[0].1, stopper)).expect("test waits");
            })
        });
        let (primary, stopper) = rx.recv_timeout(Duration::from_secs(60)).expect("server binds");
        TestServer { primary, stopper: Some(stopper), thread: Some(thread), _data: data, home }
    }

    fn run(&self, user: &str, runtime: &str, args: &[&str]) -> Output {
        self.command(user).args(["--runtime", runtime]).args(args).output().expect("punchline runs")
    }

    /// `punchline` as `user` against this server, with the test's own home.
    fn command(&self, user: &str) -> Command {
        let mut c = Command::new(PUNCHLINE);
        c.args(["--server", &self.primary.to_string(), "--user", user]).env("PUNCHLINE_HOME", self.home.path());
        c
    }
}

impl TestServer {
    /// Stops the server; its clients' home is handed back.
    fn stop(mut self) -> tempfile::TempDir {
        self.halt();
        let home = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.home, home)
    }

    fn halt(&mut self) {
        if let Some(stopper) = self.stopper.take() {
            stopper.stop();
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("server thread").expect("server ran cleanly");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.halt();
    }
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
}

#[test]
fn a_text_to_an_offline_user_is_stored_then_shown_once_by_inbox() {
    for (server_rt, client_rt) in [(RuntimeKind::Mio, "smol"), (RuntimeKind::Smol, "mio")] {
        let server = TestServer::start(server_rt);
        // Given bob, who logged in once and left.
        let out = server.run("bob", client_rt, &["inbox", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(json_lines(&out).is_empty());
        // When alice sends him a text.
        let out = server.run("alice", client_rt, &["send", "bob", "see you at 8", "--json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let ack = &json_lines(&out)[0];
        // Then the server stored it for him.
        assert_eq!(ack["status"], "stored", "{ack}");
        assert_eq!(ack["path"], "server", "{ack}");
        let id = ack["id"].as_str().expect("id");
        assert_eq!(id.len(), 32, "{ack}");
        // And bob's inbox shows it once, then nothing.
        let shown = json_lines(&server.run("bob", client_rt, &["inbox", "--json"]));
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert_eq!(shown[0]["event"], "text");
        assert_eq!(shown[0]["peer"], "alice");
        assert_eq!(shown[0]["id"], id);
        assert_eq!(shown[0]["text"], "see you at 8");
        assert!(json_lines(&server.run("bob", client_rt, &["inbox", "--json"])).is_empty());
    }
}

#[test]
fn the_servers_key_and_whole_data_directory_do_not_give_away_a_stored_text() {
    use punchline_core::messaging::MessageStore;
    // Given a server whose key the test holds, and bob, who logged in once
    // and left,
    let key = punchline_core::secure::StaticKey::derive(5.into(), "the server's key");
    let listen = "127.0.0.1:0".parse().expect("addr");
    let server = TestServer::start_keyed(RuntimeKind::Mio, listen, Some(key.clone()), tempfile::tempdir().unwrap());
    assert!(server.run("bob", "mio", &["inbox"]).status.success());
    // when alice sends him a text, which the server stores,
    let out = server.run("alice", "mio", &["send", "bob", "stored marker b7e2", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_lines(&out)[0]["status"], "stored");
    // then no file of the data directory holds it (the store, its log),
    let mut files = 0;
    for entry in std::fs::read_dir(server._data.path()).expect("the data directory") {
        let bytes = std::fs::read(entry.expect("an entry").path()).expect("readable");
        assert!(!bytes.windows(11).any(|w| w == b"marker b7e2"), "a file holds the text in the clear");
        files += 1;
    }
    assert!(files >= 2, "the store and its write-ahead log were read");
    // and the server's key does not open what is stored,
    let mut store = punchline_store::SqliteStore::open_dir(server._data.path()).expect("the store opens");
    let (stored, _) = store.load_queue("bob", 10).expect("readable");
    assert_eq!(stored.len(), 1);
    let names = ("alice", "bob", stored[0].id);
    assert_eq!(punchline_core::secure::open_text(&key, names, &stored[0].sealed), None);
    // while bob reads it.
    let out = server.run("bob", "mio", &["inbox", "--json"]);
    let shown: Vec<Value> = json_lines(&out);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["text"], "stored marker b7e2");
}

#[test]
fn refused_texts_exit_with_their_code_and_one_clear_line() {
    let server = TestServer::start(RuntimeKind::Mio);
    assert!(server.run("bob", "mio", &["inbox"]).status.success());
    // An oversized text: refused before it leaves (exit 10).
    let big = "x".repeat(MAX_TEXT + 1);
    let out = server.run("alice", "mio", &["send", "bob", &big]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(10), "{stderr}");
    let expected = format!("message refused: text of {} bytes exceeds the {MAX_TEXT}-byte limit", MAX_TEXT + 1);
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // A recipient who never logged in: refused by the server's directory,
    // which has no key for it (exit 4).
    let out = server.run("alice", "mio", &["send", "nobody", "hello?"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("unknown peer \"nobody\""), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // Streaming: the bad line is reported, the good ones are stored (exit 10).
    let mut child = server
        .command("alice")
        .args(["send", "bob", "--stdin", "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    use std::io::Write;
    let mut stdin = child.stdin.take().expect("piped");
    writeln!(stdin, "one\n{big}\nthree").expect("write");
    drop(stdin);
    let out = child.wait_with_output().expect("exits");
    assert_eq!(out.status.code(), Some(10), "{}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out);
    let by_line = |n: u64| lines.iter().find(|l| l["line"] == n).unwrap_or_else(|| panic!("line {n}: {lines:?}"));
    assert_eq!(by_line(1)["status"], "stored");
    assert!(by_line(2)["error"].as_str().expect("error").contains(&format!("{} bytes", MAX_TEXT + 1)));
    assert_eq!(by_line(3)["status"], "stored");
    let shown: Vec<String> = json_lines(&server.run("bob", "mio", &["inbox", "--json"]))
        .iter()
        .map(|l| l["text"].as_str().expect("text").to_owned())
        .collect();
    assert_eq!(shown, ["one", "three"]);
}

#[test]
fn a_text_carrying_terminal_escapes_is_shown_escaped() {
    // Given bob registered, and alice sending him a text that would clear his
    // screen and reverse what follows,
    let server = TestServer::start(RuntimeKind::Mio);
    assert!(server.run("bob", "mio", &["inbox"]).status.success());
    let hostile = "hi\u{1b}[2J\u{202e}evil";
    let out = server.run("alice", "mio", &["send", "bob", hostile]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // when bob reads his inbox on a terminal,
    let out = server.run("bob", "mio", &["inbox"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // then the text is printed with the escape and the override made visible,
    assert!(stdout.contains("alice: hi\\u{1b}[2J\\u{202e}evil"), "{stdout:?}");
    assert!(!stdout.contains('\u{1b}') && !stdout.contains('\u{202e}'), "{stdout:?}");
}

#[test]
#[ignore = "needs IPv6 on loopback"]
fn a_client_talks_to_a_server_on_ipv6() {
    // Given a server listening on [::1] only (each runtime in turn),
    for runtime in [RuntimeKind::Mio, RuntimeKind::Smol] {
        let server = TestServer::start_on(runtime, "[::1]:0".parse().expect("addr"));
        assert!(server.primary.is_ipv6());
        // when bob registers and alice writes to him, then both reach it: the
        // client binds a socket of the server's family by itself.
        for client_rt in ["mio", "smol"] {
            let out = server.run("bob", client_rt, &["inbox"]);
            assert!(out.status.success(), "{runtime:?}/{client_rt}: {}", String::from_utf8_lossy(&out.stderr));
            let out = server.run("alice", client_rt, &["send", "bob", "over IPv6", "--json"]);
            assert!(out.status.success(), "{runtime:?}/{client_rt}: {}", String::from_utf8_lossy(&out.stderr));
            let shown = json_lines(&server.run("bob", client_rt, &["inbox", "--json"]));
            assert_eq!(shown.len(), 1, "{runtime:?}/{client_rt}: {shown:?}");
            assert_eq!(shown[0]["text"], "over IPv6");
        }
    }
}

#[test]
fn whoami_prints_the_fingerprint_of_a_key_made_once_with_mode_600() {
    let home = tempfile::tempdir().expect("temp dir");
    let whoami = || {
        Command::new(PUNCHLINE)
            .args(["--server", "127.0.0.1:9", "--user", "alice", "whoami", "--json"])
            .env("PUNCHLINE_HOME", home.path())
            .output()
            .expect("runs")
    };
    // Given no identity yet, when alice asks who she is, twice,
    let (first, second) = (whoami(), whoami());
    // then the key is made once (mode 0600) and both show its fingerprint,
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let shown: Value = serde_json::from_slice(&first.stdout).expect("JSON");
    assert_eq!(shown, serde_json::from_slice::<Value>(&second.stdout).expect("JSON"));
    let fingerprint = shown["fingerprint"].as_str().expect("fingerprint");
    assert!(punchline_core::secure::PublicKey::parse(fingerprint).is_some(), "{shown}");
    let file = home.path().join("identity").join("alice.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).expect("the key file").permissions().mode() & 0o777, 0o600);
    // and a key file others may read is refused, with exit 13.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = whoami();
    assert_eq!(out.status.code(), Some(13), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}

#[test]
fn another_key_for_a_taken_name_exits_11_and_a_changed_server_key_exits_12() {
    let server = TestServer::start(RuntimeKind::Mio);
    // Given bob, who logged in once (the server bound his name to his key
    // and he pinned the server's key),
    let out = server.run("bob", "mio", &["inbox"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pins = std::fs::read_to_string(server.home.path().join("known_servers")).expect("a pin was written");
    assert!(pins.contains(&server.primary.to_string()), "{pins}");
    // when someone logs in as bob with another identity file,
    let other = server.home.path().join("not-bob.key");
    let out = server.command("bob").args(["--identity"]).arg(&other).args(["inbox"]).output().expect("runs");
    // then the server refuses, with exit 11.
    assert_eq!(out.status.code(), Some(11), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to another key"));

    // When the server at that address comes back with another key,
    let (listen, home) = (server.primary, server.stop());
    let other_key = punchline_core::secure::StaticKey::derive(99.into(), "another server");
    let server = TestServer::start_keyed(RuntimeKind::Smol, listen, Some(other_key), home);
    // then bob refuses to log in, loudly, with exit 12, for either runtime.
    for runtime in ["mio", "smol"] {
        let out = server.run("bob", runtime, &["--server-timeout", "20s", "inbox"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(12), "{stderr}");
        assert!(stderr.contains("THE SERVER'S KEY HAS CHANGED"), "{stderr}");
    }
}

#[test]
fn whois_pins_a_contacts_key_on_first_use_and_refuses_a_changed_one_with_exit_14() {
    let server = TestServer::start(RuntimeKind::Smol);
    // Given bob, who logged in once, and the fingerprint he would read out,
    assert!(server.run("bob", "mio", &["inbox"]).status.success());
    let whoami = server.run("bob", "mio", &["whoami", "--json"]);
    let bobs: Value = serde_json::from_slice(&whoami.stdout).expect("JSON");
    // when alice asks the directory who bob is, twice,
    let first = server.run("alice", "mio", &["whois", "bob", "--json"]);
    let second = server.run("alice", "smol", &["whois", "bob", "--json"]);
    // then both show bob's own fingerprint, pinned the first time,
    for (out, pinned_before) in [(&first, false), (&second, true)] {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let shown: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(shown["fingerprint"], bobs["fingerprint"], "{shown}");
        assert_eq!(shown["pinned_before"], pinned_before, "{shown}");
    }
    // a name nobody ever logged in as is unknown (exit 4),
    let out = server.run("alice", "mio", &["whois", "nobody"]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    // and when the pin and the directory disagree (here the pin is made to
    // differ), whois refuses loudly with exit 14.
    let pins = server.home.path().join("known_peers");
    let text = std::fs::read_to_string(&pins).expect("a pin was written");
    let other = punchline_core::secure::StaticKey::derive(5.into(), "not bob").public();
    let fingerprint = bobs["fingerprint"].as_str().expect("a fingerprint");
    std::fs::write(&pins, text.replace(fingerprint, &other.to_string())).expect("rewrite the pin");
    let out = server.run("alice", "mio", &["whois", "bob"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(14), "{stderr}");
    assert!(stderr.contains("HAS CHANGED"), "{stderr}");
}
